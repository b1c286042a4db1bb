package whatif

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
	pt "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

// TestExposedCountsAuditAsEnforced: an AUDIT connection into a pod no
// policy isolates is exposure when its packets passed (audited policies
// would deny it), not when they were dropped.
func TestExposedCountsAuditAsEnforced(t *testing.T) {
	web := workload("shop", "Deployment", "web", "app", "web")
	db := workload("shop", "StatefulSet", "db", "app", "db")
	dbPod := pt.Pod("shop", "db-0", pt.WithLabels("app", "db"), pt.WithIP("10.0.0.9"))
	e := engine(t, []*corev1.Pod{dbPod})
	audit := func(port uint32, wouldBe flowv1.Verdict) *flowv1.Flow {
		k := key("node-a", web, db, port, flowv1.Protocol_PROTOCOL_TCP, flowv1.Verdict_VERDICT_AUDIT)
		k.Audit = &flowv1.Audit{WouldBe: wouldBe}
		return k
	}
	set := &history.Set{Records: []history.Record{
		rec(audit(5432, flowv1.Verdict_VERDICT_DENIED), t0, 4),  // passed
		rec(audit(6379, flowv1.Verdict_VERDICT_ALLOWED), t0, 2), // dropped
	}}
	got := Exposed(e, set, nil)
	if len(got) != 1 || got[0].Port != 5432 || got[0].Connections != 4 {
		t.Errorf("exposure = %+v, want the 4 connections that passed to 5432", got)
	}
}
