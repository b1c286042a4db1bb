package stats_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/tui/stats"
)

func mk(sec int64, srcNS, dstNS, dstPod string, denied bool) *flowv1.Flow {
	v := flowv1.Verdict_VERDICT_ALLOWED
	if denied {
		v = flowv1.Verdict_VERDICT_DENIED
	}
	return &flowv1.Flow{
		Time: &timestamppb.Timestamp{Seconds: sec}, Verdict: v, Type: flowv1.EventType_EVENT_TYPE_NEW,
		Source:      &flowv1.Endpoint{Namespace: srcNS, Pod: "client"},
		Destination: &flowv1.Endpoint{Namespace: dstNS, Pod: dstPod},
	}
}

func TestWindowCountsAndSlides(t *testing.T) {
	s := stats.New()
	for sec := int64(1000); sec < 1010; sec++ {
		for i := range 3 {
			s.Add(mk(sec, "a", "b", "db", i == 0))
		}
	}
	if got := s.Overall.Sum(s.Now()); got != (stats.Count{Allowed: 20, Denied: 10}) {
		t.Fatalf("overall = %+v", got)
	}
	if got := s.NSPair("a", "b").Sum(s.Now()); got.Total() != 30 {
		t.Fatalf("a→b = %+v", got)
	}
	if got := s.NSPair("b", "a").Sum(s.Now()); got.Total() != 0 {
		t.Fatalf("b→a = %+v", got)
	}
	if got := s.Rate(); got != 3 {
		t.Fatalf("rate = %d, want 3", got)
	}
	// Sixty seconds later the old counts have left the window.
	s.Add(mk(1009+stats.Window, "a", "b", "db", false))
	if got := s.Overall.Sum(s.Now()); got.Total() != 1 {
		t.Fatalf("after the window slid: %+v", got)
	}
	// A flow older than the window is not counted.
	s.Add(mk(1000, "a", "b", "db", true))
	if got := s.Overall.Sum(s.Now()); got.Total() != 1 {
		t.Fatalf("an old flow was counted: %+v", got)
	}
	// Flow-end summaries are not new connections.
	end := mk(s.Now(), "a", "b", "db", false)
	end.Type = flowv1.EventType_EVENT_TYPE_END
	s.Add(end)
	if got := s.Overall.Sum(s.Now()); got.Total() != 1 {
		t.Fatalf("a flow-end summary was counted: %+v", got)
	}
}

// TestAggregateCountsItsConnections: a kernel aggregate (Flow.connections)
// counts as the connections it stands for, everywhere a flow is counted.
func TestAggregateCountsItsConnections(t *testing.T) {
	s := stats.New()
	agg := mk(1000, "a", "b", "db", false)
	agg.Connections = 41
	s.Add(agg)
	s.Add(mk(1000, "a", "b", "db", false))
	s.Add(mk(1000, "a", "b", "db", true))
	if got := s.Overall.Sum(s.Now()); got != (stats.Count{Allowed: 42, Denied: 1}) {
		t.Fatalf("overall = %+v, want 42 allowed (41 of them one aggregate), 1 denied", got)
	}
	if got := s.NSPair("a", "b").Sum(s.Now()); got.Total() != 43 {
		t.Fatalf("a→b = %+v, want 43", got)
	}
}

// TestKeysAreBounded: pods that come and go do not grow memory without
// bound: a key idle for the longest range is pruned, and no counter holds
// more than MaxKeys.
func TestKeysAreBounded(t *testing.T) {
	s := stats.New()
	maxKeys := 0
	for sec := int64(0); sec < 2000; sec++ {
		for i := range 20 {
			s.Add(mk(sec, "a", "b", fmt.Sprintf("pod-%d-%d", sec, i), false))
		}
		maxKeys = max(maxKeys, s.Keys())
	}
	// 20 new pods a second: a pod key, a pod-pair key and a workload-pair
	// key (bare pods are their own workload) each, capped per counter,
	// plus a handful of fixed keys.
	if limit := 3*stats.MaxKeys + 10; maxKeys > limit {
		t.Fatalf("stats held %d keys, want at most %d", maxKeys, limit)
	}
	if maxKeys < 2*stats.MaxKeys {
		t.Fatalf("stats held at most %d keys: the test should reach the cap", maxKeys)
	}
	// The newest pods are still counted after evictions.
	if c := s.Pod("b/pod-1999-3").Sum(s.Now()); c.Total() != 1 {
		t.Fatalf("newest pod: %+v", c)
	}
}

// TestRanges: the 5-minute and 1-hour ranges sum their steps.
func TestRanges(t *testing.T) {
	s := stats.New()
	for sec := int64(3600); sec < 3600+600; sec++ {
		s.Add(mk(sec, "a", "b", "db", sec%2 == 0))
	}
	five := s.Overall.Buckets(1, s.Now())
	if len(five) != stats.Points {
		t.Fatalf("%d buckets", len(five))
	}
	if last := five[len(five)-2]; last != (stats.Count{Allowed: 2, Denied: 3}) && last != (stats.Count{Allowed: 3, Denied: 2}) {
		t.Fatalf("a 5 s step holds %+v", last)
	}
	hour := s.Overall.Buckets(2, s.Now())
	var tot stats.Count
	for _, c := range hour {
		tot.Add(c)
	}
	if tot.Total() != 600 || hour[len(hour)-2].Total() != 60 {
		t.Fatalf("1 h range: total %+v, a full minute %+v", tot, hour[len(hour)-2])
	}
	if c := s.Overall.Sum(s.Now()); c.Total() != stats.Window {
		t.Fatalf("1 m sum %+v", c)
	}
}

// An audited flow counts by what its packets did; a ClusterNetworkPolicy
// is keyed as the policy filter takes it (cnp/NAME).
func TestAuditedAndClusterPolicyFlows(t *testing.T) {
	s := stats.New()
	cnp := &flowv1.PolicyRef{Kind: "ClusterNetworkPolicy", Name: "deny-monitoring", Tier: flowv1.ClusterTier_CLUSTER_TIER_ADMIN}
	s.Add(&flowv1.Flow{Time: timestamppb.New(time.Unix(1000, 0)), Type: flowv1.EventType_EVENT_TYPE_DROP, Verdict: flowv1.Verdict_VERDICT_AUDIT,
		DeniedBy: []*flowv1.PolicyRef{cnp}, Audit: &flowv1.Audit{WouldBe: flowv1.Verdict_VERDICT_ALLOWED}})
	s.Add(&flowv1.Flow{Time: timestamppb.New(time.Unix(1000, 0)), Type: flowv1.EventType_EVENT_TYPE_NEW, Verdict: flowv1.Verdict_VERDICT_AUDIT,
		Audit: &flowv1.Audit{WouldBe: flowv1.Verdict_VERDICT_DENIED}})
	if c := s.Overall.Sum(1000); c.Denied != 1 || c.Allowed != 1 {
		t.Errorf("overall %+v, want the audited drop denied and the audited new flow allowed", c)
	}
	if got := stats.PolicyKey(cnp); got != "cnp/deny-monitoring" {
		t.Errorf("PolicyKey = %q", got)
	}
	if p := s.Policy("cnp/deny-monitoring"); p == nil || p.Sum(1000).Denied != 1 {
		t.Errorf("per-policy series of the CNP: %+v", p)
	}
}
