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
	total := 0
	for _, l := range got[:len(got)-1] {
		var n int
		if _, err := fmt.Sscanf(l[strings.Index(l, " x")+2:], "%d", &n); err != nil || !strings.Contains(l, "(history)") || strings.Contains(l, "blog/") {
			t.Fatalf("history line %q", l)
		}
		total += n
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
	if len(got) != 2 || !strings.Contains(got[0], " x4 ") || !strings.Contains(got[0], "(history)") || strings.Contains(got[1], "history") {
		t.Fatalf("output = %q, want the 4 connections before the restart from history, then the ring's flow (once)", got)
	}
}
