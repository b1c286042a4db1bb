package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
	"github.com/kubectl-netpol/kubectl-netpol/tui/stats"
	"github.com/kubectl-netpol/kubectl-netpol/whatif"
)

// ringSpan is how far back `watch --since` reads the agents' recent-flow
// ring (exact flows); what is older comes from their aggregated history
// (one line per connection key and time bucket).
const ringSpan = time.Hour

// historyFirst is the live source of a `watch --since` reaching past what
// the agents' rings hold: the history's records from since up to the cut,
// then the live source from there. The cut is ringSpan ago, or later when
// an agent restarted since (its ring starts empty at its start, the newest
// gap's end in its history's coverage), so `watch --since 1h` right after an
// upgrade still shows the hour, from history.
type historyFirst struct {
	live   flow.Source
	access *agentAccess
	now    func() time.Time
}

var _ flow.Source = (*historyFirst)(nil)

func (h *historyFirst) Observe(ctx context.Context, req *flowv1.ObserveRequest, emit func(flow.Batch) error) error {
	if req.GetSince() == nil {
		return h.live.Observe(ctx, req, emit)
	}
	since := req.GetSince().AsTime()
	now := h.now()
	hreq := &flowv1.HistoryRequest{SchemaVersion: history.SchemaVersion, Since: req.GetSince(), Until: timestamppb.New(now),
		Allowlist: req.GetAllowlist(), Denylist: req.GetDenylist()}
	if req.GetUntil() != nil && req.GetUntil().AsTime().Before(now) {
		hreq.Until = req.GetUntil()
	}
	set, err := h.access.collectHistory(ctx, hreq)
	if err != nil {
		return fmt.Errorf("reading the agents' history for --since: %w", err)
	}
	cut := ringCut(set, now)
	if !since.Before(cut) {
		return h.live.Observe(ctx, req, emit)
	}
	var nodes []flow.NodeState
	for node, why := range set.Unreachable {
		nodes = append(nodes, flow.NodeState{Node: node, Err: "history: " + why})
	}
	var flows []*flowv1.Flow
	for i := range set.Records {
		// Records begun before the cut: the ring has what began after it.
		if r := &set.Records[i]; r.Connections > 0 && r.First < cut.UnixNano() {
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

// ringCut is where the agents' rings take over from history: ringSpan ago,
// or the latest agent start (the end of a node's newest gap) when later.
// One cut for every node: a node whose ring reaches further back shows the
// stretch before the cut aggregated, never twice or not at all.
func ringCut(set *history.Set, now time.Time) time.Time {
	cut := now.Add(-ringSpan)
	for _, c := range set.Coverage {
		if gaps := c.GetGaps(); len(gaps) > 0 {
			if start := gaps[len(gaps)-1].GetEnd().AsTime(); start.After(cut) && !start.After(now) {
				cut = start
			}
		}
	}
	return cut
}

// historyRefresh is how old the agents' history the TUI charts may get
// before it is read again (a 24 h chart's step is 24 minutes).
const historyRefresh = time.Minute

// agentsHistory serves the TUI chart's long ranges (24 h, 7 d) from the
// agents' history, with the watch's filters, read again when older than
// historyRefresh. Buckets runs in a Bubble Tea command, never while drawing.
type agentsHistory struct {
	access              *agentAccess
	allowlist, denylist []*flowv1.FlowFilter
	now                 func() time.Time

	mu   sync.Mutex
	set  *history.Set
	read time.Time
}

var _ stats.History = (*agentsHistory)(nil)

func (h *agentsHistory) Buckets(s stats.Scope, r stats.Range, end time.Time) ([]stats.Count, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	if h.set == nil || now.Sub(h.read) > historyRefresh {
		longest := stats.LongRanges[len(stats.LongRanges)-1].Span()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		set, err := h.access.collectHistory(ctx, &flowv1.HistoryRequest{SchemaVersion: history.SchemaVersion,
			Since: timestamppb.New(now.Add(-longest)), Allowlist: h.allowlist, Denylist: h.denylist})
		if err != nil {
			return nil, err
		}
		if len(set.Coverage) == 0 && len(set.Unreachable) > 0 {
			var why []string
			for node, w := range set.Unreachable {
				why = append(why, node+": "+w)
			}
			slices.Sort(why)
			return nil, fmt.Errorf("no agent's history could be read (%s)", strings.Join(why, "; "))
		}
		h.set, h.read = set, now
	}
	return stats.SetHistory{Set: h.set}.Buckets(s, r, end)
}

// captureHistory serves the chart's long ranges when replaying a capture:
// the whole file aggregated as the agents would (hourly buckets), read once
// on first use, with watch's filters.
type captureHistory struct {
	path  string
	match func(*flowv1.Flow) bool

	once sync.Once
	set  *history.Set
	err  error
}

var _ stats.History = (*captureHistory)(nil)

func (h *captureHistory) Buckets(s stats.Scope, r stats.Range, end time.Time) ([]stats.Count, error) {
	h.once.Do(func() { h.set, h.err = historyFromFile(h.path) })
	if h.err != nil {
		return nil, h.err
	}
	scope := s.Match
	s.Match = func(f *flowv1.Flow) bool { return h.match(f) && (scope == nil || scope(f)) }
	return stats.SetHistory{Set: h.set}.Buckets(s, r, end)
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
