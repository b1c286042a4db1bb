package detail

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// Explainer turns a flow into a plain-language explanation. The detail pane
// calls it off the UI goroutine whenever the selection changes.
//
// RecordedExplainer explains from what the agent recorded in the flow. The
// live path adds an engine-based Explainer that re-evaluates the flow with
// the policy engine against current cluster state (the same text as
// `kubectl netpol explain`), falling back to the record when the cluster
// has changed since.
type Explainer interface {
	Explain(ctx context.Context, f *flowv1.Flow) (string, error)
}

// Instant is implemented by explainers that answer without I/O: the pane
// asks them inline, so the explanation is in the same frame as the selection.
type Instant interface{ Instant() bool }

// RecordedExplainer explains a flow from its own fields: verdict, reason,
// deciding policies and rule, isolating policies, Service.
type RecordedExplainer struct{}

var (
	_ Explainer = RecordedExplainer{}
	_ Instant   = RecordedExplainer{}
)

// Instant implements Instant: the record is all it reads.
func (RecordedExplainer) Instant() bool { return true }

// Explain implements Explainer.
func (RecordedExplainer) Explain(_ context.Context, f *flowv1.Flow) (string, error) {
	return Explain(f), nil
}

func name(ep *flowv1.Endpoint, ip string) string {
	if ep.GetPod() != "" {
		return ep.GetNamespace() + "/" + ep.GetPod()
	}
	if n := ep.GetNodeName(); n != "" {
		return "node/" + n + " (" + ip + ")"
	}
	return ip + " (outside the cluster)"
}

func refs(rs []*flowv1.PolicyRef) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.GetNamespace() + "/" + r.GetName()
	}
	return strings.Join(parts, ", ")
}

func labelString(l map[string]string) string {
	keys := slices.Sorted(maps.Keys(l))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return strings.Join(parts, ",")
}

// Explain is the plain-language account of one flow's verdict.
func Explain(f *flowv1.Flow) string {
	src := name(f.GetSource(), f.GetIp().GetSource())
	dst := name(f.GetDestination(), f.GetIp().GetDestination())
	l4 := fmt.Sprintf("%s %d", flow.ProtocolName(f.GetL4().GetProtocol()), f.GetL4().GetDestinationPort())
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s → %s on %s", flow.VerdictName(f.GetVerdict()), src, dst, l4)
	if svc := f.GetService(); svc.GetName() != "" {
		fmt.Fprintf(&b, ", through Service %s/%s (%s:%d)", svc.GetNamespace(), svc.GetName(), svc.GetIp(), svc.GetPort())
	}
	b.WriteString(".\n")
	if obs := f.GetObservations(); len(obs) > 0 {
		// Judged at two nodes: each observation point's own account.
		for _, o := range obs {
			side := "source"
			if o.GetDirection() == flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS {
				side = "destination"
			}
			point := "Egress"
			if side == "destination" {
				point = "Ingress"
			}
			fmt.Fprintf(&b, "%s on node %s (the %s's node): %s.\n", point, o.GetNode(), side, strings.ToLower(flow.VerdictName(o.GetVerdict())))
			at := &flowv1.Flow{Node: o.GetNode(), Direction: o.GetDirection(), Verdict: o.GetVerdict(), Reason: o.GetReason(),
				AllowedBy: o.GetAllowedBy(), DeniedBy: o.GetDeniedBy(), IsolatedBy: o.GetIsolatedBy(), Audit: o.GetAudit(),
				Source: f.GetSource(), Destination: f.GetDestination(), Ip: f.GetIp(), L4: f.GetL4()}
			explainReason(&b, at, src, dst, l4)
		}
	} else {
		explainReason(&b, f, src, dst, l4)
	}
	b.WriteString(AuditSentence(f))
	if f.GetType() == flowv1.EventType_EVENT_TYPE_END {
		fmt.Fprintf(&b, "Connection ended: %d packets, %d bytes.\n", f.GetPackets(), f.GetBytes())
	}
	return b.String()
}

// AuditSentence says, for an AUDIT flow, what was enforced and what
// enforcing the audited policies would do instead, and by which rule or
// isolating policies ("" for other flows).
func AuditSentence(f *flowv1.Flow) string {
	if f.GetVerdict() != flowv1.Verdict_VERDICT_AUDIT {
		return ""
	}
	a := f.GetAudit()
	did, would := "allowed", "deny"
	if flow.Dropped(f) {
		did, would = "dropped", "allow"
	}
	s := fmt.Sprintf("Audit: the packets were %s; enforcing the audited policies would %s it", did, would)
	switch {
	case a.GetRule() != nil:
		s += " (" + flow.PolicyRefString(a.GetRule()) + ")"
	case len(a.GetIsolatedBy()) > 0:
		s += fmt.Sprintf(" (isolated by %s, no rule allowing it)", refs(a.GetIsolatedBy()))
	}
	return s + ".\n"
}

// explainReason is the account of the point that judged f: its direction,
// reason and policies.
func explainReason(b *strings.Builder, f *flowv1.Flow, src, dst, l4 string) {
	// The side that decided: the destination for ingress, the source for egress.
	dir := strings.ToLower(flow.DirectionName(f.GetDirection()))
	subject, peer, peerEP := dst, src, f.GetSource()
	if f.GetDirection() == flowv1.TrafficDirection_TRAFFIC_DIRECTION_EGRESS {
		subject, peer, peerEP = src, dst, f.GetDestination()
	}
	switch f.GetReason() {
	case flowv1.Reason_REASON_ALLOWED_BY_RULE:
		for _, r := range f.GetAllowedBy() {
			if r.GetKind() == flow.KindClusterNetworkPolicy {
				fmt.Fprintf(b, "%s accepts%s.\n", ClusterRule(r), tierConsequence(r))
				continue
			}
			fmt.Fprintf(b, "Allowed by %s rule %d of NetworkPolicy %s/%s.\n",
				strings.ToLower(flow.DirectionName(r.GetDirection())), r.GetRuleIndex(), r.GetNamespace(), r.GetName())
		}
	case flowv1.Reason_REASON_DENIED_BY_RULE:
		for _, r := range f.GetDeniedBy() {
			fmt.Fprintf(b, "%s denies%s", ClusterRule(r), tierConsequence(r))
		}
		b.WriteString(", so the packet was dropped")
		if f.GetNode() != "" {
			fmt.Fprintf(b, " on node %s", f.GetNode())
		}
		b.WriteString(".\n")
	case flowv1.Reason_REASON_NO_RULE_MATCHED:
		iso := f.GetIsolatedBy()
		fmt.Fprintf(b, "%s is isolated for %s by %d %s: %s.\n", subject, dir, len(iso), plural(len(iso), "policy", "policies"), refs(iso))
		fmt.Fprintf(b, "No %s rule of %s allows %s on %s, so the packet was dropped", dir, pronoun(len(iso)), peer, l4)
		if f.GetNode() != "" {
			fmt.Fprintf(b, " on node %s", f.GetNode())
		}
		b.WriteString(".\n")
		if len(f.GetDeniedBy()) > 0 {
			fmt.Fprintf(b, "Denied explicitly by %s.\n", refs(f.GetDeniedBy()))
		}
		if peerEP.GetPod() != "" {
			fmt.Fprintf(b, "To allow it, add an %s rule selecting pods with %s in namespace %s, port %s.\n",
				dir, labelString(peerEP.GetLabels()), peerEP.GetNamespace(), l4)
		} else {
			fmt.Fprintf(b, "To allow it, add an %s rule with an ipBlock containing %s, port %s.\n", dir, strings.TrimSuffix(peer, " (outside the cluster)"), l4)
		}
	case flowv1.Reason_REASON_NOT_ISOLATED:
		fmt.Fprintf(b, "No NetworkPolicy selects %s for %s and no ClusterNetworkPolicy rule decided, so all %s traffic is allowed.\n", subject, dir, dir)
	case flowv1.Reason_REASON_ESTABLISHED:
		b.WriteString("Part of an established connection: replies and later packets of an allowed connection always pass.\n")
	case flowv1.Reason_REASON_NOT_SUBJECT:
		b.WriteString("Not subject to NetworkPolicy (host-network pod, node or loopback traffic).\n")
	case flowv1.Reason_REASON_REVOKED:
		fmt.Fprintf(b, "An established connection cut because a policy change now denies it (%s).\n", refs(append(f.GetDeniedBy(), f.GetIsolatedBy()...)))
	default:
		b.WriteString("The agent recorded no reason.\n")
	}
}

// ClusterRule names a ClusterNetworkPolicy rule the way explain does:
// "Admin policy `deny-monitoring` (priority 10) ingress rule 0 `deny-all`".
func ClusterRule(r *flowv1.PolicyRef) string {
	s := fmt.Sprintf("%s policy `%s`", flow.TierName(r.GetTier()), r.GetName())
	if r.GetTier() == flowv1.ClusterTier_CLUSTER_TIER_UNSPECIFIED {
		s = fmt.Sprintf("ClusterNetworkPolicy `%s`", r.GetName())
	} else {
		s += fmt.Sprintf(" (priority %d)", r.GetPriority())
	}
	s += " " + strings.ToLower(flow.DirectionName(r.GetDirection()))
	if r.RuleIndex != nil {
		s += fmt.Sprintf(" rule %d", r.GetRuleIndex())
		if r.GetRuleName() != "" {
			s += " `" + r.GetRuleName() + "`"
		}
	}
	return s
}

// tierConsequence says what the tier of a deciding ClusterNetworkPolicy
// rule means for the tiers after it.
func tierConsequence(r *flowv1.PolicyRef) string {
	switch r.GetTier() {
	case flowv1.ClusterTier_CLUSTER_TIER_ADMIN:
		return "; NetworkPolicy never consulted"
	case flowv1.ClusterTier_CLUSTER_TIER_BASELINE:
		return " (no Admin rule and no NetworkPolicy decided)"
	}
	return ""
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func pronoun(n int) string {
	if n == 1 {
		return "it"
	}
	return "them"
}
