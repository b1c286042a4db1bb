// Package otlp exports an agent's flows as OpenTelemetry logs and its
// metrics (the per-rule verdict counters among them) as OpenTelemetry
// metrics, over OTLP/gRPC, to a Collector: the aggregation point users
// already run in front of Loki, Elastic or ClickHouse.
//
// Export never slows the datapath or the hub: flows reach the exporter
// through a bounded buffer and are dropped, counted, when it is full or when
// the Collector cannot take a batch. The wire format is built with the
// Collector's own pdata package, so what is sent is exactly what a Collector
// decodes.
package otlp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"k8s.io/klog/v2"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// Config says where and how to export.
type Config struct {
	// Endpoint is the Collector's OTLP/gRPC address, host:port.
	Endpoint string
	// Insecure sends in plain text (a Collector beside the agent, or behind
	// a mesh); otherwise TLS, verified against CAFile or the system roots.
	Insecure bool
	CAFile   string
	// Node and Version describe the exporting agent (resource attributes).
	Node, Version string
	// Buffer bounds the flows waiting for export (default 16,384); Batch the
	// flows per request (default 1,024); Interval how long a partial batch
	// waits (default 1 s); MetricsInterval how often metrics go (default 30 s).
	Buffer          int
	Batch           int
	Interval        time.Duration
	MetricsInterval time.Duration
	// Timeout bounds one export request (default 10 s).
	Timeout time.Duration
	// Gatherer provides the metrics to export (the agent's registry).
	Gatherer prometheus.Gatherer
}

// Exporter sends flows and metrics to a Collector.
type Exporter struct {
	cfg     Config
	conn    *grpc.ClientConn
	logs    plogotlp.GRPCClient
	metrics pmetricotlp.GRPCClient
	flows   chan *flowv1.Flow

	exported *prometheus.CounterVec // signal
	dropped  *prometheus.CounterVec // reason
	lastErr  lastError
}

// Drop reasons of kubectl_netpol_otlp_dropped_total.
const (
	DropBufferFull   = "buffer_full"   // the exporter fell behind the flows
	DropExportFailed = "export_failed" // the Collector refused or could not be reached
)

type lastError struct {
	mu  sync.Mutex
	err error
}

// New checks cfg and prepares the connection (gRPC connects lazily, so an
// absent Collector is an export error counted later, not a start failure).
func New(cfg Config) (*Exporter, error) {
	if cfg.Endpoint == "" {
		return nil, errors.New("otlp: no endpoint")
	}
	if _, port, ok := strings.Cut(cfg.Endpoint, ":"); !ok || port == "" || strings.Contains(cfg.Endpoint, "://") {
		return nil, fmt.Errorf("otlp endpoint %q: want HOST:PORT (for example otel-collector.monitoring:4317), without a scheme", cfg.Endpoint)
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 16384
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1024
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.MetricsInterval <= 0 {
		cfg.MetricsInterval = 30 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	creds := insecure.NewCredentials()
	if !cfg.Insecure {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("otlp CA file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("otlp CA file %s: no PEM certificate in it", cfg.CAFile)
			}
		}
		creds = credentials.NewTLS(tc)
	}
	conn, err := grpc.NewClient(cfg.Endpoint, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("otlp endpoint %s: %w", cfg.Endpoint, err)
	}
	return &Exporter{
		cfg: cfg, conn: conn,
		logs: plogotlp.NewGRPCClient(conn), metrics: pmetricotlp.NewGRPCClient(conn),
		flows: make(chan *flowv1.Flow, cfg.Buffer),
		exported: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubectl_netpol_otlp_exported_total",
			Help: "Records the OTLP exporter delivered to the Collector, by signal (logs: flows; metrics: data points).",
		}, []string{"signal"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubectl_netpol_otlp_dropped_total",
			Help: "Flows the OTLP exporter dropped, by reason (buffer_full, export_failed); metric exports that failed count under export_failed too.",
		}, []string{"reason"}),
	}, nil
}

// Collectors are the exporter's own metrics, for the agent's registry.
func (e *Exporter) Collectors() []prometheus.Collector {
	return []prometheus.Collector{e.exported, e.dropped}
}

// Offer hands f to the exporter without ever waiting: when the buffer is
// full, f is dropped and counted.
func (e *Exporter) Offer(f *flowv1.Flow) {
	select {
	case e.flows <- f:
	default:
		e.dropped.WithLabelValues(DropBufferFull).Inc()
	}
}

// Check is the exporter's line in `kubectl netpol status`: where it sends,
// how much went and was dropped, and the last error.
func (e *Exporter) Check() *flowv1.NodeCheck {
	c := &flowv1.NodeCheck{Name: "otlp-export", Ok: true}
	sent := testValue(e.exported.WithLabelValues("logs"))
	full, failed := testValue(e.dropped.WithLabelValues(DropBufferFull)), testValue(e.dropped.WithLabelValues(DropExportFailed))
	c.Detail = fmt.Sprintf("to %s: %d flows exported, %d dropped (buffer full %d, export failed %d)",
		e.cfg.Endpoint, sent, full+failed, full, failed)
	if err := e.Err(); err != nil {
		c.Ok = false
		c.Detail += "; last error: " + err.Error() + " (check the Collector's address, TLS options and that it runs the OTLP gRPC receiver)"
	}
	return c
}

func testValue(c prometheus.Counter) uint64 {
	var m dto.Metric
	if c.Write(&m) != nil {
		return 0
	}
	return uint64(m.GetCounter().GetValue())
}

// Err is the last export error (nil after a success).
func (e *Exporter) Err() error {
	e.lastErr.mu.Lock()
	defer e.lastErr.mu.Unlock()
	return e.lastErr.err
}

func (e *Exporter) setErr(err error) {
	e.lastErr.mu.Lock()
	changed := (e.lastErr.err == nil) != (err == nil)
	e.lastErr.err = err
	e.lastErr.mu.Unlock()
	if changed && err != nil {
		klog.ErrorS(err, "Exporting to the OpenTelemetry Collector failed; flows are dropped and counted until it answers", "endpoint", e.cfg.Endpoint)
	} else if changed {
		klog.InfoS("Exporting to the OpenTelemetry Collector", "endpoint", e.cfg.Endpoint)
	}
}

// Run exports until ctx ends, then sends what is buffered and closes the
// connection. Each request is bounded by the timeout, not by ctx, so that a
// shutdown lets the request in flight finish.
func (e *Exporter) Run(ctx context.Context) {
	defer e.conn.Close()
	batch := make([]*flowv1.Flow, 0, e.cfg.Batch)
	flush := time.NewTicker(e.cfg.Interval)
	defer flush.Stop()
	metrics := time.NewTicker(e.cfg.MetricsInterval)
	defer metrics.Stop()
	send := func() {
		if len(batch) > 0 {
			e.exportFlows(batch)
			clear(batch)
			batch = batch[:0]
		}
	}
	for {
		select {
		case f := <-e.flows:
			if batch = append(batch, f); len(batch) == cap(batch) {
				send()
			}
		case <-flush.C:
			send()
		case <-metrics.C:
			e.exportMetrics()
		case <-ctx.Done():
			for drained := false; !drained; {
				select {
				case f := <-e.flows:
					if batch = append(batch, f); len(batch) == cap(batch) {
						send()
					}
				default:
					drained = true
				}
			}
			send()
			e.exportMetrics()
			return
		}
	}
}

func (e *Exporter) exportFlows(fs []*flowv1.Flow) {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.Timeout)
	defer cancel()
	_, err := e.logs.Export(ctx, plogotlp.NewExportRequestFromLogs(Logs(fs, e.cfg.Node, e.cfg.Version)))
	e.setErr(err)
	if err != nil {
		e.dropped.WithLabelValues(DropExportFailed).Add(float64(len(fs)))
		return
	}
	e.exported.WithLabelValues("logs").Add(float64(len(fs)))
}

func (e *Exporter) exportMetrics() {
	if e.cfg.Gatherer == nil {
		return
	}
	families, err := e.cfg.Gatherer.Gather()
	if err != nil {
		klog.ErrorS(err, "Gathering metrics for OTLP")
		return
	}
	m, points := Metrics(families, e.cfg.Node, e.cfg.Version, time.Now())
	if points == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.Timeout)
	defer cancel()
	_, err = e.metrics.Export(ctx, pmetricotlp.NewExportRequestFromMetrics(m))
	e.setErr(err)
	if err != nil {
		e.dropped.WithLabelValues(DropExportFailed).Inc()
		return
	}
	e.exported.WithLabelValues("metrics").Add(float64(points))
}

// Attribute keys of an exported flow. Addresses and ports follow
// OpenTelemetry's semantic conventions; the rest is ours, under netpol.* and
// k8s.source.* / k8s.destination.*.
const (
	AttrFlowJSON = "netpol.flow" // the flow as `watch -o json` prints it
	AttrVerdict  = "netpol.verdict"
	AttrType     = "netpol.type"
	AttrReason   = "netpol.reason"
	AttrDir      = "netpol.direction"
	AttrPolicies = "netpol.policies"
	AttrRuleID   = "netpol.rule_id"
)

var flowJSON = protojson.MarshalOptions{}

// Logs turns flows into one OTLP logs payload: a record per flow, its body
// the `watch -o compact` line, its attributes the verdict, the deciding
// policies and rules, both ends and the flow itself as `watch -o json`
// prints it.
func Logs(fs []*flowv1.Flow, node, version string) plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	resource(rl.Resource().Attributes(), node, version)
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName("github.com/kubectl-netpol/kubectl-netpol/flow/otlp")
	sl.Scope().SetVersion(version)
	recs := sl.LogRecords()
	recs.EnsureCapacity(len(fs))
	now := pcommon.NewTimestampFromTime(time.Now())
	for _, f := range fs {
		lr := recs.AppendEmpty()
		lr.SetTimestamp(pcommon.NewTimestampFromTime(f.GetTime().AsTime()))
		lr.SetObservedTimestamp(now)
		lr.SetEventName("netpol.flow")
		if f.GetVerdict() == flowv1.Verdict_VERDICT_DENIED {
			lr.SetSeverityNumber(plog.SeverityNumberWarn)
			lr.SetSeverityText("WARN")
		} else {
			lr.SetSeverityNumber(plog.SeverityNumberInfo)
			lr.SetSeverityText("INFO")
		}
		lr.Body().SetStr(flow.CompactLine(f, time.UTC))
		a := lr.Attributes()
		a.PutStr(AttrVerdict, flow.VerdictName(f.GetVerdict()))
		a.PutStr(AttrType, strings.TrimPrefix(f.GetType().String(), "EVENT_TYPE_"))
		a.PutStr(AttrReason, flow.ReasonName(f.GetReason()))
		a.PutStr(AttrDir, flow.DirectionName(f.GetDirection()))
		a.PutStr("k8s.node.name", f.GetNode())
		if id := f.GetRuleId(); id != 0 {
			a.PutInt(AttrRuleID, int64(id))
		}
		if refs := policies(f); len(refs) > 0 {
			s := a.PutEmptySlice(AttrPolicies)
			for _, r := range refs {
				s.AppendEmpty().SetStr(r)
			}
		}
		a.PutStr("network.transport", strings.ToLower(flow.ProtocolName(f.GetL4().GetProtocol())))
		a.PutStr("source.address", f.GetIp().GetSource())
		a.PutInt("source.port", int64(f.GetL4().GetSourcePort()))
		a.PutStr("destination.address", f.GetIp().GetDestination())
		a.PutInt("destination.port", int64(f.GetL4().GetDestinationPort()))
		endpoint(a, "k8s.source.", f.GetSource())
		endpoint(a, "k8s.destination.", f.GetDestination())
		if s := f.GetService(); s != nil && s.GetName() != "" {
			a.PutStr("k8s.service.name", s.GetNamespace()+"/"+s.GetName())
		}
		// A kernel aggregate: the connections it stands for (one otherwise).
		a.PutInt("netpol.connections", int64(flow.Connections(f)))
		if f.GetType() == flowv1.EventType_EVENT_TYPE_END {
			a.PutInt("netpol.packets", int64(f.GetPackets()))
			a.PutInt("netpol.bytes", int64(f.GetBytes()))
			if d := f.GetDuration(); d != nil {
				a.PutDouble("netpol.duration_s", d.AsDuration().Seconds())
			}
		}
		if raw, err := flowJSON.Marshal(f); err == nil {
			a.PutStr(AttrFlowJSON, string(raw))
		}
	}
	return ld
}

// policies names every policy rule that decided f, as watch prints them.
func policies(f *flowv1.Flow) []string {
	var out []string
	for _, group := range [][]*flowv1.PolicyRef{f.GetAllowedBy(), f.GetDeniedBy(), f.GetIsolatedBy()} {
		for _, r := range group {
			out = append(out, flow.PolicyRefString(r))
		}
	}
	return out
}

func endpoint(a pcommon.Map, prefix string, ep *flowv1.Endpoint) {
	if ep == nil {
		return
	}
	if ep.GetNamespace() != "" {
		a.PutStr(prefix+"namespace.name", ep.GetNamespace())
	}
	if ep.GetPod() != "" {
		a.PutStr(prefix+"pod.name", ep.GetPod())
	}
	if w := ep.GetWorkload(); w != nil && w.GetName() != "" {
		a.PutStr(prefix+"workload.kind", w.GetKind())
		a.PutStr(prefix+"workload.name", w.GetName())
	}
	if ep.GetHostNetwork() && ep.GetNodeName() != "" {
		a.PutStr(prefix+"node.name", ep.GetNodeName())
	}
}

func resource(a pcommon.Map, node, version string) {
	a.PutStr("service.name", "netpol-agent")
	a.PutStr("service.version", version)
	a.PutStr("k8s.node.name", node)
}

// Metrics turns gathered Prometheus families into one OTLP metrics payload:
// counters as cumulative monotonic sums, gauges as gauges (histograms and
// summaries are left to the Prometheus endpoint). It returns the number of
// data points.
func Metrics(families []*dto.MetricFamily, node, version string, now time.Time) (pmetric.Metrics, int) {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	resource(rm.Resource().Attributes(), node, version)
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName("github.com/kubectl-netpol/kubectl-netpol/flow/otlp")
	sm.Scope().SetVersion(version)
	ts := pcommon.NewTimestampFromTime(now)
	points := 0
	for _, fam := range families {
		if !strings.HasPrefix(fam.GetName(), "kubectl_netpol_") {
			continue // the Go runtime's and the process's: Prometheus has them
		}
		var dps pmetric.NumberDataPointSlice
		switch fam.GetType() {
		case dto.MetricType_COUNTER:
			m := sm.Metrics().AppendEmpty()
			m.SetName(fam.GetName())
			m.SetDescription(fam.GetHelp())
			sum := m.SetEmptySum()
			sum.SetIsMonotonic(true)
			sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
			dps = sum.DataPoints()
		case dto.MetricType_GAUGE:
			m := sm.Metrics().AppendEmpty()
			m.SetName(fam.GetName())
			m.SetDescription(fam.GetHelp())
			dps = m.SetEmptyGauge().DataPoints()
		default:
			continue
		}
		for _, pm := range fam.GetMetric() {
			dp := dps.AppendEmpty()
			dp.SetTimestamp(ts)
			for _, l := range pm.GetLabel() {
				dp.Attributes().PutStr(l.GetName(), l.GetValue())
			}
			if fam.GetType() == dto.MetricType_COUNTER {
				dp.SetDoubleValue(pm.GetCounter().GetValue())
			} else {
				dp.SetDoubleValue(pm.GetGauge().GetValue())
			}
			points++
		}
	}
	return md, points
}
