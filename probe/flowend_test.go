//go:build linux

package probe

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFlowEnds checks the kernel's flow-end records: a connection between
// two local pods gets one record, when conntrack destroys its entry, with
// both tuples and (nf_conntrack_acct=1) its counters; connections of
// another namespace's conntrack get none, nor do any once the reader is
// closed.
func TestFlowEnds(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t, false)
	a, c := tp.addPod(t, "a"), tp.addPod(t, "c")
	tp.node.run(t, "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1", "net.netfilter.nf_conntrack_timestamp=1")
	a.serve(t, 80)
	waitReachable(t, c, 80, a)
	p := loadAttached(t, tp.node, testCfg)
	dp := abDatapath(t, a, c)
	if _, err := p.Apply(dp); err != nil {
		t.Fatal(err)
	}
	rd, err := p.OpenFlowEnds(int(tp.node.h), 20*time.Millisecond)
	if errors.Is(err, ErrFlowEndsUnsupported) && errors.Is(err, unix.EPERM) {
		// This machine's kernel (6.18, Firecracker) refuses fentry programs
		// with EPERM even to root with every capability; the agent falls
		// back to netlink events there.
		t.Skipf("the kernel refuses the fentry program: %v", err)
	}
	if err != nil {
		t.Fatalf("OpenFlowEnds: %v", err)
	}
	defer rd.Close()
	tp.node.run(t, "conntrack", "-F")
	drain := func() []FlowEnd { return drainFlowEnds(t, rd, func(*FlowEnd) bool { return true }) }
	drain()
	const conns = 20
	for range conns {
		if got, err := c.connect("tcp", a.ip4, 80, time.Second); err != nil || got != "a" {
			t.Fatalf("connect: %q %v", got, err)
		}
	}
	if got := drain(); len(got) != 0 {
		t.Fatalf("%d records before the entries were destroyed", len(got))
	}
	// Traffic of another namespace's conntrack: not the node's.
	tp.node.run(t, "conntrack", "-F")
	ends := drain()
	if len(ends) != conns {
		t.Fatalf("%d records for %d connections", len(ends), conns)
	}
	for _, e := range ends {
		src, dst := TupleAddrs(e.Orig)
		rsrc, _ := TupleAddrs(e.Reply)
		if e.Type != EventEnd || e.Protocol != unix.IPPROTO_TCP || e.Family != 4 || src != c.ip4 || dst != a.ip4 || rsrc != a.ip4 ||
			e.Orig.Dport != 80 || e.Reply.Sport != 80 {
			t.Fatalf("record %+v", e)
		}
		if e.PacketsOrig < 3 || e.PacketsReply < 2 || e.BytesOrig == 0 || e.BytesReply == 0 {
			t.Errorf("counters %d/%d packets, %d/%d bytes", e.PacketsOrig, e.PacketsReply, e.BytesOrig, e.BytesReply)
		}
		if e.StartRealNs == 0 || time.Since(time.Unix(0, int64(e.StartRealNs))) > time.Minute {
			t.Errorf("start %d", e.StartRealNs)
		}
	}
	st, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.FlowEnds != conns || st.FlowEndsLost != 0 {
		t.Errorf("counters: %d ends, %d lost", st.FlowEnds, st.FlowEndsLost)
	}
	// A pod's own conntrack (another namespace) is not the node's.
	a.nft(t, "table inet cstct { chain in { type filter hook input priority 0; ct state new counter; } }")
	for range 3 {
		c.connect("tcp", a.ip4, 80, time.Second)
	}
	a.run(t, "conntrack", "-F")
	if got := drain(); len(got) != 0 {
		t.Errorf("%d records for a pod namespace's conntrack", len(got))
	}
	rd.Close()
	c.connect("tcp", a.ip4, 80, time.Second)
	tp.node.run(t, "conntrack", "-F")
	if st2, _ := p.Stats(); st2.FlowEnds != st.FlowEnds {
		t.Errorf("records written after Close: %d", st2.FlowEnds-st.FlowEnds)
	}
}

// TestTCPFlowEnds checks the TCP flow-end records from socket states: one
// per established connection with a local endpoint, from its client when
// both ends are local, oriented client to server, with the socket's
// counters and start; none for sockets of other addresses, for a SYN the
// policy dropped, for a refused connection, nor once the reader is closed.
func TestTCPFlowEnds(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t, false)
	a, b, c := tp.addPod(t, "a"), tp.addPod(t, "b"), tp.addPod(t, "c")
	x, y := tp.addPod(t, "x"), tp.addPod(t, "y") // not endpoints of the datapath
	const vip, port, sent, answered = "10.77.255.10", 81, 100, 1000
	for _, s := range []*pod{a, b, y} {
		s.exchangeServer(t, port, sent, answered)
	}
	tp.node.nft(t, fmt.Sprintf(`table ip svc {
  chain pre {
    type nat hook prerouting priority -100;
    ip daddr %s tcp dport 80 dnat to %s:%d
  }
}`, vip, a.ip4, port))
	const hold = 50 * time.Millisecond
	type conn struct {
		from     *pod
		to       netip.Addr
		dport    uint16
		client   bool // the record is the client socket's
		recorded bool
	}
	vipAddr := netip.MustParseAddr(vip)
	cases := []conn{
		{from: b, to: a.ip4, dport: port, client: true, recorded: true},  // both local: the client's only
		{from: b, to: a.ip6, dport: port, client: true, recorded: true},  // IPv6
		{from: b, to: vipAddr, dport: 80, client: true, recorded: true},  // a Service: before DNAT
		{from: x, to: b.ip4, dport: port, client: false, recorded: true}, // the server's
		{from: b, to: y.ip4, dport: port, client: true, recorded: true},  // the client's
		{from: x, to: y.ip4, dport: port},                                // no endpoint
	}
	// Neighbour discovery before the datapath (as waitReachable).
	for _, cs := range cases {
		if err := cs.from.exchange(cs.to, int(cs.dport), sent, answered, 0); err != nil {
			t.Fatalf("%s -> %s: %v", cs.from.podName, cs.to, err)
		}
	}
	p := loadAttached(t, tp.node, testCfg)
	if _, err := p.Apply(aOnlyFromB(t, a, b, c)); err != nil {
		t.Fatal(err)
	}
	// The records of this test's connections (port 81, 9, the Service):
	// the program is scoped by the endpoint map, not by network namespace,
	// so probe tests running at the same time with the same pod addresses
	// in their own namespaces (port 80) are seen too.
	ours := func(e *FlowEnd) bool {
		_, dst := TupleAddrs(e.Orig)
		return e.Orig.Dport == port || e.Orig.Dport == 9 || dst == netip.MustParseAddr(vip)
	}
	drain := func(rd *FlowEndReader) []FlowEnd { return drainFlowEnds(t, rd, ours) }
	rd, err := p.OpenTCPFlowEnds(20 * time.Millisecond)
	if err != nil {
		t.Fatalf("OpenTCPFlowEnds (the kernel must load and attach a tp_btf program on %s): %v", TCPFlowEndHook, err)
	}
	defer rd.Close()
	if info, err := rd.prog.Info(); err == nil {
		n, _ := info.VerifiedInstructions()
		insns, _ := info.Instructions()
		t.Logf("%s: %d instructions, %d verified", TCPFlowEndHook, len(insns), n)
	}
	if got := drain(rd); len(got) != 0 {
		t.Fatalf("%d records of connections closed before the reader opened", len(got))
	}
	for _, cs := range cases {
		start := time.Now()
		if err := cs.from.exchange(cs.to, int(cs.dport), sent, answered, hold); err != nil {
			t.Fatalf("%s -> %s: %v", cs.from.podName, cs.to, err)
		}
		var want []conn
		if cs.recorded {
			want = append(want, cs)
		}
		got := drain(rd)
		if len(got) != len(want) {
			t.Fatalf("%s -> %s:%d: %d records, want %d: %+v", cs.from.podName, cs.to, cs.dport, len(got), len(want), got)
		}
		if len(want) == 0 {
			continue
		}
		e := got[0]
		src, dst := TupleAddrs(e.Orig)
		rsrc, rdst := TupleAddrs(e.Reply)
		wantSrc := cs.from.ip4
		if cs.to.Is6() {
			wantSrc = cs.from.ip6
		}
		family := uint8(4)
		if cs.to.Is6() {
			family = 6
		}
		if e.Type != EventEnd || e.Protocol != unix.IPPROTO_TCP || e.Family != family || !IsSocketEnd(&e) ||
			(e.Status&EndClient != 0) != cs.client || src != wantSrc || dst != cs.to || e.Orig.Dport != cs.dport ||
			rsrc != cs.to || rdst != wantSrc || e.Reply.Sport != cs.dport || e.Reply.Dport != e.Orig.Sport {
			t.Errorf("%s -> %s:%d: record %+v", cs.from.podName, cs.to, cs.dport, e)
		}
		// The socket's payload bytes; segments: SYN or SYN-ACK, data, FIN
		// and ACKs at least.
		if e.BytesOrig != sent || e.BytesReply != answered || e.PacketsOrig < 3 || e.PacketsReply < 3 {
			t.Errorf("%s -> %s: counters %d/%d segments, %d/%d bytes, want %d/%d bytes",
				cs.from.podName, cs.to, e.PacketsOrig, e.PacketsReply, e.BytesOrig, e.BytesReply, sent, answered)
		}
		var mono unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono)
		took := time.Since(start)
		if d := time.Duration(e.TimestampNs - e.StartRealNs); e.StartRealNs == 0 || d < hold || d > took {
			t.Errorf("%s -> %s: duration %v, want %v..%v", cs.from.podName, cs.to, d, hold, took)
		}
		if age := time.Duration(uint64(mono.Nano()) - e.TimestampNs); age < 0 || age > took {
			t.Errorf("%s -> %s: ended %v ago", cs.from.podName, cs.to, age)
		}
	}
	// A SYN the policy drops (c may not reach a) and a refused connection
	// (no listener) never establish: no record, as conntrack confirmed no
	// entry for the first.
	if _, err := c.connect("tcp", a.ip4, port, 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("c -> a: %v, want a timeout", err)
	}
	if _, err := b.connect("tcp", a.ip4, 9, time.Second); err == nil {
		t.Fatal("b -> a:9 connected")
	}
	if got := drain(rd); len(got) != 0 {
		t.Errorf("%d records for connections never established: %+v", len(got), got)
	}
	st, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.FlowEnds < 5 || st.FlowEndsLost != 0 { // more: another test's (see ours)
		t.Errorf("counters: %d ends, %d lost", st.FlowEnds, st.FlowEndsLost)
	}
	rd.Close()
	if err := b.exchange(a.ip4, port, sent, answered, 0); err != nil {
		t.Fatal(err)
	}
	if st2, _ := p.Stats(); st2.FlowEnds != st.FlowEnds {
		t.Errorf("records written after Close: %d", st2.FlowEnds-st.FlowEnds)
	}
}

// exchangeServer serves TCP on port (IPv4 and IPv6): it reads sent bytes,
// answers answered bytes and closes.
func (p *pod) exchangeServer(t testing.TB, port, sent, answered int) {
	t.Helper()
	err := p.in(func() error {
		for _, addr := range []netip.Addr{p.ip4, p.ip6} {
			netw := map[bool]string{false: "tcp4", true: "tcp6"}[addr.Is6()]
			err := acceptLoop(t, netw, netip.AddrPortFrom(addr, uint16(port)).String(), func(c net.Conn) {
				go func() {
					defer c.Close()
					c.SetDeadline(time.Now().Add(5 * time.Second))
					if _, err := io.ReadFull(c, make([]byte, sent)); err == nil {
						c.Write(make([]byte, answered))
					}
				}()
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("serving in %s: %v", p.podName, err)
	}
}

// exchange connects from p to addr:port, waits hold, sends sent bytes, reads
// the answer to its end and closes.
func (p *pod) exchange(addr netip.Addr, port, sent, answered int, hold time.Duration) error {
	return p.in(func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(addr, uint16(port)).String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		time.Sleep(hold)
		if _, err := c.Write(make([]byte, sent)); err != nil {
			return err
		}
		got, err := io.ReadAll(c)
		if err != nil {
			return err
		}
		if len(got) != answered {
			return fmt.Errorf("answer of %d bytes, want %d", len(got), answered)
		}
		return nil
	})
}

// drainFlowEnds reads rd's records until a polling interval passes without
// one, keeping those keep accepts.
func drainFlowEnds(t *testing.T, rd *FlowEndReader, keep func(*FlowEnd) bool) []FlowEnd {
	t.Helper()
	var out []FlowEnd
	for {
		var e FlowEnd
		err := rd.Read(&e)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if keep(&e) {
			out = append(out, e)
		}
	}
}
