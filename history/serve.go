package history

import (
	"context"
	"errors"
	"fmt"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"io"
	"time"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
)

// serveBatch bounds the records of one HistoryBatch message.
const serveBatch = 4096

// ErrSchema is returned for a request whose schema this package cannot serve.
var ErrSchema = errors.New("unsupported history schema version")

// Serve answers a flow.v1 History request: the coverage and the matching
// keys and records, in messages of at most serveBatch records. The state is
// copied under the lock; sending happens outside it, so a slow client never
// delays recording.
func (s *Store) Serve(req *flowv1.HistoryRequest, send func(*flowv1.HistoryBatch) error) error {
	if v := req.GetSchemaVersion(); v != 0 && v < SchemaVersion {
		return fmt.Errorf("%w %d: this agent serves schema %d", ErrSchema, v, SchemaVersion)
	}
	f, err := flow.CompileFilter(req.GetAllowlist(), req.GetDenylist())
	if err != nil {
		return err
	}
	var since, until int64
	if req.GetSince() != nil {
		since = req.GetSince().AsTime().UnixNano()
	}
	if req.GetUntil() != nil {
		until = req.GetUntil().AsTime().UnixNano()
	}
	s.mu.Lock()
	all := s.export(f.Match, since, until)
	cov := s.coverage()
	s.mu.Unlock()
	return sendBatches(all, cov, send)
}

// sendBatches splits b into messages: each carries the keys its records
// introduce, so a reader can resolve every record as it arrives.
func sendBatches(b *flowv1.HistoryBatch, cov *flowv1.HistoryCoverage, send func(*flowv1.HistoryBatch) error) error {
	sent := uint32(0) // keys sent so far; records name keys in order of first use
	msg := &flowv1.HistoryBatch{Coverage: cov}
	for _, r := range b.GetRecords() {
		for ; sent <= r.GetKey(); sent++ {
			msg.Keys = append(msg.Keys, b.Keys[sent])
		}
		msg.Records = append(msg.Records, r)
		if len(msg.Records) == serveBatch {
			if err := send(msg); err != nil {
				return err
			}
			msg = &flowv1.HistoryBatch{}
		}
	}
	if len(msg.Records) > 0 || msg.Coverage != nil {
		return send(msg)
	}
	return nil
}

// Record is one key in one bucket, as a client reads it.
type Record struct {
	Key   *flowv1.Flow
	Start time.Time
	Width time.Duration
	Counters
}

// Set is history gathered from one or more nodes.
type Set struct {
	Records  []Record
	Coverage []*flowv1.HistoryCoverage
	// Unreachable names the nodes whose history could not be read, and why.
	Unreachable map[string]string
}

// AddBatch appends a History stream's message; keys is the stream's key
// table so far (returned grown).
func (s *Set) AddBatch(b *flowv1.HistoryBatch, keys []*flowv1.Flow) ([]*flowv1.Flow, error) {
	if c := b.GetCoverage(); c != nil {
		if c.GetSchemaVersion() != SchemaVersion {
			return keys, fmt.Errorf("%w %d from node %s: this client reads %d (upgrade the plugin or the agent)", ErrSchema, c.GetSchemaVersion(), c.GetNode(), SchemaVersion)
		}
		s.Coverage = append(s.Coverage, c)
	}
	keys = append(keys, b.GetKeys()...)
	for _, r := range b.GetRecords() {
		if int(r.GetKey()) >= len(keys) {
			return keys, fmt.Errorf("history record names key %d of %d", r.GetKey(), len(keys))
		}
		s.Records = append(s.Records, Record{Key: keys[r.GetKey()], Start: r.GetBucketStart().AsTime(),
			Width: r.GetBucketWidth().AsDuration(), Counters: countersOf(r)})
	}
	return keys, nil
}

// Collect reads one agent's History stream into s.
func (s *Set) Collect(ctx context.Context, client flowv1.ObserverClient, req *flowv1.HistoryRequest) error {
	stream, err := client.History(ctx, req)
	if err != nil {
		return err
	}
	var keys []*flowv1.Flow
	for {
		b, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if keys, err = s.AddBatch(b, keys); err != nil {
			return err
		}
	}
}

// CaptureNode names the coverage of history built from a capture (FromFlows):
// its records name their own judging nodes.
const CaptureNode = "(capture)"

// FromFlows aggregates a capture's flows (`watch -o json`) into records
// with the agent's own keys, in buckets of width (0: one hour).
func FromFlows(next func() (*flowv1.Flow, error), width time.Duration) (*Set, error) {
	if width <= 0 {
		width = time.Hour
	}
	var newest time.Time
	st := NewStore(Config{MemoryBudget: 1 << 62, Tiers: []Tier{{Width: width, Keep: 1 << 62}},
		Now: func() time.Time { return newest }})
	for {
		f, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if t := f.GetTime().AsTime(); t.After(newest) {
			newest = t
		}
		st.Record(f)
	}
	set := &Set{}
	st.mu.Lock()
	b, cov := st.export(nil, 0, 0), st.coverage()
	st.mu.Unlock()
	cov.Node = CaptureNode
	var keys []*flowv1.Flow
	err := sendBatches(b, cov, func(m *flowv1.HistoryBatch) error {
		var err error
		keys, err = set.AddBatch(m, keys)
		return err
	})
	return set, err
}

// Newest is the last time any record was seen (zero when empty).
func (s *Set) Newest() time.Time {
	var n int64
	for i := range s.Records {
		n = max(n, s.Records[i].Last)
	}
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Flow is the record as a flow for printers and the TUI (watch --since
// beyond the recent ring): its key, last seen, and the aggregate.
func (r *Record) Flow() *flowv1.Flow {
	k := r.Key
	f := &flowv1.Flow{Time: timestamp(r.Last), Node: k.GetNode(), Type: k.GetType(), Verdict: k.GetVerdict(), Reason: k.GetReason(),
		Direction: k.GetDirection(), Ip: k.GetIp(), L4: k.GetL4(), Source: k.GetSource(), Destination: k.GetDestination(),
		Service: k.GetService(), AllowedBy: k.GetAllowedBy(), DeniedBy: k.GetDeniedBy(), IsolatedBy: k.GetIsolatedBy(), Audit: k.GetAudit(),
		Packets: r.Packets, Bytes: r.Bytes,
		Aggregate: &flowv1.HistoryAggregate{Connections: r.Connections, FirstSeen: timestamp(r.First),
			BucketStart: timestamppb.New(r.Start), BucketWidth: durationpb.New(r.Width)}}
	return f
}
