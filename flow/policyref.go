package flow

import (
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// Kinds of PolicyRef.Kind.
const (
	KindNetworkPolicy        = policy.KindNetworkPolicy
	KindClusterNetworkPolicy = policy.KindClusterNetworkPolicy
)

// DirectionOf is the flow API's direction of a policy direction.
func DirectionOf(d policy.Direction) flowv1.TrafficDirection {
	switch d {
	case policy.Ingress:
		return flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS
	case policy.Egress:
		return flowv1.TrafficDirection_TRAFFIC_DIRECTION_EGRESS
	}
	return flowv1.TrafficDirection_TRAFFIC_DIRECTION_UNSPECIFIED
}

// PolicyRefOf names policy p in direction d and, when rule >= 0, its rule
// of that index (a NetworkPolicy when p has no kind).
func PolicyRefOf(p policy.PolicyRef, d policy.Direction, rule int) *flowv1.PolicyRef {
	r := &flowv1.PolicyRef{Kind: p.Kind, Namespace: p.Namespace, Name: p.Name, Direction: DirectionOf(d)}
	if r.Kind == "" {
		r.Kind = KindNetworkPolicy
	}
	if rule >= 0 {
		idx := uint32(rule)
		r.RuleIndex = &idx
	}
	return r
}

// ClusterRuleRefOf names a ClusterNetworkPolicy rule with its tier,
// priority, name and action.
func ClusterRuleRefOf(c policy.ClusterRuleRef) *flowv1.PolicyRef {
	r := PolicyRefOf(c.Policy, c.Direction, c.Index)
	r.Kind, r.Namespace = KindClusterNetworkPolicy, ""
	r.Tier, r.Priority, r.RuleName, r.Action = TierOf(c.Tier), c.Priority, c.Name, ActionOf(c.Action)
	return r
}

// CompiledRuleRef names the rule a datapath rule ID stands for.
func CompiledRuleRef(r policy.CompiledRule) *flowv1.PolicyRef {
	if r.Cluster != nil {
		return ClusterRuleRefOf(*r.Cluster)
	}
	return PolicyRefOf(r.Rule.Policy, r.Rule.Direction, r.Rule.Index)
}

// TierOf is the flow API's tier of a ClusterNetworkPolicy tier.
func TierOf(t policy.Tier) flowv1.ClusterTier {
	switch t {
	case policy.TierAdmin:
		return flowv1.ClusterTier_CLUSTER_TIER_ADMIN
	case policy.TierBaseline:
		return flowv1.ClusterTier_CLUSTER_TIER_BASELINE
	}
	return flowv1.ClusterTier_CLUSTER_TIER_UNSPECIFIED
}

// ActionOf is the flow API's action of a ClusterNetworkPolicy action.
func ActionOf(a policy.ClusterAction) flowv1.ClusterAction {
	switch a {
	case policy.ActionAccept:
		return flowv1.ClusterAction_CLUSTER_ACTION_ACCEPT
	case policy.ActionDeny:
		return flowv1.ClusterAction_CLUSTER_ACTION_DENY
	case policy.ActionPass:
		return flowv1.ClusterAction_CLUSTER_ACTION_PASS
	}
	return flowv1.ClusterAction_CLUSTER_ACTION_UNSPECIFIED
}

// AuditOf is the flow API's would-be outcome of an audited entry,
// attributed to direction d.
func AuditOf(a *policy.AuditDecision, d policy.Direction) *flowv1.Audit {
	out := &flowv1.Audit{WouldBe: flowv1.Verdict_VERDICT_DENIED, Reason: flowv1.Reason_REASON_NO_RULE_MATCHED}
	if a.Allowed {
		out.WouldBe, out.Reason = flowv1.Verdict_VERDICT_ALLOWED, flowv1.Reason_REASON_NOT_ISOLATED
	}
	if a.Rule != nil {
		out.Rule = CompiledRuleRef(*a.Rule)
		out.Reason = flowv1.Reason_REASON_ALLOWED_BY_RULE
		if !a.Allowed {
			out.Reason = flowv1.Reason_REASON_DENIED_BY_RULE
		}
	}
	for _, p := range a.IsolatedBy {
		out.IsolatedBy = append(out.IsolatedBy, PolicyRefOf(p, d, -1))
	}
	return out
}
