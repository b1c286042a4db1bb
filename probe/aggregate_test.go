//go:build linux

package probe

import (
	"testing"
	"time"

	"github.com/cilium/ebpf"
	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// TestAggregatedFlows: with an aggregation interval, real connections b -> a
// give one new-flow record and one TCP end record per interval; the others
// are counted in the kernel, under the key without the client's port, with
// their ends' counters summed. Every connection is accounted for exactly
// once. Drops are recorded one by one. With the interval off again, each
// connection has its record.
func TestAggregatedFlows(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t, false)
	a, b, c := tp.addPod(t, "a"), tp.addPod(t, "b"), tp.addPod(t, "c")
	const port, sent, answered, conns = 82, 100, 1000, 20
	a.exchangeServer(t, port, sent, answered)
	if err := b.exchange(a.ip4, port, sent, answered, 0); err != nil { // neighbour discovery
		t.Fatal(err)
	}
	cfg := testCfg
	cfg.AggregateInterval = time.Minute // every repeat of this test falls in one interval
	p := loadAttached(t, tp.node, cfg)
	if _, err := p.Apply(aOnlyFromB(t, a, b, c)); err != nil {
		t.Fatal(err)
	}
	ev := collect(t, p)
	ends, err := p.OpenTCPFlowEnds(20 * time.Millisecond)
	if err != nil {
		t.Fatalf("OpenTCPFlowEnds: %v", err)
	}
	defer ends.Close()
	ours := func(e *FlowEnd) bool { return e.Orig.Dport == port }

	for range conns {
		if err := b.exchange(a.ip4, port, sent, answered, 0); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if _, err := c.connect("tcp", a.ip4, port, 200*time.Millisecond); err == nil {
			t.Fatal("c -> a connected: the policy admits only b")
		}
	}
	time.Sleep(100 * time.Millisecond)
	var newRecs, drops int
	for _, e := range ev.drain() {
		src, dst := TupleAddrs(e.Tuple)
		switch {
		case e.Tuple.Dport != port || dst != a.ip4:
		case src == b.ip4 && e.Type == EventNewFlow:
			newRecs++
		case src == c.ip4 && e.Type == EventDrop:
			drops++
		}
	}
	// A SYN retransmitted inside the timeout is judged again: at least one
	// drop record per attempt.
	if newRecs != 1 || drops < 3 {
		t.Fatalf("b -> a: %d new-flow records, want 1 (the rest counted); c -> a: %d drop records, want >= 3", newRecs, drops)
	}
	endRecs := drainFlowEnds(t, ends, ours)
	if len(endRecs) != 1 {
		t.Fatalf("%d TCP end records of b -> a, want 1 (the rest counted)", len(endRecs))
	}

	newKey := func(k *NewFlowAggregateKey) bool {
		src, dst := TupleAddrs(k.Tuple)
		return src == b.ip4 && dst == a.ip4 && k.Tuple.Dport == port
	}
	var counted uint64
	var keys int
	if err := p.ReadNewFlowAggregates(func(k *NewFlowAggregateKey, agg *NewFlowAggregate) {
		if !newKey(k) {
			return
		}
		keys++
		counted += agg.Count
		if k.Tuple.Sport != 0 || agg.Sample.Version != EventVersion || agg.Sample.Tuple.Sport == 0 ||
			agg.Sample.SrcIdentity == 0 || agg.Sample.IngressReason != ReasonAllowedByRule || agg.Sample.IngressRule != k.IngressRule {
			t.Errorf("aggregate key %+v sample %+v: want the key without the client's port and the recorded flow as sample", k, agg.Sample)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if keys != 1 || counted != conns-1 {
		t.Fatalf("b -> a: %d keys counting %d flows, want 1 key counting %d", keys, counted, conns-1)
	}
	var endAgg EndAggregate
	if err := p.ReadEndAggregates(func(k *EndAggregateKey, agg *EndAggregate) {
		if k.Orig.Dport == port {
			if endAgg.Count != 0 {
				t.Errorf("a second end key %+v", k)
			}
			endAgg = *agg
		}
	}); err != nil {
		t.Fatal(err)
	}
	src, dst := TupleAddrs(endAgg.Orig)
	if endAgg.Count != conns-1 || src != b.ip4 || dst != a.ip4 || endAgg.Orig.Sport != 0 || endAgg.Status&EndSocket == 0 {
		t.Fatalf("end aggregate %+v, want %d ends of b -> a:%d without the client's port", endAgg, conns-1, port)
	}
	// Each end: sent bytes from the client, answered from the server, a few
	// segments each way, a lifetime.
	if endAgg.BytesOrig != (conns-1)*sent || endAgg.BytesReply != (conns-1)*answered ||
		endAgg.PacketsOrig < 2*(conns-1) || endAgg.PacketsReply < 2*(conns-1) || endAgg.DurationNs == 0 {
		t.Fatalf("end aggregate counters %+v, want the sums of %d exchanges of %d/%d bytes", endAgg, conns-1, sent, answered)
	}
	if want := endRecs[0].BytesOrig; want != sent {
		t.Errorf("the recorded end: %d bytes sent, want %d", want, sent)
	}
	st, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Aggregated < conns-1 || st.FlowEndsAggregated < conns-1 {
		t.Errorf("counters: %d aggregated flows, %d aggregated ends; want >= %d each", st.Aggregated, st.FlowEndsAggregated, conns-1)
	}

	// Off again: a record per connection; the aggregates stop counting.
	cfg.AggregateInterval = 0
	if err := p.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := b.exchange(a.ip4, port, sent, answered, 0); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	newRecs = 0
	for _, e := range ev.drain() {
		if src, _ := TupleAddrs(e.Tuple); src == b.ip4 && e.Tuple.Dport == port && e.Type == EventNewFlow {
			newRecs++
		}
	}
	if n := len(drainFlowEnds(t, ends, ours)); newRecs != 5 || n != 5 {
		t.Fatalf("interval off: %d new-flow and %d end records of 5 connections", newRecs, n)
	}
	counted = 0
	_ = p.ReadNewFlowAggregates(func(k *NewFlowAggregateKey, agg *NewFlowAggregate) {
		if newKey(k) {
			counted += agg.Count
		}
	})
	if counted != conns-1 {
		t.Fatalf("interval off: the aggregate counts %d, want still %d", counted, conns-1)
	}
}

// TestAggregationTowardsRemotePods: egress towards a pod on another node is
// judged again there, so its repeats are counted only while the key's
// connections are answered (a local client's socket became ESTABLISHED
// within two intervals): with the socket-state program off, or towards a
// port that refuses, every connection keeps its record; once answered, the
// repeats are counted.
func TestAggregationTowardsRemotePods(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t, false)
	b, y := tp.addPod(t, "b"), tp.addPod(t, "y")
	const port, closed, gone, sent, answered = 83, 84, 85, 10, 10
	y.exchangeServer(t, port, sent, answered)
	if err := b.exchange(y.ip4, port, sent, answered, 0); err != nil { // neighbour discovery
		t.Fatal(err)
	}
	remote := podObject(y, "x", map[string]string{"app": "y"})
	remote.Spec.NodeName = "another-node" // y's address is a pod of another node
	dp, err := policy.Compile(&policy.Snapshot{Pods: []*corev1.Pod{podObject(b, "x", map[string]string{"app": "b"}), remote}}, testNode)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testCfg
	cfg.AggregateInterval = time.Minute
	p := loadAttached(t, tp.node, cfg)
	if _, err := p.Apply(dp); err != nil {
		t.Fatal(err)
	}
	ev := collect(t, p)
	records := func(dport uint16) int {
		time.Sleep(100 * time.Millisecond)
		n := 0
		for _, e := range ev.drain() {
			if src, dst := TupleAddrs(e.Tuple); src == b.ip4 && dst == y.ip4 && e.Tuple.Dport == dport && e.Type == EventNewFlow {
				if e.DstEndpoint != 0 || e.DstIdentity < policy.FirstPodIdentity {
					t.Fatalf("y is not a remote pod to the datapath: %+v", e)
				}
				n++
			}
		}
		return n
	}
	connect := func(t *testing.T, port, n int) {
		for range n {
			if err := b.exchange(y.ip4, port, sent, answered, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	refused := func(port, n int) {
		for range n {
			if _, err := b.connect("tcp", y.ip4, port, time.Second); err == nil {
				t.Fatalf("b -> y:%d connected", port)
			}
		}
	}
	// No socket-state program: nothing marks the key answered.
	connect(t, port, 5)
	if n := records(port); n != 5 {
		t.Fatalf("towards a remote pod, nothing answered known: %d records of 5 connections, want 5", n)
	}
	ends, err := p.OpenTCPFlowEnds(20 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer ends.Close()
	// A refused port never establishes: every attempt keeps its record.
	refused(closed, 4)
	if n := records(closed); n != 4 {
		t.Fatalf("towards a refused port: %d records of 4 attempts, want 4", n)
	}
	// Answered: the first connection marks the key, the repeats are counted.
	connect(t, port, 10)
	if n := records(port); n > 2 {
		t.Fatalf("towards a remote pod that answers: %d records of 10 connections, want at most 2 (the rest counted)", n)
	}
	// A key answered, then failing (its server gone, as when the remote
	// node starts dropping): the first failed connect is still counted, it
	// forgets the key, and every attempt after it keeps its record.
	t.Run("server", func(t *testing.T) { // its listener closes with the subtest
		y.exchangeServer(t, gone, sent, answered)
		connect(t, gone, 10)
	})
	if n := records(gone); n > 2 {
		t.Fatalf("towards a remote pod that answered: %d records of 10 connections, want at most 2", n)
	}
	refused(gone, 5)
	if n := records(gone); n < 4 {
		t.Fatalf("towards a key answered, then refused: %d records of 5 failed attempts, want at least 4 (only the first counted)", n)
	}
}

// TestReadAllInBatches: readAll returns every entry of a map larger than
// one batch, each once.
func TestReadAllInBatches(t *testing.T) {
	requireRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.LRUHash, KeySize: 4, ValueSize: 8, MaxEntries: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const n = 3*aggBatch + 17
	for i := range uint32(n) {
		if err := m.Put(i, uint64(i)*10); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[uint32]bool{}
	if err := readAll(m, func(k *uint32, v *uint64) {
		if seen[*k] || *v != uint64(*k)*10 {
			t.Errorf("entry %d -> %d: read twice or wrong", *k, *v)
		}
		seen[*k] = true
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Fatalf("read %d entries of %d", len(seen), n)
	}
}
