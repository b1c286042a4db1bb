package history

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// FileName is the history file inside the agent's history directory.
const FileName = "history.pb"

// maxGaps bounds the gaps remembered in coverage (the oldest go first).
const maxGaps = 64

func timestamp(ns int64) *timestamppb.Timestamp {
	if ns == 0 {
		return nil
	}
	return timestamppb.New(time.Unix(0, ns))
}

// Open returns the store persisted in dir (created if missing). A file that
// cannot be read is moved aside (FILE.corrupt) and the store starts empty,
// saying so in coverage.Error; history is never a reason not to enforce.
// The time between the file's last write and now is a gap.
func Open(dir string, cfg Config) (*Store, error) {
	s := NewStore(cfg)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the history directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, FileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err == nil {
		err = s.load(b)
	}
	if err != nil {
		_ = os.Rename(path, path+".corrupt")
		s.loadErr = fmt.Sprintf("the history in %s could not be read and was moved to %s.corrupt (history starts empty): %v", path, FileName, err)
	}
	return s, nil
}

func (s *Store) load(b []byte) error {
	var f flowv1.HistoryFile
	if err := proto.Unmarshal(b, &f); err != nil {
		return err
	}
	if f.GetSchemaVersion() != SchemaVersion {
		return fmt.Errorf("schema version %d, this agent reads %d", f.GetSchemaVersion(), SchemaVersion)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.importBatch(f.GetData()); err != nil {
		return err
	}
	if c := f.GetCoverage(); c != nil {
		s.cov.CoarsenedRecords, s.cov.DroppedRecords = c.GetCoarsenedRecords(), c.GetDroppedRecords()
		s.cov.DroppedConnections, s.cov.UnrecordedFlows = c.GetDroppedConnections(), c.GetUnrecordedFlows()
		s.cov.Gaps = c.GetGaps()
	}
	if w := f.GetWritten(); w != nil && w.AsTime().Before(s.cfg.Now()) {
		s.cov.Gaps = append(s.cov.Gaps, &flowv1.TimeRange{Start: w, End: timestamppb.New(s.cfg.Now())})
		if n := len(s.cov.Gaps); n > maxGaps {
			s.cov.Gaps = s.cov.Gaps[n-maxGaps:]
		}
	}
	for _, h := range f.GetRuleHits() {
		s.hits[keyOfRef(h.GetRule(), h.GetVerdict())] = ruleHitOf(h)
	}
	if c := f.GetCoverage(); c.GetOldest() != nil && c.GetOldest().AsTime().Before(s.since) {
		s.since = c.GetOldest().AsTime()
	}
	s.maintain(s.cfg.MemoryBudget)
	return nil
}

// importBatch adds the keys and records of b (callers hold mu).
func (s *Store) importBatch(b *flowv1.HistoryBatch) error {
	ids := make([]uint32, len(b.GetKeys()))
	for i, k := range b.GetKeys() {
		s.scratch = s.labels.appendKey(s.scratch[:0], k)
		id, ok := s.keyIndex[string(s.scratch)]
		if !ok {
			id = s.newKey(k)
		}
		ids[i] = id
	}
	for _, r := range b.GetRecords() {
		if int(r.GetKey()) >= len(ids) {
			return fmt.Errorf("record names key %d of %d", r.GetKey(), len(ids))
		}
		c := countersOf(r)
		bk := s.bucketFor(r.GetBucketStart().AsTime().UnixNano())
		if w := r.GetBucketWidth().AsDuration(); w > bk.width && len(bk.recs) == 0 {
			bk.width = w // a coarse bucket comes back as wide as it was
		}
		s.addTo(bk, ids[r.GetKey()], &c)
	}
	return nil
}

func countersOf(r *flowv1.HistoryRecord) Counters {
	c := Counters{Connections: r.GetConnections(), Ends: r.GetEnds(), Packets: r.GetPackets(), Bytes: r.GetBytes()}
	if r.GetFirstSeen() != nil {
		c.First = r.GetFirstSeen().AsTime().UnixNano()
	}
	if r.GetLastSeen() != nil {
		c.Last = r.GetLastSeen().AsTime().UnixNano()
	}
	return c
}

// export copies the matching state into a batch (callers hold mu). keep
// selects keys (nil: all); buckets outside [since, until) are skipped.
func (s *Store) export(keep func(*flowv1.Flow) bool, since, until int64) *flowv1.HistoryBatch {
	out := &flowv1.HistoryBatch{}
	idx := map[uint32]uint32{}
	for _, b := range s.buckets {
		if (since != 0 && b.end() <= since) || (until != 0 && b.start >= until) {
			continue
		}
		start, width := timestamp(b.start), durationpb.New(b.width)
		for _, r := range b.recs {
			i, ok := idx[r.key]
			if !ok {
				k := s.keys[r.key].flow
				if keep != nil && !keep(k) {
					continue
				}
				i = uint32(len(out.Keys))
				idx[r.key] = i
				out.Keys = append(out.Keys, k)
			}
			out.Records = append(out.Records, &flowv1.HistoryRecord{Key: i, BucketStart: start, BucketWidth: width,
				Connections: r.Connections, Ends: r.Ends, Packets: r.Packets, Bytes: r.Bytes,
				FirstSeen: timestamp(r.First), LastSeen: timestamp(r.Last)})
		}
	}
	return out
}

// Flush maintains the store and writes it to dir atomically (a temporary
// file, fsync, rename). Over the disk budget, the oldest buckets are dropped
// (counted) until the file fits.
func (s *Store) Flush(dir string) error {
	s.mu.Lock()
	s.maintain(s.cfg.MemoryBudget)
	var b []byte
	var err error
	for budget := s.mem; ; {
		b, err = proto.Marshal(s.file())
		if err != nil || int64(len(b)) <= s.cfg.DiskBudget || len(s.buckets) <= 1 {
			break
		}
		// Shrink memory in proportion to what the file is over.
		budget = budget * s.cfg.DiskBudget / int64(len(b)) * 9 / 10
		s.maintain(budget)
	}
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("encoding the history: %w", err)
	}
	err = writeAtomic(filepath.Join(dir, FileName), b)
	s.mu.Lock()
	s.writeErr = ""
	if err != nil {
		s.writeErr = "writing the history: " + err.Error()
	} else {
		s.cov.DiskBytes = uint64(len(b))
		s.cov.LastFlush = timestamppb.New(s.cfg.Now())
	}
	s.mu.Unlock()
	return err
}

// file is the store as written to disk (callers hold mu).
func (s *Store) file() *flowv1.HistoryFile {
	return &flowv1.HistoryFile{SchemaVersion: SchemaVersion, Node: s.cfg.Node, Data: s.export(nil, 0, 0),
		Coverage: s.coverage(), RuleHits: s.ruleHits(), Written: timestamppb.New(s.cfg.Now())}
}

func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename, there is nothing to remove
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
