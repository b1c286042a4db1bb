//go:build linux

package agent

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	pt "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
	"github.com/kubectl-netpol/kubectl-netpol/probe"
)

const benchNode = "bench-node"

// benchAgent builds an agent over a fake clientset holding a synthetic
// cluster (100 of its pods on this node), with its datapath loaded under a
// throw-away pin root and attached in a network namespace of its own, so
// nothing on the host changes. The informers are started and synced.
func benchAgent(b *testing.B, pods, policies int) (*Agent, *fake.Clientset) {
	b.Helper()
	return benchAgentOn(b, pt.Synthetic(pods, policies, 1))
}

// simpleCluster is the shape of the peers' benchmarks (kube-router's 1000
// policies): 50 namespaces of 100 pods, each policy admitting one app from
// another app of its namespace on one TCP port.
func simpleCluster(pods, policies int) *policy.Snapshot {
	s := &policy.Snapshot{}
	const namespaces = 50
	for i := range namespaces {
		s.Namespaces = append(s.Namespaces, pt.Namespace(fmt.Sprintf("ns-%02d", i)))
	}
	for i := range pods {
		s.Pods = append(s.Pods, pt.Pod(fmt.Sprintf("ns-%02d", i%namespaces), fmt.Sprintf("pod-%d", i),
			pt.WithLabels(fmt.Sprintf("app=app-%d", (i/namespaces)%20)),
			pt.WithIP(fmt.Sprintf("10.%d.%d.%d", 128+(i>>16)&127, (i>>8)&255, i&255))))
	}
	for i := range policies {
		s.Policies = append(s.Policies, pt.Policy(fmt.Sprintf("ns-%02d", i%namespaces), fmt.Sprintf("allow-%d", i),
			pt.Selecting(pt.Sel(fmt.Sprintf("app=app-%d", i%20))),
			pt.IngressRule(pt.Peers(pt.PodPeer(pt.Sel(fmt.Sprintf("app=app-%d", (i+1)%20)))), pt.Port(corev1.ProtocolTCP, int32(1000+i)))))
	}
	return s
}

func benchAgentOn(b *testing.B, snap *policy.Snapshot) (*Agent, *fake.Clientset) {
	b.Helper()
	pods := len(snap.Pods)
	requireRoot(b)
	var objs []k8sruntime.Object
	for _, ns := range snap.Namespaces {
		objs = append(objs, withVersion(ns))
	}
	local := benchSize("NETPOL_BENCH_LOCAL", 100)
	for i, p := range snap.Pods {
		if i%max(1, pods/local) == 0 {
			p.Spec.NodeName = benchNode
		}
		objs = append(objs, withVersion(p))
	}
	for _, p := range snap.Policies {
		objs = append(objs, withVersion(p))
	}
	// Nodes as a cluster of that size has them (NETPOL_BENCH_NODES, one per
	// 100 pods by default, like the scale cluster): each an InternalIP and
	// a podCIDR, whose derived addresses every Engine build weighs against
	// the pods' (policy.NodeAddresses).
	for i := range benchSize("NETPOL_BENCH_NODES", max(1, pods/100)) {
		objs = append(objs, withVersion(&corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-node-%04d", i), Labels: map[string]string{"type": "bench"}},
			Spec:       corev1.NodeSpec{PodCIDR: fmt.Sprintf("10.%d.%d.0/24", 160+i/256, i%256), PodCIDRs: []string{fmt.Sprintf("10.%d.%d.0/24", 160+i/256, i%256)}},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.250.%d.%d", 100+i/250, 1+i%250)}}},
		}))
	}
	client := fake.NewClientset(objs...)
	a, closeAgent := newBenchAgent(b, client, benchNode)
	stop := make(chan struct{})
	b.Cleanup(func() {
		close(stop)
		closeAgent()
	})
	if !a.cluster.Start(stop) {
		b.Fatal("informer caches did not sync")
	}
	return a, client
}

// requireRoot skips a benchmark that needs root (BPF, network namespaces),
// or fails it in CI.
func requireRoot(b *testing.B) {
	b.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			b.Fatal("CI is set but the agent benchmarks need root (BPF, network namespaces)")
		}
		b.Skip("needs root (BPF, network namespaces)")
	}
}

// newBenchAgent builds an agent on node over client, its datapath loaded
// under a throw-away pin root and attached in a network namespace of its
// own, so nothing on the host changes; its informers are not started.
// closeAgent stops its queue and removes the datapath and the namespace.
func newBenchAgent(b *testing.B, client kubernetes.Interface, node string) (a *Agent, closeAgent func()) {
	b.Helper()
	pinRoot := fmt.Sprintf("/sys/fs/bpf/netpol-agent-bench-%d", os.Getpid())
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		b.Fatal(err)
	}
	ns, err := netns.New() // creates and enters a namespace of its own
	if err != nil {
		b.Fatal(err)
	}
	a, err = New(Config{Client: client, NodeName: node, PinRoot: pinRoot, Datapath: probe.DefaultConfig})
	if serr := netns.Set(orig); serr != nil {
		b.Fatalf("returning to the original network namespace: %v", serr)
	}
	runtime.UnlockOSThread()
	orig.Close()
	if err != nil {
		ns.Close()
		b.Fatal(err)
	}
	return a, func() {
		a.queue.ShutDown()
		if err := a.probe.Uninstall(); err != nil {
			b.Errorf("uninstall: %v", err)
		}
		ns.Close()
		os.RemoveAll(pinRoot)
	}
}

var benchVersion atomic.Int64

// withVersion gives obj a resourceVersion as the API server would: the
// fake clientset keeps none on the objects it serves, and the agent's
// policy.Cache reuses only what carries one.
func withVersion[T metav1.Object](obj T) T {
	obj.SetResourceVersion(strconv.FormatInt(benchVersion.Add(1), 10))
	return obj
}

func heapMiB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse) / (1 << 20)
}

// BenchmarkCompileApply is a full recompile of the node from the informer
// caches and a diff-only Apply, at 10k pods and 2k policies; the first
// Apply (every map entry written) and the heap holding the caches and the
// datapath are reported as metrics.
func BenchmarkCompileApply(b *testing.B) {
	a, _ := benchAgent(b, 10000, 2000)
	start := time.Now()
	if err := a.apply(); err != nil {
		b.Fatal(err)
	}
	first := time.Since(start)
	heap := heapMiB()
	b.ResetTimer()
	for b.Loop() {
		if err := a.apply(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(first.Microseconds())/1000, "first-apply-ms")
	b.ReportMetric(heap, "heap-MiB")
	entries := 0
	for _, ep := range a.probe.Applied().Endpoints {
		entries += len(ep.Ingress.Entries) + len(ep.Egress.Entries)
	}
	b.ReportMetric(float64(entries), "entries")
	b.ReportMetric(float64(len(a.probe.Applied().Endpoints)), "endpoints")
}

// BenchmarkPolicyChangeEnforced measures, with 5k pods and 1k policies in
// the caches (synthetic: policytest.Synthetic, every feature and dense
// selectors; simple: simpleCluster), the time from a NetworkPolicy being written to the API (the
// fake clientset's watch) until the datapath enforces it: informer, queue,
// compile, map updates. Reported as p50/p99 over the iterations.
//
// NETPOL_BENCH_PODS, NETPOL_BENCH_POLICIES and NETPOL_BENCH_LOCAL (the pods
// on this node, default 100) change the size, e.g. 100000, 10000 and 30 for
// a node of a large cluster.
func BenchmarkPolicyChangeEnforced(b *testing.B) {
	pods, policies := benchSize("NETPOL_BENCH_PODS", 5000), benchSize("NETPOL_BENCH_POLICIES", 1000)
	b.Run("synthetic", func(b *testing.B) { policyChangeEnforced(b, pt.Synthetic(pods, policies, 1)) })
	b.Run("simple", func(b *testing.B) { policyChangeEnforced(b, simpleCluster(pods, policies)) })
}

// benchSize is the positive integer in the environment variable name, or def.
func benchSize(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func policyChangeEnforced(b *testing.B, snap *policy.Snapshot) {
	a, client := benchAgentOn(b, snap)
	go func() {
		for a.processNext() {
		}
	}()
	a.enqueue()
	waitApplied(b, a, time.Time{})
	// Each change selects the pods of this node's first namespace.
	local := ""
	for _, p := range mustList(b, client) {
		if p.Spec.NodeName == benchNode {
			local = p.Namespace
			break
		}
	}
	var lat []time.Duration
	i := 0
	cpu0 := processCPU(b)
	for b.Loop() {
		i++
		pol := pt.Policy(local, fmt.Sprintf("bench-change-%d", i), pt.Selecting(pt.Sel()),
			pt.IngressRule(pt.Peers(pt.PodPeer(pt.Sel(fmt.Sprintf("app=app-%d", i%10)))), pt.Port(corev1.ProtocolTCP, int32(1000+i%5000))))
		start := time.Now()
		if _, err := client.NetworkingV1().NetworkPolicies(local).Create(context.Background(), withVersion(pol), metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		waitApplied(b, a, start)
		lat = append(lat, time.Since(start))
	}
	cpu := processCPU(b) - cpu0
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	// The whole process: the fake API server and informers, the compile,
	// the map writes and the garbage collector.
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(len(lat)), "cpu-ms/change")
	st := a.policyCache.Stats()
	b.ReportMetric(float64(st.Hits)/float64(max(1, st.Hits+st.Misses)), "cache-hit-ratio")
	b.ReportMetric(float64(st.IdentitiesReused)/float64(max(1, st.IdentitiesReused+st.IdentitiesBuilt)), "idents-reused-ratio")
}

// processCPU is the user plus system CPU time of this process so far.
func processCPU(b *testing.B) time.Duration {
	user, sys := processUserSys(b)
	return user + sys
}

// processUserSys is the user and the system CPU time of this process so far.
func processUserSys(b *testing.B) (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

func mustList(b *testing.B, client *fake.Clientset) []corev1.Pod {
	l, err := client.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return l.Items
}

// waitApplied waits until an Apply that began after since has finished.
func waitApplied(b *testing.B, a *Agent, since time.Time) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		a.mu.Lock()
		started, err := a.applyStart, a.lastErr
		a.mu.Unlock()
		if started.After(since) {
			if err != "" {
				b.Fatal(err)
			}
			return
		}
		time.Sleep(50 * time.Microsecond)
	}
	b.Fatal("the change was not applied within 30 s")
}
