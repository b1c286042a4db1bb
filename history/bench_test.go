package history

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// BenchmarkHistorySize: a node that sees N distinct connections (keys) every
// hour, each once an hour, for 7 days, with the default tiers and budgets,
// maintained every 10 minutes (the agent does it at each flush) and written
// once at the end. It reports the
// heap the store holds (measured), its own estimate, the file on disk, the
// span of history kept and what the budgets dropped.
func BenchmarkHistorySize(b *testing.B) {
	for _, c := range []struct {
		keys, hours int
		budget      int64
	}{{1_000, 7 * 24, 0}, {10_000, 7 * 24, 0}, {100_000, 7 * 24, 0}, {100_000, 24, 512 << 20}} {
		b.Run(fmt.Sprintf("keys=%d/hours=%d/budget=%dMi", c.keys, c.hours, max(c.budget, DefaultMemoryBudget)>>20), func(b *testing.B) {
			for b.Loop() {
				historySize(b, c.keys, c.hours, c.budget)
			}
		})
	}
}

func historySize(b *testing.B, keys, hours int, budget int64) {
	dir := b.TempDir()
	clock := &clock{now: t0}
	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	s, err := Open(dir, Config{Node: "node-a", Now: clock.Now, MemoryBudget: budget, DiskBudget: budget})
	if err != nil {
		b.Fatal(err)
	}
	dsts := make([]*flowv1.Endpoint, 50)
	for i := range dsts {
		dsts[i] = pod("shop", fmt.Sprintf("db%d-0", i), "", "", map[string]string{"app": fmt.Sprintf("db%d", i), "tier": "data"})
	}
	srcs := make([]*flowv1.Endpoint, keys/50+1)
	for i := range srcs {
		srcs[i] = pod("shop", fmt.Sprintf("w%d-x", i), fmt.Sprintf("w%d", i), "h", map[string]string{"app": fmt.Sprintf("w%d", i), "team": "shop"})
	}
	flows := make([]*flowv1.Flow, keys)
	for k := range flows {
		flows[k] = newFlow(t0, srcs[k/50], dsts[k%50], 5432, flowv1.Verdict_VERDICT_ALLOWED)
	}
	for h := range hours {
		for slot := range 6 { // 10-minute steps
			for k := slot * keys / 6; k < (slot+1)*keys/6; k++ {
				f := flows[k]
				f.Time = timestamppb.New(t0.Add(time.Duration(h)*time.Hour + time.Duration(slot)*10*time.Minute + time.Duration(k%600)*time.Second))
				s.Record(f)
			}
			clock.now = t0.Add(time.Duration(h)*time.Hour + time.Duration(slot+1)*10*time.Minute)
			s.Maintain()
		}
	}
	// The file as the agent's periodic flush writes it (fsync and all).
	if err := s.Flush(dir); err != nil {
		b.Fatal(err)
	}
	flows, srcs, dsts = nil, nil, nil
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	cov := s.Coverage()
	st, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/(1<<20), "heap-MiB")
	b.ReportMetric(float64(cov.GetMemoryBytes())/(1<<20), "est-MiB")
	b.ReportMetric(float64(st.Size())/(1<<20), "disk-MiB")
	b.ReportMetric(clock.now.Sub(cov.GetOldest().AsTime()).Hours(), "hours-kept")
	b.ReportMetric(float64(cov.GetUnrecordedFlows()), "unrecorded")
	b.ReportMetric(float64(cov.GetRecords()), "records")
	b.ReportMetric(float64(cov.GetDroppedRecords()), "dropped-records")
	runtime.KeepAlive(s)
}

// BenchmarkHistoryRecord is the cost of recording one flow into a store
// holding many keys (the agent's per-connection cost is in
// agent BenchmarkConnectionPath/record).
func BenchmarkHistoryRecord(b *testing.B) {
	s := NewStore(Config{Node: "node-a"})
	db := pod("shop", "db-0", "", "", map[string]string{"app": "db"})
	flows := make([]*flowv1.Flow, 10_000)
	for i := range flows {
		flows[i] = newFlow(time.Now(), pod("shop", fmt.Sprintf("w%d-x", i), fmt.Sprintf("w%d", i), "h", map[string]string{"app": "w"}), db, 5432, flowv1.Verdict_VERDICT_ALLOWED)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.Record(flows[i%len(flows)])
	}
}

// BenchmarkSteps1M: the watch TUI's 7-day chart over 1M records from 3
// nodes (100k keys, hourly buckets): what one scope change costs, for the
// cluster (every record) and for one namespace of ten.
func BenchmarkSteps1M(b *testing.B) {
	const records, keys, nodes = 1_000_000, 100_000, 3
	ks := make([]*flowv1.Flow, keys)
	for i := range ks {
		src := pod(fmt.Sprintf("ns%d", i%10), fmt.Sprintf("c%d", i%500), fmt.Sprintf("c%d", i%500), "h", map[string]string{"app": fmt.Sprint(i % 500)})
		dst := pod("shop", fmt.Sprintf("s%d", i/500), fmt.Sprintf("s%d", i/500), "h", map[string]string{"app": fmt.Sprint(i / 500)})
		v := flowv1.Verdict_VERDICT_ALLOWED
		if i%7 == 0 {
			v = flowv1.Verdict_VERDICT_DENIED
		}
		ks[i] = newFlow(t0, src, dst, uint32(8000+i%20), v)
		ks[i].Node = fmt.Sprintf("node-%d", i%nodes)
	}
	set := &Set{Records: make([]Record, records)}
	for i := range set.Records {
		start := t0.Add(-time.Duration(i%168) * time.Hour)
		set.Records[i] = Record{Key: ks[i%keys], Start: start, Width: time.Hour, Counters: Counters{Connections: 3, Last: start.UnixNano()}}
	}
	step := 7 * 24 * time.Hour / 60
	from := t0.Add(-59 * step)
	for _, c := range []struct {
		name  string
		match func(*flowv1.Flow) bool
	}{{"cluster", nil}, {"namespace", func(f *flowv1.Flow) bool { return f.GetSource().GetNamespace() == "ns3" }}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if got := set.Steps(c.match, from, step, 60); len(got) != 60 {
					b.Fatal(len(got))
				}
			}
		})
	}
}
