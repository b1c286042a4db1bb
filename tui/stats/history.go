package stats

import (
	"time"

	"github.com/kubectl-netpol/kubectl-netpol/history"
)

// SetHistory serves the long ranges from history records held in memory
// (what the agents' History RPC sent, or a capture aggregated by
// history.FromFlows).
type SetHistory struct{ Set *history.Set }

var _ History = SetHistory{}

// Buckets implements History: steps aligned on multiples of r.Step, as the
// live counters' are, the last one holding end.
func (h SetHistory) Buckets(s Scope, r Range, end time.Time) ([]Count, error) {
	step := int64(r.Step / time.Second)
	first := time.Unix((end.Unix()/step-Points+1)*step, 0)
	out := make([]Count, Points)
	if h.Set == nil {
		return out, nil
	}
	for i, c := range h.Set.Steps(s.Match, first, r.Step, Points) {
		out[i] = Count{Allowed: c.All - c.Denied, Denied: c.Denied}
	}
	return out, nil
}
