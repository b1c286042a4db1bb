package whatif

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// CurrentPod is a pod of a recorded end's workload (or the pod itself) in
// the engine's snapshot, or nil: the spec what-if judges the end with
// (named ports), which advice must name ports against too.
func CurrentPod(e *policy.Engine, ep *flowv1.Endpoint) *corev1.Pod { return current(e, ep) }

// HistoryCoverage is how much history set holds since since: window,
// nodes, gaps, losses (Records and Pairs are left to the caller).
func HistoryCoverage(set *history.Set, since time.Time) Coverage {
	return coverage(Input{History: set, Since: since})
}

// Span is the window the history covers: from the later of its oldest
// record and Since, to its newest ("" when it holds nothing).
func (c Coverage) Span() string {
	if c.Oldest.IsZero() && c.Newest.IsZero() {
		return ""
	}
	from := c.Oldest
	if c.Since.After(from) {
		from = c.Since
	}
	return from.UTC().Format(time.RFC3339) + " to " + c.Newest.UTC().Format(time.RFC3339)
}
