package flow

import (
	"time"

	"context"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// DefaultHubCapacity is how many recent flows a node keeps for `watch --last`
// and late joiners (Hubble keeps 4095).
const DefaultHubCapacity = 65536

// subscriberBuffer is how many flows a following client may lag behind
// before the hub drops flows for it (counted) rather than wait.
const subscriberBuffer = 8192

// Hub is the agent's side of flow.v1.Observer: a bounded ring of recent
// flows and a fan-out to following clients. Publish never blocks: a client
// that reads too slowly loses flows (counted in Status), the producer (and
// so the kernel ring buffer behind it) never waits for a client.
type Hub struct {
	flowv1.UnimplementedObserverServer

	status func(context.Context) (*flowv1.StatusResponse, error)

	mu     sync.Mutex
	ring   []*flowv1.Flow
	next   int // index of the next write in ring
	full   bool
	subs   map[*subscriber]struct{}
	taps   []func(*flowv1.Flow)
	seen   atomic.Uint64
	slowed atomic.Uint64
}

type subscriber struct {
	ch      chan *flowv1.Flow
	dropped atomic.Uint64
}

// NewHub returns a hub keeping the last capacity flows. status fills the
// node's part of Status (the hub adds its own counters); nil is allowed.
func NewHub(capacity int, status func(context.Context) (*flowv1.StatusResponse, error)) *Hub {
	if capacity <= 0 {
		capacity = DefaultHubCapacity
	}
	return &Hub{status: status, ring: make([]*flowv1.Flow, capacity), subs: map[*subscriber]struct{}{}}
}

// AddTap makes fn see every published flow, in the publisher's goroutine,
// after the ring and the clients (an exporter that must not wait: fn hands
// the flow on without blocking). Add taps before the first Publish.
func (h *Hub) AddTap(fn func(*flowv1.Flow)) { h.taps = append(h.taps, fn) }

// Publish records f and hands it to every following client and tap. f must
// not be modified afterwards.
func (h *Hub) Publish(f *flowv1.Flow) {
	h.seen.Add(1)
	h.mu.Lock()
	h.ring[h.next] = f
	h.next++
	if h.next == len(h.ring) {
		h.next, h.full = 0, true
	}
	for s := range h.subs {
		select {
		case s.ch <- f:
		default:
			s.dropped.Add(1)
			h.slowed.Add(1)
		}
	}
	h.mu.Unlock()
	for _, tap := range h.taps {
		tap(f)
	}
}

// Seen is the number of flows published since start.
func (h *Hub) Seen() uint64 { return h.seen.Load() }

// Capacity is the size of the ring.
func (h *Hub) Capacity() int { return len(h.ring) }

// Since returns the ring's flows whose time is at or after t, newest
// first. It walks back from the newest and stops at the first older flow,
// so it costs what the window holds, not the ring.
func (h *Hub) Since(t time.Time) []*flowv1.Flow {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*flowv1.Flow
	for n, i := 0, h.next-1; n < len(h.ring); n, i = n+1, i-1 {
		if i < 0 {
			if !h.full {
				break
			}
			i = len(h.ring) - 1
		}
		f := h.ring[i]
		if f == nil || f.GetTime().AsTime().Before(t) {
			break
		}
		out = append(out, f)
	}
	return out
}

// history returns the ring's flows oldest first; with sub, it also registers
// the subscriber in the same critical section, so a following client sees
// every flow exactly once across history and stream.
func (h *Hub) history(sub *subscriber) []*flowv1.Flow {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*flowv1.Flow
	if h.full {
		out = append(out, h.ring[h.next:]...)
	}
	out = append(out, h.ring[:h.next]...)
	if sub != nil {
		h.subs[sub] = struct{}{}
	}
	return out
}

func (h *Hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	delete(h.subs, s)
	h.mu.Unlock()
}

// maxBatch bounds the flows of one ObserveBatches message.
const maxBatch = 1024

// Observe implements flow.v1.Observer: the matching history (all, or the
// last N), then, with follow, every new matching flow until the client goes.
func (h *Hub) Observe(req *flowv1.ObserveRequest, stream grpc.ServerStreamingServer[flowv1.Flow]) error {
	return h.observe(stream.Context(), req, 1, func(fs []*flowv1.Flow) error { return stream.Send(fs[0]) })
}

// ObserveBatches implements flow.v1.Observer: Observe, several flows per message.
func (h *Hub) ObserveBatches(req *flowv1.ObserveRequest, stream grpc.ServerStreamingServer[flowv1.FlowBatch]) error {
	return h.observe(stream.Context(), req, maxBatch, func(fs []*flowv1.Flow) error {
		return stream.Send(&flowv1.FlowBatch{Flows: fs})
	})
}

// observe sends the query's flows in slices of at most batch flows. While
// following, a slice holds what was already waiting when the previous one
// went out: no timer, so a quiet stream still gets every flow at once.
func (h *Hub) observe(ctx context.Context, req *flowv1.ObserveRequest, batch int, send func([]*flowv1.Flow) error) error {
	q, err := CompileQuery(req)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	var sub *subscriber
	if q.Follow {
		sub = &subscriber{ch: make(chan *flowv1.Flow, subscriberBuffer)}
		defer h.unsubscribe(sub)
	}
	hist := q.History(h.history(sub))
	for len(hist) > 0 {
		n := min(batch, len(hist))
		if err := send(hist[:n]); err != nil {
			return err
		}
		hist = hist[n:]
	}
	if sub == nil {
		return nil
	}
	buf := make([]*flowv1.Flow, 0, batch)
	for {
		select {
		case f := <-sub.ch:
			if q.Match(f) {
				buf = append(buf, f)
			}
		drain:
			for len(buf) < batch {
				select {
				case f := <-sub.ch:
					if q.Match(f) {
						buf = append(buf, f)
					}
				default:
					break drain
				}
			}
			if len(buf) > 0 {
				if err := send(buf); err != nil {
					return err
				}
			}
			buf = buf[:0] // Send has serialized the message
		case <-ctx.Done():
			return nil
		}
	}
}

// Status implements flow.v1.Observer: the node's status plus the hub's counters.
func (h *Hub) Status(ctx context.Context, _ *flowv1.StatusRequest) (*flowv1.StatusResponse, error) {
	resp := &flowv1.StatusResponse{}
	if h.status != nil {
		var err error
		if resp, err = h.status(ctx); err != nil {
			return nil, status.Error(codes.Unavailable, err.Error())
		}
	}
	resp.FlowsSeen = h.seen.Load()
	resp.RingCapacity = uint32(len(h.ring))
	resp.FlowsDroppedSlowClients = h.slowed.Load()
	return resp, nil
}
