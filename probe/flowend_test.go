//go:build linux

package probe

import (
	"errors"
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
	drain := func() []FlowEnd {
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
			out = append(out, e)
		}
	}
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
