package flow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// ClientSource streams one agent's Observe over an established gRPC
// connection and batches what arrives. The live client builds one per agent
// pod (dialled through the API server's pods/portforward) and merges them
// with Merge.
type ClientSource struct {
	Client flowv1.ObserverClient
	// Node names the agent's node in NodeState.
	Node string
}

var _ Source = (*ClientSource)(nil)

// Observe implements Source. It emits the node's NodeState (connected) with
// the first batch, and returns the stream's error (nil when the agent ended
// a non-follow query).
func (s *ClientSource) Observe(ctx context.Context, req *flowv1.ObserveRequest, emit func(Batch) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next, err := s.open(ctx, req)
	if err != nil {
		return fmt.Errorf("observing node %s: %w", s.Node, err)
	}
	if err := emit(Batch{Nodes: []NodeState{{Node: s.Node, Connected: true}}}); err != nil {
		return err
	}
	return pumpFrom(ctx, func() (*flowv1.Flow, error) {
		f, err := next()
		if err != nil && !errors.Is(err, io.EOF) {
			err = fmt.Errorf("observing node %s: %w", s.Node, err)
		}
		return f, err
	}, nil, emit)
}

// open starts ObserveBatches (many flows per message) and falls back to
// Observe for an agent that predates it (its first Recv says Unimplemented).
// It returns a reader of single flows.
func (s *ClientSource) open(ctx context.Context, req *flowv1.ObserveRequest) (func() (*flowv1.Flow, error), error) {
	batches, err := s.Client.ObserveBatches(ctx, req)
	if status.Code(err) == codes.Unimplemented {
		return s.openSingle(ctx, req)
	}
	if err != nil {
		return nil, err
	}
	var pending []*flowv1.Flow
	var single func() (*flowv1.Flow, error)
	first := true
	return func() (*flowv1.Flow, error) {
		if single != nil {
			return single()
		}
		for len(pending) == 0 {
			b, err := batches.Recv()
			if first && status.Code(err) == codes.Unimplemented {
				if single, err = s.openSingle(ctx, req); err != nil {
					return nil, err
				}
				return single()
			}
			first = false
			if err != nil {
				return nil, err
			}
			pending = b.GetFlows()
		}
		f := pending[0]
		pending = pending[1:]
		return f, nil
	}, nil
}

func (s *ClientSource) openSingle(ctx context.Context, req *flowv1.ObserveRequest) (func() (*flowv1.Flow, error), error) {
	stream, err := s.Client.Observe(ctx, req)
	if err != nil {
		return nil, err
	}
	return stream.Recv, nil
}

// Merge runs several sources (one per node) at once and hands their batches
// to one emit, never concurrently. A source that fails is shown as down
// (NodeState with the error) and, when the request follows, retried with
// exponential back-off from MinBackoff to MaxBackoff, so an agent that
// restarts comes back by itself.
type Merge struct {
	Sources    map[string]Source // by node name
	MinBackoff time.Duration     // default 250ms
	MaxBackoff time.Duration     // default 10s
}

var _ Source = (*Merge)(nil)

// Observe implements Source. Without follow it returns when every source
// has ended; the first error is returned after all have ended.
func (m *Merge) Observe(ctx context.Context, req *flowv1.ObserveRequest, emit func(Batch) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	minB, maxB := m.MinBackoff, m.MaxBackoff
	if minB <= 0 {
		minB = 250 * time.Millisecond
	}
	if maxB < minB {
		maxB = max(10*time.Second, minB)
	}
	var mu sync.Mutex
	var emitErr error
	serialEmit := func(b Batch) error {
		mu.Lock()
		defer mu.Unlock()
		if emitErr != nil {
			return emitErr
		}
		if err := emit(b); err != nil {
			emitErr = err
			cancel()
			return err
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make([]error, 0, len(m.Sources))
	var errMu sync.Mutex
	for node, src := range m.Sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			backoff := minB
			for {
				start := time.Now()
				err := src.Observe(ctx, req, serialEmit)
				if ctx.Err() != nil {
					return
				}
				if err == nil && !req.GetFollow() {
					return
				}
				if err == nil {
					err = errors.New("stream ended")
				}
				_ = serialEmit(Batch{Nodes: []NodeState{{Node: node, Err: err.Error()}}})
				if !req.GetFollow() {
					errMu.Lock()
					errs = append(errs, err)
					errMu.Unlock()
					return
				}
				if time.Since(start) > maxB {
					backoff = minB // it had been up for a while: retry soon
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, maxB)
			}
		}()
	}
	wg.Wait()
	if emitErr != nil {
		return emitErr
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return ctx.Err()
}
