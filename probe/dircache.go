//go:build linux

package probe

import (
	"encoding/binary"
	"hash/maphash"
	"net/netip"
	"slices"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// directionCache hands out built directions by their entries: the
// endpoints of one identity on a node compile to the same entries, and
// most directions do not change from one Apply to the next (a pod elsewhere
// came or went), so each distinct direction is built once, and the Apply
// that finds a slot's direction unchanged compares pointers, not maps. A
// hit is confirmed entry by entry: a hash collision must never hand a pod
// another pod's policy.
type directionCache struct {
	seed maphash.Seed
	// prev is what the last Apply built or reused, next what this one does;
	// entries no Apply asked for since the last are dropped.
	prev, next map[uint64][]cachedDirection
	// prevShared and nextShared find the same directions by their entries'
	// array: policy.Compile hands the same read-only entries to the
	// Datapaths of successive Applies when a direction did not change, and
	// the same array holds the same entries, so neither hashing nor
	// comparing is needed.
	prevShared, nextShared map[sharedKey]sharedDirection
}

type sharedKey struct {
	first    *policy.Entry
	n        int
	resolved bool
}

type sharedDirection struct {
	h  uint64
	cd cachedDirection
}

type cachedDirection struct {
	entries  []policy.Entry
	resolved bool
	d        *direction
}

func newDirectionCache() *directionCache {
	c := &directionCache{seed: maphash.MakeSeed()}
	c.reset()
	return c
}

// get returns the direction of entries, built by build on a miss.
func (c *directionCache) get(entries []policy.Entry, resolved bool, build func() (*direction, error)) (*direction, error) {
	var sk sharedKey
	if len(entries) > 0 {
		sk = sharedKey{first: &entries[0], n: len(entries), resolved: resolved}
		for _, m := range []map[sharedKey]sharedDirection{c.nextShared, c.prevShared} {
			if sd, ok := m[sk]; ok {
				c.keep(sd.h, sd.cd, sk)
				return sd.cd.d, nil
			}
		}
	}
	h := c.hash(entries, resolved)
	for _, m := range []map[uint64][]cachedDirection{c.next, c.prev} {
		for _, cd := range m[h] {
			if cd.resolved == resolved && slices.EqualFunc(cd.entries, entries, sameEntry) {
				c.keep(h, cd, sk)
				return cd.d, nil
			}
		}
	}
	d, err := build()
	if err != nil {
		return nil, err
	}
	c.keep(h, cachedDirection{entries: entries, resolved: resolved, d: d}, sk)
	return d, nil
}

// keep records cd (of hash h, and of the entries' array sk when it has
// one) as used by this Apply.
func (c *directionCache) keep(h uint64, cd cachedDirection, sk sharedKey) {
	if !slices.ContainsFunc(c.next[h], func(x cachedDirection) bool { return x.d == cd.d }) {
		c.next[h] = append(c.next[h], cd)
	}
	if sk.first != nil {
		c.nextShared[sk] = sharedDirection{h: h, cd: cd}
	}
}

// done ends an Apply: what it used is what the next one may reuse.
func (c *directionCache) done() {
	c.prev, c.next = c.next, map[uint64][]cachedDirection{}
	c.prevShared, c.nextShared = c.nextShared, map[sharedKey]sharedDirection{}
}

// reset forgets everything (an Apply failed half-way).
func (c *directionCache) reset() {
	c.prev, c.next = map[uint64][]cachedDirection{}, map[uint64][]cachedDirection{}
	c.prevShared, c.nextShared = map[sharedKey]sharedDirection{}, map[sharedKey]sharedDirection{}
}

func (c *directionCache) hash(entries []policy.Entry, resolved bool) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	var b [16]byte
	if resolved {
		h.WriteByte(1)
	}
	writePrefix := func(p netip.Prefix) {
		a := p.Addr().As16()
		h.Write(a[:])
		h.WriteByte(byte(p.Bits()))
	}
	for i := range entries {
		e := &entries[i]
		binary.LittleEndian.PutUint32(b[0:], e.Rule)
		binary.LittleEndian.PutUint32(b[4:], e.Identity)
		binary.LittleEndian.PutUint16(b[8:], e.PortMin)
		binary.LittleEndian.PutUint16(b[10:], e.PortMax)
		binary.LittleEndian.PutUint32(b[12:], uint32(len(e.Except)))
		h.Write(b[:])
		h.WriteString(string(e.Protocol))
		if e.CIDR.IsValid() {
			writePrefix(e.CIDR)
		}
		for _, x := range e.Except {
			writePrefix(x)
		}
	}
	return h.Sum64()
}

func sameEntry(a, b policy.Entry) bool {
	return a.Rule == b.Rule && a.Identity == b.Identity && a.CIDR == b.CIDR && a.Protocol == b.Protocol &&
		a.PortMin == b.PortMin && a.PortMax == b.PortMax && slices.Equal(a.Except, b.Except)
}
