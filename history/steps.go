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
	type group struct {
		src, dst string
		proto    flowv1.Protocol
		port     uint32
		bucket   int64
		width    time.Duration
	}
	type nodeCount struct{ all, denied uint64 }
	from, to := start.UnixNano(), start.Add(step*time.Duration(n)).UnixNano()
	ends := map[*flowv1.Flow][2]string{} // records of one stream share their key's Flow
	groups := map[group]map[string]*nodeCount{}
	for i := range s.Records {
		r := &s.Records[i]
		b := r.Start.UnixNano()
		if r.Connections == 0 || b >= to || b+int64(r.Width) <= from || (match != nil && !match(r.Key)) {
			continue
		}
		k := r.Key
		e, ok := ends[k]
		if !ok {
			e = [2]string{EndKey(k.GetSource(), k.GetIp().GetSource()), EndKey(k.GetDestination(), k.GetIp().GetDestination())}
			ends[k] = e
		}
		g := group{e[0], e[1], k.GetL4().GetProtocol(), k.GetL4().GetDestinationPort(), b, r.Width}
		nodes := groups[g]
		if nodes == nil {
			nodes = map[string]*nodeCount{}
			groups[g] = nodes
		}
		c := nodes[k.GetNode()]
		if c == nil {
			c = &nodeCount{}
			nodes[k.GetNode()] = c
		}
		c.all += r.Connections
		if flow.Dropped(k) {
			c.denied += r.Connections
		}
	}
	out := make([]StepCount, n)
	for g, nodes := range groups {
		var all, denied uint64
		for _, c := range nodes {
			all, denied = max(all, c.all), max(denied, c.denied)
		}
		spread(out, from, int64(step), g.bucket, int64(g.width), all, denied)
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
