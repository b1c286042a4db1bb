package whatif

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// UnusedRule is a rule, or a whole policy (Rule ""), with no hit in the window.
type UnusedRule struct {
	Policy string `json:"policy"`
	// Rule is "ingress[0]" or "egress[1]"; "" for the whole policy.
	Rule    string     `json:"rule,omitempty"`
	LastHit *time.Time `json:"lastHit,omitempty"`
	// Observed is how long the rule could have been hit: since the policy
	// was created or the agents started counting, whichever is later.
	Observed string `json:"observed"`
	// NotYetKnown: observed for less than the window, so no verdict yet.
	NotYetKnown bool `json:"notYetKnown,omitempty"`
}

// NodeHits is one node's rule counters.
type NodeHits struct {
	Node  string
	Since time.Time
	Hits  []*flowv1.RuleHit
}

// Unused lists the rules and policies with no hit on any node since
// `since`. A policy's default deny (a drop it isolated) counts as a hit of
// the whole policy. Rules are identified by index: an edited policy's
// indexes may have moved (its hits before the edit are then misattributed).
func Unused(pols []*networkingv1.NetworkPolicy, nodes []NodeHits, since, now time.Time) []UnusedRule {
	type ruleKey struct {
		ns, name string
		dir      flowv1.TrafficDirection
		rule     int64 // -1: the policy's isolation
	}
	last := map[ruleKey]time.Time{}
	counting := now
	for _, n := range nodes {
		if n.Since.Before(counting) {
			counting = n.Since
		}
		for _, h := range n.Hits {
			r := h.GetRule()
			k := ruleKey{r.GetNamespace(), r.GetName(), r.GetDirection(), -1}
			if r.RuleIndex != nil {
				k.rule = int64(r.GetRuleIndex())
			}
			if t := h.GetLastHit().AsTime(); t.After(last[k]) {
				last[k] = t
			}
		}
	}
	window := now.Sub(since)
	var out []UnusedRule
	for _, p := range pols {
		start := later(p.CreationTimestamp.Time, counting)
		observed := now.Sub(start)
		entry := func(rule string, lastHit time.Time) UnusedRule {
			u := UnusedRule{Policy: p.Namespace + "/" + p.Name, Rule: rule, Observed: roundDuration(observed), NotYetKnown: observed < window}
			if !lastHit.IsZero() {
				t := lastHit.UTC()
				u.LastHit = &t
			}
			return u
		}
		var policyLast time.Time
		var rules []UnusedRule
		ingress, egress := policy.PolicyTypes(p)
		for _, d := range []struct {
			dir      flowv1.TrafficDirection
			name     string
			n        int
			isolates bool
		}{{flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS, "ingress", len(p.Spec.Ingress), ingress},
			{flowv1.TrafficDirection_TRAFFIC_DIRECTION_EGRESS, "egress", len(p.Spec.Egress), egress}} {
			if !d.isolates {
				continue
			}
			policyLast = later(policyLast, last[ruleKey{p.Namespace, p.Name, d.dir, -1}])
			for i := range d.n {
				t := last[ruleKey{p.Namespace, p.Name, d.dir, int64(i)}]
				policyLast = later(policyLast, t)
				if t.Before(since) {
					rules = append(rules, entry(fmt.Sprintf("%s[%d]", d.name, i), t))
				}
			}
		}
		if policyLast.Before(since) {
			out = append(out, entry("", policyLast)) // the whole policy: its rules are implied
			continue
		}
		out = append(out, rules...)
	}
	slices.SortFunc(out, func(a, b UnusedRule) int { return strings.Compare(a.Policy+" "+a.Rule, b.Policy+" "+b.Rule) })
	return out
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func roundDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	case d >= time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dm", int(d.Minutes()))
}

// Isolation is how policies treat one pod in one direction.
type Isolation string

const (
	NotIsolated        Isolation = "not isolated"
	IsolatedAllowing   Isolation = "isolated, with allowing rules"
	IsolatedDenyingAll Isolation = "isolated, allowing nothing"
)

// PodCoverage is one pod's isolation per direction.
type PodCoverage struct {
	Pod         string    `json:"pod"`
	Ingress     Isolation `json:"ingress"`
	Egress      Isolation `json:"egress"`
	IngressBy   []string  `json:"ingressBy,omitempty"`
	EgressBy    []string  `json:"egressBy,omitempty"`
	HostNetwork bool      `json:"hostNetwork,omitempty"`
}

// PodsCoverage classifies every pod (hostNetwork pods are never isolated).
func PodsCoverage(e *policy.Engine, pods []*corev1.Pod) []PodCoverage {
	var out []PodCoverage
	for _, p := range pods {
		c := PodCoverage{Pod: p.Namespace + "/" + p.Name, HostNetwork: p.Spec.HostNetwork}
		c.Ingress, c.IngressBy = isolation(e, p, policy.Ingress)
		c.Egress, c.EgressBy = isolation(e, p, policy.Egress)
		out = append(out, c)
	}
	return out
}

func isolation(e *policy.Engine, p *corev1.Pod, dir policy.Direction) (Isolation, []string) {
	refs := e.SelectingPolicies(p, dir)
	if len(refs) == 0 {
		return NotIsolated, nil
	}
	names := make([]string, len(refs))
	rules := 0
	for i, r := range refs {
		names[i] = r.Namespace + "/" + r.Name
		rules += e.RuleCount(r, dir)
	}
	if rules == 0 {
		return IsolatedDenyingAll, names
	}
	return IsolatedAllowing, names
}

// Exposure is observed traffic into a workload no policy isolates for ingress.
type Exposure struct {
	Source      string    `json:"source"`
	Destination string    `json:"destination"`
	Protocol    string    `json:"protocol"`
	Port        uint32    `json:"port"`
	Connections uint64    `json:"connections"`
	LastSeen    time.Time `json:"lastSeen"`
}

// Exposed lists the observed, allowed connections whose destination no
// policy isolates for ingress today (live exposure), by workload pair.
func Exposed(e *policy.Engine, set *history.Set, namespaces []string) []Exposure {
	j := judge{pods: map[string]*corev1.Pod{}}
	type key struct {
		src, dst string
		proto    flowv1.Protocol
		port     uint32
	}
	agg := map[key]*Exposure{}
	perNode := map[key]map[string]uint64{}
	for i := range set.Records {
		r := &set.Records[i]
		k := r.Key
		dst := k.GetDestination()
		if dst.GetNamespace() == "" || dst.GetHostNetwork() || r.Connections == 0 || flow.Dropped(k) {
			continue
		}
		if len(namespaces) > 0 && !slices.Contains(namespaces, dst.GetNamespace()) {
			continue
		}
		peer, err := j.peer(dst, k.GetIp().GetDestination(), e)
		if err != nil || len(e.SelectingPolicies(peer.Pod, policy.Ingress)) > 0 {
			continue
		}
		ak := key{history.EndName(k.GetSource(), k.GetIp().GetSource()), history.EndName(dst, k.GetIp().GetDestination()),
			k.GetL4().GetProtocol(), k.GetL4().GetDestinationPort()}
		x := agg[ak]
		if x == nil {
			x = &Exposure{Source: ak.src, Destination: ak.dst, Protocol: protocolName(ak.proto), Port: ak.port}
			agg[ak] = x
			perNode[ak] = map[string]uint64{}
		}
		perNode[ak][k.GetNode()] += r.Connections
		if t := time.Unix(0, r.Last).UTC(); t.After(x.LastSeen) {
			x.LastSeen = t
		}
	}
	out := make([]Exposure, 0, len(agg))
	for k, x := range agg {
		for _, n := range perNode[k] {
			x.Connections = max(x.Connections, n) // a cross-node connection is recorded twice
		}
		out = append(out, *x)
	}
	slices.SortFunc(out, func(a, b Exposure) int {
		return strings.Compare(a.Destination+" "+a.Source+fmt.Sprint(a.Port), b.Destination+" "+b.Source+fmt.Sprint(b.Port))
	})
	return out
}
