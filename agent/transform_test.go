package agent

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	pt "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

// The datapath compiled from the cache's compact records is the one
// compiled from whole pods: the transform drops nothing policy reads (named
// ports of containers and of sidecar init containers, labels, phase,
// addresses, nodes, hostNetwork), on worlds with ClusterNetworkPolicies,
// several addresses per pod and hostNetwork pods.
func TestTrimForCacheKeepsThePolicyInput(t *testing.T) {
	for _, seed := range []uint64{1, 2} {
		full := pt.Synthetic(600, 150, seed)
		pt.SyntheticCluster(full, 20, seed)
		always := corev1.ContainerRestartPolicyAlways
		for i, p := range full.Pods {
			p.Spec.NodeName = fmt.Sprintf("node-%d", i%3)
			p.Annotations = map[string]string{"big": "manifest"}
			p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
			p.Spec.Containers[0].Image = "registry.example/app:1"
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "b"}}
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
			p.Status.Phase = corev1.PodRunning
			switch i % 7 {
			case 0: // a sidecar serving a named port of its own, and a plain init container's ignored one
				p.Spec.InitContainers = []corev1.Container{{Name: "proxy", RestartPolicy: &always,
					Ports: []corev1.ContainerPort{{Name: "proxy", ContainerPort: 15001, Protocol: corev1.ProtocolTCP}}},
					{Name: "setup", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 1}}}}
			case 1: // dual-stack
				p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: fmt.Sprintf("fd00::%x", i)})
			case 2: // on its node's network
				p.Spec.HostNetwork = true
				p.Status.PodIP, p.Status.PodIPs = fmt.Sprintf("172.31.0.%d", 1+i%3), nil
			case 3: // finished: its address may be another's
				p.Status.Phase = corev1.PodSucceeded
			case 4: // a second container with a named port of the same name (ambiguous)
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "side",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8081}}})
			}
		}
		records := *full
		records.Pods = nil
		for _, p := range full.Pods {
			obj, err := trimForCache(p.DeepCopy())
			if err != nil {
				t.Fatal(err)
			}
			cp := obj.(*CachedPod)
			again, _ := trimForCache(cp)
			if again != any(cp) {
				t.Fatalf("trimForCache is not idempotent: %+v became %+v", cp, again)
			}
			records.PodRecords = append(records.PodRecords, &cp.Pod)
		}
		for _, node := range []string{"node-0", "node-1", "node-2"} {
			want := compileFor(t, full, node)
			got := compileFor(t, &records, node)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d node %s: the datapath from records differs from the one from whole pods", seed, node)
			}
			if len(want.Endpoints) == 0 || len(want.Identities) == 0 {
				t.Fatalf("seed %d node %s: an empty datapath proves nothing", seed, node)
			}
		}
	}
}

func compileFor(t *testing.T, s *policy.Snapshot, node string) *policy.Datapath {
	t.Helper()
	return pt.Compile(t, nil, s, node)
}

func TestTrimForCacheLeavesOtherKindsWhole(t *testing.T) {
	np := pt.Policy("ns", "p", pt.Selecting(pt.Sel("app=a")))
	np.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	np.Annotations = map[string]string{"k": "v", corev1.LastAppliedConfigAnnotation: `{"kind":"NetworkPolicy"}`}
	obj, _ := trimForCache(np)
	got := obj.(interface{ GetAnnotations() map[string]string })
	if np.ManagedFields != nil || got.GetAnnotations()["k"] != "v" || len(got.GetAnnotations()) != 1 {
		t.Errorf("a NetworkPolicy must lose its managedFields and last-applied copy only: %+v", obj)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Annotations: map[string]string{"flannel.alpha.coreos.com/public-ip": "10.0.0.1"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}},
			Images: []corev1.ContainerImage{{Names: []string{"registry.example/app:1"}, SizeBytes: 1 << 20}}}}
	want := node.DeepCopy()
	want.Status.Images = nil
	if obj, _ := trimForCache(node); !reflect.DeepEqual(obj, want) {
		t.Errorf("a Node must lose its images only: %+v", obj)
	}
	if obj, _ := trimForCache(cacheTombstone{}); obj != (cacheTombstone{}) {
		t.Errorf("an object of no known kind must pass through: %v", obj)
	}
}

type cacheTombstone struct{}

// Pod updates that change nothing the cache keeps (a condition, a graceful
// deletion's timestamp) trigger no recompile and no anti-spoofing sync; a
// label or an address does, and OnPodChange hands over the pod.
func TestPodUpdatesInvisibleToTheCacheAreSkipped(t *testing.T) {
	pod := pt.Pod("shop", "web-1", pt.WithLabels("app=web"), pt.WithIP("10.0.0.7"))
	pod.Spec.NodeName = "n1"
	client := fake.NewClientset(pod)
	c := NewCluster(client)
	var mu sync.Mutex
	var changes []string
	if err := c.OnChange(func(kind string) { mu.Lock(); changes = append(changes, kind); mu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	if err := c.OnPodChange(func(p *CachedPod) { mu.Lock(); changes = append(changes, "pod "+p.NodeName); mu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	if !c.Start(stop) {
		t.Fatal("caches did not sync")
	}
	// seen waits for n changes (or, for n = 0, lets 0.5 s pass) and returns them.
	seen := func(n int) []string {
		deadline := time.Now().Add(5 * time.Second)
		if n == 0 {
			deadline = time.Now().Add(500 * time.Millisecond)
		}
		for {
			mu.Lock()
			got := append([]string(nil), changes...)
			mu.Unlock()
			if (n > 0 && len(got) >= n) || time.Now().After(deadline) {
				return got
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if got := seen(2); len(got) != 2 {
		t.Fatalf("initial add: %v, want the pod from both handlers", got)
	}
	mu.Lock()
	changes = nil
	mu.Unlock()
	ctx := context.Background()
	update := func(change func(p *corev1.Pod)) {
		p, err := client.CoreV1().Pods("shop").Get(ctx, "web-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		change(p)
		p.ResourceVersion = ""
		if _, err := client.CoreV1().Pods("shop").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	update(func(p *corev1.Pod) {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
		now := metav1.Now()
		p.DeletionTimestamp = &now
		p.Annotations = map[string]string{"touched": "yes"}
	})
	if got := seen(0); len(got) != 0 {
		t.Fatalf("an update invisible through the cache triggered %v", got)
	}
	update(func(p *corev1.Pod) { p.Labels["tier"] = "front" })
	if got := seen(2); len(got) != 2 || got[0] == got[1] {
		t.Fatalf("a label change: %v, want a pod change and the pod on n1", got)
	}
}
