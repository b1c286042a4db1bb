package agent

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// TestAuditFlowsMetric: an AUDIT flow counts once per audited policy that
// would decide it (its rule, or the isolating policies of a would-be
// default deny), by the would-be verdict; other flows count nothing there.
func TestAuditFlowsMetric(t *testing.T) {
	m := NewMetrics(func() map[string]uint64 { return nil }, func() []MapUsage { return nil }, func() float64 { return 0 })
	deny := &flowv1.Flow{Verdict: flowv1.Verdict_VERDICT_AUDIT, Audit: &flowv1.Audit{WouldBe: flowv1.Verdict_VERDICT_DENIED,
		IsolatedBy: []*flowv1.PolicyRef{{Namespace: "db", Name: "lockdown"}, {Namespace: "db", Name: "strict"}}}}
	allow := &flowv1.Flow{Verdict: flowv1.Verdict_VERDICT_AUDIT, Audit: &flowv1.Audit{WouldBe: flowv1.Verdict_VERDICT_ALLOWED,
		Rule: &flowv1.PolicyRef{Name: "open-monitoring"}}}
	m.CountVerdict(deny)
	m.CountVerdict(deny)
	m.CountVerdict(allow)
	m.CountVerdict(&flowv1.Flow{Verdict: flowv1.Verdict_VERDICT_ALLOWED})
	for _, c := range []struct {
		ns, name, would string
		want            float64
	}{{"db", "lockdown", "DENIED", 2}, {"db", "strict", "DENIED", 2}, {"", "open-monitoring", "ALLOWED", 1}} {
		if got := testutil.ToFloat64(m.AuditFlows.WithLabelValues(c.ns, c.name, c.would)); got != c.want {
			t.Errorf("audit_flows_total{%s/%s,%s} = %v, want %v", c.ns, c.name, c.would, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.AuditFlows); n != 3 {
		t.Errorf("%d audit series, want 3", n)
	}
}
