//go:build linux

package agent

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
)

// serveObserver serves the agent's Observer on a loopback port and returns a client.
func serveObserver(t *testing.T, a *Agent) flowv1.ObserverClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	flowv1.RegisterObserverServer(gs, &observer{Hub: a.hub, history: a.history, node: a.cfg.NodeName})
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return flowv1.NewObserverClient(conn)
}

// TestHistoryServedAndKeptAcrossRestart: the agent's enriched flows (a new
// connection and its end) are recorded, served by flow.v1 History with the
// workload key and counters, written to the history directory, and served
// again by the next agent that opens it, with the restart as a gap.
func TestHistoryServedAndKeptAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	a, dp, ev := benchPath(t)
	a.cfg.HistoryDir = dir
	a.history = openHistory(a.cfg)
	var x endpointIndex
	x.use(dp)
	now := time.Now()
	for i := range 3 {
		ev.Tuple.Sport = uint16(40000 + i)
		start := a.enrich.flow(dp, &ev)
		start.Time = timestamppb.New(now) // the event's monotonic stamp is 0 here
		a.record(start)
		e := ctEnd{proto: unix.IPPROTO_TCP, src: netip.MustParseAddr("10.0.0.6"), dst: netip.MustParseAddr("10.0.0.5"),
			rsrc: netip.MustParseAddr("10.0.0.5"), sport: uint16(40000 + i), dport: 3306, rsprt: 3306, packets: 10, bytes: 1000, at: now}
		a.record(a.enrich.endFlow(&x, &e, start, now))
	}
	a.flushHistoryOnce()

	check := func(who string, client flowv1.ObserverClient) {
		t.Helper()
		var set history.Set
		if err := set.Collect(context.Background(), client, &flowv1.HistoryRequest{SchemaVersion: history.SchemaVersion}); err != nil {
			t.Fatalf("%s: History: %v", who, err)
		}
		if len(set.Records) != 1 {
			t.Fatalf("%s: records = %+v, want one", who, set.Records)
		}
		r := set.Records[0]
		if r.Connections != 3 || r.Ends != 3 || r.Packets != 30 || r.Bytes != 3000 {
			t.Errorf("%s: counters = %+v", who, r.Counters)
		}
		k := r.Key
		if k.GetSource().GetLabels()["app"] != "web" || k.GetDestination().GetNamespace() != "shop" || k.GetL4().GetDestinationPort() != 3306 ||
			len(k.GetAllowedBy()) != 1 || k.GetAllowedBy()[0].GetName() != "db-policy" || k.GetNode() != "n1" {
			t.Errorf("%s: key = %v", who, k)
		}
		hits, err := client.RuleHits(context.Background(), &flowv1.RuleHitsRequest{})
		if err != nil {
			t.Fatalf("%s: RuleHits: %v", who, err)
		}
		if len(hits.GetHits()) != 1 || hits.GetHits()[0].GetHits() != 3 || hits.GetHits()[0].GetRule().GetName() != "db-policy" {
			t.Errorf("%s: rule hits = %v", who, hits.GetHits())
		}
	}
	check("first agent", serveObserver(t, a))

	b, _, _ := benchPath(t)
	b.cfg.HistoryDir = dir
	b.history = openHistory(b.cfg)
	check("restarted agent", serveObserver(t, b))
	if cov := b.history.Coverage(); cov.GetRecords() != 1 || len(cov.GetGaps()) != 1 || cov.GetError() != "" {
		t.Errorf("status history = %v, want 1 record and the restart's gap", cov)
	}

	// The rule counters are Prometheus metrics too, restored with the history.
	b.metrics.Registry.MustRegister(historyCollector{b.history})
	mfs, err := b.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var hits, last float64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "kubectl_netpol_rule_hits_total":
				hits = m.GetCounter().GetValue()
			case "kubectl_netpol_rule_last_hit_timestamp_seconds":
				last = m.GetGauge().GetValue()
			}
		}
	}
	if hits != 3 || int64(last) != now.Unix() {
		t.Errorf("rule hit metrics: hits %v last %v, want 3 and %d", hits, last, now.Unix())
	}
}
