//go:build linux

package probe

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/kubectl-netpol/kubectl-netpol/internal/udpsink"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// aOnlyFromB is a's ingress allowing only b, compiled.
func aOnlyFromB(t *testing.T, a, b, c *pod) *policy.Datapath {
	t.Helper()
	snap := &policy.Snapshot{
		Pods: []*corev1.Pod{podObject(a, "x", map[string]string{"app": "a"}), podObject(b, "x", map[string]string{"app": "b"}),
			podObject(c, "x", map[string]string{"app": "c"})},
		Policies: []*networkingv1.NetworkPolicy{netpol("x", "a-in", selector("app", "a"), ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: selector("app", "b")}}}}, nil)},
	}
	dp, err := policy.Compile(snap, testNode)
	if err != nil {
		t.Fatal(err)
	}
	return dp
}

// udpFlood sends n datagrams from p to dst:port as fast as it can.
func (p *pod) udpFlood(t *testing.T, dst netip.Addr, port, n int) {
	t.Helper()
	err := p.in(func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, uint16(port))))
		if err != nil {
			return err
		}
		defer c.Close()
		msg := []byte("x")
		for range n {
			c.Write(msg)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestAbsentReaderAndRateLimit: with nobody reading, a flood of denied
// packets fills the ring; the loss is counted and the datapath keeps
// deciding correctly. The per-CPU token bucket, changed at run time, caps
// drop events.
func TestAbsentReaderAndRateLimit(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t, false)
	a, b, c := tp.addPod(t, "a"), tp.addPod(t, "b"), tp.addPod(t, "c")
	a.serve(t, 80)
	waitReachable(t, b, 80, a)
	p, err := Load(Options{PinRoot: testPinRoot(t), Config: testCfg, RingSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Uninstall() })
	if err := tp.node.in(func() error { return p.Attach("node") }); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Apply(aOnlyFromB(t, a, b, c)); err != nil {
		t.Fatal(err)
	}
	const flood = 5000
	c.udpFlood(t, a.ip4, 80, flood)
	st, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after the flood: %+v", st)
	if st.NewDenied < flood*9/10 || st.RingFull == 0 || st.Events+st.RingFull < st.NewDenied*9/10 {
		t.Errorf("stats %+v: want ~%d denied, ring-full losses counted", st, flood)
	}
	if got, err := b.connect("tcp", a.ip4, 80, 300*time.Millisecond); err != nil || got != "a" {
		t.Errorf("b -> a with a full ring: %q %v, want allowed", got, err)
	}
	if _, err := c.connect("tcp", a.ip4, 80, 300*time.Millisecond); err == nil {
		t.Error("c -> a with a full ring: allowed")
	}

	// Rate limit at run time: 10 events/s per CPU, burst 10.
	if err := p.SetConfig(Config{DropEventsPerSec: 10, DropEventsBurst: 10, WakeupWatermark: 1}); err != nil {
		t.Fatal(err)
	}
	before, _ := p.Stats()
	c.udpFlood(t, a.ip4, 80, 1000)
	after, _ := p.Stats()
	denied := after.NewDenied - before.NewDenied
	limited := after.RateLimited - before.RateLimited
	if denied < 900 || limited < denied-100 {
		t.Errorf("rate limit: %d denied, %d events suppressed; want nearly all suppressed", denied, limited)
	}
}

// TestSpoofGuard: with the TCX check on b's host interface, b's own
// addresses pass (IPv4, IPv6, neighbour discovery), a spoofed source is
// dropped and counted.
func TestSpoofGuard(t *testing.T) {
	requireRoot(t)
	for _, bridge := range []bool{false, true} {
		t.Run(map[bool]string{false: "routed", true: "bridge"}[bridge], func(t *testing.T) {
			tp := newTopology(t, bridge)
			a, b := tp.addPod(t, "a"), tp.addPod(t, "b")
			a.serve(t, 80)
			spoofed := netip.MustParseAddr("10.77.1.99")
			if !bridge {
				spoofed = netip.MustParseAddr("10.77.0.99")
			}
			b.run(t, "ip", "addr", "add", spoofed.String()+"/32", "dev", "eth0")
			sink := sinkAt(t, a)
			if !reaches(t, b, spoofed, a, sink) {
				t.Fatal("spoofed packets do not reach a even without the guard: the test proves nothing")
			}
			p := guardedPod(t, tp, b)
			before := sink.Count(spoofed)
			udpsink.Send(t, b.in, spoofed, netip.AddrPortFrom(a.ip4, 5000), 10)
			time.Sleep(200 * time.Millisecond)
			if got := sink.Count(spoofed) - before; got != 0 {
				t.Errorf("%d spoofed packets reached a through the guard", got)
			}
			st, _ := p.Stats()
			if st.SpoofDropped < 10 {
				t.Errorf("spoof drops counted: %d, want >= 10", st.SpoofDropped)
			}
			tp.node.run(t, "ip", "neigh", "flush", "all")
			b.run(t, "ip", "neigh", "flush", "all")
			waitReachable(t, b, 80, a) // own addresses, v4 and v6, after fresh neighbour discovery
		})
	}
}

func hostIfindex(n *testNS, name string) (int, error) {
	var idx int
	err := n.in(func() error {
		ifc, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		idx = ifc.Index
		return nil
	})
	return idx, err
}

// TestUninstallLeavesNothing: Close leaves enforcement running with the
// pins; Uninstall removes every pin, link and program.
func TestUninstallLeavesNothing(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t, false)
	a, b, c := tp.addPod(t, "a"), tp.addPod(t, "b"), tp.addPod(t, "c")
	a.serve(t, 80)
	waitReachable(t, c, 80, a)
	root := testPinRoot(t)
	p, err := Load(Options{PinRoot: root, Config: testCfg})
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.node.in(func() error { return p.Attach("node") }); err != nil {
		t.Fatal(err)
	}
	ifi, _ := hostIfindex(tp.node, b.hostIf)
	if err := tp.node.in(func() error { return p.GuardInterface("node", ifi, []netip.Addr{b.ip4, b.ip6}) }); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Apply(aOnlyFromB(t, a, b, c)); err != nil {
		t.Fatal(err)
	}
	// The links this test made, by ID: other processes (the test
	// cluster's agent, other tests) attach and detach links meanwhile.
	ids := pinnedLinkIDs(t, filepath.Join(root, LayoutVersion, "links"))
	if len(ids) != len(hooks)+1 {
		t.Fatalf("%d links pinned, want %d", len(ids), len(hooks)+1)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.connect("tcp", a.ip4, 80, 300*time.Millisecond); err == nil {
		t.Error("after Close, c -> a is allowed: enforcement stopped")
	}
	if n := liveLinks(ids); n != len(ids) {
		t.Errorf("after Close: %d of the %d links left, want all", n, len(ids))
	}
	p2, err := Load(Options{PinRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.Uninstall(); err != nil {
		t.Fatal(err)
	}
	if n := liveLinks(ids); n != 0 {
		t.Errorf("after Uninstall: %d of the %d links left, want none", n, len(ids))
	}
	if _, err := os.Stat(filepath.Join(root, LayoutVersion)); !os.IsNotExist(err) {
		t.Errorf("pin directory left behind: %v", err)
	}
	if got, err := c.connect("tcp", a.ip4, 80, 300*time.Millisecond); err != nil || got != "a" {
		t.Errorf("after Uninstall c -> a: %q %v, want allowed", got, err)
	}
}

// pinnedLinkIDs are the IDs of the links pinned under dir.
func pinnedLinkIDs(t *testing.T, dir string) []link.ID {
	t.Helper()
	var ids []link.ID
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			return err
		}
		defer l.Close()
		info, err := l.Info()
		if err != nil {
			return err
		}
		ids = append(ids, info.ID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// liveLinks counts the links of ids that still exist.
func liveLinks(ids []link.ID) int {
	n := 0
	for _, id := range ids {
		if l, err := link.NewFromID(id); err == nil {
			l.Close()
			n++
		}
	}
	return n
}

// TestSpoofGuardARP: on a bridge, a pod that sends ARP claiming another
// pod's address (sender address a, its own MAC) would point the node's
// neighbour entry for a at itself and receive a's traffic. With the guard
// on its interface, the claim is dropped and counted; its own ARP still
// works.
func TestSpoofGuardARP(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t, true)
	a, b := tp.addPod(t, "a"), tp.addPod(t, "b")
	a.serve(t, 80)
	waitReachable(t, b, 80, a)
	gw := netip.MustParseAddr("10.77.1.1")
	var bMAC net.HardwareAddr
	if err := b.in(func() error {
		ifc, err := net.InterfaceByName("eth0")
		if err == nil {
			bMAC = ifc.HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// claim sends, from b, an ARP request for the node's bridge address
	// saying that a's address is at b's MAC, then reports whether the node
	// now believes it.
	claim := func() bool {
		t.Helper()
		tp.node.run(t, "ip", "neigh", "flush", "dev", "br0")
		if err := b.in(func() error { return sendARP(bMAC, a.ip4, gw) }); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		return strings.Contains(bridgeNeighbour(t, tp, a.ip4), bMAC.String())
	}
	guardStopsClaim(t, tp, a, b, "ARP claim on a's address", claim)
}

// guardedPod loads the datapath on the node and guards b's interface for
// b's own addresses.
func guardedPod(t *testing.T, tp *topology, b *pod) *Probe {
	t.Helper()
	p := loadAttached(t, tp.node, testCfg)
	ifi, err := hostIfindex(tp.node, b.hostIf)
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.node.in(func() error { return p.GuardInterface("node", ifi, []netip.Addr{b.ip4, b.ip6}) }); err != nil {
		t.Fatal(err)
	}
	return p
}

// bridgeNeighbour is the node's neighbour entry for addr on the bridge.
func bridgeNeighbour(t *testing.T, tp *topology, addr netip.Addr) string {
	t.Helper()
	var out []byte
	if err := tp.node.in(func() error {
		var err error
		out, err = exec.Command("ip", "neigh", "show", addr.String(), "dev", "br0").CombinedOutput()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// guardStopsClaim checks that claim (b claiming a's address, reporting
// whether the node believed it) works without a guard, so the test proves
// something, and not with b's interface guarded: dropped and counted. b's
// own neighbour traffic still passes.
func guardStopsClaim(t *testing.T, tp *topology, a, b *pod, what string, claim func() bool) {
	t.Helper()
	if !claim() {
		t.Fatalf("without the guard, b's %s does not reach the node: the test proves nothing", what)
	}
	p := guardedPod(t, tp, b)
	before, _ := p.Stats()
	if claim() {
		t.Errorf("with the guard, b's %s still reached the node", what)
	}
	after, _ := p.Stats()
	if after.SpoofDropped <= before.SpoofDropped {
		t.Errorf("spoof drops counted: %d -> %d, want more", before.SpoofDropped, after.SpoofDropped)
	}
	tp.node.run(t, "ip", "neigh", "flush", "all")
	b.run(t, "ip", "neigh", "flush", "all")
	waitReachable(t, b, 80, a) // b's own ARP and neighbour discovery still pass
}

// sendARP sends, from eth0 of the calling thread's namespace, a broadcast
// ARP request for target saying that sender is at mac.
func sendARP(mac net.HardwareAddr, sender, target netip.Addr) error {
	frame := make([]byte, 0, 42)
	frame = append(frame, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	frame = append(frame, mac...)
	frame = append(frame, 0x08, 0x06)                   // ARP
	frame = append(frame, 0, 1, 0x08, 0x00, 6, 4, 0, 1) // Ethernet, IPv4, request
	frame = append(frame, mac...)
	s, d := sender.As4(), target.As4()
	frame = append(frame, s[:]...)
	frame = append(frame, 0, 0, 0, 0, 0, 0)
	frame = append(frame, d[:]...)
	return sendFrame(frame)
}

// sendFrame sends an Ethernet frame as it is from eth0 of the calling
// thread's namespace.
func sendFrame(frame []byte) error {
	ifc, err := net.InterfaceByName("eth0")
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var dst [8]byte
	copy(dst[:], frame[:6])
	return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifc.Index, Halen: 6, Addr: dst})
}

// TestSpoofGuardNA is TestSpoofGuardARP for IPv6: a neighbour
// advertisement from b naming a's address as its target (with the override
// flag and b's MAC) would move the node's entry for a to b.
func TestSpoofGuardNA(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t, true)
	a, b := tp.addPod(t, "a"), tp.addPod(t, "b")
	a.serve(t, 80)
	waitReachable(t, b, 80, a)
	var bMAC net.HardwareAddr
	var bLL netip.Addr
	if err := b.in(func() error {
		ifc, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		bMAC = ifc.HardwareAddr
		addrs, err := ifc.Addrs()
		if err != nil {
			return err
		}
		for _, ad := range addrs {
			if ip, ok := netip.AddrFromSlice(ad.(*net.IPNet).IP); ok && ip.Is6() && ip.IsLinkLocalUnicast() {
				bLL = ip
			}
		}
		if !bLL.IsValid() {
			return errors.New("eth0 has no link-local address")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	entry := func() string { return bridgeNeighbour(t, tp, a.ip6) }
	// claim has the node resolve a's address (an entry to move), then
	// sends b's advertisement and reports whether the entry moved to b.
	claim := func() bool {
		t.Helper()
		tp.node.run(t, "ip", "neigh", "flush", "dev", "br0")
		tp.node.in(func() error { // any packet to a resolves it
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(a.ip6, 80).String(), time.Second)
			if err == nil {
				c.Close()
			}
			return nil
		})
		if strings.Contains(entry(), bMAC.String()) {
			t.Fatalf("the node's entry for a is b's before the advertisement: %s", entry())
		}
		if err := b.in(func() error { return sendNA(bMAC, bLL, a.ip6) }); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		return strings.Contains(entry(), bMAC.String())
	}
	guardStopsClaim(t, tp, a, b, "advertisement for a's address", claim)
}

// sendNA sends, from eth0 of the calling thread's namespace, an
// unsolicited neighbour advertisement (override) from src to all nodes
// saying that target is at mac.
func sendNA(mac net.HardwareAddr, src, target netip.Addr) error {
	dst := netip.MustParseAddr("ff02::1")
	icmp := []byte{136, 0, 0, 0, 0x20, 0, 0, 0} // NA, override
	t16 := target.As16()
	icmp = append(icmp, t16[:]...)
	icmp = append(icmp, 2, 1) // target link-layer address option
	icmp = append(icmp, mac...)
	// Checksum over the IPv6 pseudo-header and the message.
	s16, d16 := src.As16(), dst.As16()
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
	}
	add(s16[:])
	add(d16[:])
	add([]byte{0, 0, byte(len(icmp) >> 8), byte(len(icmp)), 0, 0, 0, 58})
	add(icmp)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	cs := ^uint16(sum)
	icmp[2], icmp[3] = byte(cs>>8), byte(cs)
	frame := []byte{0x33, 0x33, 0, 0, 0, 1}
	frame = append(frame, mac...)
	frame = append(frame, 0x86, 0xdd)
	frame = append(frame, 0x60, 0, 0, 0, byte(len(icmp)>>8), byte(len(icmp)), 58, 255)
	frame = append(frame, s16[:]...)
	frame = append(frame, d16[:]...)
	frame = append(frame, icmp...)
	return sendFrame(frame)
}
