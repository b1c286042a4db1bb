package flow_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// chanSource emits each batch sent on its channel, and ends when it closes.
type chanSource chan flow.Batch

func (c chanSource) Observe(ctx context.Context, _ *flowv1.ObserveRequest, emit func(flow.Batch) error) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case b, ok := <-c:
			if !ok {
				return nil
			}
			if err := emit(b); err != nil {
				return err
			}
		}
	}
}

const (
	ingress = flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS
	egress  = flowv1.TrafficDirection_TRAFFIC_DIRECTION_EGRESS
)

// record is one node's record of web (node-a) -> db (node-b), sport 40000.
func record(node string, dir flowv1.TrafficDirection, denied bool, sport uint32, refs ...*flowv1.PolicyRef) *flowv1.Flow {
	f := &flowv1.Flow{
		Time: timestamppb.New(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)), Node: node,
		Type: flowv1.EventType_EVENT_TYPE_NEW, Verdict: flowv1.Verdict_VERDICT_ALLOWED, Reason: flowv1.Reason_REASON_ALLOWED_BY_RULE,
		Direction:   dir,
		Ip:          &flowv1.IP{Source: "10.244.1.5", Destination: "10.244.2.7"},
		L4:          &flowv1.Layer4{Protocol: flowv1.Protocol_PROTOCOL_TCP, SourcePort: sport, DestinationPort: 5432},
		Source:      &flowv1.Endpoint{Namespace: "x", Pod: "web", NodeName: "node-a"},
		Destination: &flowv1.Endpoint{Namespace: "y", Pod: "db", NodeName: "node-b"},
	}
	if denied {
		f.Type, f.Verdict, f.Reason, f.IsolatedBy = flowv1.EventType_EVENT_TYPE_DROP, flowv1.Verdict_VERDICT_DENIED, flowv1.Reason_REASON_NO_RULE_MATCHED, refs
	} else {
		f.AllowedBy = refs
	}
	if node == "node-a" {
		f.Service = &flowv1.Service{Namespace: "y", Name: "db", Ip: "10.96.0.9", Port: 5432}
	}
	return f
}

type collector struct {
	mu    sync.Mutex
	flows []*flowv1.Flow
	at    []time.Time
}

func (c *collector) emit(b flow.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range b.Flows {
		c.flows = append(c.flows, f)
		c.at = append(c.at, time.Now())
	}
	return nil
}

func (c *collector) len() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.flows) }

// runPair pairs batches as a one-shot query and as a follow; both must agree.
func runPair(t *testing.T, window time.Duration, batches ...flow.Batch) *collector {
	t.Helper()
	one := runPairReq(t, window, &flowv1.ObserveRequest{}, batches...)
	c := runPairReq(t, window, &flowv1.ObserveRequest{Follow: true}, batches...)
	if len(one.flows) != len(c.flows) {
		t.Fatalf("one-shot paired into %d flows, follow into %d", len(one.flows), len(c.flows))
	}
	return c
}

func runPairReq(t *testing.T, window time.Duration, req *flowv1.ObserveRequest, batches ...flow.Batch) *collector {
	t.Helper()
	src := make(chanSource, len(batches))
	for _, b := range batches {
		src <- b
	}
	close(src)
	c := &collector{}
	if err := (&flow.Pair{Source: src, Window: window}).Observe(context.Background(), req, c.emit); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPairMergesBothObservationPoints(t *testing.T) {
	eg := record("node-a", egress, false, 40000, ref("x", "web-out", egress, 0))
	in := record("node-b", ingress, true, 40000, ref("y", "db-in", ingress, -1))
	// The ingress record first: arrival order across nodes is arbitrary.
	c := runPair(t, time.Minute, flow.Batch{Flows: []*flowv1.Flow{in}}, flow.Batch{Flows: []*flowv1.Flow{eg}})
	if len(c.flows) != 1 {
		t.Fatalf("got %d flows, want the pair merged into 1", len(c.flows))
	}
	m := c.flows[0]
	obs := m.GetObservations()
	if len(obs) != 2 || obs[0].GetNode() != "node-a" || obs[0].GetDirection() != egress || obs[1].GetNode() != "node-b" ||
		obs[1].GetDirection() != ingress || obs[1].GetVerdict() != flowv1.Verdict_VERDICT_DENIED {
		t.Errorf("observations %v", obs)
	}
	if m.GetVerdict() != flowv1.Verdict_VERDICT_DENIED || m.GetDirection() != ingress || m.GetType() != flowv1.EventType_EVENT_TYPE_DROP ||
		len(m.GetIsolatedBy()) != 1 || m.GetIsolatedBy()[0].GetName() != "db-in" || len(m.GetAllowedBy()) != 0 {
		t.Errorf("merged verdict is not the denying side's: %v", m)
	}
	if m.GetService().GetName() != "db" {
		t.Errorf("the source node's Service is lost: %v", m.GetService())
	}
	line := flow.CompactLine(m, time.UTC)
	for _, want := range []string{"node-a+node-b", "x/web:40000 -> y/db:5432", "DENIED",
		"egress@node-a allowed-by x/web-out (egress rule 0); ingress@node-b DENIED isolated-by y/db-in (ingress)"} {
		if !strings.Contains(line, want) {
			t.Errorf("compact line lacks %q:\n%s", want, line)
		}
	}
}

func TestPairAllowedBothSides(t *testing.T) {
	eg := record("node-a", egress, false, 40000, ref("x", "web-out", egress, 0))
	in := record("node-b", ingress, false, 40000, ref("y", "db-in", ingress, 1))
	c := runPair(t, time.Minute, flow.Batch{Flows: []*flowv1.Flow{eg, in}})
	if len(c.flows) != 1 {
		t.Fatalf("got %d flows", len(c.flows))
	}
	m := c.flows[0]
	if m.GetVerdict() != flowv1.Verdict_VERDICT_ALLOWED || len(m.GetAllowedBy()) != 2 || m.GetReason() != flowv1.Reason_REASON_ALLOWED_BY_RULE {
		t.Errorf("merged allowed flow: %v", m)
	}
}

func TestPairPassesWhatHasNoPartner(t *testing.T) {
	sameNode := record("node-a", ingress, false, 1)
	sameNode.Destination.NodeName = "node-a"
	fromNode := record("node-b", ingress, false, 2)
	fromNode.Source = &flowv1.Endpoint{NodeName: "node-a", HostNetwork: true}
	egressDrop := record("node-a", egress, true, 3, ref("x", "web-out", egress, -1))
	world := record("node-a", egress, false, 4)
	world.Destination = &flowv1.Endpoint{}
	// Two nodes' kernel aggregates of the same key count different
	// intervals' repeats: never merged.
	aggEg, aggIn := record("node-a", egress, false, 0), record("node-b", ingress, false, 0)
	aggEg.Connections, aggIn.Connections = 40, 37
	src := make(chanSource, 1)
	c := &collector{}
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- (&flow.Pair{Source: src, Window: time.Hour}).Observe(context.Background(), &flowv1.ObserveRequest{Follow: true}, c.emit)
	}()
	src <- flow.Batch{Flows: []*flowv1.Flow{sameNode, fromNode, egressDrop, world, aggEg, aggIn}}
	for c.len() < 6 {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("flows without a partner were held: %d of 6 out", c.len())
		}
		time.Sleep(time.Millisecond)
	}
	close(src)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, f := range c.flows {
		if len(f.GetObservations()) != 0 {
			t.Errorf("merged a flow without a partner: %v", f)
		}
	}
}

// A record whose partner never comes goes out alone after the window; the
// number held is bounded.
func TestPairWindowAndBound(t *testing.T) {
	src := make(chanSource, 1)
	c := &collector{}
	done := make(chan error, 1)
	const window = 50 * time.Millisecond
	go func() {
		done <- (&flow.Pair{Source: src, Window: window, MaxPending: 2}).Observe(context.Background(), &flowv1.ObserveRequest{Follow: true}, c.emit)
	}()
	sent := time.Now()
	src <- flow.Batch{Flows: []*flowv1.Flow{record("node-a", egress, false, 1), record("node-a", egress, false, 2), record("node-a", egress, false, 3)}}
	for c.len() < 3 {
		if time.Since(sent) > 5*time.Second {
			t.Fatalf("held records never went out: %d of 3", c.len())
		}
		time.Sleep(time.Millisecond)
	}
	close(src)
	<-done
	if d := c.at[0].Sub(sent); d > window/2 {
		t.Errorf("past MaxPending the oldest went out after %v, want at once", d)
	}
	for i := 1; i < 3; i++ {
		if d := c.at[i].Sub(sent); d < window || d > window+time.Second {
			t.Errorf("record %d went out after %v, want about the window %v", i, d, window)
		}
	}
	if c.flows[0].GetL4().GetSourcePort() != 1 {
		t.Errorf("not the oldest went out first: %v", c.flows[0])
	}
}

// A one-shot answer keeps its order; records farther apart than the window
// stay apart.
func TestPairAllKeepsOrder(t *testing.T) {
	eg := record("node-a", egress, false, 40000)
	other := record("node-a", egress, false, 1)
	other.Destination.NodeName = "node-a"
	in := record("node-b", ingress, false, 40000)
	late := record("node-b", ingress, false, 40000)
	late.Time = timestamppb.New(eg.Time.AsTime().Add(time.Minute))
	got := flow.PairAll([]*flowv1.Flow{eg, other, in, late}, time.Second)
	if len(got) != 3 || len(got[0].GetObservations()) != 2 || got[1] != other || got[2] != late {
		t.Fatalf("PairAll = %v", got)
	}
}

// The TUI's `/` filters node= and policy= see both points of a paired flow.
func TestFilterSeesBothObservationPoints(t *testing.T) {
	m := flow.MergePair(record("node-a", egress, false, 40000, ref("x", "web-out", egress, 0)),
		record("node-b", ingress, true, 40000, ref("y", "db-in", ingress, -1)))
	for _, tc := range []struct {
		kind  flow.FilterKind
		value string
	}{{flow.Node, "node-b"}, {flow.Node, "node-a"}, {flow.Policy, "x/web-out"}, {flow.Policy, "y/db-in"}} {
		var b flow.FilterBuilder
		if err := b.Add(tc.kind, tc.value); err != nil {
			t.Fatal(err)
		}
		f, err := flow.CompileFilter(b.Allowlist(), b.Denylist())
		if err != nil {
			t.Fatal(err)
		}
		if !f.Match(m) {
			t.Errorf("%v=%s does not match the paired flow", tc.kind, tc.value)
		}
	}
}

// An audited point counts by the verdict its packets followed, and the
// merged flow carries its would-be outcome.
func TestPairAudited(t *testing.T) {
	eg := record("node-a", egress, false, 40000, ref("x", "web-out", egress, 0))
	in := record("node-b", ingress, false, 40000, ref("y", "db-in", ingress, 1))
	in.Verdict = flowv1.Verdict_VERDICT_AUDIT
	in.Audit = &flowv1.Audit{WouldBe: flowv1.Verdict_VERDICT_DENIED, Reason: flowv1.Reason_REASON_NO_RULE_MATCHED,
		IsolatedBy: []*flowv1.PolicyRef{ref("y", "default-deny", ingress, -1)}}
	m := runPair(t, time.Minute, flow.Batch{Flows: []*flowv1.Flow{eg, in}}).flows
	if len(m) != 1 || m[0].GetVerdict() != flowv1.Verdict_VERDICT_AUDIT || flow.Enforced(m[0]) != flowv1.Verdict_VERDICT_ALLOWED ||
		m[0].GetAudit().GetWouldBe() != flowv1.Verdict_VERDICT_DENIED || m[0].GetObservations()[1].GetAudit() == nil {
		t.Fatalf("merged audited flow: %v", m)
	}
	if line := flow.CompactLine(m[0], time.UTC); !strings.Contains(line, "would-be DENIED isolated-by y/default-deny (ingress)") {
		t.Errorf("compact line: %s", line)
	}
	// Dropped (and audited: enforcing would allow) at ingress: the drop decides.
	eg2 := record("node-a", egress, false, 40001, ref("x", "web-out", egress, 0))
	in2 := record("node-b", ingress, true, 40001, ref("y", "db-in", ingress, -1))
	in2.Verdict = flowv1.Verdict_VERDICT_AUDIT
	in2.Audit = &flowv1.Audit{WouldBe: flowv1.Verdict_VERDICT_ALLOWED, Reason: flowv1.Reason_REASON_NOT_ISOLATED}
	m = runPair(t, time.Minute, flow.Batch{Flows: []*flowv1.Flow{eg2, in2}}).flows
	if len(m) != 1 || m[0].GetType() != flowv1.EventType_EVENT_TYPE_DROP || flow.Enforced(m[0]) != flowv1.Verdict_VERDICT_DENIED ||
		m[0].GetAudit().GetWouldBe() != flowv1.Verdict_VERDICT_ALLOWED || m[0].GetDirection() != ingress {
		t.Errorf("merged audited drop: %v", m)
	}
}
