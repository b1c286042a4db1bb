package tui

import (
	"testing"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// The `/` filter takes cluster-scoped policy names like --policy does, and
// verdict=audit.
func TestFilterClusterPolicies(t *testing.T) {
	cnp := &flowv1.Flow{Verdict: flowv1.Verdict_VERDICT_DENIED, DeniedBy: []*flowv1.PolicyRef{flow.ClusterRuleRefOf(policy.ClusterRuleRef{
		Policy: policy.PolicyRef{Kind: policy.KindClusterNetworkPolicy, Name: "deny-monitoring"}, Tier: policy.TierAdmin, Direction: policy.Ingress})}}
	np := &flowv1.Flow{Verdict: flowv1.Verdict_VERDICT_AUDIT, AllowedBy: []*flowv1.PolicyRef{
		flow.PolicyRefOf(policy.PolicyRef{Namespace: "monitoring", Name: "deny-monitoring"}, policy.Ingress, 0)}}
	for _, tc := range []struct {
		expr    string
		cnp, np bool
	}{
		{"policy=cnp/deny-monitoring", true, false},
		{"policy=monitoring/deny-monitoring", false, true},
		{"policy=deny-monitoring", true, true},
		{"verdict=audit", false, true},
		{"!policy=cnp/deny-monitoring", false, true},
	} {
		match, err := ParseFilter(tc.expr)
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		if match(cnp) != tc.cnp || match(np) != tc.np {
			t.Errorf("%s: matches the CNP flow %v (want %v), the NetworkPolicy flow %v (want %v)", tc.expr, match(cnp), tc.cnp, match(np), tc.np)
		}
	}
}
