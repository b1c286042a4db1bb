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
	var k netpolNetpolAggNewKey
	var v netpolNetpolAggNewValue
	it := p.objs.NetpolAggNew.Iterate()
	for it.Next(&k, &v) {
		a := NewFlowAggregate{Count: v.C.Count, Sample: v.Sample}
		fn(&k, &a)
	}
	if err := it.Err(); err != nil && !errors.Is(err, ebpf.ErrIterationAborted) {
		return fmt.Errorf("reading netpol_agg_new: %w", err)
	}
	return nil
}

// ReadEndAggregates calls fn for every key of the TCP end aggregates.
func (p *Probe) ReadEndAggregates(fn func(k *EndAggregateKey, a *EndAggregate)) error {
	var k netpolNetpolAggEndKey
	var v netpolNetpolAggCounts
	it := p.objs.NetpolAggEnd.Iterate()
	for it.Next(&k, &v) {
		a := EndAggregate{Orig: k.Orig, Status: k.Status, Family: k.Family, Count: v.Count,
			PacketsOrig: v.PacketsOrig, BytesOrig: v.BytesOrig, PacketsReply: v.PacketsReply,
			BytesReply: v.BytesReply, DurationNs: v.DurationNs}
		fn(&k, &a)
	}
	if err := it.Err(); err != nil && !errors.Is(err, ebpf.ErrIterationAborted) {
		return fmt.Errorf("reading netpol_agg_end: %w", err)
	}
	return nil
}
