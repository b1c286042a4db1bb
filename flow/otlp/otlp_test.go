package otlp

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// receiver is an OTLP/gRPC logs and metrics server on loopback, built on the
// Collector's own service definitions.
type receiver struct {
	plogotlp.UnimplementedGRPCServer
	mu      sync.Mutex
	logs    []plog.Logs
	metrics []pmetric.Metrics
}

func (r *receiver) Export(_ context.Context, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	r.mu.Lock()
	ld := plog.NewLogs()
	req.Logs().CopyTo(ld)
	r.logs = append(r.logs, ld)
	r.mu.Unlock()
	return plogotlp.NewExportResponse(), nil
}

type metricsReceiver struct {
	pmetricotlp.UnimplementedGRPCServer
	*receiver
}

func (r *metricsReceiver) Export(_ context.Context, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	r.mu.Lock()
	md := pmetric.NewMetrics()
	req.Metrics().CopyTo(md)
	r.metrics = append(r.metrics, md)
	r.mu.Unlock()
	return pmetricotlp.NewExportResponse(), nil
}

func startReceiver(t *testing.T) (*receiver, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{}
	srv := grpc.NewServer()
	plogotlp.RegisterGRPCServer(srv, r)
	pmetricotlp.RegisterGRPCServer(srv, &metricsReceiver{receiver: r})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return r, lis.Addr().String()
}

func testFlow(port uint32, verdict flowv1.Verdict) *flowv1.Flow {
	idx := uint32(0)
	f := &flowv1.Flow{
		Time: timestamppb.New(time.Unix(1700000000, int64(port))), Node: "node-1",
		Type: flowv1.EventType_EVENT_TYPE_NEW, Verdict: verdict, Reason: flowv1.Reason_REASON_ALLOWED_BY_RULE,
		Direction: flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS,
		Ip:        &flowv1.IP{Source: "10.244.1.5", Destination: "10.244.2.7"},
		L4:        &flowv1.Layer4{Protocol: flowv1.Protocol_PROTOCOL_TCP, SourcePort: port, DestinationPort: 3306},
		Source: &flowv1.Endpoint{Namespace: "shop", Pod: "web-1",
			Workload: &flowv1.Workload{Kind: "Deployment", Name: "web"}},
		Destination: &flowv1.Endpoint{Namespace: "shop", Pod: "db-0"},
		AllowedBy: []*flowv1.PolicyRef{{Kind: "NetworkPolicy", Namespace: "shop", Name: "db-policy",
			Direction: flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS, RuleIndex: &idx}},
		RuleId: 17,
	}
	if verdict == flowv1.Verdict_VERDICT_DENIED {
		f.Type, f.Reason, f.AllowedBy, f.RuleId = flowv1.EventType_EVENT_TYPE_DROP, flowv1.Reason_REASON_NO_RULE_MATCHED, nil, 0
		f.IsolatedBy = []*flowv1.PolicyRef{{Kind: "NetworkPolicy", Namespace: "shop", Name: "db-policy",
			Direction: flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS}}
	}
	return f
}

// Flows offered to the exporter reach a real OTLP receiver as log records
// whose attributes carry the verdict and the deciding rule, and whose
// netpol.flow attribute is the flow exactly as `watch -o json` prints it.
func TestFlowsArriveAsLogRecords(t *testing.T) {
	r, addr := startReceiver(t)
	e, err := New(Config{Endpoint: addr, Insecure: true, Node: "node-1", Version: "v1.2.3", Interval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	sent := []*flowv1.Flow{testFlow(40001, flowv1.Verdict_VERDICT_ALLOWED), testFlow(40002, flowv1.Verdict_VERDICT_DENIED)}
	for _, f := range sent {
		e.Offer(f)
	}
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(e.exported.WithLabelValues("logs")) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done

	r.mu.Lock()
	defer r.mu.Unlock()
	var recs []plog.LogRecord
	for _, ld := range r.logs {
		rl := ld.ResourceLogs().At(0)
		if v, _ := rl.Resource().Attributes().Get("k8s.node.name"); v.Str() != "node-1" {
			t.Errorf("resource k8s.node.name = %q", v.Str())
		}
		for i := range rl.ScopeLogs().At(0).LogRecords().Len() {
			recs = append(recs, rl.ScopeLogs().At(0).LogRecords().At(i))
		}
	}
	if len(recs) != len(sent) {
		t.Fatalf("received %d records, want %d", len(recs), len(sent))
	}
	for i, lr := range recs {
		raw, _ := lr.Attributes().Get(AttrFlowJSON)
		var got flowv1.Flow
		if err := protojson.Unmarshal([]byte(raw.Str()), &got); err != nil {
			t.Fatalf("record %d: netpol.flow: %v", i, err)
		}
		if !proto.Equal(&got, sent[i]) {
			t.Errorf("record %d carries\n%v\nwant\n%v", i, &got, sent[i])
		}
		if !lr.Timestamp().AsTime().Equal(sent[i].GetTime().AsTime()) {
			t.Errorf("record %d time %v, want the flow's %v", i, lr.Timestamp().AsTime(), sent[i].GetTime().AsTime())
		}
	}
	attr := func(lr plog.LogRecord, k string) string { v, _ := lr.Attributes().Get(k); return v.AsString() }
	if got := attr(recs[0], AttrVerdict); got != "ALLOWED" {
		t.Errorf("verdict %q", got)
	}
	if got := attr(recs[0], AttrPolicies); got != `["shop/db-policy (ingress rule 0)"]` {
		t.Errorf("policies %s", got)
	}
	if got := attr(recs[1], AttrVerdict); got != "DENIED" || recs[1].SeverityNumber() != plog.SeverityNumberWarn {
		t.Errorf("denied flow: verdict %q severity %v", got, recs[1].SeverityNumber())
	}
	if got := attr(recs[0], "k8s.source.workload.name"); got != "web" {
		t.Errorf("source workload %q", got)
	}
	if got := testutil.ToFloat64(e.exported.WithLabelValues("logs")); got != 2 {
		t.Errorf("exported logs counter %v, want 2", got)
	}
}

// Export never waits: with a full buffer a flow is dropped and counted; a
// Collector that cannot be reached costs the batch, counted, and Err says why.
func TestExportDropsInsteadOfWaiting(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	e, err := New(Config{Endpoint: addr, Insecure: true, Buffer: 2, Timeout: 300 * time.Millisecond, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 5 {
		e.Offer(testFlow(uint32(40000+i), flowv1.Verdict_VERDICT_ALLOWED))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Offer waited %v", d)
	}
	if got := testutil.ToFloat64(e.dropped.WithLabelValues(DropBufferFull)); got != 3 {
		t.Errorf("buffer_full drops %v, want 3 (5 offered, room for 2)", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(e.dropped.WithLabelValues(DropExportFailed)) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if got := testutil.ToFloat64(e.dropped.WithLabelValues(DropExportFailed)); got != 2 {
		t.Errorf("export_failed drops %v, want the 2 buffered flows", got)
	}
	if e.Err() == nil {
		t.Error("Err is nil after failed exports")
	}
}

// The agent's counters go out as cumulative sums with their labels; other
// families (Go runtime) stay with Prometheus.
func TestMetricsCarryRuleCounters(t *testing.T) {
	reg := prometheus.NewRegistry()
	verdicts := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubectl_netpol_policy_verdicts_total", Help: "h"},
		[]string{"namespace", "policy", "direction", "rule", "verdict"})
	other := prometheus.NewCounter(prometheus.CounterOpts{Name: "go_something_total", Help: "h"})
	reg.MustRegister(verdicts, other)
	verdicts.WithLabelValues("shop", "db-policy", "INGRESS", "0", "ALLOWED").Add(7)
	other.Inc()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	md, points := Metrics(fams, "node-1", "v1", time.Now())
	if points != 1 {
		t.Fatalf("%d data points, want 1", points)
	}
	m := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0)
	if m.Name() != "kubectl_netpol_policy_verdicts_total" || !m.Sum().IsMonotonic() ||
		m.Sum().AggregationTemporality() != pmetric.AggregationTemporalityCumulative {
		t.Fatalf("metric %s: %v", m.Name(), m.Type())
	}
	dp := m.Sum().DataPoints().At(0)
	if pol, _ := dp.Attributes().Get("policy"); dp.DoubleValue() != 7 || pol.Str() != "db-policy" {
		t.Errorf("data point %v policy %q, want 7 db-policy", dp.DoubleValue(), pol.Str())
	}
}

func TestEndpointMustBeHostPort(t *testing.T) {
	for _, bad := range []string{"", "collector", "http://collector:4317"} {
		if _, err := New(Config{Endpoint: bad, Insecure: true}); err == nil {
			t.Errorf("New(%q) accepted it", bad)
		}
	}
}
