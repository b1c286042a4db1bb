package history

import (
	"testing"
	"time"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// TestSteps: what a chart of the history draws. A connection judged on two
// nodes counts once (denied when the destination's node denied it); a
// bucket wider than a step is spread over the steps it covers without
// losing a connection; match selects; buckets outside the chart are left out.
func TestSteps(t *testing.T) {
	web := pod("shop", "web-1", "web", "h", map[string]string{"app": "web"})
	db := pod("shop", "db-0", "", "", map[string]string{"app": "db"})
	blog := pod("blog", "x", "", "", nil)
	at := func(node string, f *flowv1.Flow) *flowv1.Flow { f.Node = node; return f }
	rec := func(k *flowv1.Flow, start time.Time, width time.Duration, n uint64) Record {
		return Record{Key: k, Start: start, Width: width, Counters: Counters{Connections: n, Last: start.UnixNano()}}
	}
	allowedA := at("node-a", newFlow(t0, web, db, 5432, flowv1.Verdict_VERDICT_ALLOWED))
	allowedB := at("node-b", newFlow(t0, web, db, 5432, flowv1.Verdict_VERDICT_ALLOWED))
	deniedB := at("node-b", newFlow(t0, web, db, 3306, flowv1.Verdict_VERDICT_DENIED))
	allowed3306A := at("node-a", newFlow(t0, web, db, 3306, flowv1.Verdict_VERDICT_ALLOWED))
	other := at("node-a", newFlow(t0, blog, db, 80, flowv1.Verdict_VERDICT_ALLOWED))
	set := &Set{Records: []Record{
		// 5 connections web -> db:5432, recorded at both ends.
		rec(allowedA, t0, 10*time.Minute, 5), rec(allowedB, t0, 10*time.Minute, 5),
		// 3 to :3306, allowed at web's node, denied at db's.
		rec(allowed3306A, t0.Add(time.Hour), 10*time.Minute, 3), rec(deniedB, t0.Add(time.Hour), 10*time.Minute, 3),
		// A day of blog -> db: 80 connections in one daily bucket.
		rec(other, t0.Add(-24*time.Hour), 24*time.Hour, 80),
		// Before the chart.
		rec(other, t0.Add(-72*time.Hour), 24*time.Hour, 1000),
	}}
	got := set.Steps(nil, t0, time.Hour, 3)
	want := []StepCount{{All: 5}, {All: 3, Denied: 3}, {}}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("hourly steps from t0 = %+v, want %+v", got, want)
			break
		}
	}
	// The daily bucket on 3-hour steps: 10 a step, 80 in all.
	got = set.Steps(func(f *flowv1.Flow) bool { return f.GetSource().GetNamespace() == "blog" }, t0.Add(-24*time.Hour), 3*time.Hour, 8)
	var sum uint64
	for _, c := range got {
		sum += c.All
		if c.All != 10 || c.Denied != 0 {
			t.Errorf("blog steps = %+v, want 10 allowed each", got)
			break
		}
	}
	if sum != 80 {
		t.Errorf("blog connections on the chart = %d, want 80", sum)
	}
	// Steps of 7 minutes: shares that do not divide evenly still add up.
	got = set.Steps(func(f *flowv1.Flow) bool { return f.GetSource().GetNamespace() == "blog" }, t0.Add(-24*time.Hour), 7*time.Minute, 24*60/7+1)
	sum = 0
	for _, c := range got {
		sum += c.All
	}
	if sum != 80 {
		t.Errorf("blog connections on 7-minute steps = %d, want 80", sum)
	}
}

// TestAuditAggregation: an AUDIT connection is its own key, with what the
// audited policies would decide (two would-be rules: two keys), kept in the
// record's flow; a chart counts it as what was enforced.
func TestAuditAggregation(t *testing.T) {
	web := pod("shop", "web-1", "web", "h", map[string]string{"app": "web"})
	db := pod("shop", "db-0", "", "", map[string]string{"app": "db"})
	zero, one := uint32(0), uint32(1)
	audit := func(at time.Time, wouldBe flowv1.Verdict, rule *uint32) *flowv1.Flow {
		f := newFlow(at, web, db, 5432, flowv1.Verdict_VERDICT_ALLOWED)
		f.Verdict = flowv1.Verdict_VERDICT_AUDIT
		f.Audit = &flowv1.Audit{WouldBe: wouldBe, Reason: flowv1.Reason_REASON_DENIED_BY_RULE,
			Rule: &flowv1.PolicyRef{Kind: "NetworkPolicy", Namespace: "shop", Name: "lockdown", RuleIndex: rule}}
		if wouldBe == flowv1.Verdict_VERDICT_ALLOWED {
			f.Type, f.AllowedBy = flowv1.EventType_EVENT_TYPE_DROP, nil
		}
		return f
	}
	s := NewStore(Config{Node: "node-a", Now: func() time.Time { return t0.Add(time.Minute) }})
	for i := range 3 {
		s.Record(audit(t0.Add(time.Duration(i)*time.Second), flowv1.Verdict_VERDICT_DENIED, &zero))
	}
	s.Record(audit(t0, flowv1.Verdict_VERDICT_DENIED, &one))
	s.Record(audit(t0, flowv1.Verdict_VERDICT_ALLOWED, &zero)) // dropped, audited policies would allow
	set := export(s)
	if len(set.Records) != 3 {
		t.Fatalf("%d records, want 3 (two would-be rules, two would-be verdicts)", len(set.Records))
	}
	for _, r := range set.Records {
		f := r.Flow()
		if f.GetVerdict() != flowv1.Verdict_VERDICT_AUDIT || f.GetAudit().GetRule().GetName() != "lockdown" {
			t.Errorf("record flow %v lost the audit", f)
		}
		if f.GetAudit().GetRule().GetRuleIndex() == 0 && f.GetAudit().GetWouldBe() == flowv1.Verdict_VERDICT_DENIED && r.Connections != 3 {
			t.Errorf("rule 0 would-deny record: %d connections, want 3", r.Connections)
		}
	}
	got := set.Steps(nil, t0, time.Hour, 1)
	if got[0] != (StepCount{All: 5, Denied: 1}) {
		t.Errorf("steps = %+v, want 5 connections, 1 of them dropped (enforced)", got)
	}
}
