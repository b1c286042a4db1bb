//go:build linux

package probe

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// NewFlowAggregate is one key of the allowed new flows counted in the kernel
// (Config.AggregateInterval): Count only grows, so a reader reports its
// difference to the last reading. Sample is the last flow of the key that
// was recorded (its endpoints, identities and reasons); its Version is 0
// until one was.
type NewFlowAggregate struct {
	Count  uint64
	Sample Event
}

// EndAggregate is one key of the TCP socket ends counted in the kernel:
// Orig is the connection's original direction without the client's port,
// Status its NETPOL_END_* bits (IsSocketEnd); the counters are the ends'
// sums, and only grow.
type EndAggregate struct {
	Orig                     netpolNetpolTuple
	Status                   uint32
	Family                   uint8
	Count                    uint64
	PacketsOrig, BytesOrig   uint64
	PacketsReply, BytesReply uint64
	DurationNs               uint64 // the ends' lifetimes, summed
}

// NewFlowAggregateKey identifies a NewFlowAggregate between readings.
type NewFlowAggregateKey = netpolNetpolAggNewKey

// EndAggregateKey identifies an EndAggregate between readings.
type EndAggregateKey = netpolNetpolAggEndKey

// ReadNewFlowAggregates calls fn for every key of the new-flow aggregates.
func (p *Probe) ReadNewFlowAggregates(fn func(k *NewFlowAggregateKey, a *NewFlowAggregate)) error {
	err := readAll(p.objs.NetpolAggNew, func(k *netpolNetpolAggNewKey, v *netpolNetpolAggNewValue) {
		a := NewFlowAggregate{Count: v.C.Count, Sample: v.Sample}
		fn(k, &a)
	})
	if err != nil {
		return fmt.Errorf("reading netpol_agg_new: %w", err)
	}
	return nil
}

// ReadEndAggregates calls fn for every key of the TCP end aggregates.
func (p *Probe) ReadEndAggregates(fn func(k *EndAggregateKey, a *EndAggregate)) error {
	err := readAll(p.objs.NetpolAggEnd, func(k *netpolNetpolAggEndKey, v *netpolNetpolAggCounts) {
		a := EndAggregate{Orig: k.Orig, Status: k.Status, Family: k.Family, Count: v.Count,
			PacketsOrig: v.PacketsOrig, BytesOrig: v.BytesOrig, PacketsReply: v.PacketsReply,
			BytesReply: v.BytesReply, DurationNs: v.DurationNs}
		fn(k, &a)
	})
	if err != nil {
		return fmt.Errorf("reading netpol_agg_end: %w", err)
	}
	return nil
}

// aggBatch is how many entries one batch look-up reads.
const aggBatch = 256

// readAll calls fn for every entry of m: in batches (a system call per
// aggBatch entries, not two per entry), or entry by entry where the kernel
// refuses a batch. A key read twice is harmless to the readers here: they
// report a counter's growth since their last reading.
func readAll[K, V any](m *ebpf.Map, fn func(*K, *V)) error {
	keys, vals := make([]K, aggBatch), make([]V, aggBatch)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			fn(&keys[i], &vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			break // e.g. a bucket larger than the batch (ENOSPC), or no batch support
		}
	}
	var k K
	var v V
	it := m.Iterate()
	for it.Next(&k, &v) {
		fn(&k, &v)
	}
	if err := it.Err(); err != nil && !errors.Is(err, ebpf.ErrIterationAborted) {
		return err
	}
	return nil
}
