package detail_test

import (
	"strings"
	"testing"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
	"github.com/kubectl-netpol/kubectl-netpol/tui/components/detail"
)

// The recorded explanation of ClusterNetworkPolicy verdicts reads like
// explain's: the tier, the policy and its priority, the rule, and what
// that means for the tiers after it; an audited flow says what enforcing
// would change.
func TestExplainClusterPolicyVerdicts(t *testing.T) {
	rule := func(name string, tier policy.Tier, prio int32, d policy.Direction, idx int, ruleName string, a policy.ClusterAction) *flowv1.PolicyRef {
		return flow.ClusterRuleRefOf(policy.ClusterRuleRef{Policy: policy.PolicyRef{Kind: policy.KindClusterNetworkPolicy, Name: name},
			Tier: tier, Priority: prio, Direction: d, Index: idx, Name: ruleName, Action: a})
	}
	base := func() *flowv1.Flow {
		return &flowv1.Flow{Node: "node-a", Direction: flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS,
			Source: &flowv1.Endpoint{Namespace: "shop", Pod: "web"}, Destination: &flowv1.Endpoint{Namespace: "monitoring", Pod: "prometheus-0"},
			L4: &flowv1.Layer4{Protocol: flowv1.Protocol_PROTOCOL_TCP, DestinationPort: 9090}}
	}
	deny := base()
	deny.Type, deny.Verdict, deny.Reason = flowv1.EventType_EVENT_TYPE_DROP, flowv1.Verdict_VERDICT_DENIED, flowv1.Reason_REASON_DENIED_BY_RULE
	deny.DeniedBy = []*flowv1.PolicyRef{rule("deny-monitoring", policy.TierAdmin, 10, policy.Ingress, 0, "deny-all", policy.ActionDeny)}
	accept := base()
	accept.Verdict, accept.Reason = flowv1.Verdict_VERDICT_ALLOWED, flowv1.Reason_REASON_ALLOWED_BY_RULE
	accept.AllowedBy = []*flowv1.PolicyRef{rule("baseline-open", policy.TierBaseline, 3, policy.Ingress, 1, "", policy.ActionAccept)}
	audited := base()
	audited.Type, audited.Verdict, audited.Reason = flowv1.EventType_EVENT_TYPE_NEW, flowv1.Verdict_VERDICT_AUDIT, flowv1.Reason_REASON_NOT_ISOLATED
	audited.Audit = &flowv1.Audit{WouldBe: flowv1.Verdict_VERDICT_DENIED, Reason: flowv1.Reason_REASON_DENIED_BY_RULE,
		Rule: rule("deny-monitoring", policy.TierAdmin, 10, policy.Ingress, 0, "deny-all", policy.ActionDeny)}
	for _, tc := range []struct {
		name string
		f    *flowv1.Flow
		want []string
	}{
		{"admin deny", deny, []string{"DENIED: shop/web → monitoring/prometheus-0",
			"Admin policy `deny-monitoring` (priority 10) ingress rule 0 `deny-all` denies; NetworkPolicy never consulted, so the packet was dropped on node node-a."}},
		{"baseline accept", accept, []string{"Baseline policy `baseline-open` (priority 3) ingress rule 1 accepts (no Admin rule and no NetworkPolicy decided)."}},
		{"audited", audited, []string{"AUDIT: shop/web → monitoring/prometheus-0",
			"no ClusterNetworkPolicy rule decided, so all ingress traffic is allowed.",
			"Audit: the packets were allowed; enforcing the audited policies would deny it (Admin cnp deny-monitoring (prio 10) ingress rule 0 deny-all)."}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := detail.Explain(tc.f)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("explanation lacks %q:\n%s", w, got)
				}
			}
		})
	}
}
