//go:build linux

package probe

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// testPacket is an IPv4 or IPv6 packet from src:40000 to dst:dport with a
// TCP, UDP or SCTP header, or an ICMP one (no ports), padded so that it
// passes PROG_TEST_RUN's minimum size.
func testPacket(src, dst netip.Addr, proto uint8, dport uint16) []byte {
	l4 := make([]byte, 20+16)
	if proto != 1 && proto != 58 {
		binary.BigEndian.PutUint16(l4[0:], 40000)
		binary.BigEndian.PutUint16(l4[2:], dport)
	} else {
		l4[0] = 8 // echo request
	}
	if proto == 6 {
		l4[12] = 5 << 4
		l4[13] = 0x02 // SYN
	}
	if src.Is4() {
		ip := make([]byte, 20, 20+len(l4))
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
		ip[8] = 64
		ip[9] = proto
		s, d := src.As4(), dst.As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		return append(ip, l4...)
	}
	ip := make([]byte, 40, 40+len(l4))
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
	ip[6] = proto
	ip[7] = 64
	s, d := src.As16(), dst.As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	return append(ip, l4...)
}

// nfTestCtx is the part of struct nf_hook_state that PROG_TEST_RUN takes:
// hook LOCAL_OUT (the packet starts at the network header) and the family.
type nfTestCtx struct {
	Hook uint8
	PF   uint8
}

// runVerdict runs pkt through the netfilter program once.
func runVerdict(t *testing.T, prog *ebpf.Program, pkt []byte, v6 bool) bool {
	t.Helper()
	ctx := nfTestCtx{Hook: 3, PF: 2}
	if v6 {
		ctx.PF = 10
	}
	ret, err := prog.Run(&ebpf.RunOptions{Data: pkt, Context: ctx})
	if err != nil {
		t.Fatalf("PROG_TEST_RUN: %v", err)
	}
	return ret == 1
}

// refMatches is the rules of one direction read literally, independent of
// how the datapath stores them: the IDs of the entries matching the peer.
func refMatches(entries []policy.Entry, peer netip.Addr, peerIdentity uint32, proto uint8, port uint16) []uint32 {
	var out []uint32
	for _, e := range entries {
		if e.CIDR.IsValid() {
			if !e.CIDR.Contains(peer) || slices.ContainsFunc(e.Except, func(x netip.Prefix) bool { return x.Contains(peer) }) {
				continue
			}
		} else if e.Identity != policy.IdentityAny && e.Identity != peerIdentity {
			continue
		}
		if e.Protocol != "" {
			n, _ := protoNumber(e.Protocol)
			if n != proto || port < e.PortMin || port > e.PortMax {
				continue
			}
		}
		out = append(out, e.Rule)
	}
	return out
}

// randomEntries draws a direction's rules: peers by identity, any peer and
// CIDR blocks with excepts (IPv4 and IPv6); every protocol, all ports of
// one, single ports, small and large ranges.
func randomEntries(r *rand.Rand, idents []uint32, nextRule *uint32) []policy.Entry {
	var out []policy.Entry
	protos := []corev1.Protocol{"", corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}
	cidrs := []struct {
		cidr   string
		except []string
	}{
		{"10.79.0.0/24", []string{"10.79.0.4/30"}},
		{"10.79.0.0/29", nil},
		{"192.0.2.0/24", []string{"192.0.2.128/25", "192.0.2.64/26"}},
		{"192.0.2.128/26", nil},
		{"0.0.0.0/0", []string{"10.0.0.0/8"}},
		{"fd79::/64", []string{"fd79::4/126"}},
		{"2001:db8::/32", []string{"2001:db8:1::/48"}},
		// IPv6 blocks over the IPv4-mapped space (::ffff:0:0/96, where the
		// datapath keeps IPv4) must not match IPv4 peers.
		{"::/0", []string{"fd79::/16"}},
		{"::/1", nil},
		// Single addresses (the hash's host entries, looked up before the
		// trie): a world peer, a pod, an except inside a wider block.
		{"192.0.2.1/32", nil},
		{"10.79.0.3/32", nil},
		{"fd79::9/128", nil},
		{"192.0.2.0/25", []string{"192.0.2.70/32"}},
		{"::/0", []string{"fd80::1/128", "fd79::3/128"}},
	}
	for range 1 + r.IntN(14) {
		*nextRule++
		e := policy.Entry{Rule: *nextRule, Protocol: protos[r.IntN(len(protos))]}
		switch k := r.IntN(10); {
		case k < 6:
			e.Identity = idents[r.IntN(len(idents))]
		case k < 7:
			e.Identity = policy.IdentityAny
		default:
			c := cidrs[r.IntN(len(cidrs))]
			e.CIDR = netip.MustParsePrefix(c.cidr)
			for _, x := range c.except {
				e.Except = append(e.Except, netip.MustParsePrefix(x))
			}
		}
		randomPorts(r, &e, false)
		out = append(out, e)
	}
	return out
}

// randomPorts gives an entry of a protocol its ports: all, one, a few, or
// a large range; nested adds ranges inside the large ones' span.
func randomPorts(r *rand.Rand, e *policy.Entry, nested bool) {
	if e.Protocol == "" {
		return
	}
	kinds := 4
	if nested {
		kinds = 5
	}
	switch r.IntN(kinds) {
	case 0:
		e.PortMin, e.PortMax = 0, 65535
	case 1:
		e.PortMin = uint16(78 + r.IntN(6))
		e.PortMax = e.PortMin
	case 2:
		e.PortMin = uint16(76 + r.IntN(6))
		e.PortMax = e.PortMin + uint16(r.IntN(5))
	case 3:
		e.PortMin = uint16(1 + r.IntN(2000))
		e.PortMax = e.PortMin + uint16(16+r.IntN(30000))
	default:
		e.PortMin = uint16(1000 + r.IntN(1000))
		e.PortMax = e.PortMin + uint16(16+r.IntN(200))
	}
}

// tableProbe is a loaded datapath for the verdict tables (every event kept)
// and its reader.
func tableProbe(t *testing.T) (*Probe, *Reader) {
	t.Helper()
	p, err := Load(Options{PinRoot: testPinRoot(t), Config: Config{DropEventsPerSec: 1 << 40, DropEventsBurst: 1 << 40,
		WakeupWatermark: 1, FlowEvents: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Uninstall() })
	rd, err := p.NewReader(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	return p, rd
}

type tablePeer struct {
	ip netip.Addr
	id uint32
}

// tablePacket is one packet of a verdict table, as the kernel and the Go
// model judged it: the side of the endpoint (self) it tests, the rule and
// reason that side's event names.
type tablePacket struct {
	peer    tablePeer
	proto   uint8
	port    uint16
	ingress bool
	where   string
	got     bool
	ev      Event
	rule    uint32
	reason  uint8
	model   uint32 // the Go model's rule for that side
	entries []policy.Entry
}

// tablePackets runs, through PROG_TEST_RUN, every protocol (TCP, UDP, SCTP,
// ICMP) and port to and from every peer of ep (IPv4 and IPv6 addresses
// first), and hands each result to check.
func tablePackets(t *testing.T, p *Probe, rd *Reader, round int, ep *policy.Endpoint, peers []tablePeer, ports []uint16, check func(*tablePacket)) {
	t.Helper()
	self4, self6 := ep.IPs[0], ep.IPs[1]
	epv := p.state.endpoints[addr16(self4)]
	for _, pe := range peers {
		self := self4
		if pe.ip.Is6() {
			self = self6
		}
		for _, proto := range []uint8{6, 17, 132, 1} {
			if pe.ip.Is6() && proto == 1 {
				proto = 58
			}
			for _, port := range ports {
				if proto == 1 || proto == 58 {
					port = 0
				}
				for _, ingress := range []bool{true, false} {
					pk := &tablePacket{peer: pe, proto: proto, port: port, ingress: ingress, entries: ep.Ingress.Entries}
					src, dst, slot := pe.ip, self, epv.SlotIngress
					if !ingress {
						src, dst, slot, pk.entries = self, pe.ip, epv.SlotEgress, ep.Egress.Entries
					}
					pk.where = fmt.Sprintf("round %d %s -> %s proto %d port %d", round, src, dst, proto, port)
					pk.got = runVerdict(t, p.objs.NetpolNf, testPacket(src, dst, proto, port), pe.ip.Is6())
					if err := rd.Read(&pk.ev); err != nil {
						t.Fatalf("%s: no event: %v", pk.where, err)
					}
					pk.rule, pk.reason = pk.ev.IngressRule, pk.ev.IngressReason
					if !ingress {
						pk.rule, pk.reason = pk.ev.EgressRule, pk.ev.EgressReason
					}
					pk.model = p.state.dirs[slot].evaluate(pe.ip, pe.id, proto, port)
					check(pk)
				}
				if proto == 1 || proto == 58 {
					break
				}
			}
		}
	}
}

// edgePorts is ports with every range's edges and the ports just outside.
func edgePorts(ports []uint16, entries ...[]policy.Entry) []uint16 {
	out := slices.Clone(ports)
	for _, es := range entries {
		for _, e := range es {
			if e.Protocol != "" {
				out = append(out, e.PortMin, e.PortMax, e.PortMin-1, e.PortMax+1)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestVerdictTable compares, packet by packet through PROG_TEST_RUN, the
// kernel's verdict and the rule its event names with the policy entries read
// literally (refMatches), for random endpoint policies mixing every kind of
// entry: peer identities, any peer, CIDRs with excepts, every protocol, all
// ports, single ports, ranges; IPv4 and IPv6, TCP, UDP, SCTP and ICMP; both
// directions. It proves that the hash + trie layout keeps the verdicts the
// rules define, and that the Go model revocation uses agrees with the kernel.
func TestVerdictTable(t *testing.T) {
	requireRoot(t)
	p, rd := tableProbe(t)

	self4, self6 := netip.MustParseAddr("10.78.0.1"), netip.MustParseAddr("fd78::1")
	var idents []uint32
	var identIPs [][2]netip.Addr
	for i := range 8 {
		idents = append(idents, uint32(1000+i))
		identIPs = append(identIPs, [2]netip.Addr{netip.AddrFrom4([4]byte{10, 79, 0, byte(i + 1)}),
			netip.MustParseAddr(fmt.Sprintf("fd79::%x", i+1))})
	}
	world := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.70"), netip.MustParseAddr("192.0.2.71"), netip.MustParseAddr("192.0.2.130"),
		netip.MustParseAddr("192.0.2.200"), netip.MustParseAddr("10.80.0.1"), netip.MustParseAddr("203.0.113.9"),
		netip.MustParseAddr("10.79.0.9"), netip.MustParseAddr("fd79::9"), netip.MustParseAddr("2001:db8::1"),
		netip.MustParseAddr("2001:db8:1::1"), netip.MustParseAddr("fd80::1")}
	ports := []uint16{0, 1, 53, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 700, 1000, 1450, 2047, 2048, 2600, 8080, 30000, 65535}

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 3))
	var nextRule uint32 = policy.FirstRuleID
	checked, allowed := 0, 0
	for round := range 12 {
		dp := &policy.Datapath{}
		ep := policy.Endpoint{ID: 1, Namespace: "x", Name: "e", IPs: []netip.Addr{self4, self6}, Identity: 300}
		dp.Identities = append(dp.Identities, policy.Identity{ID: 300, IPs: ep.IPs})
		for i, id := range idents {
			dp.Identities = append(dp.Identities, policy.Identity{ID: id, IPs: identIPs[i][:]})
		}
		ep.Ingress = policy.EndpointPolicy{Isolated: true, Entries: randomEntries(r, idents, &nextRule)}
		// More large ranges for one peer than its summary holds: the rest go
		// to range chunks (even rounds), and beyond the chunks to the trie
		// (odd rounds). Ranges overlap, so the order the kernel reads them
		// in decides the rule it names.
		over := idents[r.IntN(len(idents))]
		n := 3 + r.IntN(8)
		if round%2 == 1 {
			n = 2 + 2*rangeChunks + 2 + r.IntN(8)
		}
		for k := range n {
			nextRule++
			lo := uint16(20 + 700*k + r.IntN(50))
			ep.Ingress.Entries = append(ep.Ingress.Entries, policy.Entry{Rule: nextRule, Identity: over,
				Protocol: corev1.ProtocolTCP, PortMin: lo, PortMax: lo + uint16(30+r.IntN(2000))})
		}
		ep.Egress = policy.EndpointPolicy{Isolated: true, Entries: randomEntries(r, idents, &nextRule)}
		dp.Endpoints = []policy.Endpoint{ep}
		if _, err := p.Apply(dp); err != nil {
			t.Fatalf("round %d: Apply: %v", round, err)
		}
		var peers []tablePeer
		for i, ips := range identIPs {
			peers = append(peers, tablePeer{ips[0], idents[i]}, tablePeer{ips[1], idents[i]})
		}
		for _, ip := range world {
			peers = append(peers, tablePeer{ip, policy.IdentityWorld})
		}
		tablePackets(t, p, rd, round, &ep, peers, edgePorts(ports, ep.Ingress.Entries, ep.Egress.Entries), func(pk *tablePacket) {
			want := refMatches(pk.entries, pk.peer.ip, pk.peer.id, pk.proto, pk.port)
			checked++
			// The Go model (what revocation judges with) agrees.
			if model := pk.model != 0; model != pk.got {
				t.Errorf("%s: kernel allowed=%v, Go model %v", pk.where, pk.got, model)
			}
			switch {
			case pk.got != (len(want) > 0):
				t.Errorf("%s: kernel allowed=%v, rules %v (entries %+v)", pk.where, pk.got, want, pk.entries)
			case pk.got:
				allowed++
				if !slices.Contains(want, pk.rule) {
					t.Errorf("%s: event names rule %d, matching rules are %v", pk.where, pk.rule, want)
				}
			case pk.ev.Verdict != VerdictDrop || pk.rule != 0:
				t.Errorf("%s: drop event %+v", pk.where, pk.ev)
			}
		})
		if t.Failed() {
			break
		}
	}
	t.Logf("%d packets checked, %d allowed", checked, allowed)
	if allowed == 0 || allowed == checked {
		t.Errorf("%d of %d allowed: the table does not test both verdicts", allowed, checked)
	}
}

// TestPolicyTrieGenerations: a direction's trie (ranges, CIDRs) alternates
// between its two trie slots on every change of the trie, the one no longer
// named by the hash is removed, a change of the hash alone keeps the trie, a
// restarted process finds the generation in use from the pins, and a
// direction without ranges or CIDRs keeps no trie.
func TestPolicyTrieGenerations(t *testing.T) {
	requireRoot(t)
	root := testPinRoot(t)
	self := netip.MustParseAddr("10.78.0.1")
	dpWith := func(entries ...policy.Entry) *policy.Datapath {
		return &policy.Datapath{
			Identities: []policy.Identity{{ID: 300, IPs: []netip.Addr{self}}, {ID: 301, IPs: []netip.Addr{netip.MustParseAddr("10.79.0.1")}}},
			Endpoints: []policy.Endpoint{{ID: 1, Namespace: "x", Name: "e", IPs: []netip.Addr{self}, Identity: 300,
				Ingress: policy.EndpointPolicy{Isolated: true, Entries: entries}}},
		}
	}
	cidr := func(rule uint32, pfx string) policy.Entry {
		return policy.Entry{Rule: rule, CIDR: netip.MustParsePrefix(pfx), Protocol: "TCP", PortMin: 80, PortMax: 80}
	}
	byIdentity := policy.Entry{Rule: 40, Identity: 301, Protocol: "TCP", PortMin: 80, PortMax: 80}
	tries := func(p *Probe) []uint32 {
		slot := p.state.endpoints[addr16(self)].SlotIngress
		var out []uint32
		for _, ts := range []uint32{2 * slot, 2*slot + 1} {
			var id uint32
			if err := p.objs.NetpolPolicyTries.Lookup(ts, &id); err == nil {
				out = append(out, ts)
			}
		}
		return out
	}
	verdicts := func(p *Probe, want map[string]bool) {
		t.Helper()
		for src, allow := range want {
			if got := runVerdict(t, p.objs.NetpolNf, testPacket(netip.MustParseAddr(src), self, 6, 80), false); got != allow {
				t.Errorf("%s -> %s:80 allowed=%v, want %v", src, self, got, allow)
			}
		}
	}
	apply := func(p *Probe, dp *policy.Datapath) {
		t.Helper()
		if _, err := p.Apply(dp); err != nil {
			t.Fatal(err)
		}
	}

	p1, err := Load(Options{PinRoot: root, Config: testCfg})
	if err != nil {
		t.Fatal(err)
	}
	apply(p1, dpWith(cidr(20, "192.0.2.0/24")))
	verdicts(p1, map[string]bool{"192.0.2.1": true, "198.51.100.1": false, "10.79.0.1": false})
	first := tries(p1)
	if len(first) != 1 {
		t.Fatalf("trie slots in use %v, want one", first)
	}
	apply(p1, dpWith(cidr(21, "198.51.100.0/24")))
	verdicts(p1, map[string]bool{"192.0.2.1": false, "198.51.100.1": true})
	second := tries(p1)
	if len(second) != 1 || second[0] == first[0] {
		t.Fatalf("after a change trie slots %v (before %v), want the other one alone", second, first)
	}
	// A new process on the same pins must not overwrite the trie in use.
	if err := p1.Close(); err != nil {
		t.Fatal(err)
	}
	p2, err := Load(Options{PinRoot: root, Config: testCfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p2.Uninstall() })
	verdicts(p2, map[string]bool{"192.0.2.1": false, "198.51.100.1": true})
	apply(p2, dpWith(cidr(22, "203.0.113.0/24"), byIdentity))
	verdicts(p2, map[string]bool{"203.0.113.1": true, "198.51.100.1": false, "10.79.0.1": true})
	if third := tries(p2); len(third) != 1 || third[0] != first[0] {
		t.Fatalf("after a restart and a change trie slots %v, want %v alone", third, first)
	}
	// Only the hash changes: the new hash names the same trie.
	apply(p2, dpWith(cidr(22, "203.0.113.0/24")))
	verdicts(p2, map[string]bool{"203.0.113.1": true, "10.79.0.1": false})
	if same := tries(p2); len(same) != 1 || same[0] != first[0] {
		t.Fatalf("trie unchanged, but trie slots %v, want %v alone", same, first)
	}
	apply(p2, dpWith(cidr(22, "203.0.113.0/24"), byIdentity))
	apply(p2, dpWith(byIdentity))
	verdicts(p2, map[string]bool{"203.0.113.1": false, "10.79.0.1": true})
	if left := tries(p2); len(left) != 0 {
		t.Fatalf("no ranges or CIDRs left, trie slots %v still in use", left)
	}
	apply(p2, dpWith(cidr(23, "192.0.2.0/24")))
	slot := p2.state.endpoints[addr16(self)].SlotIngress
	apply(p2, &policy.Datapath{})
	for _, ts := range []uint32{2 * slot, 2*slot + 1} {
		var id uint32
		if err := p2.objs.NetpolPolicyTries.Lookup(ts, &id); err == nil {
			t.Errorf("endpoint removed, trie slot %d still set", ts)
		}
	}
	var id uint32
	if err := p2.objs.NetpolPolicySlots.Lookup(slot, &id); err == nil {
		t.Errorf("endpoint removed, slot %d still set", slot)
	}
}

// collidingAddrs returns n IPv6 addresses in fd77::/64 with one host fold
// (hostFold), the case where only one can have the hash entry.
func collidingAddrs(n int) []netip.Addr {
	base := netip.MustParseAddr("fd77::1:2").As16()
	want := hostFold(base)
	out := []netip.Addr{netip.AddrFrom16(base)}
	for i := 1; i < n; i++ {
		a := base
		w2 := binary.LittleEndian.Uint32(a[8:]) + uint32(i)
		binary.LittleEndian.PutUint32(a[8:], w2)
		w3 := want ^ w2*0x9e3779b1 ^ binary.LittleEndian.Uint32(a[4:])*0x85ebca77 ^ binary.LittleEndian.Uint32(a[0:])*0xc2b2ae3d
		binary.LittleEndian.PutUint32(a[12:], w3)
		out = append(out, netip.AddrFrom16(a))
	}
	return out
}

// TestHostBlocks: single-address ipBlocks (/32, /128) live in the policy
// hash, found by the peer's exact address before the trie. Three /128s
// with one fold (one keeps the hash entry, the lowest whatever the order of
// entries; the others stay in the trie), one of them an except of a wider
// block, and IPv4 /32s; a direction with single addresses alone has no
// trie. Verdicts and the rule the event names, through PROG_TEST_RUN,
// against the entries read literally and the Go model, in both a plain and
// a resolved direction.
func TestHostBlocks(t *testing.T) {
	requireRoot(t)
	p, rd := tableProbe(t)
	self4, self6 := netip.MustParseAddr("10.78.0.1"), netip.MustParseAddr("fd78::1")
	col := collidingAddrs(3)
	if slices.ContainsFunc(col[1:], func(a netip.Addr) bool { return hostFold(a.As16()) != hostFold(col[0].As16()) || a == col[0] }) {
		t.Fatalf("addresses %v do not share one fold", col)
	}
	host := func(rule uint32, a netip.Addr, port uint16) policy.Entry {
		return policy.Entry{Rule: rule, CIDR: netip.PrefixFrom(a, a.BitLen()), Protocol: corev1.ProtocolTCP, PortMin: port, PortMax: port}
	}
	plain := []policy.Entry{
		host(20, col[0], 80), host(21, col[1], 81),
		{Rule: 22, CIDR: netip.MustParsePrefix("fd77::/64"), Except: []netip.Prefix{netip.PrefixFrom(col[2], 128)},
			Protocol: corev1.ProtocolTCP, PortMin: 82, PortMax: 82},
		host(23, netip.MustParseAddr("192.0.2.1"), 80), host(24, netip.MustParseAddr("192.0.2.2"), 81),
	}
	v4only := []policy.Entry{host(25, netip.MustParseAddr("192.0.2.1"), 80), host(26, netip.MustParseAddr("192.0.2.3"), 80)}
	resolved := []policy.Entry{
		{Rule: policy.RuleIsolated | policy.RuleDeny, CIDR: netip.MustParsePrefix("0.0.0.0/0")},
		{Rule: policy.RuleIsolated | policy.RuleDeny, CIDR: netip.MustParsePrefix("::/0")},
		{Rule: 30, CIDR: netip.MustParsePrefix("fd77::/64")},
		{Rule: 31 | policy.RuleDeny, CIDR: netip.PrefixFrom(col[0], 128)},
		{Rule: 32, CIDR: netip.PrefixFrom(col[1], 128), Protocol: corev1.ProtocolTCP, PortMin: 81, PortMax: 81},
		{Rule: 33 | policy.RuleDeny, CIDR: netip.PrefixFrom(col[1], 128)},
		{Rule: 36, CIDR: netip.PrefixFrom(col[2], 128), Protocol: corev1.ProtocolTCP, PortMin: 82, PortMax: 82},
		{Rule: 34 | policy.RuleDeny, CIDR: netip.MustParsePrefix("192.0.2.1/32")},
		{Rule: 35, CIDR: netip.MustParsePrefix("192.0.2.0/24")},
	}
	var peers []tablePeer
	for _, ip := range append(slices.Clone(col), netip.MustParseAddr("fd77::9"), netip.MustParseAddr("fd78::9"),
		netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("192.0.2.4")) {
		peers = append(peers, tablePeer{ip, policy.IdentityWorld})
	}
	for round, c := range []struct {
		name     string
		entries  []policy.Entry
		resolved bool
		hosts    int // hash entries
		tries    int // single addresses left in the trie
	}{
		{"plain", plain, false, 3, 2},
		{"v4-only", v4only, false, 2, 0},
		{"resolved", resolved, true, 2, 2},
	} {
		// Built in two orders: the same layout.
		rev := slices.Clone(c.entries)
		slices.Reverse(rev)
		d1, err1 := buildDirection(c.entries, c.resolved)
		d2, err2 := buildDirection(rev, c.resolved)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !d1.equal(d2) {
			t.Errorf("%s: the layout depends on the order of entries", c.name)
		}
		left := 0
		for k := range d1.trie {
			if k.Kind == kindCIDR && k.Prefixlen == 8+128 {
				left++
			}
		}
		if len(d1.hosts) != c.hosts || left != c.tries {
			t.Errorf("%s: %d host entries and %d single addresses in the trie, want %d and %d", c.name, len(d1.hosts), left, c.hosts, c.tries)
		}
		if h, ok := d1.hosts[ruleKey{Identity: hostFold(col[0].As16()), Kind: rkindHost}]; c.tries > 0 && (!ok || h.Addr != hostWords(minAddr(col).As16())) {
			t.Errorf("%s: the colliding addresses' hash entry is %+v, want the lowest, %s", c.name, h, minAddr(col))
		}
		if c.tries == 0 && len(d1.trie) != 0 {
			t.Errorf("%s: single addresses alone, but the trie has %d entries", c.name, len(d1.trie))
		}

		ep := policy.Endpoint{ID: 1, Namespace: "x", Name: "e", IPs: []netip.Addr{self4, self6}, Identity: 300,
			Ingress: policy.EndpointPolicy{Isolated: true, Resolved: c.resolved, Entries: c.entries},
			Egress:  policy.EndpointPolicy{Isolated: true, Resolved: c.resolved, Entries: rev}}
		dp := &policy.Datapath{Identities: []policy.Identity{{ID: 300, IPs: ep.IPs}}, Endpoints: []policy.Endpoint{ep}}
		if _, err := p.Apply(dp); err != nil {
			t.Fatalf("%s: Apply: %v", c.name, err)
		}
		checked := 0
		tablePackets(t, p, rd, round, &ep, peers, []uint16{79, 80, 81, 82, 83}, func(pk *tablePacket) {
			checked++
			if c.resolved {
				want := refDecide(pk.entries, pk.peer.ip, pk.peer.id, pk.proto, pk.port)
				if pk.got != ruleAllows(want) || pk.rule != want || pk.model != want {
					t.Errorf("%s %s: kernel allowed=%v rule %#x, Go model %#x, contract %#x", c.name, pk.where, pk.got, pk.rule, pk.model, want)
				}
				return
			}
			want := refMatches(pk.entries, pk.peer.ip, pk.peer.id, pk.proto, pk.port)
			if pk.got != (len(want) > 0) || (pk.model != 0) != pk.got || pk.got && !slices.Contains(want, pk.rule) {
				t.Errorf("%s %s: kernel allowed=%v rule %d, Go model %d, matching rules %v", c.name, pk.where, pk.got, pk.rule, pk.model, want)
			}
		})
		t.Logf("%s: %d packets checked", c.name, checked)
	}
}

func minAddr(as []netip.Addr) netip.Addr {
	return slices.MinFunc(as, func(x, y netip.Addr) int {
		wx, wy := hostWords(x.As16()), hostWords(y.As16())
		return cmp.Or(cmp.Compare(wx[0], wy[0]), cmp.Compare(wx[1], wy[1]))
	})
}
