package policy_test

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	"github.com/kubectl-netpol/kubectl-netpol/policy/conformance"
)

// TestUpstreamConformance runs every upstream NetworkPolicy e2e connectivity
// case (policy/conformance) through the engine: for every step and probe,
// every (from, to) cell of the engine's verdicts must equal upstream's
// expected truth table, loopback cells excepted as upstream excepts them. It
// runs with IPv4 pods, with IPv6 pods, and with the namespaces renamed as on a
// shared cluster.
func TestUpstreamConformance(t *testing.T) {
	v4, err := conformance.AssignPodIPs(netip.MustParsePrefix(conformance.DefaultPodCIDR))
	if err != nil {
		t.Fatal(err)
	}
	v6, err := conformance.AssignPodIPs(netip.MustParsePrefix("fd00:77::/64"))
	if err != nil {
		t.Fatal(err)
	}
	envs := []struct {
		name string
		env  conformance.Env
	}{
		{"ipv4", conformance.Env{PodIPs: v4}},
		{"ipv6", conformance.Env{PodIPs: v6}},
		{"renamed", conformance.Env{PodIPs: v4, NamespaceNames: map[string]string{"x": "netpol-x-7f3a", "y": "netpol-y-7f3a", "z": "netpol-z-7f3a"}}},
	}
	for _, e := range envs {
		t.Run(e.name, func(t *testing.T) {
			cases, err := conformance.Cases(e.env)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cases {
				t.Run(c.Name, func(t *testing.T) {
					for i := range c.Steps {
						runStep(t, &c, i, e.env)
					}
				})
			}
		})
	}
}

func runStep(t *testing.T, c *conformance.Case, i int, env conformance.Env) {
	step := c.Steps[i]
	snap, err := c.Snapshot(i, env)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := policy.NewEngine(snap)
	if err != nil {
		t.Fatalf("step %d (%s): NewEngine: %v", i, step.Description, err)
	}
	pods := map[conformance.PodRef]*corev1.Pod{}
	for j, ref := range c.Model.Pods {
		pods[ref] = snap.Pods[j]
	}
	for _, probe := range step.Probes {
		observed := conformance.EmptyTruthTable(c.Model.Pods)
		for _, from := range c.Model.Pods {
			for _, to := range c.Model.Pods {
				tr := policy.Traffic{
					Src:      policy.Peer{Pod: pods[from], IP: env.PodIPs[from]},
					Dst:      policy.Peer{Pod: pods[to], IP: env.PodIPs[to]},
					Protocol: probe.Protocol,
					Port:     probe.Port,
				}
				d := eng.Evaluate(tr)
				observed.Set(from, to, d.Allowed)
				if fast := eng.Allowed(tr); fast != d.Allowed {
					t.Errorf("step %d probe %s %s->%s: Allowed()=%v but Evaluate().Allowed=%v", i, probe, from, to, fast, d.Allowed)
				}
				if from == to {
					continue // loopback: not judged, as upstream
				}
				if err := checkAttribution(d, snap.Policies, pods[from], pods[to]); err != nil {
					t.Errorf("step %d probe %s %s->%s: %v", i, probe, from, to, err)
				}
			}
		}
		if diff := probe.Expected.Diff(observed); diff != "" {
			t.Errorf("%s\nstep %d (%s), probe %s:\n%s", c.Upstream, i, step.Description, probe, diff)
		}
	}
}

// checkAttribution asserts that a Decision explains itself: a denying side
// names the policies isolating that pod for that direction, and an allowing
// isolated side names the rules that allowed it.
func checkAttribution(d policy.Decision, policies []*networkingv1.NetworkPolicy, src, dst *corev1.Pod) error {
	if d.Allowed != (d.Egress.Allowed && d.Ingress.Allowed) {
		return fmt.Errorf("verdict %v but egress %v, ingress %v", d.Allowed, d.Egress.Allowed, d.Ingress.Allowed)
	}
	for _, side := range []struct {
		dd   policy.DirectionDecision
		dir  policy.Direction
		pod  *corev1.Pod
		kind networkingv1.PolicyType
	}{
		{d.Egress, policy.Egress, src, networkingv1.PolicyTypeEgress},
		{d.Ingress, policy.Ingress, dst, networkingv1.PolicyTypeIngress},
	} {
		dd := side.dd
		if !dd.Allowed {
			if dd.Reason != policy.ReasonNoRuleMatched || !dd.Isolated || len(dd.IsolatedBy) == 0 {
				return fmt.Errorf("%s denied without naming an isolating policy: reason %q, isolated %v, isolatedBy %v", side.dir, dd.Reason, dd.Isolated, dd.IsolatedBy)
			}
		}
		for _, ref := range dd.IsolatedBy {
			p := find(policies, ref)
			if p == nil {
				return fmt.Errorf("%s isolated by %s/%s, which is not in the snapshot", side.dir, ref.Namespace, ref.Name)
			}
			if p.Namespace != side.pod.Namespace || !slices.Contains(p.Spec.PolicyTypes, side.kind) {
				return fmt.Errorf("%s isolated by %s/%s, which cannot isolate %s/%s for %s", side.dir, ref.Namespace, ref.Name, side.pod.Namespace, side.pod.Name, side.dir)
			}
		}
		if dd.Allowed && dd.Isolated {
			if dd.Reason != policy.ReasonAllowedByRule || len(dd.AllowedBy) == 0 {
				return fmt.Errorf("%s isolated and allowed without naming a rule: reason %q, allowedBy %v", side.dir, dd.Reason, dd.AllowedBy)
			}
			for _, m := range dd.AllowedBy {
				if p := find(policies, m.Rule.Policy); p == nil || m.Rule.Direction != side.dir {
					return fmt.Errorf("%s allowed by %+v, not a %s rule of a policy in the snapshot", side.dir, m.Rule, side.dir)
				}
			}
		}
	}
	return nil
}

func find(policies []*networkingv1.NetworkPolicy, ref policy.PolicyRef) *networkingv1.NetworkPolicy {
	for _, p := range policies {
		if p.Namespace == ref.Namespace && p.Name == ref.Name {
			return p
		}
	}
	return nil
}
