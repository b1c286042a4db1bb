// Package scale fills the test cluster with simulated nodes, pods and NetworkPolicies for
// measuring the agent and the CLI at size (make scale-up; docs/perf.md, "Scale with simulated
// nodes"). The nodes and pods are kwok's (sigs.k8s.io/kwok, run by hack/cluster/scale.sh on the
// host against the real API server): kwok keeps every pod on a fake node Running with a unique
// address from its node's podCIDR, which the controller-manager hands out from the widened
// cluster CIDR. Those addresses are blackholed on the host: no packet ever reaches a fake pod.
//
// The objects are policytest.Synthetic's (namespaces with team/env labels, pods with
// app/tier/version labels and named ports, policies mixing every feature), written through
// the real API server by parallel clients in protobuf.
package scale

import (
	"github.com/kubectl-netpol/kubectl-netpol/internal/kubeclient"

	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/pager"

	"github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

// Labels and taint of the fake nodes. kwok manages the nodes carrying FakeNodeLabel (its
// --manage-nodes-with-label-selector); the taint keeps ordinary workloads off them, and
// RealNodeLabel (set on the real nodes by scale.sh) keeps the agent's DaemonSet on the real
// ones (kubectl netpol install --node-selector), since it tolerates every taint.
const (
	FakeNodeLabel  = "type"
	FakeNodeValue  = "kwok"
	FakeNodeTaint  = "kwok.x-k8s.io/node"
	RealNodeLabel  = "netpol.test/real-node"
	FakeNodePrefix = "kwok-node-"
	// BigNamespace holds the extra pods of Spec.BigNamespacePods (for `matrix` at 1,000 pods).
	BigNamespace = "scale-big"
	// Seed makes every run create the same objects.
	Seed = 16
)

// Spec sizes a scale run.
type Spec struct {
	Nodes, Pods, Policies int
	// BigNamespacePods adds this many pods in BigNamespace (labelled like the others), on
	// top of Pods.
	BigNamespacePods int
	// Workers is the number of parallel writers.
	Workers int
	// NodeAddrBase is the first fake node's InternalIP; the others follow.
	NodeAddrBase netip.Addr
	// Logf reports progress.
	Logf func(format string, args ...any)
}

// Timings are what the creation took.
type Timings struct {
	Nodes, NodeCIDRs, Namespaces, Pods, Policies, Running time.Duration
}

func (t Timings) String() string {
	r := func(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }
	return fmt.Sprintf("nodes %s, podCIDRs %s, namespaces %s, pods %s, policies %s, all Running %s (total %s)",
		r(t.Nodes), r(t.NodeCIDRs), r(t.Namespaces), r(t.Pods), r(t.Policies), r(t.Running),
		r(t.Nodes+t.NodeCIDRs+t.Namespaces+t.Pods+t.Policies+t.Running))
}

// FastConfig is cfg for bulk writes: protobuf and no client-side rate limit (the API server's
// own limits apply).
func FastConfig(cfg *rest.Config) *rest.Config {
	c := kubeclient.Protobuf(cfg)
	c.QPS, c.Burst = -1, 0
	return c
}

// FakeNode is fake node i: realistic labels, a unique InternalIP, the kwok taint.
func FakeNode(i int, base netip.Addr) *corev1.Node {
	name := fmt.Sprintf("%s%04d", FakeNodePrefix, i)
	ip := base
	for range i {
		ip = ip.Next()
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				FakeNodeLabel: FakeNodeValue, "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
				"kubernetes.io/arch": "amd64", "node-role.kubernetes.io/worker": "",
				"topology.kubernetes.io/zone": fmt.Sprintf("zone-%d", i%3),
			},
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
		},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: FakeNodeTaint, Value: "fake", Effect: corev1.TaintEffectNoSchedule}}},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip.String()}, {Type: corev1.NodeHostName, Address: name}},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("256Gi"),
				corev1.ResourcePods: resource.MustParse("1000")},
			Capacity: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("256Gi"),
				corev1.ResourcePods: resource.MustParse("1000")},
		},
	}
}

// FakePod turns a synthetic pod into one kwok runs on node: no status (kwok writes it), the
// kwok toleration, and the node set so that the scheduler is not involved.
func FakePod(p *corev1.Pod, node string) *corev1.Pod {
	p = p.DeepCopy()
	p.Status = corev1.PodStatus{}
	p.Spec.NodeName = node
	p.Spec.Tolerations = []corev1.Toleration{{Key: FakeNodeTaint, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	p.Spec.TerminationGracePeriodSeconds = new(int64)
	return p
}

// Populate creates the fake nodes, namespaces, pods and policies of spec and waits until every
// pod is Running with an address.
func Populate(ctx context.Context, cfg *rest.Config, spec Spec) (Timings, error) {
	var t Timings
	client, err := kubernetes.NewForConfig(FastConfig(cfg))
	if err != nil {
		return t, err
	}
	logf := spec.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	workers := max(1, spec.Workers)
	snap := policytest.Synthetic(spec.Pods, spec.Policies, Seed)
	big := policytest.Synthetic(spec.BigNamespacePods, 0, Seed+1)

	step := func(d *time.Duration, what string, n int, create func(i int) error) error {
		start := time.Now()
		err := Parallel(ctx, n, workers, create)
		*d = time.Since(start)
		logf("%d %s in %s (%.0f/s)", n, what, d.Round(time.Millisecond), float64(n)/max(d.Seconds(), 1e-3))
		return err
	}
	if err := step(&t.Nodes, "fake nodes", spec.Nodes, func(i int) error {
		_, err := client.CoreV1().Nodes().Create(ctx, FakeNode(i, spec.NodeAddrBase), metav1.CreateOptions{})
		return ignoreExists(err)
	}); err != nil {
		return t, fmt.Errorf("creating fake nodes: %w", err)
	}
	// kwok takes a pod's address from its node's podCIDR: wait until the controller-manager has
	// given every fake node one (without, kwok would fall back to one small shared range).
	start := time.Now()
	if err := waitFor(ctx, 2*time.Minute, 2*time.Second, logf, func() (string, bool, error) {
		n := 0
		err := listAll(ctx, func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.LabelSelector = FakeNodeLabel + "=" + FakeNodeValue
			return client.CoreV1().Nodes().List(ctx, opts)
		}, func(obj runtime.Object) {
			if obj.(*corev1.Node).Spec.PodCIDR != "" {
				n++
			}
		})
		return fmt.Sprintf("%d of %d fake nodes have a podCIDR", n, spec.Nodes), n >= spec.Nodes, err
	}); err != nil {
		return t, err
	}
	t.NodeCIDRs = time.Since(start)

	namespaces := append(snap.Namespaces, policytest.Namespace(BigNamespace, "team=team-big", "env=prod"))
	if spec.BigNamespacePods == 0 {
		namespaces = snap.Namespaces
	}
	// The ServiceAccount admission plugin rejects a pod until its namespace's "default"
	// ServiceAccount exists; the controller that makes it lags behind a burst of namespaces:
	// create it along with the namespace (whoever is second finds it there).
	if err := step(&t.Namespaces, "namespaces", len(namespaces), func(i int) error {
		ns := namespaces[i]
		if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); ignoreExists(err) != nil {
			return err
		}
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "default"}}
		_, err := client.CoreV1().ServiceAccounts(ns.Name).Create(ctx, sa, metav1.CreateOptions{})
		return ignoreExists(err)
	}); err != nil {
		return t, fmt.Errorf("creating namespaces: %w", err)
	}
	pods := snap.Pods
	for _, p := range big.Pods {
		p = p.DeepCopy()
		p.Namespace = BigNamespace
		pods = append(pods, p)
	}
	if err := step(&t.Pods, "pods", len(pods), func(i int) error {
		p := FakePod(pods[i], fmt.Sprintf("%s%04d", FakeNodePrefix, i%max(1, spec.Nodes)))
		p.Spec.AutomountServiceAccountToken = new(bool)
		_, err := client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
		return ignoreExists(err)
	}); err != nil {
		return t, fmt.Errorf("creating pods: %w", err)
	}
	if err := step(&t.Policies, "NetworkPolicies", len(snap.Policies), func(i int) error {
		np := snap.Policies[i]
		_, err := client.NetworkingV1().NetworkPolicies(np.Namespace).Create(ctx, np, metav1.CreateOptions{})
		return ignoreExists(err)
	}); err != nil {
		return t, fmt.Errorf("creating NetworkPolicies: %w", err)
	}
	start = time.Now()
	var last PodCensus
	if err := waitFor(ctx, 30*time.Minute, censusEvery(len(pods)), logf, func() (string, bool, error) {
		c, err := CountPods(ctx, client)
		last = c
		return c.String(), c.Running >= len(pods), err
	}); err != nil {
		return t, err
	}
	t.Running = time.Since(start)
	if last.DuplicateIPs > 0 {
		return t, fmt.Errorf("%d pods share an address with another pod (%s)", last.DuplicateIPs, last)
	}
	return t, nil
}

// censusEvery spaces the censuses out with the pod count: listing 100k pods
// costs the API server seconds of CPU, which it should spend on the writes.
func censusEvery(pods int) time.Duration {
	return max(2*time.Second, time.Duration(pods/10000)*time.Second)
}

// PodCensus counts the fake pods.
type PodCensus struct {
	Total, Running, DuplicateIPs int
}

func (c PodCensus) String() string {
	return fmt.Sprintf("%d of %d fake pods Running with an address, %d duplicate addresses", c.Running, c.Total, c.DuplicateIPs)
}

// CountPods lists the pods on fake nodes page by page (no cache of 100k pods) and counts those
// Running with an address, and addresses held by more than one pod.
func CountPods(ctx context.Context, client kubernetes.Interface) (PodCensus, error) {
	var c PodCensus
	seen := map[string]bool{}
	err := listAll(ctx, func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		return client.CoreV1().Pods("").List(ctx, opts)
	}, func(obj runtime.Object) {
		p := obj.(*corev1.Pod)
		if len(p.Spec.NodeName) < len(FakeNodePrefix) || p.Spec.NodeName[:len(FakeNodePrefix)] != FakeNodePrefix {
			return
		}
		c.Total++
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
			return
		}
		c.Running++
		if seen[p.Status.PodIP] {
			c.DuplicateIPs++
		}
		seen[p.Status.PodIP] = true
	})
	return c, err
}

// listAll pages through a list, 5,000 objects a page (never all of 100k pods at once), calling
// each for every item.
func listAll(ctx context.Context, list pager.ListPageFunc, each func(obj runtime.Object)) error {
	p := pager.New(list)
	p.PageSize = 5000
	return p.EachListItem(ctx, metav1.ListOptions{}, func(obj runtime.Object) error {
		each(obj)
		return nil
	})
}

// Parallel runs fn(0..n-1) on workers goroutines; the first error stops it.
func Parallel(ctx context.Context, n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range min(workers, max(n, 1)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		return parent.Err()
	}
	return firstErr
}

func ignoreExists(err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// waitFor polls cond every every until it holds, reporting its state when it changes.
func waitFor(ctx context.Context, timeout, every time.Duration, logf func(string, ...any), cond func() (string, bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := ""
	for {
		state, ok, err := cond()
		if err == nil && ok {
			return nil
		}
		if err != nil {
			state = err.Error()
		}
		if state != last {
			logf("%s", state)
			last = state
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %s: %s", timeout, last)
		case <-time.After(every):
		}
	}
}
