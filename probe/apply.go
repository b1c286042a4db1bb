//go:build linux

package probe

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// Values shared with netpol.c.
const (
	kindCIDR = 1
	kindRule = 2

	epIsolatedIngress = 1
	epIsolatedEgress  = 2

	// pseudoIdentityBit marks the identities a policy trie gives to a set of
	// CIDR blocks; they never collide with pod identities (< 1<<31).
	pseudoIdentityBit = 1 << 31

	maxEndpoints = 65536
)

type policyKey = netpolNetpolPolicyKey

// trie is the content of one endpoint direction's policy map.
type trie map[policyKey]uint32

// applied is what the maps hold, as last written by this process (or
// recovered from the pins at Load).
type applied struct {
	dp        *policy.Datapath
	ipcache   map[netip.Prefix]uint32
	endpoints map[[16]uint8]netpolNetpolEndpoint
	// pairs maps an endpoint ID to its slot pair k (slots 2k and 2k+1).
	pairs map[uint32]uint32
	// tries are the contents of slots; a slot absent here is unknown (after
	// a restart) or empty, and is rewritten on the next Apply.
	tries map[uint32]trie
}

// recover reads the pinned endpoints and ipcache so that a restarted agent
// keeps slot assignments and applies minimal diffs.
func (p *Probe) recover() error {
	p.state = applied{ipcache: map[netip.Prefix]uint32{}, endpoints: map[[16]uint8]netpolNetpolEndpoint{},
		pairs: map[uint32]uint32{}, tries: map[uint32]trie{}}
	var k [16]uint8
	var ep netpolNetpolEndpoint
	it := p.objs.NetpolEndpoints.Iterate()
	for it.Next(&k, &ep) {
		p.state.endpoints[k] = ep
		p.state.pairs[ep.Id] = ep.SlotIngress / 2
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("reading pinned endpoints: %w", err)
	}
	var ik netpolNetpolIpcacheKey
	var id uint32
	it = p.objs.NetpolIpcache.Iterate()
	for it.Next(&ik, &id) {
		a := netip.AddrFrom16(ik.Addr)
		pfx := netip.PrefixFrom(a, int(ik.Prefixlen))
		p.state.ipcache[pfx] = id
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("reading pinned ipcache: %w", err)
	}
	return nil
}

// ApplyResult says what Apply changed.
type ApplyResult struct {
	SlotsSwapped     int // endpoint directions whose policy map was replaced
	EndpointsWritten int
	EndpointsRemoved int
	IPCacheWritten   int
	IPCacheRemoved   int
	Revoked          uint // conntrack entries deleted
}

// Apply makes the maps enforce dp. Each endpoint direction whose rules
// changed gets a freshly built policy map, swapped in with one update of the
// slot array, so a packet sees either the old or the new rules, never a mix;
// unchanged directions are not touched. Isolation flags change in the order
// that keeps each direction at the old or the new verdict. Then, unless
// revocation is off, conntrack entries that dp denies are deleted in every
// attached namespace, so those connections are re-evaluated and dropped.
func (p *Probe) Apply(dp *policy.Datapath) (ApplyResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var res ApplyResult
	if p.closed {
		return res, errors.New("probe is closed")
	}
	want, err := p.desired(dp)
	if err != nil {
		return res, err
	}

	// 1. Identities first, so new rules find their peers.
	for pfx, id := range want.ipcache {
		if old, ok := p.state.ipcache[pfx]; ok && old == id {
			continue
		}
		k := ipcacheKey(pfx)
		if err := p.objs.NetpolIpcache.Put(&k, id); err != nil {
			return res, fmt.Errorf("writing ipcache %s: %w", pfx, err)
		}
		p.state.ipcache[pfx] = id
		res.IPCacheWritten++
	}

	// 2. Swap changed policy maps of isolated directions.
	slotsWanted := map[uint32]bool{}
	for slot, t := range want.tries {
		slotsWanted[slot] = true
		if old, ok := p.state.tries[slot]; ok && triesEqual(old, t) {
			continue
		}
		if err := p.swapSlot(slot, t); err != nil {
			return res, err
		}
		p.state.tries[slot] = t
		res.SlotsSwapped++
	}

	// 3. Endpoint entries (isolation flags, slots).
	for k, ep := range want.endpoints {
		if old, ok := p.state.endpoints[k]; ok && old == ep {
			continue
		}
		if err := p.objs.NetpolEndpoints.Put(&k, &ep); err != nil {
			return res, fmt.Errorf("writing endpoint %d: %w", ep.Id, err)
		}
		p.state.endpoints[k] = ep
		res.EndpointsWritten++
	}
	for k, ep := range p.state.endpoints {
		if _, ok := want.endpoints[k]; ok {
			continue
		}
		if err := p.objs.NetpolEndpoints.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return res, fmt.Errorf("removing endpoint %d: %w", ep.Id, err)
		}
		delete(p.state.endpoints, k)
		res.EndpointsRemoved++
	}

	// 4. Empty the slots of directions no longer isolated (their flag is
	// already clear) and of removed endpoints.
	for slot := range p.state.tries {
		if slotsWanted[slot] {
			continue
		}
		if err := p.objs.NetpolPolicySlots.Delete(slot); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return res, fmt.Errorf("emptying slot %d: %w", slot, err)
		}
		delete(p.state.tries, slot)
	}
	p.state.pairs = want.pairs

	// 5. Identities that left.
	for pfx := range p.state.ipcache {
		if _, ok := want.ipcache[pfx]; ok {
			continue
		}
		k := ipcacheKey(pfx)
		if err := p.objs.NetpolIpcache.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return res, fmt.Errorf("removing ipcache %s: %w", pfx, err)
		}
		delete(p.state.ipcache, pfx)
		res.IPCacheRemoved++
	}
	p.state.dp = dp

	if p.revoke {
		n, err := p.revokeDenied(want)
		res.Revoked = n
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// swapSlot builds a new policy map holding t and installs it in slot.
func (p *Probe) swapSlot(slot uint32, t trie) error {
	spec := p.innerSpec.Copy()
	spec.Name = "netpol_policy"
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return fmt.Errorf("creating policy map for slot %d: %w", slot, err)
	}
	defer m.Close() // the slot array holds its own reference
	keys := make([]policyKey, 0, len(t))
	vals := make([]netpolNetpolPolicyValue, 0, len(t))
	for k, v := range t {
		keys = append(keys, k)
		vals = append(vals, netpolNetpolPolicyValue{Value: v})
	}
	if len(keys) > 0 {
		if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
			if !errors.Is(err, ebpf.ErrNotSupported) {
				return fmt.Errorf("filling policy map for slot %d: %w", slot, err)
			}
			for i := range keys {
				if err := m.Put(&keys[i], &vals[i]); err != nil {
					return fmt.Errorf("filling policy map for slot %d: %w", slot, err)
				}
			}
		}
	}
	if err := p.objs.NetpolPolicySlots.Put(slot, m); err != nil {
		return fmt.Errorf("installing policy map in slot %d: %w", slot, err)
	}
	return nil
}

func triesEqual(a, b trie) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// desiredState is dp in map form.
type desiredState struct {
	ipcache   map[netip.Prefix]uint32
	endpoints map[[16]uint8]netpolNetpolEndpoint
	pairs     map[uint32]uint32
	tries     map[uint32]trie
}

func (p *Probe) desired(dp *policy.Datapath) (*desiredState, error) {
	w := &desiredState{ipcache: map[netip.Prefix]uint32{}, endpoints: map[[16]uint8]netpolNetpolEndpoint{},
		pairs: map[uint32]uint32{}, tries: map[uint32]trie{}}
	for _, id := range dp.Identities {
		for _, ip := range id.IPs {
			w.ipcache[hostPrefix(ip)] = id.ID
		}
	}
	for _, ip := range dp.HostIPs {
		w.ipcache[hostPrefix(ip)] = policy.IdentityHost
	}
	// Slot pairs: keep existing ones, give new endpoints the lowest free.
	used := map[uint32]bool{}
	for _, ep := range dp.Endpoints {
		if pair, ok := p.state.pairs[ep.ID]; ok {
			w.pairs[ep.ID] = pair
			used[pair] = true
		}
	}
	next := uint32(0)
	for _, ep := range dp.Endpoints {
		if _, ok := w.pairs[ep.ID]; ok {
			continue
		}
		for used[next] {
			next++
		}
		if next >= maxEndpoints {
			return nil, fmt.Errorf("more than %d local endpoints", maxEndpoints)
		}
		w.pairs[ep.ID] = next
		used[next] = true
	}
	for _, ep := range dp.Endpoints {
		pair := w.pairs[ep.ID]
		v := netpolNetpolEndpoint{Id: ep.ID, Identity: ep.Identity, SlotIngress: 2 * pair, SlotEgress: 2*pair + 1}
		if ep.Ingress.Isolated {
			v.Flags |= epIsolatedIngress
			t, err := buildTrie(ep.Ingress.Entries)
			if err != nil {
				return nil, fmt.Errorf("endpoint %s/%s ingress: %w", ep.Namespace, ep.Name, err)
			}
			w.tries[v.SlotIngress] = t
		}
		if ep.Egress.Isolated {
			v.Flags |= epIsolatedEgress
			t, err := buildTrie(ep.Egress.Entries)
			if err != nil {
				return nil, fmt.Errorf("endpoint %s/%s egress: %w", ep.Namespace, ep.Name, err)
			}
			w.tries[v.SlotEgress] = t
		}
		for _, ip := range ep.IPs {
			w.endpoints[addr16(ip)] = v
		}
	}
	return w, nil
}

func hostPrefix(ip netip.Addr) netip.Prefix {
	return netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen())
}

// mapped is pfx as an IPv4-mapped IPv6 prefix when it is IPv4.
func mapped(pfx netip.Prefix) netip.Prefix {
	pfx = pfx.Masked()
	if pfx.Addr().Is4() {
		return netip.PrefixFrom(netip.AddrFrom16(pfx.Addr().As16()), pfx.Bits()+96)
	}
	return pfx
}

func ipcacheKey(pfx netip.Prefix) netpolNetpolIpcacheKey {
	m := mapped(pfx)
	return netpolNetpolIpcacheKey{Prefixlen: uint32(m.Bits()), Addr: m.Addr().As16()}
}

func protoNumber(p corev1.Protocol) (uint8, error) {
	switch p {
	case "":
		return 0, nil
	case corev1.ProtocolTCP:
		return 6, nil
	case corev1.ProtocolUDP:
		return 17, nil
	case corev1.ProtocolSCTP:
		return 132, nil
	}
	return 0, fmt.Errorf("protocol %q is not TCP, UDP or SCTP", p)
}

// ruleKey is the trie key for identity/protocol/port prefix.
func ruleKey(identity uint32, proto uint8, port uint16, portBits int) policyKey {
	k := policyKey{Kind: kindRule}
	k.Data[0], k.Data[1], k.Data[2], k.Data[3] = uint8(identity>>24), uint8(identity>>16), uint8(identity>>8), uint8(identity)
	switch {
	case proto == 0:
		k.Prefixlen = 8 + 32
	default:
		k.Data[4] = proto
		k.Prefixlen = uint32(8 + 32 + 8 + portBits)
		port &^= uint16((1 << (16 - portBits)) - 1)
		if portBits == 0 {
			port = 0
		}
		k.Data[5], k.Data[6] = uint8(port>>8), uint8(port)
	}
	return k
}

func cidrKey(pfx netip.Prefix) policyKey {
	m := mapped(pfx)
	k := policyKey{Kind: kindCIDR, Prefixlen: uint32(8 + m.Bits())}
	a := m.Addr().As16()
	copy(k.Data[:16], a[:])
	return k
}

// portBlocks splits lo..hi into aligned power-of-two blocks: (start, number
// of fixed leading bits). 0..65535 is one block with 0 fixed bits.
func portBlocks(lo, hi uint16) [][2]int {
	var out [][2]int
	start, end := int(lo), int(hi)
	for start <= end {
		size := 1 << 16
		if start != 0 {
			size = 1 << bits.TrailingZeros(uint(start))
		}
		for start+size-1 > end {
			size >>= 1
		}
		out = append(out, [2]int{start, 16 - bits.TrailingZeros(uint(size))})
		start += size
	}
	return out
}

func putMin(t trie, k policyKey, rule uint32) {
	if old, ok := t[k]; !ok || rule < old {
		t[k] = rule
	}
}

func addRule(t trie, identity uint32, e policy.Entry) error {
	proto, err := protoNumber(e.Protocol)
	if err != nil {
		return err
	}
	if proto == 0 {
		putMin(t, ruleKey(identity, 0, 0, 0), e.Rule)
		return nil
	}
	if e.PortMin > e.PortMax {
		return fmt.Errorf("rule %d: port range %d-%d is empty", e.Rule, e.PortMin, e.PortMax)
	}
	for _, b := range portBlocks(e.PortMin, e.PortMax) {
		putMin(t, ruleKey(identity, proto, uint16(b[0]), b[1]), e.Rule)
	}
	return nil
}

type block struct {
	cidr   netip.Prefix
	except []netip.Prefix
}

func (b block) key() string {
	s := []string{b.cidr.String()}
	for _, e := range b.except {
		s = append(s, e.String())
	}
	return strings.Join(s, ",")
}

// buildTrie turns one direction's entries into its policy map content.
// ipBlocks are flattened: every CIDR and except (as a 128-bit prefix) gets a
// trie entry whose value is a pseudo identity for the set of blocks that
// contain every address for which it is the most specific prefix; rules on
// blocks become rules on every pseudo identity whose set holds the block.
func buildTrie(entries []policy.Entry) (trie, error) {
	t := trie{}
	blocks := map[string]block{}
	byBlock := map[string][]policy.Entry{}
	for _, e := range entries {
		if !e.CIDR.IsValid() {
			if err := addRule(t, e.Identity, e); err != nil {
				return nil, err
			}
			continue
		}
		b := block{cidr: mapped(e.CIDR)}
		for _, x := range e.Except {
			b.except = append(b.except, mapped(x))
		}
		slices.SortFunc(b.except, func(x, y netip.Prefix) int { return strings.Compare(x.String(), y.String()) })
		blocks[b.key()] = b
		byBlock[b.key()] = append(byBlock[b.key()], e)
	}
	if len(blocks) == 0 {
		return t, nil
	}
	relevant := map[netip.Prefix]bool{}
	for _, b := range blocks {
		relevant[b.cidr] = true
		for _, x := range b.except {
			relevant[x] = true
		}
	}
	prefixes := make([]netip.Prefix, 0, len(relevant))
	for pfx := range relevant {
		prefixes = append(prefixes, pfx)
	}
	sort.Slice(prefixes, func(i, j int) bool { return prefixes[i].String() < prefixes[j].String() })
	blockKeys := make([]string, 0, len(blocks))
	for k := range blocks {
		blockKeys = append(blockKeys, k)
	}
	slices.Sort(blockKeys)
	pseudo := map[string]uint32{}
	for _, pfx := range prefixes {
		var set []string
		for _, bk := range blockKeys {
			b := blocks[bk]
			if !covers(b.cidr, pfx) {
				continue
			}
			excluded := false
			for _, x := range b.except {
				if covers(x, pfx) {
					excluded = true
					break
				}
			}
			if !excluded {
				set = append(set, bk)
			}
		}
		if len(set) == 0 {
			t[cidrKey(pfx)] = 0 // shadows wider blocks: no rule here
			continue
		}
		sk := strings.Join(set, "|")
		id, ok := pseudo[sk]
		if !ok {
			id = pseudoIdentityBit | uint32(len(pseudo)+1)
			pseudo[sk] = id
			for _, bk := range set {
				for _, e := range byBlock[bk] {
					if err := addRule(t, id, e); err != nil {
						return nil, err
					}
				}
			}
		}
		t[cidrKey(pfx)] = id
	}
	return t, nil
}

// covers reports whether outer contains all of inner (both mapped, masked).
func covers(outer, inner netip.Prefix) bool {
	return outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}

// lpm is the kernel's longest-prefix match over t for a full key.
func (t trie) lpm(full policyKey, maxBits int) (uint32, bool) {
	for plen := maxBits; plen >= 8; plen-- {
		k := maskKey(full, plen)
		if v, ok := t[k]; ok {
			return v, true
		}
	}
	return 0, false
}

func maskKey(k policyKey, plen int) policyKey {
	out := policyKey{Prefixlen: uint32(plen), Kind: k.Kind}
	dbits := plen - 8
	for i := 0; i < len(k.Data) && dbits > 0; i++ {
		if dbits >= 8 {
			out.Data[i] = k.Data[i]
			dbits -= 8
			continue
		}
		out.Data[i] = k.Data[i] & uint8(0xff<<(8-dbits))
		dbits = 0
	}
	return out
}

// evaluate is netpol.c's evaluate() in Go: the allowing rule ID, or 0.
func (t trie) evaluate(peer netip.Addr, peerIdentity uint32, proto uint8, port uint16) uint32 {
	look := func(id uint32) uint32 {
		v, _ := t.lpm(ruleKey(id, proto, port, 16), 8+32+8+16)
		return v
	}
	if r := look(peerIdentity); r != 0 {
		return r
	}
	if r := look(policy.IdentityAny); r != 0 {
		return r
	}
	ck := policyKey{Kind: kindCIDR}
	a := addr16(peer)
	copy(ck.Data[:16], a[:])
	pseudo, ok := t.lpm(ck, 8+128)
	if !ok || pseudo == 0 {
		return 0
	}
	return look(pseudo)
}

func (w *desiredState) identityOf(a netip.Addr) uint32 {
	if ep, ok := w.endpoints[addr16(a)]; ok {
		return ep.Identity
	}
	a = a.Unmap()
	for b := a.BitLen(); b >= 0; b-- {
		if id, ok := w.ipcache[netip.PrefixFrom(a, b).Masked()]; ok {
			return id
		}
	}
	return policy.IdentityWorld
}

// allows is the verdict of netpol.c for a new connection, in Go.
func (w *desiredState) allows(src, dst netip.Addr, proto uint8, dport uint16) bool {
	sep, sok := w.endpoints[addr16(src)]
	dep, dok := w.endpoints[addr16(dst)]
	if sok && sep.Flags&epIsolatedEgress != 0 {
		t, ok := w.tries[sep.SlotEgress]
		if !ok || t.evaluate(dst, w.identityOf(dst), proto, dport) == 0 {
			return false
		}
	}
	if dok && dep.Flags&epIsolatedIngress != 0 {
		t, ok := w.tries[dep.SlotIngress]
		if !ok || t.evaluate(src, w.identityOf(src), proto, dport) == 0 {
			return false
		}
	}
	return true
}

// revokeFilter matches conntrack entries the new policy denies. The
// datapath judged the connection after DNAT: source = original source,
// destination = the reply's source (the chosen backend).
type revokeFilter struct{ w *desiredState }

func (f revokeFilter) MatchConntrackFlow(fl *netlink.ConntrackFlow) bool {
	src, ok1 := netip.AddrFromSlice(fl.Forward.SrcIP)
	dst, ok2 := netip.AddrFromSlice(fl.Reverse.SrcIP)
	if !ok1 || !ok2 {
		return false
	}
	proto := fl.Forward.Protocol
	port := fl.Reverse.SrcPort
	switch proto {
	case 6, 17, 132:
	default:
		port = 0
	}
	return !f.w.allows(src.Unmap(), dst.Unmap(), proto, port)
}

func (p *Probe) revokeDenied(w *desiredState) (uint, error) {
	var total uint
	var errs []error
	for _, a := range p.attach {
		h, err := netlink.NewHandleAt(a.ns, unix.NETLINK_NETFILTER)
		if err != nil {
			errs = append(errs, fmt.Errorf("opening conntrack in %q: %w", a.name, err))
			continue
		}
		for _, fam := range []netlink.InetFamily{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			n, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, fam, revokeFilter{w})
			total += n
			if err != nil {
				errs = append(errs, fmt.Errorf("revoking denied connections in %q: %w", a.name, err))
			}
		}
		h.Close()
	}
	return total, errors.Join(errs...)
}
