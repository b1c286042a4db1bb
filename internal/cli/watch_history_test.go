package cli

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
	"github.com/kubectl-netpol/kubectl-netpol/tui"
	"github.com/kubectl-netpol/kubectl-netpol/tui/stats"
)

// historyAgent serves a hub and a history store, as the agent does.
type historyAgent struct {
	*flow.Hub
	store *history.Store
}

func (h *historyAgent) History(req *flowv1.HistoryRequest, stream grpc.ServerStreamingServer[flowv1.HistoryBatch]) error {
	return h.store.Serve(req, stream.Send)
}

func startHistoryAgent(t *testing.T, store *history.Store) *fakeAgent {
	t.Helper()
	a := &fakeAgent{version: "v0.2.0", hub: flow.NewHub(1024, nil)}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.addr = lis.Addr().String()
	a.srv = grpc.NewServer()
	flowv1.RegisterObserverServer(a.srv, &historyAgent{Hub: a.hub, store: store})
	go func() { _ = a.srv.Serve(lis) }()
	t.Cleanup(a.srv.Stop)
	return a
}

// TestWatchSinceReadsHistory: `watch --since 2d` prints what is older than
// the ring's hour from the agents' history (one line per key and bucket,
// with its count), then the ring's flows; filters apply to both.
func TestWatchSinceReadsHistory(t *testing.T) {
	now := time.Now()
	store := history.NewStore(history.Config{Node: "node-a"})
	old := liveFlow("node-a", 5432, flowv1.Verdict_VERDICT_ALLOWED)
	old.Type = flowv1.EventType_EVENT_TYPE_NEW
	other := liveFlow("node-a", 80, flowv1.Verdict_VERDICT_ALLOWED)
	other.Type, other.Source = flowv1.EventType_EVENT_TYPE_NEW, &flowv1.Endpoint{Namespace: "blog", Pod: "x"}
	for i := range 7 {
		old.Time = timestamppb.New(now.Add(-30*time.Hour + time.Duration(i)*time.Minute))
		store.Record(old)
		other.Time = old.Time
		store.Record(other)
	}
	a := startHistoryAgent(t, store)
	recent := liveFlow("node-a", 5432, flowv1.Verdict_VERDICT_ALLOWED)
	recent.Time = timestamppb.New(now.Add(-time.Minute))
	a.hub.Publish(recent)
	r := &liveRig{client: allowPortForward(fake.NewClientset(livePod("agent-a", "node-a", true)), true), agents: map[string]*fakeAgent{"agent-a": a}}
	o, out, _ := r.options(t)
	o.Now = func() time.Time { return now }
	if err := runLive(t, context.Background(), o, "-o", "compact", "--since", "2d", "--from-namespace", "shop"); err != nil {
		t.Fatal(err)
	}
	got := lines(out.String())
	// 7 connections over 7 minutes: one record, or two across a 10-minute bucket boundary.
	total := historyTotal(t, got[:max(len(got)-1, 0)])
	if strings.Contains(out.String(), "blog/") {
		t.Fatalf("blog not filtered out:\n%s", out.String())
	}
	if len(got) < 2 || len(got) > 3 || total != 7 || strings.Contains(got[len(got)-1], "history") {
		t.Fatalf("output = %q, want the history's records (7 connections) then the ring's flow, blog filtered out", got)
	}
}

// TestWatchWhatifAnnotates: a replay judged under a proposal marks the
// flows whose verdict would change and counts them on stderr.
func TestWatchWhatifAnnotates(t *testing.T) {
	out, errOut := &syncBuffer{}, &syncBuffer{}
	o := NewWatchOptions(genericclioptions.NewConfigFlags(true), genericiooptions.IOStreams{In: strings.NewReader(""), Out: out, ErrOut: errOut})
	o.IsTerminal = func(any) bool { return false }
	o.Factory = fakeFactory(fake.NewClientset(liveObjects(t)...))
	if err := runLive(t, context.Background(), o, "--input-file", whatifCapture, "-o", "compact", "--whatif", "../../examples/whatif/lockdown.yaml"); err != nil {
		t.Fatal(err)
	}
	changed := 0
	for _, l := range lines(out.String()) {
		if strings.Contains(l, "WHATIF DENIED (CHANGED) by db/db-policy (ingress)") {
			changed++
			if !strings.Contains(l, "db/web-0") {
				t.Errorf("changed flow is not web-0's: %s", l)
			}
		}
	}
	if changed != 12 || !strings.Contains(errOut.String(), "whatif: 12 of 22 judged flows would change") {
		t.Errorf("%d changed lines; stderr %q\n%s", changed, errOut.String(), out.String())
	}
}

// TestWatchSinceAfterRestartReadsHistory: an agent restarted 5 minutes ago
// has an empty ring before its start, so `watch --since 1h` reads what came
// before from its history (the restart is its coverage's newest gap), then
// the ring.
func TestWatchSinceAfterRestartReadsHistory(t *testing.T) {
	now := time.Now()
	clock := now.Add(-20 * time.Minute)
	cfg := history.Config{Node: "node-a", Now: func() time.Time { return clock }}
	dir := t.TempDir()
	before := history.NewStore(cfg)
	old := liveFlow("node-a", 5432, flowv1.Verdict_VERDICT_ALLOWED)
	old.Type = flowv1.EventType_EVENT_TYPE_NEW
	for i := range 4 {
		old.Time = timestamppb.New(now.Add(-20*time.Minute + time.Duration(i)*time.Minute))
		before.Record(old)
	}
	clock = now.Add(-10 * time.Minute)
	if err := before.Flush(dir); err != nil {
		t.Fatal(err)
	}
	clock = now.Add(-5 * time.Minute) // the new agent starts
	store, err := history.Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := startHistoryAgent(t, store)
	recent := liveFlow("node-a", 5432, flowv1.Verdict_VERDICT_ALLOWED)
	recent.Time = timestamppb.New(now.Add(-time.Minute))
	a.hub.Publish(recent)
	store.Record(recent)
	r := &liveRig{client: allowPortForward(fake.NewClientset(livePod("agent-a", "node-a", true)), true), agents: map[string]*fakeAgent{"agent-a": a}}
	o, out, _ := r.options(t)
	o.Now = func() time.Time { return now }
	if err := runLive(t, context.Background(), o, "-o", "compact", "--since", "1h"); err != nil {
		t.Fatal(err)
	}
	got := lines(out.String())
	if total := historyTotal(t, got[:max(len(got)-1, 0)]); total != 4 || len(got) < 2 || strings.Contains(got[len(got)-1], "history") {
		t.Fatalf("output = %q, want the 4 connections before the restart from history, then the ring's flow (once)", got)
	}
}

// historyTotal sums the connections of `watch -o compact` history lines
// (" xN since … (history)"), failing on any other line.
func historyTotal(t *testing.T, ls []string) int {
	t.Helper()
	total := 0
	for _, l := range ls {
		var n int
		i := strings.Index(l, " x")
		if i < 0 || !strings.Contains(l, "(history)") {
			t.Fatalf("not a history line: %q", l)
		}
		if _, err := fmt.Sscanf(l[i+2:], "%d", &n); err != nil {
			t.Fatalf("history line %q: %v", l, err)
		}
		total += n
	}
	return total
}

// TestWatchTUIChartsHistory: the live TUI gets the agents' history for the
// chart's 24 h and 7 d ranges, with the watch's filters; a replay gets none.
func TestWatchTUIChartsHistory(t *testing.T) {
	now := time.Now()
	store := history.NewStore(history.Config{Node: "node-a", Now: func() time.Time { return now }})
	shop := liveFlow("node-a", 5432, flowv1.Verdict_VERDICT_ALLOWED)
	blog := liveFlow("node-a", 80, flowv1.Verdict_VERDICT_DENIED)
	shop.Type, blog.Type = flowv1.EventType_EVENT_TYPE_NEW, flowv1.EventType_EVENT_TYPE_DROP
	blog.Source = &flowv1.Endpoint{Namespace: "blog", Pod: "x"}
	for d := range 5 { // one a day for 5 days
		shop.Time = timestamppb.New(now.Add(-time.Duration(d) * 24 * time.Hour))
		blog.Time = shop.Time
		store.Record(shop)
		store.Record(blog)
	}
	a := startHistoryAgent(t, store)
	r := &liveRig{client: allowPortForward(fake.NewClientset(livePod("agent-a", "node-a", true)), true), agents: map[string]*fakeAgent{"agent-a": a}}
	o, _, _ := r.options(t)
	o.Now = func() time.Time { return now }
	o.IsTerminal = func(any) bool { return true }
	var got tui.Options
	o.RunTUI = func(_ context.Context, opts tui.Options) error { got = opts; return nil }
	if err := runLive(t, context.Background(), o, "--from-namespace", "shop"); err != nil {
		t.Fatal(err)
	}
	if got.History == nil {
		t.Fatal("the live TUI has no history for its 24h and 7d ranges")
	}
	week := stats.LongRanges[len(stats.LongRanges)-1]
	counts, err := got.History.Buckets(stats.Scope{Name: "cluster"}, week, now)
	if err != nil {
		t.Fatal(err)
	}
	var sum stats.Count
	for _, c := range counts {
		sum.Add(c)
	}
	if sum != (stats.Count{Allowed: 5}) {
		t.Errorf("7d from the agents' history, --from-namespace shop: %+v, want shop's 5 allowed connections and no blog denial", sum)
	}

	// A replay charts the capture itself over 24 h, with watch's filters.
	o, _, _ = r.options(t)
	o.IsTerminal = func(any) bool { return true }
	o.RunTUI = func(_ context.Context, opts tui.Options) error { got = opts; return nil }
	if err := runLive(t, context.Background(), o, "--input-file", sampleCapture, "--verdict", "denied"); err != nil {
		t.Fatal(err)
	}
	if got.History == nil {
		t.Fatal("a replay's TUI has no 24h and 7d ranges")
	}
	var denied int
	for _, f := range sampleFlows(t) {
		if f.GetVerdict() == flowv1.Verdict_VERDICT_DENIED && f.GetType() != flowv1.EventType_EVENT_TYPE_END {
			denied++
		}
	}
	newest := sampleFlows(t)[len(sampleFlows(t))-1].GetTime().AsTime()
	counts, err = got.History.Buckets(stats.Scope{Name: "cluster"}, stats.LongRanges[0], newest)
	if err != nil {
		t.Fatal(err)
	}
	sum = stats.Count{}
	for _, c := range counts {
		sum.Add(c)
	}
	if sum.Allowed != 0 || sum.Denied == 0 || sum.Denied > uint64(denied) {
		t.Errorf("24h of the capture, --verdict denied: %+v; want its drops only (%d flows, paired ones once)", sum, denied)
	}
}
