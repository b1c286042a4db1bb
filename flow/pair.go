package flow

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// Defaults of Pair.
const (
	// PairWindow is how long a record of a cross-node connection waits for
	// the other node's record. Both agents report within milliseconds of
	// each other (the packet crosses the overlay in well under one); the
	// window covers their batching and the CLI's streams, and bounds the
	// delay of a record whose partner never comes (the other node's agent
	// down, or a filter at one agent only). Flows between pods of one node,
	// with a node or the world, and egress drops (the packet never reached
	// the other node) are never held.
	PairWindow = 500 * time.Millisecond
	// PairMaxPending bounds the records held at once; past it the oldest
	// goes out alone (memory stays bounded at any flow rate).
	PairMaxPending = 1 << 16
)

// Pair is a Source that shows a connection between pods on two nodes once.
// Such a connection is judged twice, egress on the source pod's node and
// ingress on the destination pod's node, and each agent reports a record.
// Pair holds a record that expects a partner (its endpoints are pods on two
// different nodes and it is one of them reporting) for at most Window, keyed
// by its 5-tuple: both nodes see the same post-DNAT tuple (kube-proxy
// rewrites the ClusterIP on the source node; the destination node sees the
// backend), and only the source node's record names the Service. When the
// partner arrives, one flow goes out with both Observations (see MergePair);
// when it does not, the record goes out alone. Everything else passes at once.
type Pair struct {
	Source Source
	// Window and MaxPending default to PairWindow and PairMaxPending.
	Window     time.Duration
	MaxPending int
}

var _ Source = (*Pair)(nil)

type pairKey struct {
	proto       flowv1.Protocol
	src, dst    netip.Addr
	sport, dprt uint32
	end         bool // flow-end summaries pair with each other
}

type pending struct {
	f        *flowv1.Flow
	deadline time.Time
	seq      uint64
}

// pairer is the state of one Observe; callers hold mu.
type pairer struct {
	window  time.Duration
	max     int
	held    map[pairKey]pending
	order   []pairKey // arrival order, with stale keys skipped by seq
	seqs    []uint64
	nextSeq uint64
}

// partnerKey returns the key of f and whether f expects a record from
// another node.
func partnerKey(f *flowv1.Flow) (pairKey, bool) {
	src, dst := f.GetSource(), f.GetDestination()
	sn, dn := src.GetNodeName(), dst.GetNodeName()
	if len(f.GetObservations()) > 0 || f.GetIsReply() || src.GetPod() == "" || dst.GetPod() == "" || sn == "" || dn == "" || sn == dn {
		return pairKey{}, false
	}
	// A kernel aggregate counts one node's repeats over that agent's own
	// interval: two nodes' aggregates are not the same connections.
	if f.GetConnections() > 0 {
		return pairKey{}, false
	}
	switch f.GetNode() {
	case sn:
		// Dropped on egress: the packet never reached the destination node.
		if Dropped(f) && f.GetDirection() == flowv1.TrafficDirection_TRAFFIC_DIRECTION_EGRESS {
			return pairKey{}, false
		}
	case dn:
	default:
		return pairKey{}, false
	}
	s, err1 := netip.ParseAddr(f.GetIp().GetSource())
	d, err2 := netip.ParseAddr(f.GetIp().GetDestination())
	if err1 != nil || err2 != nil {
		return pairKey{}, false
	}
	return pairKey{proto: f.GetL4().GetProtocol(), src: s, dst: d, sport: f.GetL4().GetSourcePort(),
		dprt: f.GetL4().GetDestinationPort(), end: f.GetType() == flowv1.EventType_EVENT_TYPE_END}, true
}

// add takes one record and appends what goes out now to out.
func (p *pairer) add(f *flowv1.Flow, now time.Time, out []*flowv1.Flow) []*flowv1.Flow {
	k, ok := partnerKey(f)
	if !ok {
		return append(out, f)
	}
	if h, held := p.held[k]; held {
		delete(p.held, k)
		if h.f.GetNode() != f.GetNode() {
			return append(out, MergePair(h.f, f))
		}
		out = append(out, h.f) // a repeat from the same node (a retransmission): the older goes alone
	}
	for len(p.held) >= p.max {
		out = p.popOldest(out)
	}
	p.nextSeq++
	p.held[k] = pending{f: f, deadline: now.Add(p.window), seq: p.nextSeq}
	p.order = append(p.order, k)
	p.seqs = append(p.seqs, p.nextSeq)
	return out
}

// popOldest sends the oldest held record alone.
func (p *pairer) popOldest(out []*flowv1.Flow) []*flowv1.Flow {
	for len(p.order) > 0 {
		k, seq := p.order[0], p.seqs[0]
		p.order, p.seqs = p.order[1:], p.seqs[1:]
		if h, ok := p.held[k]; ok && h.seq == seq {
			delete(p.held, k)
			return append(out, h.f)
		}
	}
	return out
}

// expire sends alone every held record whose window has passed (all of
// them when now is zero).
func (p *pairer) expire(now time.Time, out []*flowv1.Flow) []*flowv1.Flow {
	for len(p.order) > 0 {
		k, seq := p.order[0], p.seqs[0]
		h, ok := p.held[k]
		if ok && h.seq == seq && !now.IsZero() && now.Before(h.deadline) {
			break
		}
		p.order, p.seqs = p.order[1:], p.seqs[1:]
		if ok && h.seq == seq {
			delete(p.held, k)
			out = append(out, h.f)
		}
	}
	if len(p.order) == 0 {
		p.order, p.seqs = nil, nil // let the backing arrays go
	}
	return out
}

// Observe implements Source. A query that does not follow (a one-shot
// answer or a replay) is paired as a whole, by the flows' own times, and keeps
// its order: a merged flow takes its first record's place.
func (s *Pair) Observe(ctx context.Context, req *flowv1.ObserveRequest, emit func(Batch) error) error {
	p := &pairer{window: s.Window, max: s.MaxPending, held: map[pairKey]pending{}}
	if p.window <= 0 {
		p.window = PairWindow
	}
	if p.max <= 0 {
		p.max = PairMaxPending
	}
	if !req.GetFollow() {
		return s.observeAll(ctx, req, p.window, emit)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var emitErr error
	send := func(b Batch) error { // mu held
		if emitErr != nil {
			return emitErr
		}
		if len(b.Flows) == 0 && len(b.Nodes) == 0 && b.Lost == 0 {
			return nil
		}
		if emitErr = emit(b); emitErr != nil {
			cancel()
		}
		return emitErr
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(max(p.window/4, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case now := <-t.C:
				mu.Lock()
				_ = send(Batch{Flows: p.expire(now, nil)})
				mu.Unlock()
			}
		}
	}()
	err := s.Source.Observe(ctx, req, func(b Batch) error {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		out := make([]*flowv1.Flow, 0, len(b.Flows))
		for _, f := range b.Flows {
			out = p.add(f, now, out)
		}
		b.Flows = p.expire(now, out)
		return send(b)
	})
	close(done)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if emitErr != nil {
		return emitErr
	}
	// The source ended (a replay, a one-shot query): what is held has
	// every partner it will get.
	if serr := send(Batch{Flows: p.expire(time.Time{}, nil)}); serr != nil && err == nil {
		return serr
	}
	return err
}

func (s *Pair) observeAll(ctx context.Context, req *flowv1.ObserveRequest, window time.Duration, emit func(Batch) error) error {
	var flows []*flowv1.Flow
	err := s.Source.Observe(ctx, req, func(b Batch) error {
		flows = append(flows, b.Flows...)
		if len(b.Nodes) > 0 || b.Lost > 0 {
			return emit(Batch{Nodes: b.Nodes, Lost: b.Lost})
		}
		return nil
	})
	flows = PairAll(flows, window)
	for len(flows) > 0 {
		k := min(len(flows), BatchSize)
		if eerr := emit(Batch{Flows: flows[:k]}); eerr != nil {
			return eerr
		}
		flows = flows[k:]
	}
	return err
}

// PairAll pairs records of flows (in order) whose times are within window
// of each other, as Pair does, keeping the order: a merged flow takes the
// place of its first record.
func PairAll(flows []*flowv1.Flow, window time.Duration) []*flowv1.Flow {
	open := map[pairKey]int{} // key -> index in out of an unpaired record
	out := make([]*flowv1.Flow, 0, len(flows))
	for _, f := range flows {
		k, ok := partnerKey(f)
		if !ok {
			out = append(out, f)
			continue
		}
		if i, held := open[k]; held {
			h := out[i]
			d := f.GetTime().AsTime().Sub(h.GetTime().AsTime())
			if h.GetNode() != f.GetNode() && d <= window && d >= -window {
				out[i] = MergePair(h, f)
				delete(open, k)
				continue
			}
		}
		open[k] = len(out)
		out = append(out, f)
	}
	return out
}

// MergePair makes one flow of the records two nodes made of one connection
// (a and b in any order). Observations holds both points, the source pod's
// node's (egress) first. The flow's verdict is DENIED when either point
// denied it, and then its type, reason, direction, policies and rule ID are
// the denying point's; when both allowed, allowed_by is both points' and
// the reason the stronger one (a rule allowed it at one point at least).
// Endpoints come from the node each runs on (the source from the egress
// record, the destination from the ingress one) and the Service from the
// record that has it (the source node's: DNAT happens there). An audited
// point (VERDICT_AUDIT) counts by the verdict its packets followed; the
// flow is AUDIT, with that point's would-be outcome, when the deciding
// point (or, both allowing, either) was audited.
func MergePair(a, b *flowv1.Flow) *flowv1.Flow {
	eg, in := a, b
	if b.GetNode() == b.GetSource().GetNodeName() && a.GetNode() != a.GetSource().GetNodeName() {
		eg, in = b, a
	}
	m := proto.Clone(eg).(*flowv1.Flow)
	if in.GetDestination() != nil {
		m.Destination = proto.Clone(in.GetDestination()).(*flowv1.Endpoint)
	}
	if m.Service == nil && in.GetService() != nil {
		m.Service = proto.Clone(in.GetService()).(*flowv1.Service)
	}
	if in.GetTime().AsTime().Before(m.GetTime().AsTime()) {
		m.Time = in.GetTime()
	}
	m.Observations = []*flowv1.Observation{observation(eg, flowv1.TrafficDirection_TRAFFIC_DIRECTION_EGRESS),
		observation(in, flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS)}
	var deny *flowv1.Flow
	for _, f := range []*flowv1.Flow{eg, in} {
		if Dropped(f) {
			deny = f
			break
		}
	}
	if deny != nil {
		m.Type, m.Verdict, m.Reason, m.Direction, m.RuleId = deny.GetType(), deny.GetVerdict(), deny.GetReason(), deny.GetDirection(), deny.GetRuleId()
		m.Audit = cloneAudit(deny.GetAudit())
		m.AllowedBy = clonePolicyRefs(deny.GetAllowedBy())
		m.DeniedBy = clonePolicyRefs(deny.GetDeniedBy())
		m.IsolatedBy = clonePolicyRefs(deny.GetIsolatedBy())
		return m
	}
	m.AllowedBy = append(clonePolicyRefs(eg.GetAllowedBy()), clonePolicyRefs(in.GetAllowedBy())...)
	m.Verdict, m.Audit = flowv1.Verdict_VERDICT_ALLOWED, nil
	for _, f := range []*flowv1.Flow{eg, in} {
		if f.GetAudit() != nil {
			m.Verdict, m.Audit = flowv1.Verdict_VERDICT_AUDIT, cloneAudit(f.GetAudit())
			break
		}
	}
	for _, r := range []flowv1.Reason{flowv1.Reason_REASON_ALLOWED_BY_RULE, flowv1.Reason_REASON_NOT_ISOLATED} {
		if eg.GetReason() == r || in.GetReason() == r {
			m.Reason = r
			break
		}
	}
	if m.RuleId == 0 {
		m.RuleId = in.GetRuleId()
	}
	m.Direction = flowv1.TrafficDirection_TRAFFIC_DIRECTION_UNSPECIFIED // both points passed it
	return m
}

func observation(f *flowv1.Flow, side flowv1.TrafficDirection) *flowv1.Observation {
	return &flowv1.Observation{Node: f.GetNode(), Direction: side, Type: f.GetType(), Verdict: f.GetVerdict(),
		Reason: f.GetReason(), AllowedBy: clonePolicyRefs(f.GetAllowedBy()), DeniedBy: clonePolicyRefs(f.GetDeniedBy()),
		IsolatedBy: clonePolicyRefs(f.GetIsolatedBy()), RuleId: f.GetRuleId(), Time: f.GetTime(), Audit: cloneAudit(f.GetAudit())}
}

func cloneAudit(a *flowv1.Audit) *flowv1.Audit {
	if a == nil {
		return nil
	}
	return proto.Clone(a).(*flowv1.Audit)
}

func clonePolicyRefs(refs []*flowv1.PolicyRef) []*flowv1.PolicyRef {
	if len(refs) == 0 {
		return nil
	}
	out := make([]*flowv1.PolicyRef, len(refs))
	for i, r := range refs {
		out[i] = proto.Clone(r).(*flowv1.PolicyRef)
	}
	return out
}
