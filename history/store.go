package history

import (
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// SchemaVersion is the history schema this package writes and serves
// (flow.v1 HistoryRequest.schema_version).
const SchemaVersion = 1

// Tier is one resolution of the history: buckets Width wide, kept at that
// width until they are Keep old, then merged into the next tier's buckets.
// The last tier's Keep is the history's maximum age.
type Tier struct {
	Width time.Duration
	Keep  time.Duration
}

// DefaultTiers: 10-minute buckets for 2 hours, hourly for 2 days, daily for
// 35 days (unused --since 30d needs a month). Budgets usually bind first.
var DefaultTiers = []Tier{
	{Width: 10 * time.Minute, Keep: 2 * time.Hour},
	{Width: time.Hour, Keep: 48 * time.Hour},
	{Width: 24 * time.Hour, Keep: 35 * 24 * time.Hour},
}

// Default budgets (docs/perf.md has the sizing): at ~110 bytes per record
// and ~1 KiB per key, 64 MiB keep a week of 10k distinct connections per
// hour in the default tiers on a busy node.
const (
	DefaultMemoryBudget = 64 << 20
	DefaultDiskBudget   = 64 << 20
)

// Estimated in-memory costs, calibrated by BenchmarkHistoryMemory.
const (
	recordBytes = 96  // counters in the bucket's slice + the index entry
	bucketBytes = 256 // bucket header and map
	keyOverhead = 640 // the template's structs, label map and index entry
)

// Config configures a Store.
type Config struct {
	// Node is the judging node, reported in coverage.
	Node         string
	MemoryBudget int64 // bytes; 0: DefaultMemoryBudget
	DiskBudget   int64 // bytes; 0: DefaultDiskBudget
	Tiers        []Tier
	// Now is the clock (tests move it).
	Now func() time.Time
}

// Counters is what one key did in one bucket.
type Counters struct {
	Connections, Ends, Packets, Bytes uint64
	// First and Last are Unix nanoseconds.
	First, Last int64
}

func (c *Counters) add(o *Counters) {
	c.Connections += o.Connections
	c.Ends += o.Ends
	c.Packets += o.Packets
	c.Bytes += o.Bytes
	if c.First == 0 || (o.First != 0 && o.First < c.First) {
		c.First = o.First
	}
	c.Last = max(c.Last, o.Last)
}

type record struct {
	key uint32
	Counters
}

type bucket struct {
	start int64 // Unix ns
	width time.Duration
	index map[uint32]int32
	recs  []record
}

func (b *bucket) end() int64 { return b.start + int64(b.width) }

type keyEntry struct {
	flow  *flowv1.Flow
	canon string
	size  int64
	refs  int32 // records referring to it
}

// Store is one node's history. Record is safe for concurrent use and never
// blocks on I/O: persistence copies the state under the lock and writes
// outside it.
type Store struct {
	cfg Config

	mu       sync.Mutex
	keys     []keyEntry
	keyIndex map[string]uint32
	free     []uint32
	buckets  []*bucket // by start, ascending; never overlapping
	labels   labelCache
	scratch  []byte
	mem      int64
	cov      flowv1.HistoryCoverage
	hits     map[hitKey]*ruleHit
	// loadErr says the file could not be read (kept: history was reset);
	// writeErr is the last flush's failure.
	loadErr, writeErr string
	since             time.Time // rule hits counted since
}

// NewStore returns an empty store.
func NewStore(cfg Config) *Store {
	if cfg.MemoryBudget <= 0 {
		cfg.MemoryBudget = DefaultMemoryBudget
	}
	if cfg.DiskBudget <= 0 {
		cfg.DiskBudget = DefaultDiskBudget
	}
	if len(cfg.Tiers) == 0 {
		cfg.Tiers = DefaultTiers
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Store{cfg: cfg, keyIndex: map[string]uint32{}, hits: map[hitKey]*ruleHit{}, since: cfg.Now()}
	s.cov.Node = cfg.Node
	s.cov.SchemaVersion = SchemaVersion
	return s
}

// Record adds f (a new flow, a drop or a flow-end summary) to its key's
// bucket. Other event types are ignored.
func (s *Store) Record(f *flowv1.Flow) {
	var c Counters
	n := flow.Connections(f) // a kernel aggregate stands for several
	switch f.GetType() {
	case flowv1.EventType_EVENT_TYPE_NEW, flowv1.EventType_EVENT_TYPE_DROP:
		c.Connections = n
	case flowv1.EventType_EVENT_TYPE_END:
		c.Ends, c.Packets, c.Bytes = n, f.GetPackets(), f.GetBytes()
	default:
		return
	}
	at := f.GetTime().AsTime()
	if f.GetTime() == nil {
		at = s.cfg.Now()
	}
	c.First, c.Last = at.UnixNano(), at.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.Connections > 0 {
		s.hit(f, c.First, c.Connections)
	}
	s.scratch = s.labels.appendKey(s.scratch[:0], f)
	id, ok := s.keyIndex[string(s.scratch)]
	if !ok {
		if s.mem > s.cfg.MemoryBudget+s.cfg.MemoryBudget/4 {
			// Maintenance (each flush) brings memory back under budget;
			// between two, a flood of new keys is refused, not kept.
			s.cov.UnrecordedFlows++
			return
		}
		id = s.newKey(f)
	}
	b := s.bucketFor(c.First)
	s.addTo(b, id, &c)
}

func (s *Store) newKey(f *flowv1.Flow) uint32 {
	t := template(f)
	canon := string(s.scratch)
	e := keyEntry{flow: t, canon: canon, size: int64(proto.Size(t)+2*len(canon)) + keyOverhead}
	var id uint32
	if n := len(s.free); n > 0 {
		id = s.free[n-1]
		s.free = s.free[:n-1]
		s.keys[id] = e
	} else {
		id = uint32(len(s.keys))
		s.keys = append(s.keys, e)
	}
	s.keyIndex[canon] = id
	s.mem += e.size
	return id
}

func (s *Store) addTo(b *bucket, id uint32, c *Counters) {
	if i, ok := b.index[id]; ok {
		b.recs[i].add(c)
		return
	}
	b.index[id] = int32(len(b.recs))
	b.recs = append(b.recs, record{key: id, Counters: *c})
	s.keys[id].refs++
	s.mem += recordBytes
}

// bucketFor returns the bucket holding time t (Unix ns), creating a
// finest-tier bucket when none does.
func (s *Store) bucketFor(t int64) *bucket {
	if n := len(s.buckets); n > 0 {
		if b := s.buckets[n-1]; t >= b.start && t < b.end() {
			return b // the common case: now
		}
	}
	i, found := slices.BinarySearchFunc(s.buckets, t, func(b *bucket, t int64) int {
		switch {
		case b.end() <= t:
			return -1
		case b.start > t:
			return 1
		}
		return 0
	})
	if found {
		return s.buckets[i]
	}
	w := s.cfg.Tiers[0].Width
	start := time.Unix(0, t).Truncate(w).UnixNano()
	// Never overlap a neighbour (a coarse bucket may already cover part of it).
	if i > 0 && s.buckets[i-1].end() > start {
		start = s.buckets[i-1].end()
	}
	end := start + int64(w)
	if i < len(s.buckets) && s.buckets[i].start < end {
		end = s.buckets[i].start
	}
	b := &bucket{start: start, width: time.Duration(end - start), index: map[uint32]int32{}}
	s.buckets = slices.Insert(s.buckets, i, b)
	s.mem += bucketBytes
	return b
}

// Maintain coarsens buckets that outgrew their tier, drops what is past the
// last tier, and enforces the memory budget: first by coarsening the oldest
// buckets early, then by dropping the oldest. The agent calls it before each
// flush.
func (s *Store) Maintain() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maintain(s.cfg.MemoryBudget)
}

func (s *Store) maintain(budget int64) {
	now := s.cfg.Now().UnixNano()
	last := s.cfg.Tiers[len(s.cfg.Tiers)-1]
	for len(s.buckets) > 0 && s.buckets[0].end() <= now-int64(last.Keep) {
		s.dropOldest()
	}
	for ti := 0; ti+1 < len(s.cfg.Tiers); ti++ {
		s.coarsenOlderThan(now-int64(s.cfg.Tiers[ti].Keep), s.cfg.Tiers[ti+1].Width)
	}
	// Over budget: coarsen early, oldest window first, never the finest
	// tier's own span (what was just seen keeps its resolution).
	fresh := now - int64(s.cfg.Tiers[0].Keep)
	for ti := 1; ti < len(s.cfg.Tiers) && s.mem > budget; ti++ {
		w := s.cfg.Tiers[ti].Width
		from := int64(0)
		for s.mem > budget {
			start, ok := s.firstNarrower(w, from)
			if !ok {
				break
			}
			end := time.Unix(0, start).Truncate(w).UnixNano() + int64(w)
			if end > fresh {
				break
			}
			s.coarsenOlderThan(end, w)
			from = end
		}
	}
	for s.mem > budget && len(s.buckets) > 1 {
		s.dropOldest()
	}
	s.gcKeys()
}

// firstNarrower is the start of the oldest bucket narrower than w that
// starts at or after from.
func (s *Store) firstNarrower(w time.Duration, from int64) (int64, bool) {
	for _, b := range s.buckets {
		if b.start >= from && b.width < w {
			return b.start, true
		}
	}
	return 0, false
}

// coarsenOlderThan merges every bucket that ends at or before cut and is
// narrower than w into one bucket per w-aligned window. Tier widths divide
// one another and buckets are aligned to them, so a bucket never straddles a
// window and merged buckets never overlap.
func (s *Store) coarsenOlderThan(cut int64, w time.Duration) {
	out := make([]*bucket, 0, len(s.buckets))
	for _, b := range s.buckets {
		if b.end() > cut || b.width >= w {
			out = append(out, b)
			continue
		}
		start := time.Unix(0, b.start).Truncate(w).UnixNano()
		n := len(out)
		if n == 0 || time.Unix(0, out[n-1].start).Truncate(w).UnixNano() != start || out[n-1].width >= w {
			end := b.end()
			b.start, b.width = start, time.Duration(end-start)
			out = append(out, b)
			continue
		}
		into := out[n-1]
		into.width = time.Duration(max(into.end(), b.end()) - into.start)
		for _, r := range b.recs {
			s.keys[r.key].refs--
			s.mem -= recordBytes
			s.cov.CoarsenedRecords++
			s.addTo(into, r.key, &r.Counters)
		}
		s.mem -= bucketBytes
	}
	s.buckets = out
}

func (s *Store) dropOldest() {
	b := s.buckets[0]
	for _, r := range b.recs {
		s.keys[r.key].refs--
		s.cov.DroppedConnections += r.Connections
	}
	s.cov.DroppedRecords += uint64(len(b.recs))
	s.mem -= int64(len(b.recs))*recordBytes + bucketBytes
	s.buckets[0] = nil
	s.buckets = s.buckets[1:]
}

// gcKeys forgets keys no record refers to. A Go map never shrinks: after a
// large drop the index is rebuilt, so memory follows the keys kept.
func (s *Store) gcKeys() {
	freed := 0
	defer func() {
		if freed > 1024 && freed > len(s.keyIndex) {
			idx := make(map[string]uint32, len(s.keyIndex))
			for k, v := range s.keyIndex {
				idx[k] = v
			}
			s.keyIndex = idx
		}
	}()
	for id := range s.keys {
		e := &s.keys[id]
		if e.flow != nil && e.refs <= 0 {
			delete(s.keyIndex, e.canon)
			s.mem -= e.size
			*e = keyEntry{}
			s.free = append(s.free, uint32(id))
			freed++
		}
	}
}

// Coverage returns the store's coverage (what Status and History report).
func (s *Store) Coverage() *flowv1.HistoryCoverage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.coverage()
}

func (s *Store) coverage() *flowv1.HistoryCoverage {
	c := proto.Clone(&s.cov).(*flowv1.HistoryCoverage)
	c.Keys = uint64(len(s.keyIndex))
	var recs uint64
	var newest int64
	for _, b := range s.buckets {
		recs += uint64(len(b.recs))
		for i := range b.recs {
			newest = max(newest, b.recs[i].Last)
		}
	}
	c.Records = recs
	c.Error = strings.Trim(s.loadErr+"; "+s.writeErr, "; ")
	if len(s.buckets) > 0 {
		c.Oldest = timestamp(s.buckets[0].start)
		c.Newest = timestamp(newest)
	}
	c.MemoryBytes = uint64(max(s.mem, 0))
	c.MemoryBudgetBytes = uint64(s.cfg.MemoryBudget)
	c.DiskBudgetBytes = uint64(s.cfg.DiskBudget)
	return c
}

// MemoryBytes is the store's estimate of its memory use.
func (s *Store) MemoryBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mem
}
