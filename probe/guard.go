//go:build linux

package probe

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netns"
)

// guardPrefix starts the pin name of an interface's anti-spoofing link,
// under the link directory of its attachment: spoof_<ifindex>.
const guardPrefix = "spoof_"

// GuardInterface attaches the anti-spoofing check to the ingress of ifindex
// (the host side of a pod's interface, in the calling thread's network
// namespace) and makes addrs its allowed source addresses. Other guarded
// interfaces are left as they are: see SetGuards for the whole set.
//
// Why a TCX check rather than strict rp_filter: rp_filter does nothing for
// bridged traffic, does not apply to IPv6, and trusts whatever routes the CNI
// installs; this check is the same for routed and bridge layouts.
func (p *Probe) GuardInterface(name string, ifindex int, addrs []netip.Addr) error {
	return p.guard(name, map[int][]netip.Addr{ifindex: addrs}, false)
}

// SetGuards makes the interfaces guarded under attachment name, and the
// source addresses each may send from, exactly want (ifindex -> addresses;
// interfaces in the calling thread's network namespace). IP packets entering
// the node from a guarded interface must come from one of its addresses
// (IPv6 link-local and unspecified sources pass, for neighbour discovery);
// other interfaces are not checked.
//
// The state is read back from the kernel on every call (the pinned links
// under name and the netpol_spoof_guard map), so a restarted process
// continues where the last one stopped. For an interface already guarded,
// new addresses are allowed before stale ones are removed, so a live pod
// never loses traffic. An interface that disappeared detaches its link by
// itself; its pin and map entries go at the next call. An ifindex the kernel
// gave to a new interface never inherits the old one's addresses: those are
// removed before the check is attached to it.
//
// An interface of want that cannot be guarded (e.g. it vanished meanwhile)
// is reported in the error and left unguarded with no entries; the others
// are still brought to the wanted state.
func (p *Probe) SetGuards(name string, want map[int][]netip.Addr) error {
	return p.guard(name, want, true)
}

// SetGuardsIn is SetGuards for interfaces of network namespace ns, from
// any thread.
func (p *Probe) SetGuardsIn(ns netns.NsHandle, name string, want map[int][]netip.Addr) error {
	return lockedNetns(ns, func() error { return p.SetGuards(name, want) })
}

// Guards returns the interfaces guarded under name (their checks attached)
// and the addresses each may send from.
func (p *Probe) Guards(name string) (map[int][]netip.Addr, error) {
	if !attachName.MatchString(name) {
		return nil, fmt.Errorf("attach name %q: use 1-64 letters, digits, '_' or '-' (bpffs refuses dots)", name)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("reading anti-spoofing guards: the probe is closed")
	}
	pins, err := guardPins(filepath.Join(p.dir, "links", name))
	if err != nil {
		return nil, err
	}
	entries, err := p.guardEntries()
	if err != nil {
		return nil, err
	}
	out := map[int][]netip.Addr{}
	for ifi, pin := range pins {
		l, err := link.LoadPinnedLink(pin, nil)
		if err != nil {
			continue
		}
		live := guardLive(l, ifi)
		l.Close()
		if !live {
			continue
		}
		out[ifi] = sortedAddrs(entries[ifi])
	}
	return out, nil
}

// guard brings the interfaces of want to their wanted state and, when all
// is set, removes every other guard of name.
func (p *Probe) guard(name string, want map[int][]netip.Addr, all bool) error {
	if !attachName.MatchString(name) {
		return fmt.Errorf("attach name %q: use 1-64 letters, digits, '_' or '-' (bpffs refuses dots)", name)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("setting anti-spoofing guards: the probe is closed")
	}
	dir := filepath.Join(p.dir, "links", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating link pin directory: %w", err)
	}
	pins, err := guardPins(dir)
	if err != nil {
		return err
	}
	entries, err := p.guardEntries()
	if err != nil {
		return err
	}
	info, err := p.objs.NetpolSpoof.Info()
	if err != nil {
		return fmt.Errorf("reading the anti-spoofing program's info: %w", err)
	}
	progID, _ := info.ID()

	var errs []error
	for _, ifi := range slices.Sorted(maps.Keys(want)) {
		if ifi <= 0 {
			errs = append(errs, fmt.Errorf("guarding interface index %d: not an interface index", ifi))
			continue
		}
		keep := map[[16]uint8]bool{}
		for _, a := range want[ifi] {
			keep[addr16(a)] = true
		}
		if err := p.guardOne(dir, ifi, keep, entries[ifi], pins[ifi], progID); err != nil {
			errs = append(errs, err)
		}
	}
	if !all {
		return errors.Join(errs...)
	}
	// Links first, then entries: a link left without its entries would drop
	// everything its pod sends.
	for ifi, pin := range pins {
		if _, ok := want[ifi]; !ok {
			if err := unpinGuard(pin); err != nil {
				errs = append(errs, fmt.Errorf("removing the anti-spoofing link of interface %d: %w", ifi, err))
			}
		}
	}
	others, err := p.otherGuards(name)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for ifi, addrs := range entries {
		if _, ok := want[ifi]; ok || others[ifi] {
			continue
		}
		if err := p.deleteGuardEntries(ifi, addrs); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// guardOne guards ifindex with exactly the addresses keep; have are its
// entries in the map, pin its link's pin ("" when none).
func (p *Probe) guardOne(dir string, ifindex int, keep, have map[[16]uint8]bool, pin string, progID ebpf.ProgramID) error {
	var l link.Link
	if pin != "" {
		var err error
		if l, err = link.LoadPinnedLink(pin, nil); err == nil && !guardLive(l, ifindex) {
			// Its interface is gone (and the index perhaps reused): the old
			// link is detached already; a new one replaces it below.
			l.Unpin()
			l.Close()
			l = nil
		} else if err != nil {
			os.Remove(pin)
		}
	}
	stale := map[[16]uint8]bool{}
	for a := range have {
		if !keep[a] {
			stale[a] = true
		}
	}
	if l == nil {
		// Not guarded yet: whatever the map holds for this index belongs to
		// an interface that had it before, and must go before the check
		// starts trusting it.
		if err := p.deleteGuardEntries(ifindex, stale); err != nil {
			return err
		}
		stale = nil
	}
	for a := range keep {
		if have[a] {
			continue
		}
		k := netpolNetpolSpoofKey{Ifindex: uint32(ifindex), Addr: a}
		if err := p.objs.NetpolSpoofGuard.Put(&k, uint8(1)); err != nil {
			err = fmt.Errorf("allowing %s on interface %d: %w", netip.AddrFrom16(a).Unmap(), ifindex, err)
			if l != nil {
				l.Close()
				return err
			}
			return errors.Join(err, p.deleteGuardEntries(ifindex, keep))
		}
	}
	if l != nil {
		defer l.Close()
		if info, err := l.Info(); err != nil || info.Program != progID {
			// Another program (a previous process's, or an upgrade):
			// replace it atomically.
			if err := l.Update(p.objs.NetpolSpoof); err != nil {
				return fmt.Errorf("updating the anti-spoofing program on interface %d: %w", ifindex, err)
			}
		}
		return p.deleteGuardEntries(ifindex, stale)
	}
	nl, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: p.objs.NetpolSpoof, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		// Left unguarded: no entries either, or a later interface with
		// this index would inherit them.
		return errors.Join(fmt.Errorf("attaching the anti-spoofing program to interface %d: %w", ifindex, err),
			p.deleteGuardEntries(ifindex, keep))
	}
	defer nl.Close() // the pin keeps it attached
	if err := nl.Pin(filepath.Join(dir, fmt.Sprintf("%s%d", guardPrefix, ifindex))); err != nil {
		return errors.Join(fmt.Errorf("pinning the anti-spoofing link of interface %d: %w", ifindex, err),
			p.deleteGuardEntries(ifindex, keep))
	}
	return nil
}

// guardLive reports whether l is a TCX link still attached to ifindex (the
// kernel reports index 0 once the interface is gone).
func guardLive(l link.Link, ifindex int) bool {
	info, err := l.Info()
	if err != nil {
		return false
	}
	tcx := info.TCX()
	return tcx != nil && int(tcx.Ifindex) == ifindex
}

// guardPins lists the anti-spoofing link pins in dir by interface index.
func guardPins(dir string) (map[int]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading link pins: %w", err)
	}
	out := map[int]string{}
	for _, e := range ents {
		n, ok := strings.CutPrefix(e.Name(), guardPrefix)
		if !ok {
			continue
		}
		if ifi, err := strconv.Atoi(n); err == nil && ifi > 0 {
			out[ifi] = filepath.Join(dir, e.Name())
		}
	}
	return out, nil
}

// otherGuards are the interface indexes guarded under other attachment
// names: their entries are not name's to remove.
func (p *Probe) otherGuards(name string) (map[int]bool, error) {
	ents, err := os.ReadDir(filepath.Join(p.dir, "links"))
	if err != nil {
		return nil, fmt.Errorf("reading link pins: %w", err)
	}
	out := map[int]bool{}
	for _, e := range ents {
		if !e.IsDir() || e.Name() == name {
			continue
		}
		pins, err := guardPins(filepath.Join(p.dir, "links", e.Name()))
		if err != nil {
			return nil, err
		}
		for ifi := range pins {
			out[ifi] = true
		}
	}
	return out, nil
}

// guardEntries reads netpol_spoof_guard: interface index -> addresses.
func (p *Probe) guardEntries() (map[int]map[[16]uint8]bool, error) {
	out := map[int]map[[16]uint8]bool{}
	var k netpolNetpolSpoofKey
	var v uint8
	it := p.objs.NetpolSpoofGuard.Iterate()
	for it.Next(&k, &v) {
		ifi := int(k.Ifindex)
		if out[ifi] == nil {
			out[ifi] = map[[16]uint8]bool{}
		}
		out[ifi][k.Addr] = true
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading the anti-spoofing map: %w", err)
	}
	return out, nil
}

func (p *Probe) deleteGuardEntries(ifindex int, addrs map[[16]uint8]bool) error {
	for a := range addrs {
		k := netpolNetpolSpoofKey{Ifindex: uint32(ifindex), Addr: a}
		if err := p.objs.NetpolSpoofGuard.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("removing %s of interface %d: %w", netip.AddrFrom16(a).Unmap(), ifindex, err)
		}
	}
	return nil
}

// unpinGuard removes an anti-spoofing link's pin, detaching it.
func unpinGuard(pin string) error {
	l, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		// Not a link (any more): the file is all there is to remove.
		if err := os.Remove(pin); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	defer l.Close()
	return l.Unpin()
}

// GuardEntries returns every (interface, address) pair in the anti-spoofing
// map, whatever attachment guards it: with Guards, it shows entries no
// guard uses any more.
func (p *Probe) GuardEntries() (map[int][]netip.Addr, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("reading anti-spoofing entries: the probe is closed")
	}
	entries, err := p.guardEntries()
	if err != nil {
		return nil, err
	}
	out := map[int][]netip.Addr{}
	for ifi, addrs := range entries {
		out[ifi] = sortedAddrs(addrs)
	}
	return out, nil
}

func sortedAddrs(set map[[16]uint8]bool) []netip.Addr {
	out := make([]netip.Addr, 0, len(set))
	for a := range set {
		out = append(out, netip.AddrFrom16(a).Unmap())
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}
