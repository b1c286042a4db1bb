//go:build linux

package agent

import (
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/kubectl-netpol/kubectl-netpol/probe"
)

// aggregateReader turns the kernel's counts of repeated flows
// (probe.Config.AggregateInterval) into records: every interval, one record
// per key that counted more since the last reading, standing for that many
// connections (Flow.connections). The kernel's counters only grow; the
// reader keeps the last reading of each key. Its first reading only takes
// the counters as they are: a restarted agent does not report again what the
// previous one did.
type aggregateReader struct {
	every  time.Duration
	next   time.Time
	primed bool
	gen    uint32
	news   map[probe.NewFlowAggregateKey]aggregateSeen
	ends   map[probe.EndAggregateKey]endSeen
}

type aggregateSeen struct {
	count uint64
	gen   uint32
}

type endSeen struct {
	probe.EndAggregate
	gen uint32
}

func newAggregateReader(every time.Duration) *aggregateReader {
	return &aggregateReader{every: every, news: map[probe.NewFlowAggregateKey]aggregateSeen{},
		ends: map[probe.EndAggregateKey]endSeen{}}
}

// due says whether a reading is due at now, and if so schedules the next.
func (r *aggregateReader) due(now time.Time) bool {
	if r == nil || now.Before(r.next) {
		return false
	}
	r.next = now.Add(r.every)
	return true
}

// grown returns how much a counter grew since prev; a counter below prev
// belongs to a key evicted and counted anew since.
func grown(now, prev uint64) uint64 {
	if now < prev {
		return now
	}
	return now - prev
}

// publishNewFlowAggregates reads the new-flow counters and publishes a
// record for each key that grew, enriched from the key's recorded sample.
func (a *Agent) publishNewFlowAggregates(r *aggregateReader) {
	r.gen++
	report := r.primed
	r.primed = true
	dp := a.probe.Applied()
	mono := monotonicNow()
	err := a.probe.ReadNewFlowAggregates(func(k *probe.NewFlowAggregateKey, agg *probe.NewFlowAggregate) {
		prev := r.news[*k]
		n := grown(agg.Count, prev.count)
		r.news[*k] = aggregateSeen{count: agg.Count, gen: r.gen}
		if !report || n == 0 || dp == nil || agg.Sample.Version != probe.EventVersion {
			return
		}
		ev := agg.Sample
		ev.Tuple.Sport, ev.OrigTuple.Sport = 0, 0
		ev.TimestampNs = mono
		f := a.enrich.flow(dp, &ev)
		f.Connections = n
		a.count(f)
		a.hub.Publish(f)
		a.record(f)
	})
	if err != nil {
		klog.ErrorS(err, "Reading the aggregated new flows")
		return
	}
	for k, s := range r.news {
		if s.gen != r.gen {
			delete(r.news, k) // evicted by the kernel
		}
	}
}

// readEndAggregates reads the TCP end counters and sends a flow end for
// each key that grew: the repeats' counters summed, their mean lifetime.
func (a *Agent) readEndAggregates(r *aggregateReader, send func(flowEnd)) {
	r.gen++
	report := r.primed
	r.primed = true
	now := time.Now()
	err := a.probe.ReadEndAggregates(func(k *probe.EndAggregateKey, agg *probe.EndAggregate) {
		prev := r.ends[*k]
		r.ends[*k] = endSeen{EndAggregate: *agg, gen: r.gen}
		n := grown(agg.Count, prev.Count)
		if !report || n == 0 {
			return
		}
		if agg.Count < prev.Count {
			prev = endSeen{} // evicted and counted anew
		}
		e := flowEnd{proto: unix.IPPROTO_TCP, dport: k.Orig.Dport, rsprt: k.Orig.Dport, at: now, conns: n,
			packets: agg.PacketsOrig - prev.PacketsOrig + agg.PacketsReply - prev.PacketsReply,
			bytes:   agg.BytesOrig - prev.BytesOrig + agg.BytesReply - prev.BytesReply}
		e.src, e.dst = probe.TupleAddrs(k.Orig)
		e.rsrc = e.dst
		e.stop = now
		e.start = now.Add(-time.Duration((agg.DurationNs - prev.DurationNs) / n))
		send(e)
	})
	if err != nil {
		klog.ErrorS(err, "Reading the aggregated flow ends")
		return
	}
	for k, s := range r.ends {
		if s.gen != r.gen {
			delete(r.ends, k)
		}
	}
}
