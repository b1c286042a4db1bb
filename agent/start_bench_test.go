//go:build linux

package agent

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubectl-netpol/kubectl-netpol/internal/apiservertest"
	"github.com/kubectl-netpol/kubectl-netpol/internal/kubeclient"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
	pt "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
	"github.com/kubectl-netpol/kubectl-netpol/test/scale"
)

// BenchmarkAgentStart is the agent's way to ready at the scale harness's
// sizes (issue 16), against a real kube-apiserver and etcd on loopback
// (internal/apiservertest) filled with the pods of `make scale-up` as kwok
// runs them (scaleShapedPods: status with addresses written through the
// status subresource), their namespaces, fake nodes and policies. Each op
// is one agent start: New (the datapath loaded under a throw-away pin
// root, attached in a network namespace of its own), the informers' first
// lists or watch-lists through the agent's protobuf client with its
// transform, then the first Snapshot, engine, Compile for a fake node and
// Apply, each phase timed, and what the agent does once ready (it gives
// the start's pages back to the OS); then three whole recompiles and applies, as
// each change makes one, their CPU reported. It reports the peak of the Go
// heap's objects above what the process held before the start, the peak
// of the memory the runtime holds from the OS (total less released: its
// RSS, the test's own included), the process's peak RSS and RSS after the
// recompiles from the kernel, and the live heap the agent keeps.
// GOGC and GOMEMLIMIT apply as in the agent.
//
// NETPOL_START_PODS sets the size (default 100000, with one fake node per
// 100 pods and one policy per 10); NETPOL_START_HEAP=file writes a heap
// profile at the end of the first start. The client's watch-list is on by
// default (client-go >= 0.35); KUBE_FEATURE_WatchListClient=false lists.
// NETPOL_START_MEMLIMITS=0,256Mi, NETPOL_START_GOGC=100,50 and
// NETPOL_START_PROCS=1,2 run the starts once per Go memory limit (0:
// none), GOGC and GOMAXPROCS (the installed agent runs with 1) on the one
// populated API server.
func BenchmarkAgentStart(b *testing.B) {
	requireRoot(b)
	pods := benchSize("NETPOL_START_PODS", 100000)
	nodes, policies := max(1, pods/100), pods/10
	cfg := apiservertest.Start(b)
	populateAPIServer(b, cfg, pods, nodes, policies)
	client, err := kubernetes.NewForConfig(kubeclient.Protobuf(cfg))
	if err != nil {
		b.Fatal(err)
	}
	node := fmt.Sprintf("%s%04d", scale.FakeNodePrefix, 0)
	limits, procs, gogcs := os.Getenv("NETPOL_START_MEMLIMITS"), os.Getenv("NETPOL_START_PROCS"), os.Getenv("NETPOL_START_GOGC")
	if limits == "" && procs == "" && gogcs == "" {
		agentStarts(b, client, node, pods, policies, nodes)
		return
	}
	// One populated API server, the starts under each Go memory limit and
	// GOMAXPROCS.
	for _, p := range strings.Split(cmp.Or(procs, strconv.Itoa(runtime.GOMAXPROCS(0))), ",") {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			b.Fatalf("NETPOL_START_PROCS: %q is not a processor count", p)
		}
		for _, g := range strings.Split(cmp.Or(gogcs, "100"), ",") {
			gogc, err := strconv.Atoi(g)
			if err != nil {
				b.Fatalf("NETPOL_START_GOGC: %q is not a percentage", g)
			}
			for _, l := range strings.Split(cmp.Or(limits, "0"), ",") {
				q, err := resource.ParseQuantity(l)
				if err != nil {
					b.Fatalf("NETPOL_START_MEMLIMITS: %q: %v", l, err)
				}
				b.Run(fmt.Sprintf("procs=%d/gogc=%d/memlimit=%s", n, gogc, l), func(b *testing.B) {
					limit := q.Value()
					if limit <= 0 {
						limit = math.MaxInt64
					}
					defer debug.SetMemoryLimit(debug.SetMemoryLimit(limit))
					defer debug.SetGCPercent(debug.SetGCPercent(gogc))
					defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(n))
					agentStarts(b, client, node, pods, policies, nodes)
				})
			}
		}
	}
}

// agentStarts runs agentStart b.N times and reports.
func agentStarts(b *testing.B, client kubernetes.Interface, node string, pods, policies, nodes int) {

	var phases startPhases
	var peakHeap, peakMem, live, peakRSS, rss, readyRSS, syncPeak, compilePeak uint64
	first := true
	cpu0 := processCPU(b)
	for b.Loop() {
		p, heap, mem := agentStart(b, client, node, first)
		first = false
		phases.add(p)
		peakHeap, peakMem, live = max(peakHeap, heap), max(peakMem, mem), max(live, p.live)
		peakRSS, rss, readyRSS = max(peakRSS, p.peakRSS), max(rss, p.rss), max(readyRSS, p.readyRSS)
		syncPeak, compilePeak = max(syncPeak, p.syncPeakHeap), max(compilePeak, p.compilePeakHeap)
	}
	n := float64(b.N)
	b.ReportMetric((processCPU(b)-cpu0).Seconds()/n, "cpu-s/op")
	b.ReportMetric(phases.sync.Seconds()/n, "s-sync")
	b.ReportMetric(phases.engine.Seconds()/n, "s-engine")
	b.ReportMetric(phases.compile.Seconds()/n, "s-compile")
	b.ReportMetric(phases.apply.Seconds()/n, "s-apply")
	b.ReportMetric(phases.ready.Seconds()/n, "s-ready")
	b.ReportMetric(phases.reapplyCPU.Seconds()/n/reapplies, "cpu-s/reapply")
	b.ReportMetric(float64(peakHeap)/1e6, "MB-peak-heap")
	b.ReportMetric(float64(syncPeak)/1e6, "MB-peak-heap-sync")
	b.ReportMetric(float64(compilePeak)/1e6, "MB-peak-heap-compile")
	b.ReportMetric(float64(peakMem)/1e6, "MB-peak-mem")
	b.ReportMetric(float64(live)/1e6, "MB-live")
	b.ReportMetric(float64(peakRSS)/1e6, "MB-peak-rss")
	b.ReportMetric(float64(rss)/1e6, "MB-rss")
	b.ReportMetric(float64(readyRSS)/1e6, "MB-rss-ready")
	b.Logf("%d pods, %d policies, %d fake nodes, node %s: per start sync %s, snapshot+engine %s, compile %s, apply %s, ready %s; recompile+apply %.2f s of CPU; peak heap %.0f MB, peak memory %.0f MB, live after %.0f MB; process RSS peak %.0f MB, when ready %.0f MB, after the recompiles %.0f MB",
		pods, policies, nodes, node, phases.sync/time.Duration(b.N), phases.engine/time.Duration(b.N),
		phases.compile/time.Duration(b.N), phases.apply/time.Duration(b.N), phases.ready/time.Duration(b.N),
		phases.reapplyCPU.Seconds()/n/reapplies, float64(peakHeap)/1e6, float64(peakMem)/1e6, float64(live)/1e6, float64(peakRSS)/1e6, float64(readyRSS)/1e6, float64(rss)/1e6)
}

// startPhases are the parts of one agent start (sums over several).
type startPhases struct {
	sync, engine, compile, apply, ready time.Duration
	reapplyCPU                          time.Duration
	live, peakRSS, rss, readyRSS        uint64
	// the heap's peak by the end of the sync and of the first compile
	syncPeakHeap, compilePeakHeap uint64
}

func (s *startPhases) add(o startPhases) {
	s.sync += o.sync
	s.engine += o.engine
	s.compile += o.compile
	s.apply += o.apply
	s.ready += o.ready
	s.reapplyCPU += o.reapplyCPU
}

// agentStart starts one agent on node as Run does up to ready (informers
// synced, one apply), then recompiles and applies it a few times, and
// stops it; it returns the phases, the peak of the heap's objects above
// the start's baseline and the peak of the process's memory (absolute).
func agentStart(b *testing.B, client kubernetes.Interface, node string, profile bool) (p startPhases, peakHeap, peakMem uint64) {
	b.Helper()
	debug.FreeOSMemory()
	heap0, _ := memNow()
	resetPeakRSS(b)
	peakSoFar, peak := watchPeaks()
	start := time.Now()
	a, closeAgent := newBenchAgent(b, client, node)
	stop := make(chan struct{})
	if !a.cluster.Start(stop) {
		b.Fatal("informer caches did not sync")
	}
	p.sync = time.Since(start)
	h, _ := peakSoFar()
	p.syncPeakHeap = h - min(heap0, h)

	t := time.Now()
	snap, err := a.cluster.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	e, err := policy.NewEngineCached(snap, a.policyCache)
	if err != nil {
		b.Fatal(err)
	}
	p.engine = time.Since(t)
	t = time.Now()
	dp, err := e.Compile(node)
	if err != nil {
		b.Fatal(err)
	}
	if len(dp.Endpoints) == 0 {
		b.Fatalf("node %s has no endpoints: the benchmark measures nothing", node)
	}
	p.compile = time.Since(t)
	h, _ = peakSoFar()
	p.compilePeakHeap = h - min(heap0, h)
	t = time.Now()
	if _, err := a.probe.Apply(dp); err != nil {
		b.Fatal(err)
	}
	p.apply = time.Since(t)
	p.ready = time.Since(start)
	a.becameReady()
	p.readyRSS = procStatus(b, "VmRSS")
	snap, e, dp = nil, nil, nil // what stays: the caches and the applied datapath
	// Then whole recompiles, as every change makes one: their CPU is where
	// a lower heap limit costs.
	cpu := processCPU(b)
	for range reapplies {
		if err := a.apply(); err != nil {
			b.Fatal(err)
		}
	}
	p.reapplyCPU = processCPU(b) - cpu
	peakHeap, peakMem = peak()
	p.peakRSS, p.rss = procStatus(b, "VmHWM"), procStatus(b, "VmRSS")
	runtime.GC()
	heap1, _ := memNow()
	p.live = heap1 - min(heap0, heap1)
	if path := os.Getenv("NETPOL_START_HEAP"); profile && path != "" {
		writeHeapProfile(b, path)
	}
	close(stop)
	closeAgent()
	return p, peakHeap - min(heap0, peakHeap), peakMem
}

// reapplies is how many whole recompiles follow each start.
const reapplies = 3

// resetPeakRSS makes the kernel's peak RSS of this process (VmHWM) its
// RSS now.
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Fatal(err)
	}
}

// procStatus is a size field of /proc/self/status, in bytes.
func procStatus(b *testing.B, field string) uint64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(raw)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("%s: %q", field, line)
			}
			return kb << 10
		}
	}
	b.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// memNow is the Go heap's live and dead objects, and the memory the
// runtime has from the OS and not returned (its RSS, roughly).
func memNow() (heap, mem uint64) {
	s := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64() - s[2].Value.Uint64()
}

// watchPeaks samples memNow every millisecond until stop is called, which
// returns the peaks; sofar returns them without stopping.
func watchPeaks() (sofar, stop func() (heap, mem uint64)) {
	var mu sync.Mutex
	var heap, mem uint64
	done := make(chan struct{})
	stopped := make(chan struct{})
	sample := func() {
		h, m := memNow()
		mu.Lock()
		heap, mem = max(heap, h), max(mem, m)
		mu.Unlock()
	}
	go func() {
		defer close(stopped)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				sample()
			}
		}
	}()
	sofar = func() (uint64, uint64) {
		sample()
		mu.Lock()
		defer mu.Unlock()
		return heap, mem
	}
	return sofar, func() (uint64, uint64) {
		close(done)
		<-stopped
		return sofar()
	}
}

// populateAPIServer writes the scale harness's objects: namespaces, fake
// nodes, policies, and pods with kwok's status (created, then their status
// written, as kwok does).
func populateAPIServer(b *testing.B, cfg *rest.Config, pods, nodes, policies int) {
	b.Helper()
	ctx := context.Background()
	client, err := kubernetes.NewForConfig(scale.FastConfig(cfg))
	if err != nil {
		b.Fatal(err)
	}
	world := pt.Synthetic(pods, policies, scale.Seed)
	start := time.Now()
	const workers = 32
	must := func(what string, n int, fn func(i int) error) {
		if err := scale.Parallel(ctx, n, workers, fn); err != nil {
			b.Fatalf("creating %s: %v", what, err)
		}
	}
	must("namespaces", len(world.Namespaces), func(i int) error {
		ns := world.Namespaces[i]
		if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			return err
		}
		// No controller-manager makes it, and admission wants it.
		_, err := client.CoreV1().ServiceAccounts(ns.Name).Create(ctx,
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
		return err
	})
	base := netip.MustParseAddr("10.250.100.1")
	must("nodes", nodes, func(i int) error {
		_, err := client.CoreV1().Nodes().Create(ctx, scale.FakeNode(i, base), metav1.CreateOptions{})
		return err
	})
	must("policies", len(world.Policies), func(i int) error {
		np := world.Policies[i]
		_, err := client.NetworkingV1().NetworkPolicies(np.Namespace).Create(ctx, np, metav1.CreateOptions{})
		return err
	})
	list := scaleShapedPods(pods, nodes)
	must("pods", len(list.Items), func(i int) error {
		want := &list.Items[i]
		p := want.DeepCopy()
		p.Status = corev1.PodStatus{}
		p.UID, p.ResourceVersion, p.ManagedFields = "", "", nil
		p.CreationTimestamp = metav1.Time{}
		created, err := client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		created.Status = want.Status
		_, err = client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{})
		return err
	})
	b.Logf("API server filled in %s: %d namespaces, %d nodes, %d policies, %d pods with addresses",
		time.Since(start).Round(time.Millisecond), len(world.Namespaces), nodes, len(world.Policies), pods)
}
