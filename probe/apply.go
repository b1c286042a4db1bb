//go:build linux

package probe

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/bits"
	"net/netip"
	"slices"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// Values shared with netpol.c.
const (
	kindCIDR = 1
	kindRule = 2

	rkindPort    = 1
	rkindSummary = 2
	rkindRanges  = 3
	rkindHost    = 4

	sumRangeTCP  = 1 // << protocol index
	sumCIDR      = 8
	sumChunksTCP = 16 // << protocol index
	chunkMore    = 128
	sumHosts     = 256

	// rangeChunks: port ranges of one identity and protocol beyond the
	// summary's go to at most this many hash chunks (two each), then to
	// trie blocks. Keep equal to NETPOL_RANGE_CHUNKS.
	rangeChunks = 8

	// exactPortsMax: a port range of at most this many ports becomes
	// exact-port hash entries instead of trie blocks.
	exactPortsMax = 16

	epIsolatedIngress = 1
	epIsolatedEgress  = 2

	// pseudoIdentityBit marks the identities a policy trie gives to a set of
	// CIDR blocks; they never collide with pod identities (< 1<<31).
	pseudoIdentityBit = 1 << 31

	maxEndpoints = 65536
)

type (
	policyKey = netpolNetpolPolicyKey
	ruleKey   = netpolNetpolRuleKey
	ruleValue = netpolNetpolRuleValue
	hostValue = netpolNetpolHostValue
)

// A host entry goes into the hash as a rule value: the same bytes, which
// the kernel reads as struct netpol_host_value (this fails to compile if
// the sizes differ).
var _ = [1]struct{}{}[unsafe.Sizeof(hostValue{})-unsafe.Sizeof(ruleValue{})]

// trie is the content of one endpoint direction's LPM trie: port-range
// blocks and CIDR entries.
type trie map[policyKey]uint32

// direction is the content of one endpoint direction's policy: the hash
// (exact ports and per-identity summaries, TrieSlot left 0: it is filled
// when written; and hosts, its single-address CIDR entries) and the trie.
// resolved: built from a resolved EndpointPolicy, whose entries decide
// (allow or deny) instead of adding allows.
type direction struct {
	rules    map[ruleKey]ruleValue
	hosts    map[ruleKey]hostValue
	trie     trie
	resolved bool
}

// within reports whether o allows everything d did: every entry of d is in o
// with the same value (entries only add allows; a more specific CIDR entry's
// set of blocks holds every block of the wider ones around it). Never for a
// resolved direction, old or new: there an added entry can deny (a deny
// entry, or a narrower CIDR region shadowing a wider one's allows).
func (d *direction) within(o *direction) bool {
	if d.resolved || o.resolved {
		return false
	}
	for k, v := range d.rules {
		if w, ok := o.rules[k]; !ok || w != v {
			return false
		}
	}
	for k, v := range d.hosts {
		if w, ok := o.hosts[k]; !ok || w != v {
			return false
		}
	}
	for k, v := range d.trie {
		if w, ok := o.trie[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func (d *direction) equal(o *direction) bool {
	return d.resolved == o.resolved && maps.Equal(d.rules, o.rules) && maps.Equal(d.hosts, o.hosts) && maps.Equal(d.trie, o.trie)
}

// applied is what the maps hold, as last written by this process (or
// recovered from the pins at Load).
type applied struct {
	dp      *policy.Datapath
	ipcache map[netip.Prefix]uint32
	// hosts are the ipcache prefixes held by netpol_hosts (single
	// addresses, up to maxHosts); the others are in netpol_ipcache.
	hosts     map[netip.Prefix]bool
	endpoints map[[16]uint8]netpolNetpolEndpoint
	// pairs maps an endpoint ID to its slot pair k (slots 2k and 2k+1).
	pairs map[uint32]uint32
	// dirs are the contents of slots; a slot absent here is unknown (after
	// a restart) or empty, and is rewritten on the next Apply.
	dirs map[uint32]*direction
	// trieGen is the trie generation (0 or 1: trie slot 2*slot+gen) a slot's
	// hash refers to, when known; absent: no trie, or unknown after a restart.
	trieGen map[uint32]int
}

// recover reads the pinned endpoints and ipcache so that a restarted agent
// keeps slot assignments and applies minimal diffs.
func (p *Probe) recover() error {
	p.state = applied{ipcache: map[netip.Prefix]uint32{}, hosts: map[netip.Prefix]bool{}, endpoints: map[[16]uint8]netpolNetpolEndpoint{},
		pairs: map[uint32]uint32{}, dirs: map[uint32]*direction{}, trieGen: map[uint32]int{}}
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
	it = p.objs.NetpolHosts.Iterate()
	for it.Next(&k, &id) {
		pfx := hostPrefix(netip.AddrFrom16(k))
		p.state.ipcache[pfx] = id
		p.state.hosts[pfx] = true
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("reading pinned host identities: %w", err)
	}
	return nil
}

// maxHosts is netpol_hosts' size (netpol.c).
const maxHosts = 1 << 19

// inHosts says whether pfx's identity belongs in netpol_hosts (a single
// address, while the map has room beside pending entries on their way).
func (p *Probe) inHosts(pfx netip.Prefix, pending int) bool {
	return p.state.hosts[pfx] || pfx.IsSingleIP() && len(p.state.hosts)+pending < maxHosts
}

// writeIdentity maps pfx to id: single addresses in netpol_hosts while it
// has room, everything else in netpol_ipcache.
func (p *Probe) writeIdentity(pfx netip.Prefix, id uint32) error {
	if p.inHosts(pfx, 0) {
		k := addr16(pfx.Addr())
		if err := p.objs.NetpolHosts.Put(&k, id); err != nil {
			return fmt.Errorf("writing host identity %s: %w", pfx, err)
		}
		p.state.hosts[pfx] = true
	} else {
		k := ipcacheKey(pfx)
		if err := p.objs.NetpolIpcache.Put(&k, id); err != nil {
			return fmt.Errorf("writing ipcache %s: %w", pfx, err)
		}
	}
	p.state.ipcache[pfx] = id
	return nil
}

// hostBatch is single-address identities for netpol_hosts, written
// together (writeHosts).
type hostBatch struct {
	pfxs []netip.Prefix
	keys [][16]uint8
	ids  []uint32
}

func (h *hostBatch) add(pfx netip.Prefix, id uint32) {
	h.pfxs = append(h.pfxs, pfx)
	h.keys = append(h.keys, addr16(pfx.Addr()))
	h.ids = append(h.ids, id)
}

// hostBatchSize bounds one batch update (the kernel copies the batch in).
const hostBatchSize = 8192

// writeHosts writes h into netpol_hosts with batch updates, one system call
// per hostBatchSize entries instead of one per address (an agent's first
// Apply writes every pod address of the cluster), or one by one where the
// kernel has no batch update.
func (p *Probe) writeHosts(h *hostBatch) error {
	for start := 0; start < len(h.pfxs); {
		end := min(start+hostBatchSize, len(h.pfxs))
		n, err := p.objs.NetpolHosts.BatchUpdate(h.keys[start:end], h.ids[start:end], nil)
		for i := start; i < start+n; i++ {
			p.state.hosts[h.pfxs[i]] = true
			p.state.ipcache[h.pfxs[i]] = h.ids[i]
		}
		start += n
		if errors.Is(err, ebpf.ErrNotSupported) {
			for i := start; i < len(h.pfxs); i++ {
				if err := p.writeIdentity(h.pfxs[i], h.ids[i]); err != nil {
					return err
				}
			}
			return nil
		}
		if err != nil || n == 0 {
			return fmt.Errorf("writing %d host identities from %s: %v", end-start, h.pfxs[min(start, len(h.pfxs)-1)], cmp.Or(err, errors.New("none written")))
		}
	}
	return nil
}

func (p *Probe) removeIdentity(pfx netip.Prefix) error {
	var err error
	if p.state.hosts[pfx] {
		k := addr16(pfx.Addr())
		err = p.objs.NetpolHosts.Delete(&k)
		delete(p.state.hosts, pfx)
	} else {
		k := ipcacheKey(pfx)
		err = p.objs.NetpolIpcache.Delete(&k)
	}
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("removing identity of %s: %w", pfx, err)
	}
	delete(p.state.ipcache, pfx)
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
	// ConntrackScanned: revocation walked the conntrack table. An Apply that
	// only adds allows (or changes nothing) cannot deny an established flow
	// and skips the walk.
	ConntrackScanned bool
	// ConntrackAddresses: the walk read only the entries of this many
	// addresses (the kernel filtering by address); 0: the whole table.
	ConntrackAddresses int
}

// Apply makes the maps enforce dp. Each endpoint direction whose rules
// changed gets a freshly built policy map, swapped in with one update of the
// slot array, so a packet sees either the old or the new rules, never a mix;
// unchanged directions are not touched. Isolation flags change in the order
// that keeps each direction at the old or the new verdict. Then, unless
// revocation is off, conntrack entries that dp denies are deleted in every
// attached namespace, so those connections are re-evaluated and dropped.
//
// dp is read-only from then on: the next Apply recognises unchanged
// directions and address lists by their arrays (policy.Compile shares them
// between Datapaths), without comparing their contents.
func (p *Probe) Apply(dp *policy.Datapath) (ApplyResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var res ApplyResult
	if p.closed {
		return res, errors.New("probe is closed")
	}
	want, err := p.desired(dp)
	if err != nil {
		p.dirCache.reset()
		return res, err
	}
	defer p.dirCache.done()
	ipcacheSame := want.ipcacheSame
	p.ipcacheOf = nil // until this Apply completes

	// stricter: this Apply may deny a flow the maps allowed before, so
	// revocation must walk conntrack. Conservative: any identity change,
	// a direction that lost an entry, an endpoint newly isolated or changed.
	// scope: the addresses those changes concern (the identities' and the
	// endpoints'): only their entries can have become denied.
	stricter := false
	var scope revokeScope
	var stricterSlots map[uint32]bool

	// 1. Identities first, so new rules find their peers.
	var hosts hostBatch
	for pfx, id := range want.ipcache {
		if ipcacheSame {
			break
		}
		if old, ok := p.state.ipcache[pfx]; ok && old == id {
			continue
		}
		if p.inHosts(pfx, len(hosts.pfxs)) {
			hosts.add(pfx, id)
		} else if err := p.writeIdentity(pfx, id); err != nil {
			return res, err
		}
		res.IPCacheWritten++
		stricter = true
		scope.addPrefix(pfx)
	}
	if err := p.writeHosts(&hosts); err != nil {
		return res, err
	}

	// 2. Swap changed policy maps of isolated directions.
	slotsWanted := map[uint32]bool{}
	var swaps []slotSwap
	for slot, d := range want.dirs {
		slotsWanted[slot] = true
		if old, ok := p.state.dirs[slot]; ok && (old == d || old.equal(d)) {
			continue
		}
		if old, ok := p.state.dirs[slot]; !ok || !old.within(d) {
			stricter = true
			if stricterSlots == nil {
				stricterSlots = map[uint32]bool{}
			}
			stricterSlots[slot] = true
		}
		swaps = append(swaps, slotSwap{slot: slot, d: d})
	}
	if err := p.swapSlots(swaps); err != nil {
		return res, err
	}
	res.SlotsSwapped = len(swaps)

	// A slot pair new to its endpoint starts without the previous owner's
	// last new flow (the bypass self-check reads it per pod).
	oldPairs := map[uint32]bool{}
	for _, pair := range p.state.pairs {
		oldPairs[pair] = true
	}
	for _, pair := range want.pairs {
		if !oldPairs[pair] {
			if err := p.objs.NetpolEndpointSeen.Put(pair, uint64(0)); err != nil {
				return res, fmt.Errorf("resetting slot pair %d's last flow: %w", pair, err)
			}
		}
	}

	// 3. Endpoint entries (isolation flags, slots).
	for k, ep := range want.endpoints {
		old, ok := p.state.endpoints[k]
		if ok && old == ep {
			continue
		}
		isolation := uint32(epIsolatedIngress | epIsolatedEgress)
		if !ok && ep.Flags&isolation != 0 ||
			ok && (ep.Flags&isolation&^old.Flags != 0 || ep.Identity != old.Identity || ep.SlotIngress != old.SlotIngress || ep.SlotEgress != old.SlotEgress) {
			stricter = true
			scope.add(netip.AddrFrom16(k), ctBothSides)
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
	for slot := range p.state.dirs {
		if slotsWanted[slot] {
			continue
		}
		if err := p.emptySlot(slot); err != nil {
			return res, err
		}
		delete(p.state.dirs, slot)
	}
	p.state.pairs = want.pairs

	// 5. Identities that left.
	for pfx := range p.state.ipcache {
		if ipcacheSame {
			break
		}
		if _, ok := want.ipcache[pfx]; ok {
			continue
		}
		if err := p.removeIdentity(pfx); err != nil {
			return res, err
		}
		res.IPCacheRemoved++
		stricter = true
		scope.addPrefix(pfx)
	}
	p.state.dp = dp
	p.ipcacheOf = dp

	// These maps enforce now: older layouts' links that Attach kept go.
	var retireErr error
	pending := p.pendingRetire
	p.pendingRetire = nil
	for _, name := range pending {
		if err := p.retireLayouts(name); err != nil {
			p.pendingRetire = append(p.pendingRetire, name) // again at the next Apply
			retireErr = errors.Join(retireErr, fmt.Errorf("applied, but removing an older layout's links in %q: %w", name, err))
		}
	}

	if p.revoke && (stricter || p.revokeOwed) {
		if len(stricterSlots) > 0 {
			for k, ep := range want.endpoints {
				// Its ingress judged the connections to it (the
				// reply's source), its egress those from it.
				var sides ctSide
				if stricterSlots[ep.SlotIngress] {
					sides |= ctReplySource
				}
				if stricterSlots[ep.SlotEgress] {
					sides |= ctOrigSource
				}
				if sides != 0 {
					scope.add(netip.AddrFrom16(k), sides)
				}
			}
		}
		if p.revokeOwed {
			scope.all = true
		}
	}
	// A stricter change concerning no address (a slot of an endpoint gone)
	// has no entry to read.
	if p.revoke && (scope.all || len(scope.addrs) > 0) {
		n, err := p.revokeDenied(want, &scope)
		res.Revoked, res.ConntrackScanned = n, true
		if !scope.all {
			res.ConntrackAddresses = len(scope.addrs)
		}
		p.revokeOwed = err != nil
		if err != nil {
			return res, errors.Join(err, retireErr)
		}
	}
	return res, retireErr
}

// slotSwap is one direction to install in its slot.
type slotSwap struct {
	slot uint32
	d    *direction
	// set by swapSlots: the trie generation the new hash names (-1: none),
	// the one in use before, and the new maps.
	gen, old   int
	trie, hash *ebpf.Map
}

// swapSlots installs each direction in its slot: first its trie (if any,
// and unless it equals the one in use) in the trie slot of the generation
// not in use, then a new hash naming that trie, swapped in with one update
// of the slot array: the atomic step. Then the old generations' tries are
// removed, once no running program can still use them.
//
// The kernel waits for running programs (synchronize_rcu, ~12 ms here)
// after every update of a map of maps: one by one, a change to 100
// directions (a policy selecting a namespace) took 1.2 s. So the tries go
// in with one batch update and the hashes with another, one wait each; a
// single update after the hashes' batch waits explicitly, as kernels before
// 6.7 do not wait after a batch.
func (p *Probe) swapSlots(swaps []slotSwap) error {
	defer func() {
		for _, sw := range swaps {
			if sw.trie != nil {
				sw.trie.Close() // the arrays hold their own references
			}
			if sw.hash != nil {
				sw.hash.Close()
			}
		}
	}()
	var trieKeys, trieFDs []uint32
	for i := range swaps {
		sw := &swaps[i]
		old, err := p.trieGeneration(sw.slot)
		if err != nil {
			return err
		}
		sw.old, sw.gen = old, -1
		d := sw.d
		if prev, ok := p.state.dirs[sw.slot]; ok && old >= 0 && len(d.trie) > 0 && maps.Equal(prev.trie, d.trie) {
			sw.gen = old // same trie: only the hash changes
		} else if len(d.trie) > 0 {
			sw.gen = 0
			if old == 0 {
				sw.gen = 1
			}
			keys := make([]policyKey, 0, len(d.trie))
			vals := make([]netpolNetpolPolicyValue, 0, len(d.trie))
			for k, v := range d.trie {
				keys = append(keys, k)
				vals = append(vals, netpolNetpolPolicyValue{Value: v})
			}
			if sw.trie, err = newFilledMap(p.trieSpec, 0, keys, vals); err != nil {
				return fmt.Errorf("policy trie for slot %d: %w", sw.slot, err)
			}
			trieKeys = append(trieKeys, 2*sw.slot+uint32(sw.gen))
			trieFDs = append(trieFDs, uint32(sw.trie.FD()))
		}
		var trieSlot uint32
		if sw.gen >= 0 {
			trieSlot = 2*sw.slot + uint32(sw.gen)
		}
		keys := make([]ruleKey, 0, len(d.rules)+len(d.hosts))
		vals := make([]ruleValue, 0, len(d.rules)+len(d.hosts))
		for k, v := range d.rules {
			if k.Kind == rkindSummary {
				v.TrieSlot = trieSlot
			}
			keys = append(keys, k)
			vals = append(vals, v)
		}
		for k, v := range d.hosts {
			keys = append(keys, k)
			vals = append(vals, *(*ruleValue)(unsafe.Pointer(&v)))
		}
		if sw.hash, err = newFilledMap(p.hashSpec, uint32(max(1, len(keys))), keys, vals); err != nil {
			return fmt.Errorf("policy hash for slot %d: %w", sw.slot, err)
		}
	}
	if len(swaps) == 0 {
		return nil
	}
	if err := updateMaps(p.objs.NetpolPolicyTries, trieKeys, trieFDs); err != nil {
		return fmt.Errorf("installing policy tries: %w", err)
	}
	slotKeys := make([]uint32, len(swaps))
	hashFDs := make([]uint32, len(swaps))
	for i, sw := range swaps {
		slotKeys[i], hashFDs[i] = sw.slot, uint32(sw.hash.FD())
	}
	if err := updateMaps(p.objs.NetpolPolicySlots, slotKeys, hashFDs); err != nil {
		return fmt.Errorf("installing policy hashes: %w", err)
	}
	// The waiting update (see above): the last hash again.
	last := swaps[len(swaps)-1]
	if err := p.objs.NetpolPolicySlots.Put(last.slot, last.hash); err != nil {
		return fmt.Errorf("installing policy hash in slot %d: %w", last.slot, err)
	}
	for _, sw := range swaps {
		p.state.dirs[sw.slot] = sw.d
		if sw.gen >= 0 {
			p.state.trieGen[sw.slot] = sw.gen
		} else {
			delete(p.state.trieGen, sw.slot)
		}
	}
	for _, sw := range swaps {
		if sw.old >= 0 && sw.old != sw.gen {
			if err := p.objs.NetpolPolicyTries.Delete(2*sw.slot + uint32(sw.old)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("removing old policy trie of slot %d: %w", sw.slot, err)
			}
		}
	}
	return nil
}

// updateMaps writes the inner maps fds at keys of the map of maps m with
// one batch update (one wait for running programs), or one by one where
// the kernel has no batch update for it.
func updateMaps(m *ebpf.Map, keys, fds []uint32) error {
	if len(keys) == 0 {
		return nil
	}
	n, err := m.BatchUpdate(keys, fds, nil)
	if err == nil && n == len(keys) {
		return nil
	}
	if err != nil && !errors.Is(err, ebpf.ErrNotSupported) {
		return err
	}
	for i := n; i < len(keys); i++ {
		if err := m.Put(keys[i], fds[i]); err != nil {
			return fmt.Errorf("slot %d: %w", keys[i], err)
		}
	}
	return nil
}

// emptySlot removes a direction's hash, then its trie.
func (p *Probe) emptySlot(slot uint32) error {
	gen, err := p.trieGeneration(slot)
	if err != nil {
		return err
	}
	if err := p.objs.NetpolPolicySlots.Delete(slot); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("emptying slot %d: %w", slot, err)
	}
	if gen >= 0 {
		if err := p.objs.NetpolPolicyTries.Delete(2*slot + uint32(gen)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("emptying trie of slot %d: %w", slot, err)
		}
	}
	delete(p.state.trieGen, slot)
	return nil
}

// trieGeneration is the trie generation slot's hash uses, -1 for none.
// After a restart it is read from the pinned hash (the summary of identity
// "any" exists whenever there is a trie).
func (p *Probe) trieGeneration(slot uint32) (int, error) {
	if gen, ok := p.state.trieGen[slot]; ok {
		return gen, nil
	}
	if _, ok := p.state.dirs[slot]; ok {
		return -1, nil // written by this process without a trie
	}
	var id uint32
	if err := p.objs.NetpolPolicySlots.Lookup(slot, &id); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return -1, nil
		}
		return -1, fmt.Errorf("reading slot %d: %w", slot, err)
	}
	m, err := ebpf.NewMapFromID(ebpf.MapID(id))
	if errors.Is(err, unix.EPERM) {
		// Opening a map by ID needs CAP_SYS_ADMIN, which the agent does not
		// have: infer the generation from which trie slots are occupied.
		return p.trieGenerationFromTries(slot)
	}
	if err != nil {
		return -1, fmt.Errorf("opening the policy hash of slot %d: %w", slot, err)
	}
	defer m.Close()
	var v ruleValue
	if err := m.Lookup(summaryKey(policy.IdentityAny), &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return -1, nil
		}
		return -1, fmt.Errorf("reading the policy hash of slot %d: %w", slot, err)
	}
	if v.TrieSlot/2 != slot {
		return -1, nil
	}
	gen := int(v.TrieSlot % 2)
	p.state.trieGen[slot] = gen
	return gen, nil
}

// trieGenerationFromTries infers slot's trie generation from the occupied
// trie slots (reading an array of maps yields inner map IDs and needs no
// privilege beyond the pin). A completed swap leaves exactly one generation.
// Both are present only when a previous process stopped in the middle of a
// swap; the newer one (higher map ID) is then taken as current, so the next
// swap replaces the older, which at worst briefly pairs the old hash with a
// rebuilt trie of the same slot.
func (p *Probe) trieGenerationFromTries(slot uint32) (int, error) {
	var ids [2]uint32
	for gen := range ids {
		err := p.objs.NetpolPolicyTries.Lookup(2*slot+uint32(gen), &ids[gen])
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return -1, fmt.Errorf("reading trie %d of slot %d: %w", gen, slot, err)
		}
	}
	gen := -1
	switch {
	case ids[0] != 0 && ids[1] != 0:
		gen = 0
		if ids[1] > ids[0] {
			gen = 1
		}
	case ids[0] != 0:
		gen = 0
	case ids[1] != 0:
		gen = 1
	}
	if gen >= 0 {
		p.state.trieGen[slot] = gen
	}
	return gen, nil
}

// newFilledMap creates a map from spec (maxEntries if not 0) holding the
// keys and values.
func newFilledMap[K, V any](spec *ebpf.MapSpec, maxEntries uint32, keys []K, vals []V) (*ebpf.Map, error) {
	spec = spec.Copy()
	if maxEntries != 0 {
		spec.MaxEntries = maxEntries
	}
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return nil, fmt.Errorf("creating: %w", err)
	}
	if len(keys) == 0 {
		return m, nil
	}
	if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
		if !errors.Is(err, ebpf.ErrNotSupported) {
			m.Close()
			return nil, fmt.Errorf("filling: %w", err)
		}
		for i := range keys {
			if err := m.Put(&keys[i], &vals[i]); err != nil {
				m.Close()
				return nil, fmt.Errorf("filling: %w", err)
			}
		}
	}
	return m, nil
}

// desiredState is dp in map form.
type desiredState struct {
	ipcache map[netip.Prefix]uint32
	// ipcacheSame: ipcache is the one the maps hold (p.state's).
	ipcacheSame bool
	endpoints   map[[16]uint8]netpolNetpolEndpoint
	pairs       map[uint32]uint32
	dirs        map[uint32]*direction
}

// sameAddresses reports whether two Datapaths give every address the same
// identity. Compile shares the identities' address lists (read-only) between
// the Datapaths of one set of pods, so the same array is the same list.
func sameAddresses(a, b *policy.Datapath) bool {
	if len(a.Identities) != len(b.Identities) || !slices.Equal(a.HostIPs, b.HostIPs) {
		return false
	}
	for i := range a.Identities {
		x, y := &a.Identities[i], &b.Identities[i]
		if x.ID != y.ID || len(x.IPs) != len(y.IPs) || (len(x.IPs) > 0 && &x.IPs[0] != &y.IPs[0]) {
			return false
		}
	}
	return true
}

func (p *Probe) desired(dp *policy.Datapath) (*desiredState, error) {
	if p.dirCache == nil {
		p.dirCache = newDirectionCache()
	}
	w := &desiredState{endpoints: map[[16]uint8]netpolNetpolEndpoint{},
		pairs: map[uint32]uint32{}, dirs: map[uint32]*direction{}}
	if prev := p.ipcacheOf; prev != nil && sameAddresses(prev, dp) {
		// What the ipcache holds already (a policy changed, not a pod).
		w.ipcache, w.ipcacheSame = p.state.ipcache, true
	} else {
		w.ipcache = map[netip.Prefix]uint32{}
		// Node identities (Identity.Node) are written like pod identities; a
		// node address in none of them is the host.
		for _, id := range dp.Identities {
			for _, ip := range id.IPs {
				w.ipcache[hostPrefix(ip)] = id.ID
			}
		}
		for _, ip := range dp.HostIPs {
			if _, ok := w.ipcache[hostPrefix(ip)]; !ok {
				w.ipcache[hostPrefix(ip)] = policy.IdentityHost
			}
		}
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
		for _, side := range []struct {
			pol  *policy.EndpointPolicy
			flag uint32
			slot uint32
			name string
		}{{&ep.Ingress, epIsolatedIngress, v.SlotIngress, "ingress"}, {&ep.Egress, epIsolatedEgress, v.SlotEgress, "egress"}} {
			// A resolved direction always has its map consulted: its
			// decisions may deny a pod NetworkPolicy does not isolate.
			if !side.pol.Isolated && !side.pol.Resolved {
				continue
			}
			v.Flags |= side.flag
			d, err := p.dirCache.get(side.pol.Entries, side.pol.Resolved, func() (*direction, error) {
				return buildDirection(side.pol.Entries, side.pol.Resolved)
			})
			if err != nil {
				return nil, fmt.Errorf("endpoint %s/%s %s: %w", ep.Namespace, ep.Name, side.name, err)
			}
			w.dirs[side.slot] = d
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

// rangeKey is the trie key for identity/protocol/port block of portBits
// fixed leading bits.
func rangeKey(identity uint32, proto uint8, port uint16, portBits int) policyKey {
	k := policyKey{Kind: kindRule, Prefixlen: uint32(8 + 32 + 8 + portBits)}
	k.Data[0], k.Data[1], k.Data[2], k.Data[3] = uint8(identity>>24), uint8(identity>>16), uint8(identity>>8), uint8(identity)
	k.Data[4] = proto
	port &^= uint16((1 << (16 - portBits)) - 1)
	if portBits == 0 {
		port = 0
	}
	k.Data[5], k.Data[6] = uint8(port>>8), uint8(port)
	return k
}

func summaryKey(identity uint32) ruleKey {
	return ruleKey{Identity: identity, Kind: rkindSummary}
}

// protoIndex indexes ruleValue.AllPorts and the range flags (-1: a
// protocol without ports).
func protoIndex(proto uint8) int {
	switch proto {
	case 6:
		return 0
	case 17:
		return 1
	case 132:
		return 2
	}
	return -1
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

// pick chooses the rule of one key that two entries share (old 0: none
// yet). Allowances keep the lowest rule ID, so the content does not depend
// on the order of entries. In a resolved direction IDs say nothing of
// precedence (and the lowest would prefer an allow, whose deny bit is
// clear), so the first entry keeps the key: resolvedOrder made a peer's
// ranges disjoint, and of its entries for every port of a protocol, or for
// every protocol, the first decides.
func (d *direction) pick(old, rule uint32) uint32 {
	if old == 0 || !d.resolved && rule < old {
		return rule
	}
	return old
}

// inlineRange puts e's range in identity's summary when the same range is
// there already (keeping the lower rule) or a slot is free.
func (d *direction) inlineRange(identity uint32, proto uint8, e policy.Entry) bool {
	done := false
	d.updateSummary(identity, func(v *ruleValue) {
		for i := range v.Ranges {
			r := &v.Ranges[i]
			if r.Rule != 0 && (r.Protocol != proto || r.Low != e.PortMin || r.High != e.PortMax) {
				continue
			}
			*r = netpolNetpolPortRange{Low: e.PortMin, High: e.PortMax, Protocol: proto, Rule: d.pick(r.Rule, e.Rule)}
			done = true
			return
		}
	})
	return done
}

// chunkRange puts e's range in identity's range chunks for proto when the
// same range is there already (keeping the lower rule) or there is room:
// a free slot in the last chunk, or a new chunk while there are fewer than
// rangeChunks. The kernel reads chunks in order, so a range found in an
// earlier chunk is the one it names, as match does.
func (d *direction) chunkRange(identity uint32, proto uint8, pi int, e policy.Entry) bool {
	key := func(c int) ruleKey {
		return ruleKey{Identity: identity, Protocol: proto, Kind: rkindRanges, Port: uint16(c)}
	}
	c := 0
	for ; c < rangeChunks; c++ {
		v, ok := d.rules[key(c)]
		if !ok {
			break
		}
		for i := range v.Ranges {
			r := &v.Ranges[i]
			if r.Rule != 0 && (r.Low != e.PortMin || r.High != e.PortMax) {
				continue
			}
			*r = netpolNetpolPortRange{Low: e.PortMin, High: e.PortMax, Protocol: proto, Rule: d.pick(r.Rule, e.Rule)}
			d.rules[key(c)] = v
			return true
		}
	}
	if c == rangeChunks {
		return false
	}
	if c > 0 {
		prev := d.rules[key(c-1)]
		prev.Flags |= chunkMore
		d.rules[key(c-1)] = prev
	}
	var chunk ruleValue
	chunk.Ranges[0] = netpolNetpolPortRange{Low: e.PortMin, High: e.PortMax, Protocol: proto, Rule: e.Rule}
	d.rules[key(c)] = chunk
	d.updateSummary(identity, func(v *ruleValue) { v.Flags |= sumChunksTCP << pi })
	return true
}

func (d *direction) updateSummary(identity uint32, fn func(*ruleValue)) {
	k := summaryKey(identity)
	v := d.rules[k]
	fn(&v)
	d.rules[k] = v
}

// addRule adds the entry e for identity: every protocol and every port go to
// identity's summary, single ports and small ranges to exact-port entries,
// other ranges to the summary's range slots while there is room, then to
// range chunks, the rest to trie blocks (each flagged in the summary).
func (d *direction) addRule(identity uint32, e policy.Entry) error {
	proto, err := protoNumber(e.Protocol)
	if err != nil {
		return err
	}
	if proto == 0 {
		d.updateSummary(identity, func(v *ruleValue) { v.Rule = d.pick(v.Rule, e.Rule) })
		return nil
	}
	if e.PortMin > e.PortMax {
		return fmt.Errorf("rule %d: port range %d-%d is empty", e.Rule, e.PortMin, e.PortMax)
	}
	pi := protoIndex(proto)
	exact := func(port uint16) {
		k := ruleKey{Identity: identity, Protocol: proto, Kind: rkindPort, Port: port}
		d.rules[k] = ruleValue{Rule: d.pick(d.rules[k].Rule, e.Rule)}
	}
	switch {
	case e.PortMin == 0 && e.PortMax == 65535:
		d.updateSummary(identity, func(v *ruleValue) { v.AllPorts[pi] = d.pick(v.AllPorts[pi], e.Rule) })
	case int(e.PortMax)-int(e.PortMin) < exactPortsMax:
		for port := int(e.PortMin); port <= int(e.PortMax); port++ {
			exact(uint16(port))
		}
	default:
		if d.inlineRange(identity, proto, e) || d.chunkRange(identity, proto, pi, e) {
			return nil
		}
		for _, b := range portBlocks(e.PortMin, e.PortMax) {
			if b[1] == 16 {
				exact(uint16(b[0]))
				continue
			}
			k := rangeKey(identity, proto, uint16(b[0]), b[1])
			d.trie[k] = d.pick(d.trie[k], e.Rule)
		}
		d.updateSummary(identity, func(v *ruleValue) { v.Flags |= sumRangeTCP << pi })
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

// buildDirection turns one direction's entries into its policy content.
// ipBlocks are flattened: every CIDR and except (as a 128-bit prefix) gets a
// trie entry whose value is a pseudo identity for the set of blocks that
// contain every address for which it is the most specific prefix; rules on
// blocks become rules on every pseudo identity whose set holds the block.
// IPv4 lives in ::ffff:0:0/96 of the same address space, so the flattening
// keeps the families apart: an IPv6 block never holds an IPv4 address (as
// the engine's netip.Prefix.Contains says), and the IPv4 space gets an entry
// of its own whenever an IPv6 block spans it.
//
// A resolved direction is laid out by buildResolved instead.
func buildDirection(entries []policy.Entry, resolved bool) (*direction, error) {
	d := &direction{rules: map[ruleKey]ruleValue{}, hosts: map[ruleKey]hostValue{}, trie: trie{}, resolved: resolved}
	defer func() {
		d.hashHosts()
		// Identity "any"'s summary carries the trie's presence (and is where
		// a restarted process finds the trie generation).
		if len(d.trie) > 0 {
			d.updateSummary(policy.IdentityAny, func(*ruleValue) {})
		}
	}()
	if resolved {
		return d, d.buildResolved(entries)
	}
	blocks := map[string]block{}
	byBlock := map[string][]policy.Entry{}
	for _, e := range entries {
		if e.Rule&policy.RuleDeny != 0 {
			return nil, fmt.Errorf("rule %d denies, but the direction is not resolved (only a resolved direction's entries decide)", e.Rule&policy.RuleIDMask)
		}
		if !e.CIDR.IsValid() {
			if err := d.addRule(e.Identity, e); err != nil {
				return nil, err
			}
			continue
		}
		b := block{cidr: mapped(e.CIDR)}
		if !e.CIDR.Addr().Is4() && inV4Space(b.cidr) {
			// An IPv6 block of IPv4-mapped addresses: no IPv4 peer is in it,
			// and the kernel cannot tell the IPv6 peers it holds from IPv4.
			continue
		}
		for _, x := range e.Except {
			if x.Addr().Is4() || !inV4Space(mapped(x)) {
				b.except = append(b.except, mapped(x))
			}
		}
		slices.SortFunc(b.except, func(x, y netip.Prefix) int { return strings.Compare(x.String(), y.String()) })
		blocks[b.key()] = b
		byBlock[b.key()] = append(byBlock[b.key()], e)
	}
	if len(blocks) == 0 {
		return d, nil
	}
	d.updateSummary(policy.IdentityAny, func(v *ruleValue) { v.Flags |= sumCIDR })
	relevant := map[netip.Prefix]bool{}
	for _, b := range blocks {
		relevant[b.cidr] = true
		for _, x := range b.except {
			relevant[x] = true
		}
		if covers(b.cidr, v4Space) && !inV4Space(b.cidr) {
			relevant[v4Space] = true // shadows the IPv6 block for IPv4 peers
		}
	}
	// Sorted so that pseudo identities do not depend on map order (not by
	// String(), which allocated twice per comparison: a third of building
	// 10k ipBlocks).
	prefixes := slices.SortedFunc(maps.Keys(relevant), comparePrefixes)
	// The blocks holding a prefix are found through its ancestors (at most
	// 129), not by testing every block: directions with thousands of
	// ipBlocks stay linear.
	byCIDR := map[netip.Prefix][]string{}
	for bk, b := range blocks {
		byCIDR[b.cidr] = append(byCIDR[b.cidr], bk)
	}
	pseudo := map[string]uint32{}
	for _, pfx := range prefixes {
		var set []string
		lo := 0
		if inV4Space(pfx) {
			lo = v4Space.Bits() // IPv4: only IPv4 blocks hold it
		}
		for bits := lo; bits <= pfx.Bits(); bits++ {
			set = append(set, byCIDR[netip.PrefixFrom(pfx.Addr(), bits).Masked()]...)
		}
		slices.Sort(set)
		set = slices.DeleteFunc(set, func(bk string) bool {
			for _, x := range blocks[bk].except {
				if covers(x, pfx) {
					return true
				}
			}
			return false
		})
		if len(set) == 0 {
			d.trie[cidrKey(pfx)] = 0 // shadows wider blocks: no rule here
			continue
		}
		sk := strings.Join(set, "|")
		id, ok := pseudo[sk]
		if !ok {
			id = pseudoIdentityBit | uint32(len(pseudo)+1)
			pseudo[sk] = id
			for _, bk := range set {
				for _, e := range byBlock[bk] {
					if err := d.addRule(id, e); err != nil {
						return nil, err
					}
				}
			}
		}
		d.trie[cidrKey(pfx)] = id
	}
	return d, nil
}

// hashHosts moves the trie's single-address CIDR entries (/32, /128) to
// the hash, where the kernel looks the peer's address up before the trie:
// an exact match is the longest prefix, and dense ipBlocks are mostly such
// lists, whose trie walk deepens with their number. Of addresses with one
// fold (the key), the lowest gets the hash entry, whatever the map order,
// and the others stay in the trie, which the kernel reads when the hash
// holds another address. Identity "any"'s summary says which of the two
// have CIDR entries.
func (d *direction) hashHosts() {
	var full []policyKey
	cidrs := 0
	for k := range d.trie {
		if k.Kind != kindCIDR {
			continue
		}
		cidrs++
		if k.Prefixlen == 8+128 {
			full = append(full, k)
		}
	}
	if len(full) == 0 {
		return
	}
	for _, k := range full {
		a := [16]uint8(k.Data[:16])
		hk := ruleKey{Identity: hostFold(a), Kind: rkindHost}
		hv := hostValue{Addr: hostWords(a), Identity: d.trie[k]}
		if old, ok := d.hosts[hk]; ok {
			if cmp.Or(cmp.Compare(old.Addr[0], hv.Addr[0]), cmp.Compare(old.Addr[1], hv.Addr[1])) < 0 {
				continue
			}
			d.trie[hostCIDRKey(old.Addr)] = old.Identity
			cidrs++
		}
		d.hosts[hk] = hv
		delete(d.trie, k)
		cidrs--
	}
	d.updateSummary(policy.IdentityAny, func(v *ruleValue) {
		v.Flags |= sumHosts
		if cidrs == 0 {
			v.Flags &^= sumCIDR
		}
	})
}

// hostWords is an address as netpol_host_value holds it: the words the
// kernel loads from its bytes (the object is little-endian BPF).
func hostWords(a [16]uint8) [2]uint64 {
	return [2]uint64{binary.LittleEndian.Uint64(a[:8]), binary.LittleEndian.Uint64(a[8:])}
}

// hostCIDRKey is the trie key of the single address hostWords gave w.
func hostCIDRKey(w [2]uint64) policyKey {
	k := policyKey{Kind: kindCIDR, Prefixlen: 8 + 128}
	binary.LittleEndian.PutUint64(k.Data[:8], w[0])
	binary.LittleEndian.PutUint64(k.Data[8:16], w[1])
	return k
}

// hostFold is netpol.c's host_fold(): the hash key of an address.
func hostFold(a [16]uint8) uint32 {
	w := func(i int) uint32 { return binary.LittleEndian.Uint32(a[4*i:]) }
	return w(3) ^ w(2)*0x9e3779b1 ^ w(1)*0x85ebca77 ^ w(0)*0xc2b2ae3d
}

// buildResolved lays out a resolved direction, whose entries decide. The
// kernel's lookup order is the contract (policy.EndpointPolicy): the peer's
// identity, identity "any", then the longest CIDR prefix holding the peer.
// So CIDR entries are grouped by their exact prefix, each prefix a pseudo
// identity holding only its own entries (no union with wider prefixes: the
// trie's longest match picks the region that decides), and each peer's
// entries go through resolvedOrder first.
func (d *direction) buildResolved(entries []policy.Entry) error {
	// Peers' entries grouped by a stable sort (a direction can name tens of
	// thousands of peers: no slice per peer), in their order within a peer.
	peers := make([]policy.Entry, 0, len(entries))
	byPrefix := map[netip.Prefix][]policy.Entry{}
	for _, e := range entries {
		if !e.CIDR.IsValid() {
			peers = append(peers, e)
			continue
		}
		if len(e.Except) > 0 {
			return fmt.Errorf("rule %d: CIDR %s has excepts, which a resolved direction cannot have (its regions are separate prefixes)", e.Rule&policy.RuleIDMask, e.CIDR)
		}
		pfx := mapped(e.CIDR)
		if !e.CIDR.Addr().Is4() && inV4Space(pfx) {
			continue // as in buildDirection: no IPv4 peer is in it
		}
		byPrefix[pfx] = append(byPrefix[pfx], e)
	}
	slices.SortStableFunc(peers, func(x, y policy.Entry) int { return cmp.Compare(x.Identity, y.Identity) })
	var buf []policy.Entry
	for i := 0; i < len(peers); {
		j := i + 1
		for j < len(peers) && peers[j].Identity == peers[i].Identity {
			j++
		}
		var err error
		if buf, err = d.addResolved(buf, peers[i].Identity, peers[i:j]); err != nil {
			return err
		}
		i = j
	}
	if len(byPrefix) == 0 {
		return nil
	}
	d.updateSummary(policy.IdentityAny, func(v *ruleValue) { v.Flags |= sumCIDR })
	prefixes := slices.SortedFunc(maps.Keys(byPrefix), comparePrefixes)
	for i, pfx := range prefixes {
		id := pseudoIdentityBit | uint32(i+1)
		d.trie[cidrKey(pfx)] = id
		var err error
		if buf, err = d.addResolved(buf, id, byPrefix[pfx]); err != nil {
			return err
		}
		if covers(pfx, v4Space) && !inV4Space(pfx) && byPrefix[v4Space] == nil {
			d.trie[cidrKey(v4Space)] = 0 // an IPv6 region holds no IPv4 peer
		}
	}
	return nil
}

// comparePrefixes orders prefixes by address, then length.
func comparePrefixes(x, y netip.Prefix) int {
	return cmp.Or(x.Addr().Compare(y.Addr()), x.Bits()-y.Bits())
}

// addResolved adds one peer's entries through resolvedOrder; buf is reused
// for its output and returned.
func (d *direction) addResolved(buf []policy.Entry, identity uint32, es []policy.Entry) ([]policy.Entry, error) {
	buf, err := resolvedOrder(buf[:0], es)
	if err != nil {
		return buf, err
	}
	for _, e := range buf {
		if err := d.addRule(identity, e); err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// resolvedOrder prepares one peer's entries of a resolved direction: per
// protocol, the port ranges short of every port are made disjoint, each
// port keeping the narrowest range that holds it (the first of equally
// narrow ones), so no layout choice (exact entries, summary slots, chunks,
// trie blocks, which the kernel reads first-match or longest-block) can
// change which decides. The entries for every port of a protocol and for
// every protocol, which the kernel reads after the ranges, keep their order:
// the first one decides (see pick).
func resolvedOrder(out, es []policy.Entry) ([]policy.Entry, error) {
	if len(es) == 1 { // the usual case: nothing to order
		if e := es[0]; e.Protocol != "" && e.PortMin > e.PortMax {
			return out, fmt.Errorf("rule %d: port range %d-%d is empty", e.Rule&policy.RuleIDMask, e.PortMin, e.PortMax)
		}
		return append(out, es[0]), nil
	}
	var byProto [][]policy.Entry
	for _, e := range es {
		if e.Protocol == "" || e.PortMin == 0 && e.PortMax == 65535 {
			out = append(out, e)
			continue
		}
		if e.PortMin > e.PortMax {
			return out, fmt.Errorf("rule %d: port range %d-%d is empty", e.Rule&policy.RuleIDMask, e.PortMin, e.PortMax)
		}
		i := slices.IndexFunc(byProto, func(rs []policy.Entry) bool { return rs[0].Protocol == e.Protocol })
		if i < 0 {
			byProto = append(byProto, nil)
			i = len(byProto) - 1
		}
		byProto[i] = append(byProto[i], e)
	}
	for _, rs := range byProto {
		out = append(out, disjointRanges(rs)...)
	}
	return out, nil
}

// disjointRanges paints the port line with rs, narrowest range first: the
// cuts at every range's edges make elementary segments, and a segment takes
// the first (narrowest) range that covers it. Adjacent segments of one
// entry merge again. O(n log n): painted segments are skipped through next.
func disjointRanges(rs []policy.Entry) []policy.Entry {
	if len(rs) == 1 {
		return rs
	}
	cuts := make([]int, 0, 2*len(rs))
	for _, r := range rs {
		cuts = append(cuts, int(r.PortMin), int(r.PortMax)+1)
	}
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)
	segs := len(cuts) - 1
	owner := make([]int, segs)
	for i := range owner {
		owner[i] = -1
	}
	// next[i]: the first unpainted segment at or after i (segs: none).
	next := make([]int, segs+1)
	for i := range next {
		next[i] = i
	}
	find := func(i int) int {
		for next[i] != i {
			next[i] = next[next[i]]
			i = next[i]
		}
		return i
	}
	order := make([]int, len(rs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return int(rs[a].PortMax-rs[a].PortMin) - int(rs[b].PortMax-rs[b].PortMin)
	})
	for _, j := range order {
		first, _ := slices.BinarySearch(cuts, int(rs[j].PortMin))
		last, _ := slices.BinarySearch(cuts, int(rs[j].PortMax)+1)
		for i := find(first); i < last; i = find(i) {
			owner[i] = j
			next[i] = i + 1
		}
	}
	var out []policy.Entry
	prev := -1
	for i, j := range owner {
		if j < 0 {
			prev = -1
			continue
		}
		if j == prev {
			out[len(out)-1].PortMax = uint16(cuts[i+1] - 1)
			continue
		}
		e := rs[j]
		e.PortMin, e.PortMax = uint16(cuts[i]), uint16(cuts[i+1]-1)
		out = append(out, e)
		prev = j
	}
	return out
}

// v4Space is where mapped puts IPv4.
var v4Space = netip.MustParsePrefix("::ffff:0:0/96")

// inV4Space reports whether the mapped prefix p is IPv4 (or IPv6 inside the
// IPv4-mapped space, which the kernel sees the same way).
func inV4Space(p netip.Prefix) bool {
	return p.Bits() >= v4Space.Bits() && v4Space.Contains(p.Addr())
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

// match is netpol.c's match_identity() in Go.
func (d *direction) match(identity uint32, proto uint8, port uint16) (uint32, *ruleValue) {
	if v, ok := d.rules[ruleKey{Identity: identity, Protocol: proto, Kind: rkindPort, Port: port}]; ok {
		return v.Rule, nil
	}
	s, ok := d.rules[summaryKey(identity)]
	if !ok {
		return 0, nil
	}
	pi := protoIndex(proto)
	if pi < 0 {
		return s.Rule, &s
	}
	for _, r := range s.Ranges {
		if r.Rule != 0 && r.Protocol == proto && port >= r.Low && port <= r.High {
			return r.Rule, &s
		}
	}
	if s.Flags&(sumChunksTCP<<pi) != 0 {
		for c := range rangeChunks {
			chunk, ok := d.rules[ruleKey{Identity: identity, Protocol: proto, Kind: rkindRanges, Port: uint16(c)}]
			if !ok {
				break
			}
			for _, r := range chunk.Ranges {
				if r.Rule != 0 && r.Protocol == proto && port >= r.Low && port <= r.High {
					return r.Rule, &s
				}
			}
			if chunk.Flags&chunkMore == 0 {
				break
			}
		}
	}
	if s.Flags&(sumRangeTCP<<pi) != 0 {
		if v, ok := d.trie.lpm(rangeKey(identity, proto, port, 16), 8+32+8+16); ok && v != 0 {
			return v, &s
		}
	}
	if s.AllPorts[pi] != 0 {
		return s.AllPorts[pi], &s
	}
	return s.Rule, &s
}

// evaluate is netpol.c's evaluate() in Go: the deciding rule ID (allowing
// unless it has policy.RuleDeny), or 0 when none matches.
func (d *direction) evaluate(peer netip.Addr, peerIdentity uint32, proto uint8, port uint16) uint32 {
	if r, _ := d.match(peerIdentity, proto, port); r != 0 {
		return r
	}
	r, s := d.match(policy.IdentityAny, proto, port)
	if r != 0 {
		return r
	}
	if s == nil {
		return 0
	}
	a := addr16(peer)
	pseudo, ok := uint32(0), false
	if s.Flags&sumHosts != 0 {
		h, hit := d.hosts[ruleKey{Identity: hostFold(a), Kind: rkindHost}]
		if ok = hit && h.Addr == hostWords(a); ok {
			pseudo = h.Identity
		}
	}
	if !ok && s.Flags&sumCIDR != 0 {
		ck := policyKey{Kind: kindCIDR}
		copy(ck.Data[:16], a[:])
		pseudo, _ = d.trie.lpm(ck, 8+128)
	}
	if pseudo == 0 {
		return 0
	}
	r, _ = d.match(pseudo, proto, port)
	return r
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
		d, ok := w.dirs[sep.SlotEgress]
		if !ok || !ruleAllows(d.evaluate(dst, w.identityOf(dst), proto, dport)) {
			return false
		}
	}
	if dok && dep.Flags&epIsolatedIngress != 0 {
		d, ok := w.dirs[dep.SlotIngress]
		if !ok || !ruleAllows(d.evaluate(src, w.identityOf(src), proto, dport)) {
			return false
		}
	}
	return true
}

// ruleAllows is netpol.c's rule_allows(): a side's verdict from the rule
// evaluate returned.
func ruleAllows(rule uint32) bool {
	return rule != 0 && rule&policy.RuleDeny == 0
}

// revokeWalkLimit is how many kernel-filtered walks of the IPv4 table a
// revocation makes before it reads the whole table instead: one per side
// (original source, reply source) of each address, each ~1/8 of a whole
// dump's cost at any table size (~37 against ~270 ms at 120,000 entries:
// BenchmarkConntrackRevoke, docs/perf.md). IPv6 addresses cost one whole
// IPv6 dump together (readEntries).
const revokeWalkLimit = 8

// revokeScope is what a revocation reads: the entries of addrs (on the
// sides each names), or all.
type revokeScope struct {
	all   bool
	addrs map[netip.Addr]ctSide
	walks int // kernel-filtered IPv4 walks addrs take
}

func (s *revokeScope) add(a netip.Addr, sides ctSide) {
	a = a.Unmap()
	if s.all {
		return
	}
	if s.addrs == nil {
		s.addrs = map[netip.Addr]ctSide{}
	}
	old := s.addrs[a]
	s.addrs[a] = old | sides
	if a.Is4() {
		s.walks += bits.OnesCount8(uint8(sides &^ old))
	}
	if s.walks > revokeWalkLimit {
		s.all, s.addrs = true, nil
	}
}

// addPrefix adds a changed identity's prefix: a single address (the
// ipcache holds host prefixes), else everything.
func (s *revokeScope) addPrefix(pfx netip.Prefix) {
	if pfx.Bits() != pfx.Addr().BitLen() {
		s.all, s.addrs = true, nil
		return
	}
	// An identity is a peer on either side.
	s.add(pfx.Addr(), ctBothSides)
}

// revokeFilter judges conntrack entries by the new policy. The datapath
// judged the connection after DNAT: source = original source, destination
// = the reply's source (the chosen backend). Before a UDP or SCTP entry is
// deleted, its tombstone goes into netpol_revoked: the datapath then judges
// the other side's next packet in the revoked orientation instead of as a
// new flow of its own.
type revokeFilter struct {
	w       *desiredState
	revoked *ebpf.Map
	now     uint64 // CLOCK_MONOTONIC ns, bpf_ktime_get_ns()'s clock
	errs    []error
}

// denied says whether e must go, after writing its tombstone.
func (f *revokeFilter) denied(e *ctEntry) bool {
	if !f.denies(e) {
		return false
	}
	if p := e.proto; p == 17 || p == 132 {
		k := netpolNetpolFlowKey{Saddr: addr16(e.origSrc.Unmap()), Daddr: addr16(e.replySrc.Unmap()),
			Sport: e.origSport, Dport: e.replySport, Protocol: p}
		if err := f.revoked.Put(&k, f.now); err != nil {
			// Without its tombstone the flow could come back: keep it.
			f.errs = append(f.errs, fmt.Errorf("remembering revoked flow %s -> %s: %w", e.origSrc, e.replySrc, err))
			return false
		}
	}
	return true
}

func (f *revokeFilter) denies(e *ctEntry) bool {
	port := e.replySport
	switch e.proto {
	case 6, 17, 132:
	default:
		port = 0
	}
	return !f.w.allows(e.origSrc.Unmap(), e.replySrc.Unmap(), e.proto, port)
}

// doomedEntry is a conntrack entry to delete: its dump attributes.
type doomedEntry struct {
	family uint8
	attrs  []byte
}

// revokeDenied deletes, in every attached namespace, the conntrack entries
// of scope that w denies. The deletions follow each namespace's reads, so
// that no request interleaves with a dump.
func (p *Probe) revokeDenied(w *desiredState, scope *revokeScope) (uint, error) {
	var total uint
	var errs []error
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("reading the monotonic clock: %w", err)
	}
	f := &revokeFilter{w: w, revoked: p.objs.NetpolRevoked, now: uint64(ts.Nano())}
	for _, a := range p.attach {
		c, err := openConntrack(a.ns)
		if err != nil {
			errs = append(errs, fmt.Errorf("opening conntrack in %q: %w", a.name, err))
			continue
		}
		var doomed []doomedEntry
		err = readEntries(c, scope, func(family uint8, e *ctEntry, attrs []byte) {
			if f.denied(e) {
				doomed = append(doomed, doomedEntry{family: family, attrs: slices.Clone(attrs)})
			}
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("revoking denied connections in %q: %w", a.name, err))
		}
		for _, d := range doomed {
			if err := c.delete(d.family, d.attrs); err != nil {
				errs = append(errs, fmt.Errorf("revoking a denied connection in %q: %w", a.name, err))
				continue
			}
			total++
		}
		c.Close()
	}
	errs = append(errs, f.errs...)
	return total, errors.Join(errs...)
}

// readEntries calls fn once with each conntrack entry of scope in c's
// namespace: an entry whose original source or reply source (the
// destination after DNAT) is one of scope's addresses, or every entry. The
// kernel filters the IPv4 dumps by address. Its IPv6 address filter matches
// the entries whose address differs (ctnetlink_filter_match_tuple negates
// ipv6_addr_cmp, to at least Linux 6.18), so IPv6 is one whole dump
// filtered here.
func readEntries(c *ctConn, scope *revokeScope, fn func(family uint8, e *ctEntry, attrs []byte)) error {
	var errs []error
	if scope.all {
		for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
			err := c.dump(fam, 0, netip.Addr{}, func(e *ctEntry, attrs []byte) error {
				fn(fam, e, attrs)
				return nil
			})
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	// An entry of two scoped addresses is read twice: passed on once.
	seen := map[ctEntry]bool{}
	v6 := false
	for addr, sides := range scope.addrs {
		if !addr.Is4() {
			v6 = true
			continue
		}
		for _, side := range []ctSide{ctOrigSource, ctReplySource} {
			if sides&side == 0 {
				continue
			}
			err := c.dump(unix.AF_INET, side, addr, func(e *ctEntry, attrs []byte) error {
				if !seen[*e] {
					seen[*e] = true
					fn(unix.AF_INET, e, attrs)
				}
				return nil
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("reading the entries of %s: %w", addr, err))
			}
		}
	}
	if v6 {
		err := c.dump(unix.AF_INET6, 0, netip.Addr{}, func(e *ctEntry, attrs []byte) error {
			if scope.addrs[e.origSrc]&ctOrigSource != 0 || scope.addrs[e.replySrc]&ctReplySource != 0 {
				fn(unix.AF_INET6, e, attrs)
			}
			return nil
		})
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
