package flow_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// testObserver serves flow.v1.Observer the way the agent must: history
// through Query.History, then live flows through Query.Match.
type testObserver struct {
	flowv1.UnimplementedObserverServer
	node    string
	history []*flowv1.Flow
	live    chan *flowv1.Flow
}

func (o *testObserver) Observe(req *flowv1.ObserveRequest, stream grpc.ServerStreamingServer[flowv1.Flow]) error {
	q, err := flow.CompileQuery(req)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	for _, f := range q.History(o.history) {
		if err := stream.Send(f); err != nil {
			return err
		}
	}
	if !q.Follow {
		return nil
	}
	for {
		select {
		case f := <-o.live:
			if q.Match(f) {
				if err := stream.Send(f); err != nil {
					return err
				}
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

func (o *testObserver) Status(context.Context, *flowv1.StatusRequest) (*flowv1.StatusResponse, error) {
	return &flowv1.StatusResponse{Node: o.node, Version: "test"}, nil
}

// serve starts o on addr ("127.0.0.1:0" for any port) and returns the address.
func serve(t testing.TB, o flowv1.ObserverServer, addr string) (string, *grpc.Server) {
	t.Helper()
	var lis net.Listener
	var err error
	for range 50 { // a restarted server may wait for the port to be free
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	flowv1.RegisterObserverServer(s, o)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String(), s
}

func dial(t testing.TB, addr string) flowv1.ObserverClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return flowv1.NewObserverClient(cc)
}

func TestClientSourceOverGRPC(t *testing.T) {
	all := sampleFlows()
	addr, _ := serve(t, &testObserver{node: "node-a", history: all}, "127.0.0.1:0")
	client := dial(t, addr)
	req := &flowv1.ObserveRequest{Last: 7, Allowlist: []*flowv1.FlowFilter{{DestinationNamespace: []string{"shop"}, Verdict: []flowv1.Verdict{flowv1.Verdict_VERDICT_DENIED}}}}
	var got []*flowv1.Flow
	var nodes []flow.NodeState
	err := (&flow.ClientSource{Client: client, Node: "node-a"}).Observe(context.Background(), req, func(b flow.Batch) error {
		got = append(got, b.Flows...)
		nodes = append(nodes, b.Nodes...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	q, _ := flow.CompileQuery(req)
	want := q.History(all)
	if len(got) != 7 || len(want) != 7 {
		t.Fatalf("got %d flows, want 7 (history gives %d)", len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("flow %d differs after the gRPC round trip", i)
		}
	}
	if len(nodes) != 1 || !nodes[0].Connected || nodes[0].Node != "node-a" {
		t.Fatalf("node states = %+v", nodes)
	}
	// A bad filter is the server's InvalidArgument, naming the value.
	err = (&flow.ClientSource{Client: client, Node: "node-a"}).Observe(context.Background(),
		&flowv1.ObserveRequest{Allowlist: []*flowv1.FlowFilter{{SourceIp: []string{"nope"}}}}, func(flow.Batch) error { return nil })
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad filter: %v", err)
	}
	st, err := client.Status(context.Background(), &flowv1.StatusRequest{})
	if err != nil || st.GetNode() != "node-a" {
		t.Fatalf("Status = %v, %v", st, err)
	}
}

// TestMergeReconnects: two agents stream into one consumer; one restarts;
// the merge shows it down, reconnects with back-off, and its flows resume.
func TestMergeReconnects(t *testing.T) {
	all := sampleFlows()
	a := &testObserver{node: "node-a", live: make(chan *flowv1.Flow)}
	b := &testObserver{node: "node-b", live: make(chan *flowv1.Flow)}
	addrA, _ := serve(t, a, "127.0.0.1:0")
	addrB, srvB := serve(t, b, "127.0.0.1:0")
	m := &flow.Merge{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Sources: map[string]flow.Source{
		"node-a": &flow.ClientSource{Client: dial(t, addrA), Node: "node-a"},
		"node-b": &flow.ClientSource{Client: dial(t, addrB), Node: "node-b"},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	var events []string // "up node", "down node", "flow node"
	got := make(chan struct{}, 1000)
	errc := make(chan error, 1)
	go func() {
		errc <- m.Observe(ctx, &flowv1.ObserveRequest{Follow: true}, func(bt flow.Batch) error {
			mu.Lock()
			defer mu.Unlock()
			for _, n := range bt.Nodes {
				if n.Connected {
					events = append(events, "up "+n.Node)
				} else {
					events = append(events, "down "+n.Node)
				}
			}
			for _, f := range bt.Flows {
				events = append(events, "flow "+f.GetNode())
			}
			got <- struct{}{}
			return nil
		})
	}()
	has := func(e string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, x := range events {
			if x == e {
				return true
			}
		}
		return false
	}
	waitFor := func(e string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for !has(e) {
			select {
			case <-got:
			case <-deadline:
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("no %q; events: %v", e, events)
			}
		}
	}
	send := func(o *testObserver, f *flowv1.Flow) {
		g := proto.Clone(f).(*flowv1.Flow)
		g.Node = o.node
		select {
		case o.live <- g:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: nobody observing", o.node)
		}
	}
	waitFor("up node-a")
	waitFor("up node-b")
	send(a, all[0])
	send(b, all[1])
	waitFor("flow node-a")
	waitFor("flow node-b")

	srvB.Stop() // the agent on node-b restarts
	waitFor("down node-b")
	mu.Lock()
	events = nil
	mu.Unlock()
	b2 := &testObserver{node: "node-b", live: b.live}
	serve(t, b2, addrB)
	waitFor("up node-b")
	send(b2, all[2])
	waitFor("flow node-b")

	cancel()
	if err := <-errc; err != context.Canceled {
		t.Fatalf("Observe = %v, want context.Canceled", err)
	}
}
