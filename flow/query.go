package flow

import (
	"fmt"
	"time"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// Query is a compiled ObserveRequest: what the agent answers from its ring
// and stream, and what a replay answers from a file.
type Query struct {
	Filter *Filter
	Since  time.Time // zero: no lower bound
	Until  time.Time // zero: no upper bound
	Last   uint64    // 0: no limit
	Follow bool
}

// CompileQuery validates and compiles req.
func CompileQuery(req *flowv1.ObserveRequest) (*Query, error) {
	f, err := CompileFilter(req.GetAllowlist(), req.GetDenylist())
	if err != nil {
		return nil, err
	}
	q := &Query{Filter: f, Last: req.GetLast(), Follow: req.GetFollow()}
	if req.GetSince() != nil {
		q.Since = req.GetSince().AsTime()
	}
	if req.GetUntil() != nil {
		q.Until = req.GetUntil().AsTime()
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		return nil, fmt.Errorf("until (%s) must be after since (%s)", q.Until.Format(time.RFC3339), q.Since.Format(time.RFC3339))
	}
	return q, nil
}

// Match reports whether fl is inside the time window and passes the filter.
func (q *Query) Match(fl *flowv1.Flow) bool {
	if !q.Since.IsZero() || !q.Until.IsZero() {
		t := fl.GetTime().AsTime()
		if !q.Since.IsZero() && t.Before(q.Since) {
			return false
		}
		if !q.Until.IsZero() && !t.Before(q.Until) {
			return false
		}
	}
	return q.Filter.Match(fl)
}

// History selects, in order, the flows of a history (oldest first) that the
// query returns before following: every match, or only the last N.
func (q *Query) History(history []*flowv1.Flow) []*flowv1.Flow {
	var out []*flowv1.Flow
	for i := len(history) - 1; i >= 0; i-- {
		if q.Last > 0 && uint64(len(out)) == q.Last {
			break
		}
		if q.Match(history[i]) {
			out = append(out, history[i])
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}
