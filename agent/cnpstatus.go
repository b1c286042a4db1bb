//go:build linux

package agent

import (
	"slices"

	"k8s.io/klog/v2"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// setDomainNames records the ClusterNetworkPolicies whose domainNames
// peers are not enforced, logging when that set changes.
func (a *Agent) setDomainNames(names []string) {
	a.mu.Lock()
	changed := !slices.Equal(a.domainNames, names)
	a.domainNames = names
	a.mu.Unlock()
	if !changed {
		return
	}
	a.metrics.DomainNames.Reset()
	for _, n := range names {
		a.metrics.DomainNames.WithLabelValues(n).Set(1)
	}
	if len(names) > 0 {
		klog.InfoS("ClusterNetworkPolicies with domainNames peers: those peers are not enforced (they match nothing), the policies' other rules are",
			"node", a.cfg.NodeName, "policies", names)
	}
}

// clusterPolicyStatus is status's part on ClusterNetworkPolicies; a
// failure to read them becomes a failed check on checks.
func (a *Agent) clusterPolicyStatus(checks []*flowv1.NodeCheck) (n uint32, watched bool, domainNames []string, _ []*flowv1.NodeCheck) {
	count, watched, lastErr := a.cluster.ClusterPolicies()
	a.mu.Lock()
	domainNames = slices.Clone(a.domainNames)
	a.mu.Unlock()
	if lastErr != "" {
		checks = append(checks, &flowv1.NodeCheck{Name: "clusternetworkpolicies",
			Detail: lastErr + ": ClusterNetworkPolicies are not enforced until the agent can read them; if forbidden, reinstall (kubectl netpol install) so the agent's ClusterRole grants get, list and watch on clusternetworkpolicies and customresourcedefinitions"})
	}
	return uint32(count), watched, domainNames, checks
}
