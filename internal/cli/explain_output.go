package cli

import (
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/kubectl-netpol/kubectl-netpol/internal/snapshot"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// Explanation is the `explain -o json|yaml` document. Its schema is stable
// and documented in docs/explain.md: fields are only ever added.
type Explanation struct {
	Source      EndpointInfo `json:"source"`
	Destination EndpointInfo `json:"destination"`
	// Allowed is true when every evaluated port is allowed.
	Allowed bool          `json:"allowed"`
	Ports   []PortVerdict `json:"ports"`
	// Notes say how endpoints and ports were chosen.
	Notes []string `json:"notes,omitempty"`
	// Warnings are every port's warnings and loading warnings, without duplicates.
	Warnings []WarningInfo `json:"warnings"`
}

// EndpointInfo is a resolved SRC or DST.
type EndpointInfo struct {
	Kind        string            `json:"kind"` // Pod or IP
	Namespace   string            `json:"namespace,omitempty"`
	Name        string            `json:"name,omitempty"`
	IP          string            `json:"ip,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	HostNetwork bool              `json:"hostNetwork,omitempty"`
	// Workload is the workload the pod was picked from, e.g. "deploy/web".
	Workload string `json:"workload,omitempty"`
	// FromTemplate: no pod existed; the workload's pod template stands in.
	FromTemplate bool `json:"fromTemplate,omitempty"`
}

// PortVerdict is the decision for one destination port.
type PortVerdict struct {
	Port     int32  `json:"port"`
	Protocol string `json:"protocol"`
	// Name is the destination's name for the port, if any.
	Name string `json:"name,omitempty"`
	// OtherPort marks the port standing for every port not declared and not named by a rule.
	OtherPort bool          `json:"otherPort,omitempty"`
	Allowed   bool          `json:"allowed"`
	Egress    SideVerdict   `json:"egress"`
	Ingress   SideVerdict   `json:"ingress"`
	Warnings  []WarningInfo `json:"warnings,omitempty"`
	// Audit is set when audited policies (netpol.kubectl.io/mode: audit),
	// once enforced, would change this verdict.
	Audit *AuditVerdict `json:"audit,omitempty"`
}

// AuditVerdict is what enforcing the audited policies would decide.
type AuditVerdict struct {
	Allowed bool `json:"allowed"`
	// Policies are the audited policies taking part ("ns/name", or
	// "clusternetworkpolicy/name").
	Policies []string    `json:"policies"`
	Egress   SideVerdict `json:"egress"`
	Ingress  SideVerdict `json:"ingress"`
}

// SideVerdict is one direction: the source's egress or the destination's ingress.
type SideVerdict struct {
	// Pod is the namespace/name whose policies this side is about ("" for an IP).
	Pod     string `json:"pod,omitempty"`
	Allowed bool   `json:"allowed"`
	// Reason is NotIsolated, AllowedByRule, NoRuleMatched or NotApplicable.
	Reason   string `json:"reason"`
	Isolated bool   `json:"isolated"`
	// Policies are the policies selecting Pod for this direction, each with every rule's outcome.
	Policies []PolicyVerdict `json:"policies"`
	// AllowedBy are the rules that allow the traffic.
	AllowedBy []RuleRefInfo `json:"allowedBy,omitempty"`

	// The fields below are set when a ClusterNetworkPolicy selects Pod.
	// Tier decided: Admin, NetworkPolicy or Baseline (empty: none did).
	Tier string `json:"tier,omitempty"`
	// Summary is the order of tiers in one sentence.
	Summary string `json:"summary,omitempty"`
	// ClusterRule accepted or denied (Reason AcceptedByClusterPolicy or DeniedByClusterPolicy).
	ClusterRule *ClusterRuleInfo `json:"clusterRule,omitempty"`
	// Passed are the Pass rules that sent the traffic to the next tier.
	Passed []ClusterRuleInfo `json:"passed,omitempty"`
	// ClusterPolicies are the ClusterNetworkPolicies consulted, in order,
	// each with its rules tried up to the first that matched.
	ClusterPolicies []ClusterPolicyVerdict `json:"clusterPolicies,omitempty"`
}

// ClusterRuleInfo names a ClusterNetworkPolicy rule.
type ClusterRuleInfo struct {
	Tier     string `json:"tier"`
	Policy   string `json:"policy"`
	Priority int32  `json:"priority"`
	Index    int    `json:"index"`
	Name     string `json:"name,omitempty"`
	Action   string `json:"action"`
	// Peer and Protocol are the entries that matched (-1 Protocol: the rule has none).
	Peer     int `json:"peer"`
	Protocol int `json:"protocol"`
}

// ClusterPolicyVerdict is one ClusterNetworkPolicy consulted.
type ClusterPolicyVerdict struct {
	Tier     string        `json:"tier"`
	Name     string        `json:"name"`
	Priority int32         `json:"priority"`
	Rules    []RuleVerdict `json:"rules"`
}

// PolicyVerdict is one selecting policy.
type PolicyVerdict struct {
	Namespace string        `json:"namespace"`
	Name      string        `json:"name"`
	Summary   string        `json:"summary,omitempty"`
	Rules     []RuleVerdict `json:"rules"`
}

// RuleVerdict is one rule of a selecting policy. Index is 0-based: rule
// Index of direction D is spec.D[Index] (text output writes "ingress[0]").
type RuleVerdict struct {
	Index      int            `json:"index"`
	Matched    bool           `json:"matched"`
	Mismatches []MismatchInfo `json:"mismatches,omitempty"`
}

// RuleRefInfo names a rule that matched, with the peer and port entries that
// matched it (-1: the rule has no peers / no ports, so all match).
type RuleRefInfo struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Direction string `json:"direction"`
	Index     int    `json:"index"`
	Peer      int    `json:"peer"`
	Port      int    `json:"port"`
}

// MismatchInfo is why one peer (from/to entry) or port entry did not match.
type MismatchInfo struct {
	Kind    string `json:"kind"` // Peer or Port
	Index   int    `json:"index"`
	Message string `json:"message"`
}

// WarningInfo is a circumstance that changes how to read the answer.
type WarningInfo struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func endpointInfo(ep endpoint) EndpointInfo {
	if ep.Pod == nil {
		return EndpointInfo{Kind: "IP", IP: ep.IP.String()}
	}
	info := EndpointInfo{Kind: "Pod", Namespace: ep.Pod.Namespace, Name: ep.Pod.Name, Labels: ep.Pod.Labels,
		HostNetwork: ep.Pod.Spec.HostNetwork, FromTemplate: ep.FromTemplate}
	if ep.IP.IsValid() {
		info.IP = ep.IP.String()
	}
	if k := shortKind[ep.Ref.Kind]; k != "" {
		info.Workload = k + "/" + ep.Ref.Name
	}
	return info
}

func buildExplanation(e *policy.Engine, set *snapshot.Set, src, dst endpoint, ports []portSpec, notes []string) *Explanation {
	x := &Explanation{Source: endpointInfo(src), Destination: endpointInfo(dst), Allowed: true, Warnings: []WarningInfo{}}
	for _, ep := range []endpoint{src, dst} {
		if ep.Note != "" {
			x.Notes = append(x.Notes, ep.Note)
		}
	}
	x.Notes = append(x.Notes, notes...)
	seen := map[WarningInfo]bool{}
	addWarn := func(w WarningInfo) {
		if !seen[w] {
			seen[w] = true
			x.Warnings = append(x.Warnings, w)
		}
	}
	for _, w := range set.Warnings {
		addWarn(WarningInfo{Code: "Load", Message: w})
	}
	for _, p := range ports {
		d := e.Evaluate(trafficOf(src, dst, p.Port, p.Protocol))
		v := PortVerdict{Port: p.Port, Protocol: string(p.Protocol), Name: p.Name, OtherPort: p.Other, Allowed: d.Allowed,
			Egress: sideVerdict(d.Egress, src), Ingress: sideVerdict(d.Ingress, dst)}
		if a := d.Audit; a != nil {
			v.Audit = &AuditVerdict{Allowed: a.Allowed, Egress: sideVerdict(a.Egress, src), Ingress: sideVerdict(a.Ingress, dst)}
			for _, r := range a.Policies {
				v.Audit.Policies = append(v.Audit.Policies, policyName(r))
			}
		}
		for _, w := range append(append([]policy.Warning{}, p.Warnings...), d.Warnings...) {
			wi := WarningInfo{Code: string(w.Code), Message: w.Message}
			v.Warnings = append(v.Warnings, wi)
			addWarn(wi)
		}
		x.Allowed = x.Allowed && d.Allowed
		x.Ports = append(x.Ports, v)
	}
	if len(ports) == 0 {
		x.Allowed = false
	}
	return x
}

// policyName is "ns/name" for a NetworkPolicy, "clusternetworkpolicy/name"
// for a ClusterNetworkPolicy.
func policyName(r policy.PolicyRef) string {
	if r.Kind == policy.KindClusterNetworkPolicy {
		return "clusternetworkpolicy/" + r.Name
	}
	return r.Namespace + "/" + r.Name
}

func trafficOf(src, dst endpoint, port int32, proto corev1.Protocol) policy.Traffic {
	return policy.Traffic{
		Src: policy.Peer{Pod: src.Pod, IP: src.IP}, Dst: policy.Peer{Pod: dst.Pod, IP: dst.IP},
		Port: port, Protocol: proto,
	}
}

func sideVerdict(d policy.DirectionDecision, ep endpoint) SideVerdict {
	s := SideVerdict{Allowed: d.Allowed, Reason: string(d.Reason), Isolated: d.Isolated, Policies: []PolicyVerdict{}}
	if ep.Pod != nil {
		s.Pod = ep.Pod.Namespace + "/" + ep.Pod.Name
	}
	for _, pe := range d.Policies {
		pv := PolicyVerdict{Namespace: pe.Policy.Namespace, Name: pe.Policy.Name, Summary: pe.Summary, Rules: []RuleVerdict{}}
		for _, r := range pe.Rules {
			pv.Rules = append(pv.Rules, ruleVerdict(r.Rule.Index, r.Matched, r.Mismatches))
		}
		s.Policies = append(s.Policies, pv)
	}
	s.Tier, s.Summary = string(d.Tier), d.Summary
	if d.ClusterRule != nil {
		r := clusterRuleInfo(*d.ClusterRule)
		s.ClusterRule = &r
	}
	for _, m := range d.Passed {
		s.Passed = append(s.Passed, clusterRuleInfo(m))
	}
	for _, cp := range d.ClusterPolicies {
		pv := ClusterPolicyVerdict{Tier: string(cp.Tier), Name: cp.Policy.Name, Priority: cp.Priority, Rules: []RuleVerdict{}}
		for _, r := range cp.Rules {
			pv.Rules = append(pv.Rules, ruleVerdict(r.Rule.Index, r.Matched, r.Mismatches))
		}
		s.ClusterPolicies = append(s.ClusterPolicies, pv)
	}
	for _, m := range d.AllowedBy {
		s.AllowedBy = append(s.AllowedBy, RuleRefInfo{Namespace: m.Rule.Policy.Namespace, Name: m.Rule.Policy.Name,
			Direction: string(m.Rule.Direction), Index: m.Rule.Index, Peer: m.Peer, Port: m.Port})
	}
	return s
}

func ruleVerdict(index int, matched bool, ms []policy.Mismatch) RuleVerdict {
	rv := RuleVerdict{Index: index, Matched: matched}
	for _, m := range ms {
		rv.Mismatches = append(rv.Mismatches, MismatchInfo{Kind: string(m.Kind), Index: m.Index, Message: m.Message})
	}
	return rv
}

func clusterRuleInfo(m policy.ClusterRuleMatch) ClusterRuleInfo {
	r := m.Rule
	return ClusterRuleInfo{Tier: string(r.Tier), Policy: r.Policy.Name, Priority: r.Priority, Index: r.Index, Name: r.Name,
		Action: string(r.Action), Peer: m.Peer, Protocol: m.Protocol}
}

func (v PortVerdict) label() string {
	s := fmt.Sprintf("%d/%s", v.Port, v.Protocol)
	switch {
	case v.OtherPort:
		s += " (any other port)"
	case v.Name != "":
		s += " (" + v.Name + ")"
	}
	return s
}

func (e EndpointInfo) String() string {
	if e.Kind == "IP" {
		return e.IP
	}
	return e.Namespace + "/" + e.Name
}

// renderExplanation writes the plain-language answer: verdicts first, then
// for each port the source's egress side and the destination's ingress side.
func renderExplanation(w io.Writer, x *Explanation, c palette, set *snapshot.Set) error {
	b := &strings.Builder{}
	route := fmt.Sprintf("%s → %s", x.Source, x.Destination)
	audit := func(v PortVerdict) string {
		if v.Audit == nil {
			return ""
		}
		return fmt.Sprintf("  (audit: would be %s)", c.verdict(v.Audit.Allowed))
	}
	if len(x.Ports) == 1 {
		fmt.Fprintf(b, "%s  %s on %s%s\n", c.verdict(x.Ports[0].Allowed), route, x.Ports[0].label(), audit(x.Ports[0]))
	} else {
		fmt.Fprintf(b, "%s\n", c.bold(route))
		for _, v := range x.Ports {
			fmt.Fprintf(b, "  %-7s  %s%s\n", c.verdict(v.Allowed), v.label(), audit(v))
		}
	}
	for _, n := range x.Notes {
		fmt.Fprintf(b, "%s\n", c.faint("note: "+n))
	}
	for _, v := range x.Ports {
		fmt.Fprintf(b, "\n%s: %s\n", c.bold(v.label()), c.verdict(v.Allowed))
		renderSide(b, c, set, "egress from", x.Source, v.Egress, "Egress")
		renderSide(b, c, set, "ingress to", x.Destination, v.Ingress, "Ingress")
		if a := v.Audit; a != nil {
			verb := "is"
			if len(a.Policies) > 1 {
				verb = "are"
			}
			fmt.Fprintf(b, "  %s %s %s audited, not enforced; enforced, it would make this %s\n",
				c.warn("audit:"), strings.Join(a.Policies, ", "), verb, c.verdict(a.Allowed))
			// Only the sides whose verdict the audited policies change.
			sub := &strings.Builder{}
			if a.Egress.Allowed != v.Egress.Allowed {
				renderSide(sub, c, set, "egress from", x.Source, a.Egress, "Egress")
			}
			if a.Ingress.Allowed != v.Ingress.Allowed {
				renderSide(sub, c, set, "ingress to", x.Destination, a.Ingress, "Ingress")
			}
			for _, line := range strings.SplitAfter(sub.String(), "\n") {
				if line != "" {
					b.WriteString("  " + line)
				}
			}
		}
	}
	if len(x.Warnings) > 0 {
		b.WriteString("\n")
		for _, wi := range x.Warnings {
			fmt.Fprintf(b, "%s %s\n", c.warn("warning:"), wi.Message)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func renderSide(b *strings.Builder, c palette, set *snapshot.Set, what string, ep EndpointInfo, s SideVerdict, dir string) {
	head := fmt.Sprintf("  %s %s: ", what, ep)
	lower := strings.ToLower(dir)
	defer renderClusterPolicies(b, s, lower)
	switch policy.Reason(s.Reason) {
	case policy.ReasonAcceptedByClusterPolicy:
		fmt.Fprintf(b, "%s%s (%s)\n", head, c.allowed("allowed"), s.Summary)
		return
	case policy.ReasonDeniedByClusterPolicy:
		fmt.Fprintf(b, "%s%s (%s)\n", head, c.denied("denied"), s.Summary)
		return
	case policy.ReasonNotIsolated:
		fmt.Fprintf(b, "%s%s (no NetworkPolicy selects %s for %s)\n", head, c.allowed("allowed"), ep, dir)
	case policy.ReasonNotApplicable:
		why := "not subject to NetworkPolicy"
		switch {
		case ep.Kind == "IP":
			why = ep.IP + " is not a pod, so no policy of its own applies"
		case ep.HostNetwork:
			why = "a hostNetwork pod is not subject to NetworkPolicy"
		default:
			why += " (see warnings)"
		}
		fmt.Fprintf(b, "%s%s (%s)\n", head, c.allowed("allowed"), why)
	case policy.ReasonAllowedByRule:
		fmt.Fprintf(b, "%s%s by %s\n", head, c.allowed("allowed"), strings.Join(ruleNames(s.AllowedBy), ", "))
		for _, m := range s.AllowedBy {
			fmt.Fprintf(b, "    %s/%s %s[%d]: %s\n", m.Namespace, m.Name, lower, m.Index, describeMatch(set, m))
		}
	default:
		fmt.Fprintf(b, "%s%s (isolated for %s and no rule allows this traffic)\n", head, c.denied("denied"), dir)
		for _, p := range s.Policies {
			summary := p.Summary
			if summary == "" {
				summary = fmt.Sprintf("%s/%s selects %s for %s", p.Namespace, p.Name, ep, dir)
			}
			fmt.Fprintf(b, "    %s\n", summary)
			for _, r := range p.Rules {
				if r.Matched {
					continue
				}
				for _, m := range r.Mismatches {
					entry := "ports"
					if m.Kind == string(policy.MismatchPeer) {
						entry = "from"
						if dir == "Egress" {
							entry = "to"
						}
					}
					fmt.Fprintf(b, "      %s[%d].%s[%d]: %s\n", lower, r.Index, entry, m.Index, m.Message)
				}
			}
		}
	}
}

// renderClusterPolicies writes the tiers' sentence (unless the side's
// first line already was it) and why each ClusterNetworkPolicy rule tried
// before the deciding one did not match.
func renderClusterPolicies(b *strings.Builder, s SideVerdict, lower string) {
	if s.Summary == "" {
		return
	}
	if r := policy.Reason(s.Reason); r != policy.ReasonAcceptedByClusterPolicy && r != policy.ReasonDeniedByClusterPolicy {
		fmt.Fprintf(b, "    tiers: %s\n", s.Summary)
	}
	for _, p := range s.ClusterPolicies {
		for _, r := range p.Rules {
			for _, m := range r.Mismatches {
				entry := "protocols"
				if m.Kind == string(policy.MismatchPeer) {
					entry = map[string]string{"ingress": "from", "egress": "to"}[lower]
				}
				fmt.Fprintf(b, "    %s policy `%s` %s[%d].%s[%d]: %s\n", p.Tier, p.Name, lower, r.Index, entry, m.Index, m.Message)
			}
		}
	}
}

func ruleNames(ms []RuleRefInfo) []string {
	var out []string
	for _, m := range ms {
		out = append(out, fmt.Sprintf("%s/%s %s[%d]", m.Namespace, m.Name, strings.ToLower(m.Direction), m.Index))
	}
	return out
}

// describeMatch says which peer and port entries of a rule matched, quoting them.
func describeMatch(set *snapshot.Set, m RuleRefInfo) string {
	var np *networkingv1.NetworkPolicy
	for _, p := range set.Policies {
		if p.Namespace == m.Namespace && p.Name == m.Name {
			np = p
			break
		}
	}
	peerPart, portPart := "every peer", "every port"
	entry := "from"
	if m.Direction == string(policy.Egress) {
		entry = "to"
	}
	if np != nil {
		var peers []networkingv1.NetworkPolicyPeer
		var ports []networkingv1.NetworkPolicyPort
		if m.Direction == string(policy.Egress) && m.Index < len(np.Spec.Egress) {
			peers, ports = np.Spec.Egress[m.Index].To, np.Spec.Egress[m.Index].Ports
		} else if m.Direction == string(policy.Ingress) && m.Index < len(np.Spec.Ingress) {
			peers, ports = np.Spec.Ingress[m.Index].From, np.Spec.Ingress[m.Index].Ports
		}
		if m.Peer >= 0 && m.Peer < len(peers) {
			peerPart = fmt.Sprintf("%s[%d] %s", entry, m.Peer, policy.PeerString(&peers[m.Peer], np.Namespace))
		}
		if m.Port >= 0 && m.Port < len(ports) {
			portPart = fmt.Sprintf("ports[%d] %s", m.Port, portString(ports[m.Port]))
		}
	}
	return peerPart + "; " + portPart
}

func portString(p networkingv1.NetworkPolicyPort) string {
	proto := "TCP"
	if p.Protocol != nil {
		proto = string(*p.Protocol)
	}
	if p.Port == nil {
		return "any " + proto + " port"
	}
	s := p.Port.String()
	if p.EndPort != nil {
		s += fmt.Sprintf("-%d", *p.EndPort)
	}
	return s + "/" + proto
}
