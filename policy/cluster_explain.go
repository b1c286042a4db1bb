package policy

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Sentences for ClusterNetworkPolicy verdicts; nothing here decides.

// ClusterRuleString names a rule for people: "Admin policy `deny-monitoring`
// (priority 10) ingress rule 0 `deny-all`".
func ClusterRuleString(r ClusterRuleRef) string {
	s := fmt.Sprintf("%s policy `%s` (priority %d) %s rule %d", r.Tier, r.Policy.Name, r.Priority, strings.ToLower(string(r.Direction)), r.Index)
	if r.Name != "" {
		s += " `" + r.Name + "`"
	}
	return s
}

var actionVerb = map[ClusterAction]string{ActionAccept: "accepts", ActionDeny: "denies", ActionPass: "passes"}

// tierSummary is DirectionDecision.Summary: the tiers in order, as far as
// they were consulted.
func tierSummary(dir Direction, subject *endpoint, dd *DirectionDecision) string {
	var parts []string
	consulted := func(t Tier) bool {
		for _, p := range dd.ClusterPolicies {
			if p.Tier == t {
				return true
			}
		}
		return false
	}
	passed := func(t Tier) string {
		for _, m := range dd.Passed {
			if m.Rule.Tier == t {
				next := "NetworkPolicy"
				if t == TierBaseline {
					next = "the default (allow)"
				}
				return fmt.Sprintf("%s passes to %s", ClusterRuleString(m.Rule), next)
			}
		}
		return ""
	}
	tierPart := func(t Tier) {
		switch {
		case dd.ClusterRule != nil && dd.ClusterRule.Rule.Tier == t:
			parts = append(parts, ClusterRuleString(dd.ClusterRule.Rule)+" "+actionVerb[dd.ClusterRule.Rule.Action])
		case passed(t) != "":
			parts = append(parts, passed(t))
		case consulted(t):
			parts = append(parts, fmt.Sprintf("no %s rule matches", t))
		}
	}
	tierPart(TierAdmin)
	if dd.Tier == TierAdmin {
		return strings.Join(append(parts, "NetworkPolicy never consulted"), "; ")
	}
	d := strings.ToLower(string(dir))
	switch {
	case dd.Tier == TierNetworkPolicy && dd.Reason == ReasonNotApplicable:
		parts = append(parts, fmt.Sprintf("NetworkPolicy selects %s for %s and allows node traffic", describe(subject), d))
	case dd.Tier == TierNetworkPolicy && dd.Allowed:
		parts = append(parts, fmt.Sprintf("NetworkPolicy selects %s for %s and allows", describe(subject), d))
	case dd.Tier == TierNetworkPolicy:
		parts = append(parts, fmt.Sprintf("NetworkPolicy selects %s for %s and no rule allows", describe(subject), d))
	default:
		parts = append(parts, fmt.Sprintf("no NetworkPolicy selects %s for %s", describe(subject), d))
	}
	if dd.Tier == TierNetworkPolicy {
		if consulted(TierBaseline) || len(subjectBaseline(subject, dir)) > 0 {
			parts = append(parts, "Baseline never consulted")
		}
		return strings.Join(parts, "; ")
	}
	tierPart(TierBaseline)
	if dd.Tier == "" {
		parts = append(parts, "allowed by default")
	}
	return strings.Join(parts, "; ")
}

func subjectBaseline(subject *endpoint, dir Direction) []*clusterInfo {
	return subject.pod.ident.cluster[dirIndex(dir)][tierBaselineIdx]
}

func (e *Engine) explainClusterRule(r *clusterRule, other, dst *endpoint, proto corev1.Protocol, port int32, peerOK, portOK bool, w *warnings) []Mismatch {
	var out []Mismatch
	if !peerOK {
		for i := range r.peers {
			out = append(out, Mismatch{Kind: MismatchPeer, Index: i, Message: e.explainClusterPeer(i, &r.peers[i], other, r, w)})
		}
	}
	if !portOK {
		for i := range r.ports {
			pt := &r.ports[i]
			msg := fmt.Sprintf("port %d/%s is not %s", port, proto, portString(pt))
			if pt.kind == portNamed {
				msg = fmt.Sprintf("port %d/%s is not the named port %q of %s", port, proto, pt.name, describe(dst))
			} else if pt.kind == portNumber && pt.first != pt.last && pt.proto == proto {
				msg = fmt.Sprintf("port %d/%s is not in %s", port, proto, portString(pt))
			}
			out = append(out, Mismatch{Kind: MismatchPort, Index: i, Message: msg})
		}
	}
	return out
}

func (e *Engine) explainClusterPeer(i int, p *clusterPeer, other *endpoint, r *clusterRule, w *warnings) string {
	what := fmt.Sprintf("peer %d selects %s", i, p.text)
	switch p.kind {
	case cpDomainNames:
		w.add(WarnDomainNames, fmt.Sprintf("%s names domainNames (%s), which kubectl-netpol does not enforce: those peers match nothing, the policy's other rules apply", ClusterRuleString(r.ref), strings.Join(p.domains, ", ")))
		return what + "; domainNames are not enforced here and match nothing"
	case cpNetworks:
		if !other.ip.IsValid() {
			return fmt.Sprintf("%s; %s has no IP address", what, describe(other))
		}
		return fmt.Sprintf("%s; %s is outside them", what, other.ip)
	case cpNodes:
		if _, ok := e.nodeLabels(other.ip); !ok {
			return fmt.Sprintf("%s; %s is not a node address", what, describe(other))
		}
		return fmt.Sprintf("%s; the node owning %s does not match", what, other.ip)
	}
	if msg, ok := notSelectable(what, other, " (only networks and nodes peers match addresses outside the pod network)"); ok {
		return msg
	}
	id := other.pod.ident
	var why []string
	if !p.nsSel.Matches(id.ns.labels) {
		why = append(why, fmt.Sprintf("namespace %q %s", id.ns.name, labelWhy(id.ns.labels, p.nsSpec, "namespaceSelector")))
	}
	if p.podSel != nil && !p.podSel.Matches(id.labels) {
		why = append(why, fmt.Sprintf("%s %s", describe(other), labelWhy(id.labels, p.podSpec, "podSelector")))
	}
	if len(why) == 0 {
		why = append(why, "it does not match")
	}
	return what + "; " + strings.Join(why, "; and ")
}
