//go:build linux

package probe

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// refDecide is a resolved direction's contract (policy.EndpointPolicy) read
// literally, independent of the layout: the peer identity's entries, then
// identity "any"'s, then the entries of exactly the longest CIDR holding
// the peer; among one peer's entries the narrowest port match decides (a
// range narrower than every port of the protocol, narrower than every
// protocol), the first of equally narrow ones. 0: nothing matched.
func refDecide(entries []policy.Entry, peer netip.Addr, peerIdentity uint32, proto uint8, port uint16) uint32 {
	decide := func(keep func(policy.Entry) bool) uint32 {
		var rule uint32
		best := -1
		for _, e := range entries {
			if !keep(e) {
				continue
			}
			width := 1 << 17
			if e.Protocol != "" {
				if n, _ := protoNumber(e.Protocol); n != proto || port < e.PortMin || port > e.PortMax {
					continue
				}
				width = int(e.PortMax) - int(e.PortMin)
			}
			if best < 0 || width < best {
				rule, best = e.Rule, width
			}
		}
		return rule
	}
	for _, id := range []uint32{peerIdentity, policy.IdentityAny} {
		if r := decide(func(e policy.Entry) bool { return !e.CIDR.IsValid() && e.Identity == id }); r != 0 {
			return r
		}
	}
	var region netip.Prefix
	for _, e := range entries {
		if e.CIDR.IsValid() && e.CIDR.Contains(peer) && (!region.IsValid() || e.CIDR.Bits() > region.Bits()) {
			region = e.CIDR
		}
	}
	if !region.IsValid() {
		return 0
	}
	return decide(func(e policy.Entry) bool { return e.CIDR == region })
}

// wantReason is the event reason of a side the kernel evaluated to rule.
func wantReason(rule uint32) uint8 {
	switch {
	case rule == 0, rule == policy.RuleIsolated|policy.RuleDeny:
		return ReasonNoRuleMatched
	case rule&policy.RuleDeny != 0:
		return ReasonDeniedByRule
	case rule&policy.RuleIDMask == policy.RuleNotIsolated:
		return ReasonNotIsolated
	}
	return ReasonAllowedByRule
}

// randomResolved draws a resolved direction: per peer identity a few
// allows and denies on every protocol, all ports of one, single ports and
// nested or overlapping ranges (more than the summary and chunks hold for
// one of them, so trie blocks decide too); now and then an entry for any
// peer; regions 0.0.0.0/0 and ::/0 deciding everything, and narrower
// regions inside each other, whose entries are complete or not. Rules are
// flagged RuleDeny at random and RuleAudit now and then.
func randomResolved(r *rand.Rand, idents []uint32, nextRule *uint32) []policy.Entry {
	var out []policy.Entry
	rule := func() uint32 {
		*nextRule++
		id := *nextRule
		if r.IntN(2) == 0 {
			id |= policy.RuleDeny
		}
		if r.IntN(8) == 0 {
			id |= policy.RuleAudit
		}
		return id
	}
	protos := []corev1.Protocol{"", corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}
	peerEntries := func(n int, set func(*policy.Entry)) {
		for range n {
			e := policy.Entry{Rule: rule(), Protocol: protos[r.IntN(len(protos))]}
			set(&e)
			randomPorts(r, &e, true)
			out = append(out, e)
		}
	}
	for _, id := range idents {
		if r.IntN(3) > 0 {
			peerEntries(r.IntN(6), func(e *policy.Entry) { e.Identity = id })
		}
	}
	over := idents[r.IntN(len(idents))]
	for k := range 2 + 2*rangeChunks + 2 + r.IntN(8) {
		lo := uint16(20 + 700*k + r.IntN(50))
		out = append(out, policy.Entry{Rule: rule(), Identity: over, Protocol: corev1.ProtocolTCP, PortMin: lo, PortMax: lo + uint16(30+r.IntN(2000))})
	}
	if r.IntN(4) == 0 {
		peerEntries(1+r.IntN(2), func(e *policy.Entry) { e.Identity = policy.IdentityAny })
	}
	for _, world := range []string{"0.0.0.0/0", "::/0"} {
		out = append(out, policy.Entry{Rule: rule(), CIDR: netip.MustParsePrefix(world)})
		peerEntries(r.IntN(4), func(e *policy.Entry) { e.CIDR = netip.MustParsePrefix(world) })
	}
	regions := []string{"10.79.0.0/16", "10.79.0.0/24", "10.79.0.0/29", "10.79.0.4/30", "192.0.2.0/24", "192.0.2.128/25",
		"fd79::/64", "fd79::/120", "fd79::4/126", "2001:db8::/32", "::/1",
		// Single addresses (host entries of the hash): world peers and pods.
		"192.0.2.1/32", "10.79.0.9/32", "10.79.0.2/32", "fd79::9/128", "fd79::3/128", "fd80::1/128"}
	for _, reg := range regions {
		if r.IntN(2) == 0 {
			continue
		}
		pfx := netip.MustParsePrefix(reg)
		if r.IntN(2) == 0 { // complete: every protocol decided
			out = append(out, policy.Entry{Rule: rule(), CIDR: pfx})
		}
		peerEntries(r.IntN(4), func(e *policy.Entry) { e.CIDR = pfx })
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// TestResolvedVerdictTable compares, packet by packet through
// PROG_TEST_RUN, the kernel's verdict, the rule and reason its event names
// and the Go model's decision (what revocation judges with) with a resolved
// direction's contract read literally (refDecide), for random resolved
// directions on both sides: deny and allow entries on identities, nested
// and overlapping port ranges (summary, chunks and trie), any peer, nested
// CIDR regions IPv4 and IPv6 (longest prefix only, no union), audited rules
// (FlagAudit); TCP, UDP, SCTP and ICMP.
func TestResolvedVerdictTable(t *testing.T) {
	requireRoot(t)
	p, rd := tableProbe(t)

	self4, self6 := netip.MustParseAddr("10.78.0.1"), netip.MustParseAddr("fd78::1")
	var idents []uint32
	var peers []tablePeer
	dp := &policy.Datapath{}
	for i := range 8 {
		id := uint32(1000 + i)
		ips := []netip.Addr{netip.AddrFrom4([4]byte{10, 79, 0, byte(i + 1)}), netip.MustParseAddr(fmt.Sprintf("fd79::%x", i+1))}
		idents = append(idents, id)
		dp.Identities = append(dp.Identities, policy.Identity{ID: id, IPs: ips})
		peers = append(peers, tablePeer{ips[0], id}, tablePeer{ips[1], id})
	}
	for _, ip := range []string{"192.0.2.1", "192.0.2.130", "10.80.0.1", "203.0.113.9", "10.79.0.9", "10.79.1.9",
		"fd79::9", "fd79::1:9", "2001:db8::1", "fd80::1"} {
		peers = append(peers, tablePeer{netip.MustParseAddr(ip), policy.IdentityWorld})
	}
	ports := []uint16{0, 1, 53, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 700, 1000, 1450, 2047, 2048, 2600, 8080, 30000, 65535}

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 5))
	nextRule := policy.FirstRuleID
	checked, allowed, denied, audited := 0, 0, 0, 0
	for round := range 10 {
		ep := policy.Endpoint{ID: 1, Namespace: "x", Name: "e", IPs: []netip.Addr{self4, self6}, Identity: 300,
			Ingress: policy.EndpointPolicy{Resolved: true, Entries: randomResolved(r, idents, &nextRule)},
			Egress:  policy.EndpointPolicy{Resolved: true, Isolated: round%2 == 0, Entries: randomResolved(r, idents, &nextRule)}}
		rdp := *dp
		rdp.Identities = append(slices.Clone(dp.Identities), policy.Identity{ID: 300, IPs: ep.IPs})
		rdp.Endpoints = []policy.Endpoint{ep}
		if _, err := p.Apply(&rdp); err != nil {
			t.Fatalf("round %d: Apply: %v", round, err)
		}
		tablePackets(t, p, rd, round, &ep, peers, edgePorts(ports, ep.Ingress.Entries, ep.Egress.Entries), func(pk *tablePacket) {
			want := refDecide(pk.entries, pk.peer.ip, pk.peer.id, pk.proto, pk.port)
			checked++
			switch {
			case pk.got != ruleAllows(want):
				t.Errorf("%s: kernel allowed=%v, contract decides rule %#x", pk.where, pk.got, want)
			case pk.rule != want || pk.model != want:
				t.Errorf("%s: event names rule %#x, Go model %#x, contract %#x", pk.where, pk.rule, pk.model, want)
			case pk.reason != wantReason(want):
				t.Errorf("%s: reason %d for rule %#x", pk.where, pk.reason, want)
			case (pk.ev.Flags&FlagAudit != 0) != (want&policy.RuleAudit != 0):
				t.Errorf("%s: flags %#x for rule %#x", pk.where, pk.ev.Flags, want)
			}
			if pk.got {
				allowed++
			} else if want != 0 {
				denied++
			}
			if want&policy.RuleAudit != 0 {
				audited++
			}
		})
		if t.Failed() {
			break
		}
	}
	t.Logf("%d packets checked: %d allowed, %d denied by a rule, %d audited", checked, allowed, denied, audited)
	if allowed == 0 || denied == 0 || audited == 0 {
		t.Errorf("the table does not test every outcome")
	}
}

// TestBuildResolvedErrors: entries a resolved direction cannot have, and
// deny entries outside one, are refused with the rule named.
func TestBuildResolvedErrors(t *testing.T) {
	for _, c := range []struct {
		name     string
		resolved bool
		e        policy.Entry
		want     string
	}{
		{"except", true, policy.Entry{Rule: 20, CIDR: netip.MustParsePrefix("10.0.0.0/8"), Except: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}, "rule 20: CIDR 10.0.0.0/8 has excepts"},
		{"empty range", true, policy.Entry{Rule: 21 | policy.RuleDeny, Identity: 300, Protocol: "TCP", PortMin: 90, PortMax: 80}, "rule 21: port range 90-80 is empty"},
		{"deny not resolved", false, policy.Entry{Rule: 22 | policy.RuleDeny, Identity: 300}, "rule 22 denies, but the direction is not resolved"},
	} {
		_, err := buildDirection([]policy.Entry{c.e}, c.resolved)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
	// A resolved direction is never "within" another: added entries can deny.
	allow := []policy.Entry{{Rule: 20, Identity: 300}}
	more := append(slices.Clone(allow), policy.Entry{Rule: 21 | policy.RuleDeny, Identity: 301})
	plainOld, _ := buildDirection(allow, false)
	plainNew, _ := buildDirection(append(slices.Clone(allow), policy.Entry{Rule: 21, Identity: 301}), false)
	resOld, _ := buildDirection(allow, true)
	resNew, _ := buildDirection(more, true)
	if !plainOld.within(plainNew) || resOld.within(resNew) || plainOld.within(resOld) {
		t.Errorf("within: plain %v, resolved %v, plain->resolved %v; want true, false, false",
			plainOld.within(plainNew), resOld.within(resNew), plainOld.within(resOld))
	}
}

// TestDisjointRanges: nested and overlapping ranges become disjoint ones
// where each port keeps its narrowest range (the first of equal ones).
func TestDisjointRanges(t *testing.T) {
	e := func(rule uint32, lo, hi uint16) policy.Entry {
		return policy.Entry{Rule: rule, Protocol: "TCP", PortMin: lo, PortMax: hi}
	}
	got := disjointRanges([]policy.Entry{e(1, 1000, 2000), e(2, 1500, 1600), e(3, 1550, 1550), e(4, 1500, 1600), e(5, 1900, 2100)})
	want := []policy.Entry{e(1, 1000, 1499), e(2, 1500, 1549), e(3, 1550, 1550), e(2, 1551, 1600), e(1, 1601, 1899), e(5, 1900, 2100)}
	if !slices.EqualFunc(got, want, func(x, y policy.Entry) bool { return fmt.Sprint(x) == fmt.Sprint(y) }) {
		t.Errorf("disjointRanges:\n got %v\nwant %v", got, want)
	}
}

// TestDesiredNodeIdentities: a node identity's addresses are written with
// that identity, node addresses in none keep the host identity, and a
// resolved direction is consulted (isolation flag) even when NetworkPolicy
// does not isolate the pod.
func TestDesiredNodeIdentities(t *testing.T) {
	n1, n2, pod := netip.MustParseAddr("172.18.0.1"), netip.MustParseAddr("172.18.0.2"), netip.MustParseAddr("10.0.0.5")
	dp := &policy.Datapath{
		HostIPs:    []netip.Addr{n1, n2},
		Identities: []policy.Identity{{ID: 400, Node: true, IPs: []netip.Addr{n1}}, {ID: 300, IPs: []netip.Addr{pod}}},
		Endpoints: []policy.Endpoint{{ID: 1, Name: "p", IPs: []netip.Addr{pod}, Identity: 300,
			Ingress: policy.EndpointPolicy{Resolved: true, Entries: regions(policy.RuleNotIsolated)}}},
	}
	p := &Probe{state: applied{pairs: map[uint32]uint32{}}}
	w, err := p.desired(dp)
	if err != nil {
		t.Fatal(err)
	}
	if w.identityOf(n1) != 400 || w.identityOf(n2) != policy.IdentityHost || w.identityOf(pod) != 300 {
		t.Errorf("identities: node-1 %d, node-2 %d, pod %d; want 400, %d, 300", w.identityOf(n1), w.identityOf(n2), w.identityOf(pod), policy.IdentityHost)
	}
	ep := w.endpoints[addr16(pod)]
	if ep.Flags != epIsolatedIngress || w.dirs[ep.SlotIngress] == nil || !w.dirs[ep.SlotIngress].resolved {
		t.Errorf("endpoint flags %#x, ingress direction %+v: want the resolved ingress consulted", ep.Flags, w.dirs[ep.SlotIngress])
	}
}
