//go:build linux

package probe

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

var pinSeq atomic.Int64

// testPinRoot is a unique pin root for one test, removed at the end.
func testPinRoot(t testing.TB) string {
	root := filepath.Join("/sys/fs/bpf", fmt.Sprintf("netpol-test-%d-%d", os.Getpid(), pinSeq.Add(1)))
	t.Cleanup(func() { os.RemoveAll(root) })
	return root
}

// loadAttached loads the datapath with its own pin root and attaches it in
// the node namespace; everything is uninstalled when the test ends.
func loadAttached(t testing.TB, node *testNS, cfg Config) *Probe {
	t.Helper()
	p, err := Load(Options{PinRoot: testPinRoot(t), Config: cfg})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Uninstall(); err != nil {
			t.Errorf("Uninstall: %v", err)
		}
	})
	if err := node.in(func() error { return p.Attach("node") }); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	return p
}

var testCfg = Config{DropEventsPerSec: 100000, DropEventsBurst: 100000, WakeupWatermark: 1, FlowEvents: true}

// collector drains events in the background.
type collector struct {
	evs  chan Event
	stop chan struct{}
	done chan struct{}
}

func collect(t testing.TB, p *Probe) *collector {
	t.Helper()
	rd, err := p.NewReader(20 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{evs: make(chan Event, 1<<16), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			select {
			case <-c.stop:
				return
			default:
			}
			var ev Event
			if err := rd.Read(&ev); err == nil {
				c.evs <- ev
			}
		}
	}()
	t.Cleanup(func() { close(c.stop); <-c.done; rd.Close() })
	return c
}

// drain returns the events received so far (waiting briefly for stragglers).
func (c *collector) drain() []Event {
	var out []Event
	deadline := time.After(150 * time.Millisecond)
	for {
		select {
		case ev := <-c.evs:
			out = append(out, ev)
		case <-deadline:
			return out
		}
	}
}

func ref(ns, name string) policy.PolicyRef {
	return policy.PolicyRef{Kind: policy.KindNetworkPolicy, Namespace: ns, Name: name}
}

// TestHandBuiltDatapath runs real packets through a hand-built Datapath:
// a's ingress allows only b on TCP 80 (IPv4 and IPv6), c is denied, and
// every drop event names a and its isolating policy.
func TestHandBuiltDatapath(t *testing.T) {
	requireRoot(t)
	for _, bridge := range []bool{false, true} {
		t.Run(map[bool]string{false: "routed", true: "bridge"}[bridge], func(t *testing.T) {
			tp := newTopology(t, bridge)
			a, b, c := tp.addPod(t, "a"), tp.addPod(t, "b"), tp.addPod(t, "c")
			a.serve(t, 80, 81)
			waitReachable(t, b, 80, a)
			waitReachable(t, c, 80, a)
			p := loadAttached(t, tp.node, testCfg)
			ev := collect(t, p)
			const ruleID = 100
			dp := &policy.Datapath{
				Identities: []policy.Identity{
					{ID: 300, Namespace: "x", IPs: []netip.Addr{a.ip4, a.ip6}},
					{ID: 301, Namespace: "x", IPs: []netip.Addr{b.ip4, b.ip6}},
					{ID: 302, Namespace: "x", IPs: []netip.Addr{c.ip4, c.ip6}},
				},
				Endpoints: []policy.Endpoint{{ID: 7, Namespace: "x", Name: "a", IPs: []netip.Addr{a.ip4, a.ip6}, Identity: 300,
					Ingress: policy.EndpointPolicy{Isolated: true, IsolatedBy: []policy.PolicyRef{ref("x", "allow-b")},
						Entries: []policy.Entry{{Rule: ruleID, Identity: 301, Protocol: "TCP", PortMin: 80, PortMax: 80}}}}},
				Rules: []policy.CompiledRule{{ID: ruleID, Rule: policy.RuleRef{Policy: ref("x", "allow-b"), Direction: policy.Ingress}, Peer: 0, Port: 0}},
			}
			if _, err := p.Apply(dp); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			usage := map[string]uint64{}
			for _, u := range p.MapUsage() {
				if u.Max == 0 {
					t.Errorf("map %s has no capacity", u.Name)
				}
				usage[u.Name] = u.Entries
			}
			// 3 identities x 2 addresses; a's 2 addresses; a's 2 directions.
			if usage["netpol_hosts"] != 6 || usage["netpol_ipcache"] != 0 || usage["netpol_endpoints"] != 2 || usage["netpol_policy_slots"] != 2 {
				t.Errorf("map usage %v", usage)
			}
			cases := []struct {
				from  *pod
				ip    netip.Addr
				port  int
				allow bool
			}{
				{b, a.ip4, 80, true}, {b, a.ip6, 80, true},
				{c, a.ip4, 80, false}, {c, a.ip6, 80, false},
				{b, a.ip4, 81, false}, {b, a.ip6, 81, false},
			}
			for _, tc := range cases {
				got, err := tc.from.connect("tcp", tc.ip, tc.port, 400*time.Millisecond)
				if tc.allow && (err != nil || got != "a") {
					t.Errorf("%s -> %s:%d: want answer from a, got %q, %v", tc.from.podName, tc.ip, tc.port, got, err)
				}
				if !tc.allow && err == nil {
					t.Errorf("%s -> %s:%d: want drop, got answer %q", tc.from.podName, tc.ip, tc.port, got)
				}
			}
			var drops, flows int
			for _, e := range ev.drain() {
				src, dst := TupleAddrs(e.Tuple)
				at := Attribute(dp, &e)
				switch e.Type {
				case EventDrop:
					drops++
					if e.DstEndpoint != 7 || dst.Unmap() != a.ip4 && dst != a.ip6 || len(at.DeniedBy) != 1 || at.DeniedBy[0].Name != "allow-b" || at.Direction != policy.Ingress {
						t.Errorf("drop event %v -> %v not attributed to a's ingress policy: %+v", src, dst, at)
					}
				case EventNewFlow:
					if e.Protocol != 6 || e.DstEndpoint != 7 {
						continue // e.g. neighbour discovery
					}
					flows++
					if e.IngressRule != ruleID || len(at.AllowedBy) != 1 {
						t.Errorf("flow event %v -> %v: ingress rule %d, want %d", src, dst, e.IngressRule, ruleID)
					}
				}
			}
			if drops < 4 || flows < 2 {
				t.Errorf("got %d drop and %d flow events, want >= 4 and >= 2", drops, flows)
			}
			st, err := p.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.NewDenied < 4 || st.Established == 0 {
				t.Errorf("stats %+v: want >= 4 denied and established packets", st)
			}
		})
	}
}
