package flow_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

func numbered(n int) *flowv1.Flow {
	return &flowv1.Flow{Time: timestamppb.New(time.Unix(1700000000+int64(n), 0)), RuleId: uint32(n), Node: "node-a"}
}

func ruleIDs(fs []*flowv1.Flow) []uint32 {
	var out []uint32
	for _, f := range fs {
		out = append(out, f.GetRuleId())
	}
	return out
}

func recvN(t *testing.T, s flowv1.Observer_ObserveClient, n int) []*flowv1.Flow {
	t.Helper()
	var out []*flowv1.Flow
	for len(out) < n {
		f, err := s.Recv()
		if err != nil {
			t.Fatalf("after %d flows: %v", len(out), err)
		}
		out = append(out, f)
	}
	return out
}

// The ring keeps the newest flows; --last N answers from it in order.
func TestHubRingKeepsNewest(t *testing.T) {
	h := flow.NewHub(5, nil)
	for i := 1; i <= 12; i++ {
		h.Publish(numbered(i))
	}
	addr, _ := serve(t, h, "127.0.0.1:0")
	c := dial(t, addr)
	for _, tc := range []struct {
		last uint64
		want []uint32
	}{{0, []uint32{8, 9, 10, 11, 12}}, {2, []uint32{11, 12}}} {
		s, err := c.Observe(context.Background(), &flowv1.ObserveRequest{Last: tc.last})
		if err != nil {
			t.Fatal(err)
		}
		var got []*flowv1.Flow
		for {
			f, err := s.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, f)
		}
		if g := ruleIDs(got); !slices.Equal(g, tc.want) {
			t.Errorf("last=%d: got %v, want %v", tc.last, g, tc.want)
		}
	}
	st, err := c.Status(context.Background(), &flowv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetFlowsSeen() != 12 || st.GetRingCapacity() != 5 {
		t.Errorf("status: seen %d capacity %d, want 12 and 5", st.GetFlowsSeen(), st.GetRingCapacity())
	}
}

// A following client gets history then live flows with no gap and no
// duplicate, filtered at the source.
func TestHubFollowNoGapNoDuplicate(t *testing.T) {
	h := flow.NewHub(1000, nil)
	for i := 1; i <= 10; i++ {
		h.Publish(numbered(i))
	}
	addr, _ := serve(t, h, "127.0.0.1:0")
	c := dial(t, addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := c.Observe(ctx, &flowv1.ObserveRequest{Follow: true, Last: 3,
		Denylist: []*flowv1.FlowFilter{{Verdict: []flowv1.Verdict{flowv1.Verdict_VERDICT_DENIED}}}})
	if err != nil {
		t.Fatal(err)
	}
	got := recvN(t, s, 3)
	go func() {
		for i := 11; i <= 20; i++ {
			f := numbered(i)
			if i%2 == 0 {
				f.Verdict = flowv1.Verdict_VERDICT_DENIED
			}
			h.Publish(f)
		}
	}()
	got = append(got, recvN(t, s, 5)...)
	want := []uint32{8, 9, 10, 11, 13, 15, 17, 19}
	if g := ruleIDs(got); !slices.Equal(g, want) {
		t.Errorf("got %v, want %v", g, want)
	}
}

// A client that never reads cannot slow the producer: Publish returns at
// once, and the flows the client missed are counted.
func TestHubSlowClientNeverBlocksPublish(t *testing.T) {
	h := flow.NewHub(16, nil)
	addr, _ := serve(t, h, "127.0.0.1:0")
	c := dial(t, addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := c.Observe(ctx, &flowv1.ObserveRequest{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	h.Publish(numbered(0))
	recvN(t, s, 1) // subscribed: from here on the client stops reading
	const n = 200000
	done := make(chan struct{})
	go func() {
		for i := 1; i <= n; i++ {
			h.Publish(numbered(i))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Publish blocked behind a client that does not read")
	}
	st, err := c.Status(context.Background(), &flowv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetFlowsDroppedSlowClients() == 0 || st.GetFlowsSeen() != n+1 {
		t.Errorf("dropped for slow clients %d (want > 0), seen %d (want %d)", st.GetFlowsDroppedSlowClients(), st.GetFlowsSeen(), n+1)
	}
}

// BenchmarkHubToGRPCClient is the agent's flow path after enrichment:
// flows published into the hub at a steady rate for one second (in 1 ms
// batches, as the ring-buffer reader hands them over) and one following
// client receiving over real gRPC on loopback, with one message per flow
// (Observe) or batches (ObserveBatches, what the CLI uses). Reported: the
// rate delivered and the share lost (the producer never waits for a client).
func BenchmarkHubToGRPCClient(b *testing.B) {
	for _, rate := range []int{50_000, 100_000, 200_000} {
		b.Run(fmt.Sprintf("Observe/%dk", rate/1000), func(b *testing.B) { hubToClient(b, false, rate) })
		b.Run(fmt.Sprintf("ObserveBatches/%dk", rate/1000), func(b *testing.B) { hubToClient(b, true, rate) })
	}
}

func hubToClient(b *testing.B, batches bool, rate int) {
	h := flow.NewHub(flow.DefaultHubCapacity, nil)
	addr, _ := serve(b, h, "127.0.0.1:0")
	c := dial(b, addr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &flow.ClientSource{Client: c, Node: "bench"}
	if !batches {
		src.Client = singleOnly{c}
	}
	tmpl := sampleFlows()
	var received atomic.Int64
	go src.Observe(ctx, &flowv1.ObserveRequest{Follow: true}, func(bt flow.Batch) error {
		received.Add(int64(len(bt.Flows)))
		return nil
	})
	for ; received.Load() == 0; time.Sleep(time.Millisecond) { // wait until subscribed
		h.Publish(tmpl[0])
	}
	time.Sleep(50 * time.Millisecond)
	received.Store(0)
	before, _ := c.Status(ctx, &flowv1.StatusRequest{})
	perTick := rate / 1000
	total := 0
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		tick := time.NewTicker(time.Millisecond)
		for range 1000 {
			<-tick.C
			for k := range perTick {
				h.Publish(tmpl[(total+k)%len(tmpl)])
			}
			total += perTick
		}
		tick.Stop()
	}
	published := time.Since(start)
	var st *flowv1.StatusResponse
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if st, err = c.Status(context.Background(), &flowv1.StatusRequest{}); err != nil {
			b.Fatal(err)
		}
		if uint64(received.Load())+st.GetFlowsDroppedSlowClients()-before.GetFlowsDroppedSlowClients() >= uint64(total) {
			break
		}
	}
	lost := st.GetFlowsDroppedSlowClients() - before.GetFlowsDroppedSlowClients()
	b.ReportMetric(float64(total)/published.Seconds(), "offered/s")
	b.ReportMetric(float64(received.Load())/published.Seconds(), "delivered/s")
	b.ReportMetric(100*float64(lost)/float64(total), "%lost")
}

// singleOnly hides ObserveBatches, as an agent that predates it would.
type singleOnly struct{ flowv1.ObserverClient }

func (singleOnly) ObserveBatches(context.Context, *flowv1.ObserveRequest, ...grpc.CallOption) (grpc.ServerStreamingClient[flowv1.FlowBatch], error) {
	return nil, status.Error(codes.Unimplemented, "ObserveBatches")
}

// ClientSource over a Hub uses batches and delivers every flow in order.
func TestClientSourceBatchesFromHub(t *testing.T) {
	h := flow.NewHub(100000, nil)
	for i := range 5000 {
		h.Publish(numbered(i))
	}
	addr, _ := serve(t, h, "127.0.0.1:0")
	var got []uint32
	err := (&flow.ClientSource{Client: dial(t, addr), Node: "n"}).Observe(context.Background(), &flowv1.ObserveRequest{},
		func(b flow.Batch) error {
			got = append(got, ruleIDs(b.Flows)...)
			return nil
		})
	if err != nil || len(got) != 5000 || got[0] != 0 || got[4999] != 4999 || !slices.IsSorted(got) {
		t.Fatalf("err %v, %d flows (first %v)", err, len(got), got[:min(3, len(got))])
	}
}

// Since walks back from the newest flow to the first older than t, across
// the ring's wrap, and over a ring not yet full.
func TestHubSince(t *testing.T) {
	h := flow.NewHub(5, nil)
	if got := h.Since(time.Unix(0, 0)); len(got) != 0 {
		t.Errorf("empty hub: %v", ruleIDs(got))
	}
	for i := 1; i <= 3; i++ {
		h.Publish(numbered(i))
	}
	if got := ruleIDs(h.Since(time.Unix(1700000002, 0))); !slices.Equal(got, []uint32{3, 2}) {
		t.Errorf("not full: %v, want [3 2]", got)
	}
	if got := ruleIDs(h.Since(time.Unix(0, 0))); !slices.Equal(got, []uint32{3, 2, 1}) {
		t.Errorf("not full, all: %v, want [3 2 1]", got)
	}
	for i := 4; i <= 12; i++ {
		h.Publish(numbered(i))
	}
	if got := ruleIDs(h.Since(time.Unix(1700000010, 0))); !slices.Equal(got, []uint32{12, 11, 10}) {
		t.Errorf("wrapped: %v, want [12 11 10]", got)
	}
	if got := ruleIDs(h.Since(time.Unix(0, 0))); !slices.Equal(got, []uint32{12, 11, 10, 9, 8}) {
		t.Errorf("wrapped, all: %v, want the ring newest first", got)
	}
}
