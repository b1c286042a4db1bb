//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/kubectl-netpol/kubectl-netpol/flow/otlp"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

// TestOTLPExport: with install --otlp-endpoint, every agent exports its
// flows to a real OpenTelemetry Collector (built from the Collector's Go
// modules: OTLP receiver, file exporter) on the cluster's control-plane
// address: each record of the shop's flows that `watch -o json --per-node`
// shows arrives as one log record carrying that very flow, its verdict and
// its policies; the per-rule counters arrive as OTLP metrics; status shows
// the export as healthy.
func TestOTLPExport(t *testing.T) {
	c := framework.Connect(t)
	framework.RequireRoot(t)
	bin := os.Getenv("NETPOL_OTELCOL")
	if bin == "" {
		framework.Unavailable(t, "NETPOL_OTELCOL is not set: run through `make e2e` (it builds the test Collector from test/otelcol)")
	}
	dir := t.TempDir()
	endpoint := startCollector(t, bin, dir)

	out, err := netpol(t, c, "", "install", "--image", framework.AgentImage(t), "--timeout", "3m",
		"--otlp-endpoint", endpoint, "--otlp-insecure")
	if err != nil {
		t.Fatalf("kubectl netpol install --otlp-endpoint: %v\n%s", err, out)
	}
	s := newShop(t, c)
	s.applyPolicy(t, c)
	expect(t, c, s.web, true, s.podDB)
	expect(t, c, s.other, false, s.podDB)

	// What watch shows of the shop's traffic, node by node, as the agents
	// judged it: every record must arrive at the Collector as it is.
	var want []*flowv1.Flow
	for _, f := range watchFlows(t, c, "--last", "5000", "--per-node", "--to-namespace", s.ns) {
		if f.GetSource().GetNamespace() == s.ns {
			want = append(want, f)
		}
	}
	var sawAllowed, sawDenied bool
	for _, f := range want {
		sawAllowed = sawAllowed || f.GetVerdict() == flowv1.Verdict_VERDICT_ALLOWED
		sawDenied = sawDenied || f.GetVerdict() == flowv1.Verdict_VERDICT_DENIED
	}
	if !sawAllowed || !sawDenied {
		t.Fatalf("watch shows %d shop flows, allowed %v denied %v: the traffic above makes both", len(want), sawAllowed, sawDenied)
	}

	var missing []*flowv1.Flow
	var got map[string]plog.LogRecord
	deadline := time.Now().Add(30 * time.Second)
	for {
		got = exportedFlows(t, filepath.Join(dir, "logs.json"))
		missing = missing[:0]
		for _, f := range want {
			if _, ok := got[flowKey(f)]; !ok {
				missing = append(missing, f)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	for _, f := range missing {
		t.Errorf("not exported within 30 s: %s", describeFlow(f))
	}
	for _, f := range want {
		lr, ok := got[flowKey(f)]
		if !ok {
			continue
		}
		raw, _ := lr.Attributes().Get(otlp.AttrFlowJSON)
		var exported flowv1.Flow
		if err := protojson.Unmarshal([]byte(raw.Str()), &exported); err != nil || !proto.Equal(&exported, f) {
			t.Errorf("exported record differs from watch's:\n%v\nwatch:\n%v", &exported, f)
		}
		verdict, _ := lr.Attributes().Get(otlp.AttrVerdict)
		if want := strings.TrimPrefix(f.GetVerdict().String(), "VERDICT_"); verdict.Str() != want {
			t.Errorf("netpol.verdict %q, want %q", verdict.Str(), want)
		}
		if f.GetVerdict() == flowv1.Verdict_VERDICT_DENIED {
			pols, _ := lr.Attributes().Get(otlp.AttrPolicies)
			if !strings.Contains(pols.AsString(), s.ns+"/db-policy") {
				t.Errorf("denied record names policies %s, want %s/db-policy", pols.AsString(), s.ns)
			}
		}
	}
	t.Logf("%d shop records from watch, all in the Collector's %d records", len(want), len(got))

	// Metrics go every 30 s: the per-rule verdict counters of db-policy.
	deadline = time.Now().Add(75 * time.Second)
	for !exportedRuleCounter(t, filepath.Join(dir, "metrics.json"), s.ns, "db-policy") {
		if time.Now().After(deadline) {
			t.Fatalf("no kubectl_netpol_policy_verdicts_total data point for %s/db-policy within 75 s", s.ns)
		}
		time.Sleep(2 * time.Second)
	}

	status, err := netpol(t, c, "", "status", "-o", "yaml")
	if err != nil || !strings.Contains(status, "otlp-export") || strings.Contains(status, "last error") {
		t.Errorf("status does not show a healthy otlp-export check (err %v):\n%s", err, status)
	}
}

// flowKey identifies one agent's record of a flow.
func flowKey(f *flowv1.Flow) string {
	return fmt.Sprintf("%s|%s|%d|%s:%d>%s:%d", f.GetNode(), f.GetType(), f.GetTime().AsTime().UnixNano(),
		f.GetIp().GetSource(), f.GetL4().GetSourcePort(), f.GetIp().GetDestination(), f.GetL4().GetDestinationPort())
}

// startCollector runs the test Collector on the control-plane address (which
// every node reaches) and returns its OTLP gRPC endpoint.
func startCollector(t *testing.T, bin, dir string) string {
	t.Helper()
	lis, err := net.Listen("tcp", net.JoinHostPort(framework.ControlPlaneIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	endpoint := lis.Addr().String()
	lis.Close()
	config := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
exporters:
  file/logs:
    path: %s
  file/metrics:
    path: %s
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [file/logs]
    metrics:
      receivers: [otlp]
      exporters: [file/metrics]
`, endpoint, filepath.Join(dir, "logs.json"), filepath.Join(dir, "metrics.json"))
	cfg := filepath.Join(dir, "otelcol.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(dir, "otelcol.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfg)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the Collector: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			raw, _ := os.ReadFile(log.Name())
			t.Logf("Collector log:\n%s", raw)
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if conn, err := net.DialTimeout("tcp", endpoint, time.Second); err == nil {
			conn.Close()
			return endpoint
		}
		if time.Now().After(deadline) {
			raw, _ := os.ReadFile(log.Name())
			t.Fatalf("the Collector does not listen on %s after 30 s:\n%s", endpoint, raw)
		}
	}
}

// exportedFlows reads the file exporter's JSON lines (one OTLP request per
// line) and indexes the records by the flow they carry.
func exportedFlows(t *testing.T, path string) map[string]plog.LogRecord {
	t.Helper()
	out := map[string]plog.LogRecord{}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var dec plog.JSONUnmarshaler
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		ld, err := dec.UnmarshalLogs(sc.Bytes())
		if err != nil {
			continue // a line being written
		}
		for _, rl := range ld.ResourceLogs().All() {
			for _, sl := range rl.ScopeLogs().All() {
				for _, lr := range sl.LogRecords().All() {
					raw, ok := lr.Attributes().Get(otlp.AttrFlowJSON)
					var fl flowv1.Flow
					if ok && protojson.Unmarshal([]byte(raw.Str()), &fl) == nil {
						out[flowKey(&fl)] = lr
					}
				}
			}
		}
	}
	return out
}

// exportedRuleCounter reports whether the metrics file holds a data point of
// the per-rule verdict counter for ns/name.
func exportedRuleCounter(t *testing.T, path, ns, name string) bool {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var dec pmetric.JSONUnmarshaler
	for _, line := range strings.Split(string(raw), "\n") {
		md, err := dec.UnmarshalMetrics([]byte(line))
		if err != nil {
			continue
		}
		for _, rm := range md.ResourceMetrics().All() {
			for _, sm := range rm.ScopeMetrics().All() {
				for _, m := range sm.Metrics().All() {
					if m.Name() != "kubectl_netpol_policy_verdicts_total" || m.Type() != pmetric.MetricTypeSum {
						continue
					}
					for _, dp := range m.Sum().DataPoints().All() {
						n, _ := dp.Attributes().Get("namespace")
						p, _ := dp.Attributes().Get("policy")
						if n.Str() == ns && p.Str() == name && dp.DoubleValue() > 0 {
							return true
						}
					}
				}
			}
		}
	}
	return false
}
