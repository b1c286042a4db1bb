package stats_test

import (
	"io"
	"testing"
	"time"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
	"github.com/kubectl-netpol/kubectl-netpol/tui/stats"
)

// TestSetHistoryBuckets: the 24 h range from history records (aggregated
// hourly by the agents' own code): 60 steps of 24 minutes, the last one
// holding end, each flow counted in its step; a scope selects.
func TestSetHistoryBuckets(t *testing.T) {
	end := time.Unix(1_800_000_000, 0) // on a 24-minute boundary + 0
	var flows []*flowv1.Flow
	// One allowed flow to shop per hour for the last 30 hours (6 are
	// before the range), and a denied one to blog 2 hours ago.
	for h := range 30 {
		flows = append(flows, mk(end.Add(-time.Duration(h)*time.Hour).Unix(), "a", "shop", "db", false))
	}
	flows = append(flows, mk(end.Add(-2*time.Hour).Unix(), "a", "blog", "web", true))
	i := 0
	set, err := history.FromFlows(func() (*flowv1.Flow, error) {
		if i == len(flows) {
			return nil, io.EOF
		}
		i++
		return flows[i-1], nil
	}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	h := stats.SetHistory{Set: set}
	day := stats.LongRanges[0]
	got, err := h.Buckets(stats.Scope{Name: "cluster"}, day, end)
	if err != nil || len(got) != stats.Points {
		t.Fatalf("Buckets = %d counts, %v", len(got), err)
	}
	var all stats.Count
	for _, c := range got {
		all.Add(c)
	}
	// 25 of the hourly flows fall in the 24 h ending with end's step (its
	// step starts at end: the range reaches back 59 steps before it).
	if all.Allowed != 24 || all.Denied != 1 || got[stats.Points-1].Allowed != 1 {
		t.Errorf("24h from history: %+v in all, last step %+v; want 24 allowed, 1 denied, the newest in the last step", all, got[stats.Points-1])
	}
	shop := stats.Scope{Name: "namespace blog", Match: func(f *flowv1.Flow) bool { return f.GetDestination().GetNamespace() == "blog" }}
	got, _ = h.Buckets(shop, day, end)
	all = stats.Count{}
	for _, c := range got {
		all.Add(c)
	}
	if all != (stats.Count{Denied: 1}) || got[stats.Points-1-5] != (stats.Count{Denied: 1}) {
		t.Errorf("blog over 24h: %+v (step 54: %+v), want the one denial 2 h (5 steps) before the newest step", all, got[stats.Points-1-5])
	}
}
