//go:build linux

package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf/link"

	"github.com/kubectl-netpol/kubectl-netpol/internal/udpsink"
)

// sinkAt receives UDP on port 5000 of pod at, on both its addresses.
func sinkAt(t *testing.T, at *pod) *udpsink.Sink {
	return udpsink.Listen(t, at.in, netip.AddrPortFrom(at.ip4, 5000), netip.AddrPortFrom(at.ip6, 5000))
}

// reaches reports whether datagrams from p with source src reach pod to.
func reaches(t *testing.T, p *pod, src netip.Addr, to *pod, sink *udpsink.Sink) bool {
	t.Helper()
	dst := to.ip4
	if src.Is6() {
		dst = to.ip6
	}
	return sink.Reaches(t, p.in, src, netip.AddrPortFrom(dst, 5000))
}

// TestSetGuards: the guarded interfaces and their addresses become exactly
// what is asked, through address changes, removals, a process restart, an
// interface that disappears and an interface index the kernel reuses.
func TestSetGuards(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t, false)
	a, b, c := tp.addPod(t, "a"), tp.addPod(t, "b"), tp.addPod(t, "c")
	sink := sinkAt(t, a)
	// b can forge c's addresses and an extra one.
	extra := netip.MustParseAddr("10.77.0.99")
	b.run(t, "ip", "addr", "add", c.ip4.String()+"/32", "dev", "eth0")
	b.run(t, "ip", "addr", "add", extra.String()+"/32", "dev", "eth0")
	b.run(t, "ip", "-6", "addr", "add", c.ip6.String()+"/128", "dev", "eth0", "nodad")
	for _, src := range []netip.Addr{b.ip4, c.ip4, extra, c.ip6} {
		if !reaches(t, b, src, a, sink) {
			t.Fatalf("b -> a from %s does not pass even without a guard: the test proves nothing", src)
		}
	}
	ib, _ := hostIfindex(tp.node, b.hostIf)
	ic, _ := hostIfindex(tp.node, c.hostIf)

	root := testPinRoot(t)
	p, err := Load(Options{PinRoot: root, Config: testCfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Uninstall() })
	set := func(p *Probe, want map[int][]netip.Addr) {
		t.Helper()
		if err := tp.node.in(func() error { return p.SetGuards("node", want) }); err != nil {
			t.Fatalf("SetGuards(%v): %v", want, err)
		}
	}
	expect := func(p *Probe, want map[int][]netip.Addr) {
		t.Helper()
		for _, v := range want {
			slices.SortFunc(v, netip.Addr.Compare)
		}
		got, err := p.Guards("node")
		if err != nil {
			t.Fatal(err)
		}
		if !maps.EqualFunc(got, want, slices.Equal) {
			t.Errorf("Guards = %v, want %v", got, want)
		}
		// Nothing else in the map, and one pin per guarded interface.
		entries, err := p.guardEntries()
		if err != nil {
			t.Fatal(err)
		}
		for ifi, addrs := range entries {
			if len(addrs) != len(want[ifi]) {
				t.Errorf("map holds %d addresses for interface %d, want %v", len(addrs), ifi, want[ifi])
			}
		}
		pins, _ := guardPins(filepath.Join(p.PinDir(), "links", "node"))
		if len(pins) != len(want) {
			t.Errorf("pins %v, want one per interface of %v", slices.Collect(maps.Values(pins)), want)
		}
	}
	passes := func(p *pod, src netip.Addr, want bool) {
		t.Helper()
		if got := reaches(t, p, src, a, sink); got != want {
			t.Errorf("%s -> a from %s passes: %v, want %v", p.podName, src, got, want)
		}
	}

	set(p, map[int][]netip.Addr{ib: {b.ip4, b.ip6}, ic: {c.ip4, c.ip6}})
	expect(p, map[int][]netip.Addr{ib: {b.ip4, b.ip6}, ic: {c.ip4, c.ip6}})
	before, _ := p.Stats()
	passes(b, b.ip4, true)
	passes(b, b.ip6, true)
	passes(c, c.ip4, true)
	passes(b, c.ip4, false)
	passes(b, c.ip6, false)
	passes(b, extra, false)
	if after, _ := p.Stats(); after.SpoofDropped-before.SpoofDropped < 30 {
		t.Errorf("spoof drops counted: %d, want >= 30", after.SpoofDropped-before.SpoofDropped)
	}

	t.Log("b gains an address")
	set(p, map[int][]netip.Addr{ib: {b.ip4, b.ip6, extra}, ic: {c.ip4, c.ip6}})
	expect(p, map[int][]netip.Addr{ib: {b.ip4, b.ip6, extra}, ic: {c.ip4, c.ip6}})
	passes(b, extra, true)

	t.Log("c is no longer guarded, b loses the extra address")
	set(p, map[int][]netip.Addr{ib: {b.ip4, b.ip6}})
	expect(p, map[int][]netip.Addr{ib: {b.ip4, b.ip6}})
	passes(b, extra, false)
	passes(b, b.ip4, true)
	c.run(t, "ip", "addr", "add", extra.String()+"/32", "dev", "eth0")
	passes(c, extra, true) // c's link is gone

	t.Log("restart: a new process takes over the pinned guards")
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	passes(b, c.ip4, false) // still enforced without a process
	p2, err := Load(Options{PinRoot: root, Config: testCfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p2.Uninstall() })
	expect(p2, map[int][]netip.Addr{ib: {b.ip4, b.ip6}})
	set(p2, map[int][]netip.Addr{ib: {b.ip4, b.ip6}})
	if got, want := guardProgram(t, filepath.Join(p2.PinDir(), "links", "node", fmt.Sprintf("spoof_%d", ib))), progID(t, p2); got != want {
		t.Errorf("after SetGuards in the new process the link runs program %d, want the new one (%d)", got, want)
	}
	passes(b, b.ip4, true)
	passes(b, c.ip4, false)

	t.Log("b's interface disappears and a new pod's interface gets its index")
	tp.node.run(t, "ip", "link", "del", b.hostIf)
	if got, _ := p2.Guards("node"); len(got) != 0 {
		t.Errorf("Guards after the interface went away = %v, want none", got)
	}
	d := &pod{testNS: newNS(t, "pod"), podName: "d", ip4: netip.MustParseAddr("10.77.0.50"), ip6: netip.MustParseAddr("fd77::50"), hostIf: "hreuse"}
	tp.node.run(t, "ip", "link", "add", d.hostIf, "index", fmt.Sprint(ib), "type", "veth", "peer", "name", "eth0", "netns", d.name)
	tp.node.run(t, "ip", "link", "set", d.hostIf, "up")
	tp.node.run(t, "ip", "addr", "add", "169.254.1.1/32", "dev", d.hostIf)
	tp.node.run(t, "ip", "route", "add", d.ip4.String()+"/32", "dev", d.hostIf)
	d.run(t, "ip", "link", "set", "eth0", "up")
	d.run(t, "ip", "addr", "add", d.ip4.String()+"/32", "dev", "eth0")
	d.run(t, "ip", "addr", "add", b.ip4.String()+"/32", "dev", "eth0")
	d.run(t, "ip", "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
	d.run(t, "ip", "route", "add", "10.77.0.0/16", "via", "169.254.1.1", "dev", "eth0", "onlink")
	if got, _ := hostIfindex(tp.node, d.hostIf); got != ib {
		t.Fatalf("the new interface has index %d, want the reused %d", got, ib)
	}
	set(p2, map[int][]netip.Addr{ib: {d.ip4}})
	expect(p2, map[int][]netip.Addr{ib: {d.ip4}})
	passes(d, d.ip4, true)
	passes(d, b.ip4, false) // the previous owner's address is not inherited

	t.Log("it disappears too, and nothing is wanted")
	tp.node.run(t, "ip", "link", "del", d.hostIf)
	set(p2, nil)
	expect(p2, map[int][]netip.Addr{})
	ents, _ := os.ReadDir(filepath.Join(p2.PinDir(), "links", "node"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), guardPrefix) {
			t.Errorf("pin %s left", e.Name())
		}
	}
}

// TestGuardInterfaceLeavesOthers: GuardInterface sets one interface and
// leaves the rest as they are.
func TestGuardInterfaceLeavesOthers(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t, false)
	b, c := tp.addPod(t, "b"), tp.addPod(t, "c")
	ib, _ := hostIfindex(tp.node, b.hostIf)
	ic, _ := hostIfindex(tp.node, c.hostIf)
	p, err := Load(Options{PinRoot: testPinRoot(t), Config: testCfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Uninstall() })
	err = tp.node.in(func() error {
		return errors.Join(p.GuardInterface("node", ib, []netip.Addr{b.ip4}),
			p.GuardInterface("node", ic, []netip.Addr{c.ip4}),
			p.GuardInterface("node", ib, []netip.Addr{b.ip6}))
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Guards("node")
	if err != nil {
		t.Fatal(err)
	}
	want := map[int][]netip.Addr{ib: {b.ip6}, ic: {c.ip4}}
	if !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("Guards = %v, want %v", got, want)
	}
	if err := tp.node.in(func() error { return p.GuardInterface("node", 1<<30, []netip.Addr{b.ip4}) }); err == nil {
		t.Error("guarding an interface that does not exist succeeded")
	}
	if entries, _ := p.guardEntries(); entries[1<<30] != nil {
		t.Errorf("entries left for the interface that could not be guarded: %v", entries[1<<30])
	}
}

func guardProgram(t *testing.T, pin string) uint32 {
	t.Helper()
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	return uint32(info.Program)
}

func progID(t *testing.T, p *Probe) uint32 {
	t.Helper()
	info, err := p.objs.NetpolSpoof.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return uint32(id)
}

// BenchmarkSpoofCheck is the TCX check's cost per packet (PROG_TEST_RUN on
// the loopback interface, the kernel's own timing as ns/pkt): a pod's own
// IPv4 and IPv6 source and a forged one, with the map holding 1 and 60k
// (interface, address) pairs.
func BenchmarkSpoofCheck(b *testing.B) {
	requireRoot(b)
	p, err := Load(Options{PinRoot: testPinRoot(b), Config: testCfg})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Uninstall() })
	own4, own6 := netip.MustParseAddr("10.77.0.5"), netip.MustParseAddr("fd77::5")
	forged, dst := netip.MustParseAddr("10.77.0.6"), netip.MustParseAddr("10.77.0.7")
	const lo = 1 // PROG_TEST_RUN runs the packet on the namespace's loopback
	put := func(ifindex int, a netip.Addr) {
		k := netpolNetpolSpoofKey{Ifindex: uint32(ifindex), Addr: addr16(a)}
		if err := p.objs.NetpolSpoofGuard.Put(&k, uint8(1)); err != nil {
			b.Fatal(err)
		}
	}
	put(lo, own4)
	put(lo, own6)
	frame := func(pkt []byte, v6 bool) []byte {
		eth := make([]byte, 14, 14+len(pkt))
		binary.BigEndian.PutUint16(eth[12:], map[bool]uint16{false: 0x0800, true: 0x86dd}[v6])
		return append(eth, pkt...)
	}
	cases := []struct {
		name string
		pkt  []byte
		pass bool
	}{
		{"own-v4", frame(testPacket(own4, dst, 17, 80), false), true},
		{"own-v6", frame(testPacket(own6, netip.MustParseAddr("fd77::7"), 17, 80), true), true},
		{"forged-v4", frame(testPacket(forged, dst, 17, 80), false), false},
	}
	filled := 2
	for _, entries := range []int{2, 60000} {
		for ; filled < entries; filled++ {
			put(1000+filled, netip.AddrFrom4([4]byte{10, 78, byte(filled >> 8), byte(filled)}))
		}
		for _, c := range cases {
			b.Run(fmt.Sprintf("entries=%d/%s", entries, c.name), func(b *testing.B) {
				ret, per, err := p.objs.NetpolSpoof.Benchmark(c.pkt, b.N, nil)
				if err != nil {
					b.Fatal(err)
				}
				if pass := ret != 2; pass != c.pass { // TCX_DROP
					b.Fatalf("verdict %d, want pass=%v", int32(ret), c.pass)
				}
				b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
			})
		}
	}
}
