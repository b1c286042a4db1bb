package history

import (
	"time"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// StepCount is the connections of one chart step: all of them, and those
// denied.
type StepCount struct{ All, Denied uint64 }

// Steps sums the connections of the records match selects (nil: all) into
// n steps of width step, the first starting at start: what a chart of the
// history draws. A record's connections are spread over the steps its
// bucket overlaps, in proportion (a daily bucket on a 3-hour step has no
// finer truth); the counts add up exactly. A connection between two nodes
// is recorded by both (allowed at the source's egress, and allowed or
// denied at the destination's ingress): per pair of ends, port and bucket
// it counts once, the largest node's count, denied when a node dropped it
// (an AUDIT connection counts as what was enforced).
func (s *Set) Steps(match func(*flowv1.Flow) bool, start time.Time, step time.Duration, n int) []StepCount {
	// Records of one stream share their key's Flow: what a key needs (the
	// match, its pair of ends and port, its node, dropped or not) is worked
	// out once per key, and records are grouped by small integers.
	type pairKey struct {
		src, dst string
		proto    flowv1.Protocol
		port     uint32
	}
	type keyInfo struct {
		pair    int32 // -1: not matched
		node    uint16
		dropped bool
	}
	// A group is one pair of ends and port in one bucket, with each judging
	// node's counts: one node, or two for a cross-node connection, kept
	// inline (more only when a workload's pods run on several nodes).
	type nodeSum struct {
		node        uint16
		all, denied uint64
	}
	type group struct {
		bucket, width int64
		nodes         [2]nodeSum
		used          uint8
		more          []nodeSum
	}
	from, to := start.UnixNano(), start.Add(step*time.Duration(n)).UnixNano()
	keys := map[*flowv1.Flow]keyInfo{}
	pairs := map[pairKey]int32{}
	nodes := map[string]uint16{}
	// Groups by pair and bucket start packed in one integer (a map of
	// uint64 is the fast one): seconds from the chart's start, offset to
	// stay positive for buckets begun before it.
	groups := map[uint64]int32{}
	var gs []group
	for i := range s.Records {
		r := &s.Records[i]
		b := r.Start.UnixNano()
		if r.Connections == 0 || b >= to || b+int64(r.Width) <= from {
			continue
		}
		k := r.Key
		ki, ok := keys[k]
		if !ok {
			ki = keyInfo{pair: -1}
			if match == nil || match(k) {
				pk := pairKey{EndKey(k.GetSource(), k.GetIp().GetSource()), EndKey(k.GetDestination(), k.GetIp().GetDestination()),
					k.GetL4().GetProtocol(), k.GetL4().GetDestinationPort()}
				p, ok := pairs[pk]
				if !ok {
					p = int32(len(pairs))
					pairs[pk] = p
				}
				node, ok := nodes[k.GetNode()]
				if !ok {
					node = uint16(len(nodes))
					nodes[k.GetNode()] = node
				}
				ki = keyInfo{pair: p, node: node, dropped: flow.Dropped(k)}
			}
			keys[k] = ki
		}
		if ki.pair < 0 {
			continue
		}
		gk := uint64(ki.pair)<<32 | uint64(uint32((b-from)/int64(time.Second)+1<<31))
		gi, ok := groups[gk]
		if !ok {
			gi = int32(len(gs))
			groups[gk] = gi
			gs = append(gs, group{bucket: b, width: int64(r.Width)})
		}
		g := &gs[gi]
		var ns *nodeSum
		for j := range g.used {
			if g.nodes[j].node == ki.node {
				ns = &g.nodes[j]
			}
		}
		for j := range g.more {
			if g.more[j].node == ki.node {
				ns = &g.more[j]
			}
		}
		switch {
		case ns != nil:
		case int(g.used) < len(g.nodes):
			g.nodes[g.used].node = ki.node
			ns = &g.nodes[g.used]
			g.used++
		default:
			g.more = append(g.more, nodeSum{node: ki.node})
			ns = &g.more[len(g.more)-1]
		}
		ns.all += r.Connections
		if ki.dropped {
			ns.denied += r.Connections
		}
	}
	out := make([]StepCount, n)
	for i := range gs {
		g := &gs[i]
		var all, denied uint64
		for _, ns := range append(g.nodes[:g.used], g.more...) {
			all, denied = max(all, ns.all), max(denied, ns.denied)
		}
		spread(out, from, int64(step), g.bucket, g.width, all, denied)
	}
	return out
}

// spread adds all and denied, evenly over [bucket, bucket+width), to the
// steps of out (step ns wide from from) that the bucket overlaps. Each
// step gets the difference of two cumulative shares, so rounding never
// loses or invents a connection.
func spread(out []StepCount, from, step, bucket, width int64, all, denied uint64) {
	width = max(width, 1)
	upTo := func(t int64) int64 { return min(max(t-bucket, 0), width) }
	for i := max((bucket-from)/step, 0); i < int64(len(out)); i++ {
		lo, hi := from+i*step, from+(i+1)*step
		if lo >= bucket+width {
			break
		}
		out[i].All += share(all, upTo(hi), width) - share(all, upTo(lo), width)
		out[i].Denied += share(denied, upTo(hi), width) - share(denied, upTo(lo), width)
	}
}

// share is n·part/whole, rounded down.
func share(n uint64, part, whole int64) uint64 {
	if part >= whole {
		return n
	}
	return uint64(float64(n) * float64(part) / float64(whole))
}
