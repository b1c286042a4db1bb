package agent

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	pt "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
	"github.com/kubectl-netpol/kubectl-netpol/test/scale"
)

// BenchmarkPodCache is the agent's memory at the scale harness's sizes
// without a cluster (issue 16): the pods of `make scale-up` (Synthetic,
// made fake by scale.FakePod, with the status, owner and metadata kwok and
// the API server give them) go through the agent's real store path (the
// pod informer's list, the transform, the indexer with the agent's
// indexers), then the agent's Snapshot, the engine and Compile for one
// fake node. It reports the live heap after GC that the caches hold (the
// list's objects are freshly made and dropped, as decoded ones are) per
// pod, and that with the agent's policy.Cache after the first compile (the
// datapath, the node's, apart); the timed
// loop is the first Snapshot + engine + Compile (a cold policy.Cache each
// time). NETPOL_PODCACHE_HEAP=file writes a heap profile after the first
// compile. NETPOL_PODCACHE_PODS sets the size (default 100000, with one
// fake node per 100 pods and one policy per 10).
func BenchmarkPodCache(b *testing.B) {
	pods := 100000
	if v := os.Getenv("NETPOL_PODCACHE_PODS"); v != "" {
		var err error
		if pods, err = strconv.Atoi(v); err != nil {
			b.Fatalf("NETPOL_PODCACHE_PODS=%q: %v", v, err)
		}
	}
	nodes, policies := max(1, pods/100), pods/10
	world := pt.Synthetic(pods, policies, scale.Seed) // the harness's objects
	world.Pods = nil                                  // made afresh by the list below
	var objs []k8sruntime.Object
	for _, ns := range world.Namespaces {
		objs = append(objs, ns)
	}
	for _, np := range world.Policies {
		objs = append(objs, np)
	}
	base := netip.MustParseAddr("10.250.100.1")
	for i := range nodes {
		objs = append(objs, scale.FakeNode(i, base))
	}
	client := fake.NewClientset(objs...)
	// The pods are made when the informer lists them, so that nothing but
	// the cache keeps them (the clientset's tracker would keep them whole).
	client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
		return true, scaleShapedPods(pods, nodes), nil
	})

	var before, synced, compiled, kept runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := NewCluster(client)
	stop := make(chan struct{})
	defer close(stop)
	start := time.Now()
	if !c.Start(stop) {
		b.Fatal("caches did not sync")
	}
	syncTime := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&synced)

	node := fmt.Sprintf("%s%04d", scale.FakeNodePrefix, 0)
	cache := policy.NewCache()
	first := func(cache *policy.Cache) *policy.Datapath {
		snap, err := c.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		e, err := policy.NewEngineCached(snap, cache)
		if err != nil {
			b.Fatal(err)
		}
		dp, err := e.Compile(node)
		if err != nil {
			b.Fatal(err)
		}
		return dp
	}
	dp := first(cache)
	if len(dp.Endpoints) == 0 {
		b.Fatalf("node %s has no endpoints: the benchmark measures nothing", node)
	}
	runtime.GC()
	runtime.ReadMemStats(&compiled)
	if path := os.Getenv("NETPOL_PODCACHE_HEAP"); path != "" { // what the heap holds now
		writeHeapProfile(b, path)
	}
	endpoints, identities := len(dp.Endpoints), len(dp.Identities)
	dp = nil // what stays between changes: the caches (the datapath is the node's, not per pod)
	runtime.GC()
	runtime.ReadMemStats(&kept)
	runtime.KeepAlive(cache)

	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	for b.Loop() {
		first(policy.NewCache())
	}
	b.StopTimer()
	// CPU time, GC included: steadier than wall time on a shared machine.
	b.ReportMetric((processCPU(b)-cpu0).Seconds()/float64(b.N), "cpu-s/op")
	mb := func(a, b *runtime.MemStats) float64 { return float64(int64(a.HeapAlloc)-int64(b.HeapAlloc)) / 1e6 }
	b.ReportMetric(mb(&synced, &before)*1e6/float64(pods), "B/pod-informers")
	b.ReportMetric(mb(&kept, &before)*1e6/float64(pods), "B/pod-kept")
	b.ReportMetric(mb(&kept, &before), "MB-kept")
	b.ReportMetric(syncTime.Seconds(), "s-sync")
	b.Logf("%d pods, %d policies, %d fake nodes: informer caches %.0f MB (%.0f B/pod), + policy.Cache %.0f MB = %.0f MB kept (%.0f B/pod); the datapath of %s (%d endpoints, %d identities) %.0f MB; sync %s",
		pods, policies, nodes, mb(&synced, &before), mb(&synced, &before)*1e6/float64(pods),
		mb(&kept, &synced), mb(&kept, &before), mb(&kept, &before)*1e6/float64(pods),
		node, endpoints, identities, mb(&compiled, &kept), syncTime.Round(time.Millisecond))
}

// scaleShapedPods are the pods of `make scale-up` with n pods as the API
// server lists them once kwok runs them: metadata (uid, resourceVersion,
// creation time, managedFields, a ReplicaSet owner), the fake node's spec
// and kwok's status (conditions, a container status, host and pod IPs).
func scaleShapedPods(n, nodes int) *corev1.PodList {
	yes := true
	now := metav1.Now()
	list := &corev1.PodList{}
	for i, p := range pt.Synthetic(n, 0, scale.Seed).Pods {
		p = scale.FakePod(p, fmt.Sprintf("%s%04d", scale.FakeNodePrefix, i%nodes))
		p.UID = types.UID(fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i))
		p.ResourceVersion = strconv.Itoa(1000 + i)
		p.CreationTimestamp = now
		p.ManagedFields = []metav1.ManagedFieldsEntry{
			{Manager: "load", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &now, FieldsType: "FieldsV1",
				FieldsV1: metav1.NewFieldsV1(`{"f:metadata":{"f:labels":{}},"f:spec":{"f:containers":{}}}`)},
			{Manager: "kwok", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &now, FieldsType: "FieldsV1",
				FieldsV1: metav1.NewFieldsV1(`{"f:status":{"f:conditions":{},"f:podIP":{},"f:podIPs":{}}}`), Subresource: "status"},
		}
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet",
			Name: p.Labels["app"] + "-7d9f8c", UID: types.UID(fmt.Sprintf("rs-%d", i/10)), Controller: &yes}}
		p.Spec.DNSPolicy, p.Spec.RestartPolicy, p.Spec.SchedulerName = corev1.DNSClusterFirst, corev1.RestartPolicyAlways, "default-scheduler"
		p.Spec.ServiceAccountName = "default"
		ip := fmt.Sprintf("10.%d.%d.%d", 128+(i>>16)&127, (i>>8)&255, i&255)
		p.Status = corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			HostIP: "10.250.100.1", HostIPs: []corev1.HostIP{{IP: "10.250.100.1"}}, StartTime: &now,
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "c", Image: "pause", Ready: true,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}},
		}
		list.Items = append(list.Items, *p)
	}
	return list
}

// writeHeapProfile writes the heap's profile to path (a benchmark's
// NETPOL_*_HEAP).
func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		b.Fatal(err)
	}
}
