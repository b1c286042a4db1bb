package history

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func pod(ns, name, deploy, hash string, l map[string]string) *flowv1.Endpoint {
	labels := map[string]string{"pod-template-hash": hash}
	for k, v := range l {
		labels[k] = v
	}
	ep := &flowv1.Endpoint{Namespace: ns, Pod: name, Labels: labels}
	if deploy != "" {
		ep.Workload = &flowv1.Workload{Kind: "Deployment", Name: deploy}
	}
	return ep
}

func newFlow(at time.Time, src, dst *flowv1.Endpoint, port uint32, verdict flowv1.Verdict) *flowv1.Flow {
	f := &flowv1.Flow{Time: timestamppb.New(at), Node: "node-a", Type: flowv1.EventType_EVENT_TYPE_NEW, Verdict: verdict,
		Ip:     &flowv1.IP{Source: "10.0.0.1", Destination: "10.0.0.2"},
		L4:     &flowv1.Layer4{Protocol: flowv1.Protocol_PROTOCOL_TCP, SourcePort: uint32(at.UnixNano() % 60000), DestinationPort: port},
		Source: src, Destination: dst}
	if verdict == flowv1.Verdict_VERDICT_DENIED {
		f.Type = flowv1.EventType_EVENT_TYPE_DROP
		f.IsolatedBy = []*flowv1.PolicyRef{{Kind: "NetworkPolicy", Namespace: dst.GetNamespace(), Name: "db-policy",
			Direction: flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS}}
	} else {
		idx := uint32(0)
		f.AllowedBy = []*flowv1.PolicyRef{{Kind: "NetworkPolicy", Namespace: dst.GetNamespace(), Name: "db-policy",
			Direction: flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS, RuleIndex: &idx}}
	}
	return f
}

func export(s *Store) *Set {
	set := &Set{}
	s.mu.Lock()
	b, cov := s.export(nil, 0, 0), s.coverage()
	s.mu.Unlock()
	var keys []*flowv1.Flow
	if err := sendBatches(b, cov, func(m *flowv1.HistoryBatch) error {
		var err error
		keys, err = set.AddBatch(m, keys)
		return err
	}); err != nil {
		panic(err)
	}
	return set
}

func TestRecordAggregatesWorkloadsAcrossRollouts(t *testing.T) {
	c := &clock{now: t0}
	s := NewStore(Config{Node: "node-a", Now: c.Now})
	db := pod("shop", "db-0", "", "", map[string]string{"app": "db"})
	// Two rollouts of web: pods and pod-template-hash differ, the workload does not.
	web1 := pod("shop", "web-7d9f-abcde", "web", "7d9f", map[string]string{"app": "web"})
	web2 := pod("shop", "web-5c4b-fghij", "web", "5c4b", map[string]string{"app": "web"})
	for i := range 5 {
		s.Record(newFlow(t0.Add(time.Duration(i)*time.Second), web1, db, 5432, flowv1.Verdict_VERDICT_ALLOWED))
		s.Record(newFlow(t0.Add(time.Duration(i)*time.Second+time.Minute), web2, db, 5432, flowv1.Verdict_VERDICT_ALLOWED))
	}
	s.Record(newFlow(t0.Add(2*time.Minute), web2, db, 6379, flowv1.Verdict_VERDICT_DENIED))
	end := newFlow(t0.Add(3*time.Minute), web2, db, 5432, flowv1.Verdict_VERDICT_ALLOWED)
	end.Type, end.Packets, end.Bytes = flowv1.EventType_EVENT_TYPE_END, 12, 3400
	s.Record(end)
	set := export(s)
	if len(set.Records) != 2 {
		t.Fatalf("records = %d, want 2 (one per port and verdict): %+v", len(set.Records), set.Records)
	}
	r := set.Records[0]
	if r.Key.GetL4().GetDestinationPort() != 5432 {
		r = set.Records[1]
	}
	if r.Connections != 10 || r.Ends != 1 || r.Packets != 12 || r.Bytes != 3400 {
		t.Errorf("counters = %+v, want 10 connections, 1 end, 12 packets, 3400 bytes", r.Counters)
	}
	if got := time.Unix(0, r.First); !got.Equal(t0) {
		t.Errorf("first seen %v, want %v", got, t0)
	}
	if got := time.Unix(0, r.Last); !got.Equal(t0.Add(3 * time.Minute)) {
		t.Errorf("last seen %v", got)
	}
	src := r.Key.GetSource()
	if src.GetPod() != "" || src.GetWorkload().GetName() != "web" || src.GetLabels()["pod-template-hash"] != "" || src.GetLabels()["app"] != "web" {
		t.Errorf("source key = %v, want the workload web with its stable labels and no pod", src)
	}
	if dst := r.Key.GetDestination(); dst.GetPod() != "db-0" {
		t.Errorf("a pod without a controller keeps its name: %v", dst)
	}
	hits, _ := s.RuleHits()
	if len(hits) != 2 || hits[0].GetHits()+hits[1].GetHits() != 11 {
		t.Errorf("rule hits = %v, want the allowing rule 10 and the isolating policy 1", hits)
	}
}

// TestRecordCountsAnAggregate: a kernel aggregate (Flow.connections) adds
// the connections (or ends) it stands for, and as many rule hits.
func TestRecordCountsAnAggregate(t *testing.T) {
	c := &clock{now: t0}
	s := NewStore(Config{Node: "node-a", Now: c.Now})
	web := pod("shop", "web-1", "web", "h", map[string]string{"app": "web"})
	db := pod("shop", "db-0", "", "", map[string]string{"app": "db"})
	s.Record(newFlow(t0, web, db, 5432, flowv1.Verdict_VERDICT_ALLOWED))
	agg := newFlow(t0.Add(time.Second), web, db, 5432, flowv1.Verdict_VERDICT_ALLOWED)
	agg.Connections, agg.L4.SourcePort = 24, 0
	s.Record(agg)
	end := newFlow(t0.Add(time.Second), web, db, 5432, flowv1.Verdict_VERDICT_ALLOWED)
	end.Type, end.Connections, end.Packets, end.Bytes, end.L4.SourcePort = flowv1.EventType_EVENT_TYPE_END, 24, 240, 9600, 0
	s.Record(end)
	set := export(s)
	if len(set.Records) != 1 {
		t.Fatalf("records = %d, want 1: %+v", len(set.Records), set.Records)
	}
	if r := set.Records[0]; r.Connections != 25 || r.Ends != 24 || r.Packets != 240 || r.Bytes != 9600 {
		t.Errorf("counters = %+v, want 25 connections (24 in one aggregate), 24 ends, 240 packets, 9600 bytes", r.Counters)
	}
	if hits, _ := s.RuleHits(); len(hits) != 1 || hits[0].GetHits() != 25 {
		t.Errorf("rule hits = %v, want the allowing rule 25", hits)
	}
}

func TestCoarseningMergesOldBuckets(t *testing.T) {
	c := &clock{now: t0}
	s := NewStore(Config{Now: c.Now})
	web := pod("shop", "web-1", "web", "h", map[string]string{"app": "web"})
	db := pod("shop", "db-0", "", "", map[string]string{"app": "db"})
	// One connection every 5 minutes for 6 hours: 36 ten-minute buckets.
	for i := range 72 {
		s.Record(newFlow(t0.Add(time.Duration(i)*5*time.Minute), web, db, 5432, flowv1.Verdict_VERDICT_ALLOWED))
	}
	c.now = t0.Add(6 * time.Hour)
	s.Maintain()
	set := export(s)
	var total uint64
	hourly, fine := 0, 0
	for _, r := range set.Records {
		total += r.Connections
		switch r.Width {
		case time.Hour:
			hourly++
		case 10 * time.Minute:
			fine++
		default:
			t.Errorf("bucket %v wide", r.Width)
		}
	}
	if total != 72 {
		t.Errorf("connections after coarsening = %d, want 72 (nothing lost)", total)
	}
	if hourly != 4 || fine != 12 {
		t.Errorf("buckets: %d hourly, %d ten-minute; want 4 hourly (older than 2 h) and 12 ten-minute", hourly, fine)
	}
	if cov := s.Coverage(); cov.GetCoarsenedRecords() != 20 || cov.GetDroppedRecords() != 0 {
		t.Errorf("coverage = %v, want 20 coarsened, 0 dropped", cov)
	}
	// Past the last tier's age, buckets go.
	c.now = t0.Add(40 * 24 * time.Hour)
	s.Maintain()
	if cov := s.Coverage(); cov.GetRecords() != 0 || cov.GetDroppedConnections() != 72 || cov.GetKeys() != 0 {
		t.Errorf("coverage after 40 days = %v, want everything dropped and counted, keys forgotten", cov)
	}
}

func TestBudgetCoarsensBeforeDropping(t *testing.T) {
	c := &clock{now: t0}
	s := NewStore(Config{Now: c.Now, MemoryBudget: 600 << 10})
	db := pod("shop", "db-0", "", "", map[string]string{"app": "db"})
	// 40 workloads talking every 10 minutes for 2 days: far over 600 KiB at
	// 10-minute resolution, under it once coarsened to hours and days.
	for i := range 2 * 24 * 6 {
		at := t0.Add(time.Duration(i) * 10 * time.Minute)
		for w := range 40 {
			s.Record(newFlow(at, pod("shop", fmt.Sprintf("w%d-x", w), fmt.Sprintf("w%d", w), "h", nil), db, 5432, flowv1.Verdict_VERDICT_ALLOWED))
		}
		if i%6 == 5 {
			c.now = at
			s.Maintain()
		}
	}
	c.now = t0.Add(48 * time.Hour)
	s.Maintain()
	cov := s.Coverage()
	if int64(cov.GetMemoryBytes()) > 600<<10 {
		t.Errorf("memory %d over the budget", cov.GetMemoryBytes())
	}
	if cov.GetCoarsenedRecords() == 0 {
		t.Errorf("nothing coarsened before dropping: %v", cov)
	}
	set := export(s)
	var kept uint64
	for _, r := range set.Records {
		kept += r.Connections
	}
	if kept+cov.GetDroppedConnections() != 2*24*6*40 {
		t.Errorf("kept %d + dropped %d != recorded %d: loss must be counted", kept, cov.GetDroppedConnections(), 2*24*6*40)
	}
	// The newest 2 hours keep their 10-minute resolution.
	for _, r := range set.Records {
		if r.Start.After(c.now.Add(-100*time.Minute)) && r.Width != 10*time.Minute {
			t.Errorf("recent bucket at %v is %v wide", r.Start, r.Width)
		}
	}
}

func TestPersistAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	c := &clock{now: t0}
	s, err := Open(dir, Config{Node: "node-a", Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	web := pod("shop", "web-1", "web", "h", map[string]string{"app": "web"})
	db := pod("shop", "db-0", "", "", map[string]string{"app": "db"})
	for i := range 30 {
		s.Record(newFlow(t0.Add(time.Duration(i)*time.Minute), web, db, 5432, flowv1.Verdict_VERDICT_ALLOWED))
	}
	c.now = t0.Add(30 * time.Minute)
	if err := s.Flush(dir); err != nil {
		t.Fatal(err)
	}
	if s.Coverage().GetDiskBytes() == 0 {
		t.Error("disk bytes not reported after a flush")
	}
	// The agent restarts 5 minutes later.
	c.now = t0.Add(35 * time.Minute)
	s2, err := Open(dir, Config{Node: "node-a", Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	s2.Record(newFlow(c.now, web, db, 5432, flowv1.Verdict_VERDICT_ALLOWED))
	set := export(s2)
	var total uint64
	for _, r := range set.Records {
		total += r.Connections
	}
	if total != 31 {
		t.Errorf("connections after restart = %d, want 31", total)
	}
	cov := s2.Coverage()
	if len(cov.GetGaps()) != 1 || !cov.GetGaps()[0].GetStart().AsTime().Equal(t0.Add(30*time.Minute)) {
		t.Errorf("gaps = %v, want the 5 minutes the agent was down", cov.GetGaps())
	}
	if hits, _ := s2.RuleHits(); len(hits) != 1 || hits[0].GetHits() != 31 {
		t.Errorf("rule hits after restart = %v, want 31", hits)
	}
	// A damaged file is moved aside, said, and history starts again.
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("not a history"), 0o600); err != nil {
		t.Fatal(err)
	}
	s3, err := Open(dir, Config{Node: "node-a", Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if cov := s3.Coverage(); cov.GetRecords() != 0 || cov.GetError() == "" {
		t.Errorf("coverage after a damaged file = %v, want empty with an error", cov)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName+".corrupt")); err != nil {
		t.Errorf("damaged file not kept aside: %v", err)
	}
}

func TestDiskBudgetDropsOldest(t *testing.T) {
	dir := t.TempDir()
	c := &clock{now: t0}
	s, err := Open(dir, Config{Now: c.Now, DiskBudget: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	db := pod("shop", "db-0", "", "", map[string]string{"app": "db"})
	for i := range 3 * 24 {
		for w := range 20 {
			s.Record(newFlow(t0.Add(time.Duration(i)*time.Hour), pod("shop", fmt.Sprintf("w%d-x", w), fmt.Sprintf("w%d", w), "h", nil), db, 5432, flowv1.Verdict_VERDICT_ALLOWED))
		}
	}
	c.now = t0.Add(72 * time.Hour)
	if err := s.Flush(dir); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 4<<10 {
		t.Errorf("file %d bytes, over the 4 KiB budget", st.Size())
	}
	if s.Coverage().GetDroppedRecords() == 0 {
		t.Error("nothing dropped although over the disk budget")
	}
}

func TestFilterAndWindow(t *testing.T) {
	c := &clock{now: t0}
	s := NewStore(Config{Now: c.Now})
	web := pod("shop", "web-1", "web", "h", map[string]string{"app": "web"})
	db := pod("shop", "db-0", "", "", map[string]string{"app": "db"})
	other := pod("blog", "api-1", "api", "h", map[string]string{"app": "api"})
	s.Record(newFlow(t0, web, db, 5432, flowv1.Verdict_VERDICT_ALLOWED))
	s.Record(newFlow(t0.Add(time.Hour), other, db, 5432, flowv1.Verdict_VERDICT_DENIED))
	var got Set
	var keys []*flowv1.Flow
	err := s.Serve(&flowv1.HistoryRequest{SchemaVersion: SchemaVersion, Since: timestamppb.New(t0.Add(30 * time.Minute)),
		Allowlist: []*flowv1.FlowFilter{{SourceNamespace: []string{"blog"}}}}, func(b *flowv1.HistoryBatch) error {
		var err error
		keys, err = got.AddBatch(b, keys)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Records) != 1 || got.Records[0].Key.GetSource().GetNamespace() != "blog" {
		t.Errorf("records = %+v, want only blog's", got.Records)
	}
	if len(got.Coverage) != 1 {
		t.Errorf("coverage missing")
	}
}
