//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
	"github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
	"github.com/kubectl-netpol/kubectl-netpol/test/scale"
)

// scaleRun is .cluster/scale, written by hack/cluster/scale.sh (make scale-up).
type scaleRun map[string]string

func loadScaleRun(b *testing.B) scaleRun {
	b.Helper()
	raw, err := os.ReadFile(filepath.Join(framework.RepoRoot(), ".cluster", "scale"))
	if err != nil {
		framework.Unavailable(b, "no scale cluster: %v (run `make scale-up`)", err)
	}
	r := scaleRun{}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			r[k] = v
		}
	}
	return r
}

func (r scaleRun) int(k string) int { n, _ := strconv.Atoi(r[k]); return n }

// scaleInstallFlags are the flags `kubectl netpol install` needs on a scale cluster (keeping the
// agent off the fake nodes), none on another.
func scaleInstallFlags() []string {
	raw, _ := os.ReadFile(filepath.Join(framework.RepoRoot(), ".cluster", "scale"))
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "install_flags="); ok {
			return strings.Fields(v)
		}
	}
	return nil
}

// agentMetrics reads the agent's /metrics on node: every sample without labels by name, and
// labelled ones by name{labels}.
func agentMetrics(b *testing.B, node framework.Node) map[string]float64 {
	b.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", install.AgentHTTPPort)
	out, err := node.Command("curl", "-sSf", url).Output()
	if err != nil {
		b.Fatalf("reading %s on %s: %v", url, node.Name, err)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

var readyAfter = regexp.MustCompile(`"Ready: policy enforced".* after="([^"]+)"`)

// BenchmarkScaleAgent measures the agent and the CLI on the scale cluster (make scale-up: kwok's
// fake nodes and pods, NetworkPolicies through the real API server; docs/perf.md): it installs
// the agent on the real nodes afresh and reports, per the slowest real node, the time to ready
// (cache sync + first compile + first apply, from the agent's log), RSS (now and peak) and Go
// heap, identities and map usage; then pod churn elsewhere (pods created and deleted on fake nodes
// at NETPOL_SCALE_CHURN_RATE per second, default 100, for NETPOL_SCALE_CHURN_SECS, default 30):
// the agents' CPU and applies per second; then the CLI against the live cluster: explain of two
// pods, matrix of the 1,000-pod namespace, check of 10,000 items. With NETPOL_SCALE_HEAP=DIR the
// agents' heap profiles are written there and their top is logged. One invocation
// (-benchtime 1x):
//
//	make scale-up && make bench-scale
func BenchmarkScaleAgent(b *testing.B) {
	c := framework.Connect(b)
	framework.RequireRoot(b)
	run := loadScaleRun(b)
	ctx := framework.Context(b, 60*time.Minute)
	nodes := framework.Nodes // the real ones

	uninstallAgent(b, c)
	t0 := time.Now()
	args := append([]string{"install", "--image", framework.AgentImage(b), "--timeout", "10m", "--pprof"}, scaleInstallFlags()...)
	if out, err := netpolB(b, c, args...); err != nil {
		b.Fatalf("kubectl netpol %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	installed := time.Since(t0)
	agents, err := c.Client.CoreV1().Pods(install.DefaultNamespace).List(ctx, metav1.ListOptions{LabelSelector: install.AgentSelector})
	if err != nil {
		b.Fatal(err)
	}
	if len(agents.Items) != len(nodes) {
		b.Fatalf("%d agent pods for %d real nodes: the DaemonSet must stay off the fake nodes (%s)", len(agents.Items), len(nodes), run["install_flags"])
	}
	var ready time.Duration
	for _, p := range agents.Items {
		logs, err := c.Client.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			b.Fatal(err)
		}
		m := readyAfter.FindSubmatch(logs)
		if m == nil {
			b.Fatalf("agent %s logged no \"Ready: policy enforced\"", p.Name)
		}
		d, err := time.ParseDuration(string(m[1]))
		if err != nil {
			b.Fatal(err)
		}
		ready = max(ready, d)
	}
	b.ReportMetric(ready.Seconds(), "ready-s")
	b.ReportMetric(installed.Seconds(), "install-s")

	// Steady state after the first apply: what the agents hold.
	time.Sleep(5 * time.Second)
	var rssMiB, peakMiB, heapMiB, identities, endpoints, policies float64
	var maps []string
	for _, n := range nodes {
		m := agentMetrics(b, n)
		rssMiB = max(rssMiB, m["process_resident_memory_bytes"]/(1<<20))
		heapMiB = max(heapMiB, m["go_memstats_heap_inuse_bytes"]/(1<<20))
		peakMiB = max(peakMiB, agentPeakRSS(n))
		identities = max(identities, m["kubectl_netpol_identities"])
		endpoints = max(endpoints, m["kubectl_netpol_endpoints"])
		policies = max(policies, m["kubectl_netpol_policies"])
		for k, v := range m {
			if name, ok := strings.CutPrefix(k, `kubectl_netpol_map_entries{map="`); ok && v > 0 {
				name = strings.TrimSuffix(name, `"}`)
				maps = append(maps, fmt.Sprintf("%s %s %.0f/%.0f", n.Name, name, v, m[`kubectl_netpol_map_max_entries{map="`+name+`"}`]))
			}
		}
		if dir := os.Getenv("NETPOL_SCALE_HEAP"); dir != "" {
			logHeapTop(b, n, filepath.Join(dir, "heap-"+n.Name+".pb.gz"))
		}
	}
	b.ReportMetric(rssMiB, "agent-rss-MiB")
	b.ReportMetric(peakMiB, "agent-peak-rss-MiB")
	b.ReportMetric(heapMiB, "agent-heap-inuse-MiB")
	b.ReportMetric(identities, "identities")
	b.Logf("agents: %d policies, %.0f local endpoints, %.0f identities; map entries in use: %s", int(policies), endpoints, identities, strings.Join(maps, "; "))
	watchLoad(b, c)

	// Pod churn elsewhere: fake pods created and deleted at a rate.
	rate, secs := 100, 30
	if n, err := strconv.Atoi(os.Getenv("NETPOL_SCALE_CHURN_RATE")); err == nil && n > 0 {
		rate = n
	}
	if n, err := strconv.Atoi(os.Getenv("NETPOL_SCALE_CHURN_SECS")); err == nil && n > 0 {
		secs = n
	}
	before := map[string]time.Duration{}
	applies0 := 0.0
	for _, n := range nodes {
		before[n.Name] = agentCPU(n)
		applies0 += agentMetrics(b, n)["kubectl_netpol_policy_apply_duration_seconds_count"]
	}
	profDir := os.Getenv("NETPOL_SCALE_HEAP")
	var prof sync.WaitGroup
	if profDir != "" {
		// What the agent spends its CPU on while pods churn elsewhere.
		prof.Go(func() {
			path := filepath.Join(profDir, "churn-cpu-"+nodes[0].Name+".pb.gz")
			url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", install.AgentHTTPPort, max(1, secs-2))
			if out, err := nodes[0].Command("curl", "-sSf", "-o", path, url).CombinedOutput(); err != nil {
				b.Errorf("fetching %s on %s: %v\n%s", url, nodes[0].Name, err, out)
				return
			}
			logProfileTop(b, "CPU of the agent on "+nodes[0].Name+" during the churn", path, "-cum")
		})
	}
	churned, wall := churnPods(b, c, run.int("nodes"), rate, time.Duration(secs)*time.Second)
	prof.Wait()
	var cpu float64
	applies := -applies0
	for _, n := range nodes {
		cpu = max(cpu, (agentCPU(n)-before[n.Name]).Seconds()/wall.Seconds())
		applies += agentMetrics(b, n)["kubectl_netpol_policy_apply_duration_seconds_count"]
	}
	b.ReportMetric(float64(churned)/wall.Seconds(), "churn-pods/s")
	b.ReportMetric(cpu*100, "churn-agent-cpu-%")
	b.ReportMetric(applies/float64(len(nodes))/wall.Seconds(), "churn-applies/s")
	m := agentMetrics(b, nodes[0])
	b.Logf("apply duration after churn (%s): count %.0f, mean %.1f ms", nodes[0].Name,
		m["kubectl_netpol_policy_apply_duration_seconds_count"],
		1000*m["kubectl_netpol_policy_apply_duration_seconds_sum"]/max(1, m["kubectl_netpol_policy_apply_duration_seconds_count"]))

	// The CLI against the live cluster (list calls included).
	nsCount := max(1, (run.int("pods")-run.int("big_namespace_pods"))/100)
	podName := func(i int) string { return fmt.Sprintf("ns-%03d/pod-%05d", i%nsCount, i) }
	cli := func(metric string, args ...string) string {
		t := time.Now()
		out, err := netpolB(b, c, args...)
		if err != nil {
			b.Fatalf("kubectl netpol %s: %v\n%.2000s", strings.Join(args, " "), err, out)
		}
		b.ReportMetric(time.Since(t).Seconds(), metric)
		return out
	}
	out := cli("explain-s", "explain", podName(0), podName(1), "--port", "8080")
	b.Logf("explain %s -> %s: %.300s", podName(0), podName(1), out)
	if run.int("big_namespace_pods") > 0 {
		out = cli("matrix-s", "matrix", "-n", scale.BigNamespace, "--ports", "8080/TCP", "-o", "csv")
		b.Logf("matrix of %s (%d pods): %d lines of CSV", scale.BigNamespace, run.int("big_namespace_pods"), strings.Count(out, "\n"))
	}
	items := 10000
	if os.Getenv("NETPOL_SCALE_SMOKE") != "" {
		items = 1000
	}
	file := filepath.Join(b.TempDir(), "items.jsonl")
	var sb strings.Builder
	enc := json.NewEncoder(&sb)
	pods := run.int("pods") - run.int("big_namespace_pods")
	for i := range items {
		_ = enc.Encode(map[string]any{"src": podName(i * 7 % pods), "dst": podName((i*13 + 1) % pods), "port": 8080})
	}
	if err := os.WriteFile(file, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	if profDir != "" {
		f, err := os.Create(filepath.Join(profDir, "check-cpu.pb.gz"))
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close(); logProfileTop(b, "CPU of check", f.Name(), "-cum") }()
	}
	out = cli("check-s", "check", file, "-o", "json")
	if got := strings.Count(out, "\n"); got != items {
		b.Fatalf("check printed %d lines for %d items:\n%.2000s", got, items, out)
	}
	c.ExpectAgentsNeverRestarted(b)
	b.Logf("%s fake nodes, %s pods, %s policies (created in %s s); load %.2f", run["nodes"], run["pods"], run["policies"], run["load_seconds"], loadAverage())
}

// agentCPU is the CPU time of the agent processes on node so far.
func agentCPU(n framework.Node) time.Duration {
	var total time.Duration
	for _, pid := range agentPIDs(n) {
		if d, ok := framework.ProcessCPU(pid); ok {
			total += d
		}
	}
	return total
}

// churnPods creates fake pods at rate per second for d in a namespace of their own, on the fake
// nodes, deleting each 5 s after it was created, then deletes the rest and the namespace. It
// returns how many were created and the time it took.
func churnPods(b *testing.B, c *framework.Cluster, nodes, rate int, d time.Duration) (int, time.Duration) {
	b.Helper()
	client, err := kubernetes.NewForConfig(scale.FastConfig(c.Config))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ns := c.NewNamespace(b, "churn")
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	work := make(chan func() error, 4*rate)
	for range 16 {
		wg.Go(func() {
			for fn := range work {
				if err := fn(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	start := time.Now()
	n := 0
	lag := 5 * rate
	for time.Since(start) < d {
		<-tick.C
		i := n
		p := scale.FakePod(policytest.Pod(ns, fmt.Sprintf("churn-%06d", i), policytest.WithLabels(fmt.Sprintf("app=app-%d", i%10), "tier=web")),
			fmt.Sprintf("%s%04d", scale.FakeNodePrefix, i%max(1, nodes)))
		work <- func() error { _, err := client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); return err }
		if i >= lag {
			old := fmt.Sprintf("churn-%06d", i-lag)
			work <- func() error { return client.CoreV1().Pods(ns).Delete(ctx, old, metav1.DeleteOptions{}) }
		}
		n++
	}
	wall := time.Since(start)
	close(work)
	wg.Wait()
	if len(errs) > 0 {
		b.Fatalf("%d of the churn's writes failed, the first: %v", len(errs), errs[0])
	}
	return n, wall
}

// watchLoad logs the API server's open watches (all clients: the agents, kwok, the control
// plane) by resource.
func watchLoad(b *testing.B, c *framework.Cluster) {
	raw, err := c.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		b.Logf("API server metrics: %v", err)
		return
	}
	var watches []string
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "apiserver_longrunning_requests{") && strings.Contains(line, `verb="WATCH"`) &&
			(strings.Contains(line, `resource="pods"`) || strings.Contains(line, `resource="networkpolicies"`) ||
				strings.Contains(line, `resource="namespaces"`) || strings.Contains(line, `resource="nodes"`)) {
			watches = append(watches, line)
		}
	}
	b.Logf("API server watches: %s", strings.Join(watches, "; "))
}

// logHeapTop saves the agent's heap profile on n to path and logs its top by in-use bytes.
func logHeapTop(b *testing.B, n framework.Node, path string) {
	url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/heap", install.AgentHTTPPort)
	if out, err := n.Command("curl", "-sSf", "-o", path, url).CombinedOutput(); err != nil {
		b.Errorf("fetching %s on %s: %v\n%s", url, n.Name, err, out)
		return
	}
	logProfileTop(b, "heap of the agent on "+n.Name, path, "-sample_index=inuse_space")
}

// logProfileTop logs the top 25 of a pprof profile.
func logProfileTop(b *testing.B, what, path string, flags ...string) {
	out, err := exec.Command("go", append(append([]string{"tool", "pprof", "-top", "-nodecount=25"}, flags...), path)...).CombinedOutput()
	if err != nil {
		b.Errorf("go tool pprof %s: %v\n%s", path, err, out)
		return
	}
	b.Logf("%s (%s):\n%s", what, path, out)
}
