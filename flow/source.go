package flow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// Batch is what a Source hands its consumer: flows in arrival order, plus
// changes in the state of the streams behind them. Batching is what keeps a
// consumer (the TUI renders at most ~30 times a second) cheap at 100k flows/s.
type Batch struct {
	Flows []*flowv1.Flow
	// Nodes holds the nodes whose stream state changed since the previous
	// batch (nil: no change).
	Nodes []NodeState
	// Lost counts flows lost since the previous batch: kernel ring full or
	// rate-limited (from the agents' Status), or dropped for a slow reader.
	Lost uint64
}

// NodeState is the state of one node's stream.
type NodeState struct {
	Node      string
	Connected bool
	// Err says why the node is not connected ("" when connected).
	Err string
	// Version of the agent, to warn on client/agent skew ("" if unknown).
	Version string
	// CNI is the node's CNI and mode as its agent identified them, and
	// Enforcement its bypass self-check's state ("enforcing", "partially
	// enforcing", "not enforcing"; "" if unknown) with EnforcementDetail
	// saying why.
	CNI, Enforcement, EnforcementDetail string
}

// Source produces flow batches for `watch`. Observe streams the flows that
// req selects, calling emit with each batch, until the source ends (nil: a
// replay reached its end without follow), ctx is cancelled (ctx.Err()), or
// emit fails (that error). emit is never called concurrently.
//
// Implementations: FileSource (--input-file); ClientSource (one agent's
// gRPC stream) and Merge (one source per node, reconnecting). The live
// client dials each agent pod through pods/portforward and hands Merge a
// ClientSource per node, so printers and the TUI are unchanged.
type Source interface {
	Observe(ctx context.Context, req *flowv1.ObserveRequest, emit func(Batch) error) error
}

// Default batching: at most BatchSize flows, and a partial batch is flushed
// after BatchInterval (~30 per second, the TUI's frame rate).
const (
	BatchSize     = 4096
	BatchInterval = 33 * time.Millisecond
)

// FileSource replays a JSON-lines capture (written by `watch -o json`),
// applying the request's filters, time window and last N. With follow it
// keeps reading what is appended to the file, like `tail -f`.
type FileSource struct {
	Path string
	// Poll is how often a followed file is checked for new lines (default 200ms).
	Poll time.Duration
}

var _ Source = (*FileSource)(nil)

// Observe implements Source.
func (s *FileSource) Observe(ctx context.Context, req *flowv1.ObserveRequest, emit func(Batch) error) error {
	q, err := CompileQuery(req)
	if err != nil {
		return err
	}
	f, err := os.Open(s.Path)
	if err != nil {
		return fmt.Errorf("opening capture: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("opening capture: %w", err)
	}
	if st.IsDir() {
		return fmt.Errorf("opening capture: %s is a directory, not a JSON-lines file", s.Path)
	}
	// History: what the file holds now.
	r := NewReader(io.LimitReader(f, st.Size()), s.Path)
	if q.Last > 0 {
		if err := s.replayLast(ctx, r, q, emit); err != nil {
			return err
		}
	} else if err := replayAll(ctx, r, q, emit); err != nil {
		return err
	}
	if !q.Follow {
		return nil
	}
	poll := s.Poll
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	tr := NewReader(&tailReader{ctx: ctx, r: f, poll: poll}, s.Path)
	if err := pumpFrom(ctx, tr.Next, q.Match, emit); err != nil {
		return err
	}
	return ctx.Err() // the tail ends only when ctx does
}

// pumpFrom reads flows with next in a goroutine until io.EOF, keeping those
// keep accepts, and batches them to emit with Pump. It returns nil at EOF,
// else the first error of next, Pump or emit.
func pumpFrom(ctx context.Context, next func() (*flowv1.Flow, error), keep func(*flowv1.Flow) bool, emit func(Batch) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	flows := make(chan *flowv1.Flow, BatchSize)
	errc := make(chan error, 1)
	go func() {
		defer close(flows)
		for {
			fl, err := next()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					errc <- err
				}
				return
			}
			if keep != nil && !keep(fl) {
				continue
			}
			select {
			case flows <- fl:
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := Pump(ctx, flows, BatchSize, BatchInterval, emit); err != nil {
		return err
	}
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// eachMatch calls fn with every flow of r that q matches, until EOF.
func eachMatch(r *Reader, q *Query, fn func(*flowv1.Flow) error) error {
	for {
		fl, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if q.Match(fl) {
			if err := fn(fl); err != nil {
				return err
			}
		}
	}
}

func replayAll(ctx context.Context, r *Reader, q *Query, emit func(Batch) error) error {
	batch := make([]*flowv1.Flow, 0, BatchSize)
	err := eachMatch(r, q, func(fl *flowv1.Flow) error {
		batch = append(batch, fl)
		if len(batch) < BatchSize {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		err := emit(Batch{Flows: batch})
		batch = make([]*flowv1.Flow, 0, BatchSize)
		return err
	})
	if err == nil && len(batch) > 0 {
		err = emit(Batch{Flows: batch})
	}
	return err
}

// replayLast keeps only the last q.Last matches in a ring, then emits them.
func (s *FileSource) replayLast(ctx context.Context, r *Reader, q *Query, emit func(Batch) error) error {
	ring := make([]*flowv1.Flow, 0, min(q.Last, 1<<20))
	next := 0
	err := eachMatch(r, q, func(fl *flowv1.Flow) error {
		if uint64(len(ring)) < q.Last {
			ring = append(ring, fl)
		} else {
			ring[next] = fl
			next = (next + 1) % len(ring)
		}
		return nil
	})
	if err != nil {
		return err
	}
	ordered := append(ring[next:len(ring):len(ring)], ring[:next]...)
	for len(ordered) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(len(ordered), BatchSize)
		if err := emit(Batch{Flows: ordered[:n]}); err != nil {
			return err
		}
		ordered = ordered[n:]
	}
	return nil
}

// Pump drains flows into batches of at most size, flushing a partial batch
// after interval, until flows is closed (nil) or ctx is done (ctx.Err()).
// Live sources feed their merged streams through it.
func Pump(ctx context.Context, flows <-chan *flowv1.Flow, size int, interval time.Duration, emit func(Batch) error) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	batch := make([]*flowv1.Flow, 0, size)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := emit(Batch{Flows: batch})
		batch = make([]*flowv1.Flow, 0, size)
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case fl, ok := <-flows:
			if !ok {
				return flush()
			}
			batch = append(batch, fl)
			if len(batch) == size {
				if err := flush(); err != nil {
					return err
				}
			}
		case <-t.C:
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// tailReader reads a growing file: at EOF it waits for more instead of ending.
type tailReader struct {
	ctx  context.Context
	r    io.Reader
	poll time.Duration
}

func (t *tailReader) Read(p []byte) (int, error) {
	for {
		n, err := t.r.Read(p)
		if n > 0 || (err != nil && !errors.Is(err, io.EOF)) {
			return n, err
		}
		select {
		case <-t.ctx.Done():
			return 0, io.EOF
		case <-time.After(t.poll):
		}
	}
}
