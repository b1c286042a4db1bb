package cli

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
	"github.com/kubectl-netpol/kubectl-netpol/whatif"
)

// ringSpan is how far back `watch --since` reads the agents' recent-flow
// ring (exact flows); what is older comes from their aggregated history
// (one line per connection key and time bucket).
const ringSpan = time.Hour

// historyFirst is the live source of a `watch --since` reaching past
// ringSpan: the history's records from since up to the ring's span, then
// the live source from there.
type historyFirst struct {
	live   flow.Source
	access *agentAccess
	now    func() time.Time
}

var _ flow.Source = (*historyFirst)(nil)

func (h *historyFirst) Observe(ctx context.Context, req *flowv1.ObserveRequest, emit func(flow.Batch) error) error {
	since := req.GetSince().AsTime()
	cut := h.now().Add(-ringSpan)
	if req.GetSince() == nil || !since.Before(cut) {
		return h.live.Observe(ctx, req, emit)
	}
	hreq := &flowv1.HistoryRequest{SchemaVersion: history.SchemaVersion, Since: req.GetSince(), Until: timestamppb.New(cut),
		Allowlist: req.GetAllowlist(), Denylist: req.GetDenylist()}
	if req.GetUntil() != nil && req.GetUntil().AsTime().Before(cut) {
		hreq.Until = req.GetUntil()
	}
	set, err := h.access.collectHistory(ctx, hreq)
	if err != nil {
		return fmt.Errorf("reading the agents' history for --since: %w", err)
	}
	var nodes []flow.NodeState
	for node, why := range set.Unreachable {
		nodes = append(nodes, flow.NodeState{Node: node, Err: "history: " + why})
	}
	var flows []*flowv1.Flow
	for i := range set.Records {
		if r := &set.Records[i]; r.Connections > 0 {
			flows = append(flows, r.Flow())
		}
	}
	slices.SortStableFunc(flows, func(a, b *flowv1.Flow) int { return a.GetTime().AsTime().Compare(b.GetTime().AsTime()) })
	if n := req.GetLast(); n > 0 && uint64(len(flows)) > n {
		flows = flows[uint64(len(flows))-n:]
	}
	if err := emit(flow.Batch{Flows: flows, Nodes: nodes}); err != nil {
		return err
	}
	if req.GetUntil() != nil && !req.GetUntil().AsTime().After(cut) {
		return nil
	}
	live := &flowv1.ObserveRequest{Follow: req.GetFollow(), Last: req.GetLast(), Since: timestamppb.New(cut), Until: req.GetUntil(),
		Allowlist: req.GetAllowlist(), Denylist: req.GetDenylist()}
	return h.live.Observe(ctx, live, emit)
}

// whatifSource annotates every flow with its verdict under a proposal
// (watch --whatif) before the printer or the TUI sees it.
type whatifSource struct {
	flow.Source
	ann             *whatif.Annotator
	judged, changed *uint64
}

func (w *whatifSource) Observe(ctx context.Context, req *flowv1.ObserveRequest, emit func(flow.Batch) error) error {
	return w.Source.Observe(ctx, req, func(b flow.Batch) error {
		for _, f := range b.Flows {
			if w.ann.Annotate(f) {
				*w.changed++
			}
			if f.GetWhatif() != nil {
				*w.judged++
			}
		}
		return emit(b)
	})
}
