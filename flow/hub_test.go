package flow_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

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
