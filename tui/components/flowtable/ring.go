package flowtable

import flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"

// ring is a fixed-capacity FIFO of flows: the newest push evicts the oldest,
// so the table's memory is bounded however fast flows arrive.
type ring struct {
	buf   []*flowv1.Flow
	start int // index of the oldest
	n     int
}

func newRing(capacity int) ring { return ring{buf: make([]*flowv1.Flow, capacity)} }

// push appends f and reports whether the oldest flow was evicted.
func (r *ring) push(f *flowv1.Flow) bool {
	if r.n < len(r.buf) {
		r.buf[(r.start+r.n)%len(r.buf)] = f
		r.n++
		return false
	}
	r.buf[r.start] = f
	r.start = (r.start + 1) % len(r.buf)
	return true
}

// at returns the i-th oldest flow.
func (r *ring) at(i int) *flowv1.Flow { return r.buf[(r.start+i)%len(r.buf)] }

func (r *ring) len() int { return r.n }

func (r *ring) reset() {
	clear(r.buf)
	r.start, r.n = 0, 0
}
