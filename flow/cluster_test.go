package flow_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// clusterFlows are flows decided by ClusterNetworkPolicies as the agent
// reports them: an Admin Deny, a Baseline Accept, an audited flow.
func clusterFlows() (adminDeny, baselineAccept, audited *flowv1.Flow) {
	deny := flow.ClusterRuleRefOf(policy.ClusterRuleRef{Policy: policy.PolicyRef{Kind: policy.KindClusterNetworkPolicy, Name: "deny-monitoring"},
		Tier: policy.TierAdmin, Priority: 10, Direction: policy.Ingress, Index: 0, Name: "deny-all", Action: policy.ActionDeny})
	accept := flow.ClusterRuleRefOf(policy.ClusterRuleRef{Policy: policy.PolicyRef{Kind: policy.KindClusterNetworkPolicy, Name: "baseline-dns"},
		Tier: policy.TierBaseline, Priority: 3, Direction: policy.Egress, Index: 2, Action: policy.ActionAccept})
	web := &flowv1.Endpoint{Namespace: "shop", Pod: "web"}
	prom := &flowv1.Endpoint{Namespace: "monitoring", Pod: "prometheus-0"}
	l4 := &flowv1.Layer4{Protocol: flowv1.Protocol_PROTOCOL_TCP, SourcePort: 40000, DestinationPort: 9090}
	adminDeny = &flowv1.Flow{Node: "node-a", Type: flowv1.EventType_EVENT_TYPE_DROP, Verdict: flowv1.Verdict_VERDICT_DENIED,
		Reason: flowv1.Reason_REASON_DENIED_BY_RULE, Direction: flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS,
		Source: web, Destination: prom, L4: l4, DeniedBy: []*flowv1.PolicyRef{deny}}
	baselineAccept = &flowv1.Flow{Node: "node-a", Type: flowv1.EventType_EVENT_TYPE_NEW, Verdict: flowv1.Verdict_VERDICT_ALLOWED,
		Reason: flowv1.Reason_REASON_ALLOWED_BY_RULE, Direction: flowv1.TrafficDirection_TRAFFIC_DIRECTION_EGRESS,
		Source: web, Destination: &flowv1.Endpoint{Namespace: "kube-system", Pod: "coredns"}, L4: l4, AllowedBy: []*flowv1.PolicyRef{accept}}
	audited = &flowv1.Flow{Node: "node-a", Type: flowv1.EventType_EVENT_TYPE_NEW, Verdict: flowv1.Verdict_VERDICT_AUDIT,
		Reason: flowv1.Reason_REASON_NOT_ISOLATED, Direction: flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS,
		Source: web, Destination: prom, L4: l4, Audit: &flowv1.Audit{WouldBe: flowv1.Verdict_VERDICT_DENIED,
			Reason: flowv1.Reason_REASON_NO_RULE_MATCHED, IsolatedBy: []*flowv1.PolicyRef{
				flow.PolicyRefOf(policy.PolicyRef{Namespace: "monitoring", Name: "default-deny"}, policy.Ingress, -1)}}}
	return adminDeny, baselineAccept, audited
}

func TestClusterPolicyLines(t *testing.T) {
	adminDeny, baselineAccept, audited := clusterFlows()
	for _, tc := range []struct {
		f    *flowv1.Flow
		want string
	}{
		{adminDeny, "DENIED DENIED_BY_RULE denied-by Admin cnp deny-monitoring (prio 10) ingress rule 0 deny-all"},
		{baselineAccept, "ALLOWED ALLOWED_BY_RULE allowed-by Baseline cnp baseline-dns (prio 3) egress rule 2"},
		{audited, "AUDIT NOT_ISOLATED would-be DENIED isolated-by monitoring/default-deny (ingress)"},
	} {
		if got := flow.CompactLine(tc.f, time.UTC); !strings.HasSuffix(got, tc.want) {
			t.Errorf("line\n %q\nshould end with\n %q", got, tc.want)
		}
	}
}

// --policy cnp/NAME matches only ClusterNetworkPolicies, a bare name
// policies of any kind, ns/name only NetworkPolicies; audited flows match
// on their would-be policies too.
func TestPolicyFilterKinds(t *testing.T) {
	adminDeny, baselineAccept, audited := clusterFlows()
	// A NetworkPolicy named like the CNP, in a namespace named "cnp".
	np := &flowv1.Flow{Verdict: flowv1.Verdict_VERDICT_ALLOWED, AllowedBy: []*flowv1.PolicyRef{
		flow.PolicyRefOf(policy.PolicyRef{Namespace: "cnp", Name: "deny-monitoring"}, policy.Ingress, 0)}}
	flows := []*flowv1.Flow{adminDeny, baselineAccept, audited, np}
	for _, tc := range []struct {
		value string
		want  []bool
	}{
		{"cnp/deny-monitoring", []bool{true, false, false, false}},
		{"deny-monitoring", []bool{true, false, false, true}},
		{"cnp/deny-monitoring", []bool{true, false, false, false}},
		{"baseline-dns", []bool{false, true, false, false}},
		{"monitoring/default-deny", []bool{false, false, true, false}},
		{"cnp/default-deny", []bool{false, false, false, false}},
	} {
		var b flow.FilterBuilder
		if err := b.Add(flow.Policy, tc.value); err != nil {
			t.Fatal(err)
		}
		f, err := flow.CompileFilter(b.Allowlist(), b.Denylist())
		if err != nil {
			t.Fatal(err)
		}
		for i, fl := range flows {
			if got := f.Match(fl); got != tc.want[i] {
				t.Errorf("--policy %s on flow %d (%s): %v, want %v", tc.value, i, flow.CompactLine(fl, time.UTC), got, tc.want[i])
			}
		}
	}
	var b flow.FilterBuilder
	if err := b.Add(flow.Policy, "cnp/"); err == nil || !strings.Contains(err.Error(), `"cnp/name"`) {
		t.Errorf("--policy cnp/: %v", err)
	}
}
