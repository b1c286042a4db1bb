package agent

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubectl-netpol/kubectl-netpol/internal/snapshot"
	pt "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

func startCluster(t *testing.T, objs ...runtime.Object) *Cluster {
	t.Helper()
	client := fake.NewClientset(objs...)
	c := NewCluster(client)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	if !c.Start(stop) {
		t.Fatal("caches did not sync")
	}
	return c
}

func TestClusterLookups(t *testing.T) {
	running := pt.Pod("shop", "db-7d9f-abcde", pt.WithLabels("app=db", "pod-template-hash=7d9f"), pt.WithIP("10.0.0.5"))
	yes := true
	running.OwnerReferences = []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "db-7d9f", Controller: &yes}}
	running.Status.Phase = corev1.PodRunning
	// A finished pod keeps the address in its status for a while.
	done := pt.Pod("shop", "old", pt.WithIP("10.0.0.5"))
	done.Status.Phase = corev1.PodSucceeded
	host := pt.Pod("kube-system", "proxy", pt.HostNetwork(), pt.WithIP("192.168.1.10"))
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.20", ClusterIPs: []string{"10.96.0.20"}}}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.1.10"}, {Type: corev1.NodeHostName, Address: "n1"}}}}
	c := startCluster(t, running, done, host, svc, node, pt.Namespace("shop"), pt.Policy("shop", "p"))

	if p := c.PodByIP(netip.MustParseAddr("10.0.0.5")); p == nil || p.Name != running.Name {
		t.Errorf("PodByIP chose %v, want the running pod", p)
	} else if p.WorkloadKind != "Deployment" || p.WorkloadName != "db" {
		t.Errorf("the cached pod names workload %s/%s, want Deployment/db", p.WorkloadKind, p.WorkloadName)
	}
	if p := c.PodByIP(netip.MustParseAddr("192.168.1.10")); p != nil {
		t.Errorf("a hostNetwork pod must not own its node's address, got %s", p.Name)
	}
	if s := c.ServiceByIP(netip.MustParseAddr("10.96.0.20")); s == nil || s.Name != "db" {
		t.Errorf("ServiceByIP = %v", s)
	}
	if kind, name := Workload(running); kind != "Deployment" || name != "db" {
		t.Errorf("Workload = %s/%s, want Deployment/db", kind, name)
	}
	c.SetLocalAddresses([]netip.Addr{netip.MustParseAddr("10.244.0.1")})
	snap, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Pods) != 0 || len(snap.PodRecords) != 3 || len(snap.Policies) != 1 || len(snap.Namespaces) != 1 {
		t.Errorf("snapshot has %d pods, %d pod records, %d policies, %d namespaces, want the pods as records only", len(snap.Pods), len(snap.PodRecords), len(snap.Policies), len(snap.Namespaces))
	}
	want := []netip.Addr{netip.MustParseAddr("192.168.1.10"), netip.MustParseAddr("10.244.0.1")}
	if len(snap.NodeIPs) != 2 || snap.NodeIPs[0] != want[0] || snap.NodeIPs[1] != want[1] {
		t.Errorf("node IPs %v, want %v (InternalIP, then local addresses)", snap.NodeIPs, want)
	}
}

// The agent removes its datapath only when its DaemonSet is going away.
func TestUninstallRequested(t *testing.T) {
	yes := true
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "netpol-system", Name: "agent-x",
		OwnerReferences: []metav1.OwnerReference{{Kind: "DaemonSet", Name: "netpol-agent", UID: "uid-1", Controller: &yes}}}}
	ds := func(uid types.UID, deleting bool) *appsv1.DaemonSet {
		d := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "netpol-system", Name: "netpol-agent", UID: uid}}
		if deleting {
			now := metav1.NewTime(time.Now())
			d.DeletionTimestamp = &now
		}
		return d
	}
	for _, tc := range []struct {
		name string
		objs []runtime.Object
		want bool
	}{
		{"restart or rolling upgrade: DaemonSet in place", []runtime.Object{pod, ds("uid-1", false)}, false},
		{"uninstall: DaemonSet being deleted (foreground)", []runtime.Object{pod, ds("uid-1", true)}, true},
		{"uninstall: DaemonSet gone (background)", []runtime.Object{pod}, true},
		{"re-installed meanwhile: the new install keeps the pins", []runtime.Object{pod, ds("uid-2", false)}, false},
		{"own pod unreadable: keep enforcing", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset(tc.objs...)
			if got := UninstallRequested(client, "netpol-system", "agent-x")(context.Background()); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// Every node's addresses are host on every node: the agent's snapshot and
// the CLI's (explain) derive the same set with policy.NodeAddresses, and
// flows name the node that owns an address.
func TestClusterNodeAddressesAllNodes(t *testing.T) {
	node := func(name, ip, cidr string) *corev1.Node {
		return &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{"flannel.alpha.coreos.com/public-ip": ip}},
			Spec:       corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}},
			Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}},
		}
	}
	a, b := node("node-a", "10.250.0.2", "10.244.1.0/24"), node("node-b", "10.250.0.3", "10.244.2.0/24")
	web := pt.Pod("shop", "web", pt.WithIP("10.244.2.7"))
	c := startCluster(t, a, b, web)
	c.SetLocalAddresses([]netip.Addr{netip.MustParseAddr("10.244.1.0"), netip.MustParseAddr("192.0.2.1")})
	snap, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	cli := (&snapshot.Set{Nodes: []*corev1.Node{a, b}, Pods: []*corev1.Pod{web}}).Snapshot()
	got := map[netip.Addr]bool{}
	for _, ip := range snap.NodeIPs {
		got[ip] = true
	}
	for _, ip := range cli.NodeIPs {
		if !got[ip] {
			t.Errorf("explain treats %s as a node, the agent does not", ip)
		}
		delete(got, ip)
	}
	if len(got) != 1 || !got[netip.MustParseAddr("192.0.2.1")] {
		t.Errorf("agent-only node addresses %v, want only the local 192.0.2.1", got)
	}
	for ip, want := range map[string]string{"10.244.2.0": "node-b", "10.244.2.1": "node-b", "10.250.0.2": "node-a", "10.244.1.1": "node-a", "192.0.2.1": ""} {
		if name, ok := c.NodeByIP(netip.MustParseAddr(ip)); !ok || name != want {
			t.Errorf("NodeByIP(%s) = %q, %v; want %q", ip, name, ok, want)
		}
	}
	if _, ok := c.NodeByIP(netip.MustParseAddr("10.244.2.7")); ok {
		t.Error("a pod's address is a node address")
	}
}

// TestPodRecordsInOrder: the Snapshot's records come in creation order
// whatever order the store lists them in, sequence numbers past 2^16 and
// 2^32 included, each once.
func TestPodRecordsInOrder(t *testing.T) {
	seqs := []uint64{1, 2, 65535, 65536, 65537, 1 << 32, 1<<32 + 5, 3<<40 + 7, 12345678}
	pods := make([]*CachedPod, len(seqs))
	for i, s := range seqs {
		pods[i] = &CachedPod{seq: s}
		pods[i].Name = fmt.Sprint(s)
	}
	for round := range 20 {
		rand.Shuffle(len(pods), func(i, j int) { pods[i], pods[j] = pods[j], pods[i] })
		got := podRecordsInOrder(pods)
		want := slices.Clone(seqs)
		slices.Sort(want)
		if len(got) != len(want) {
			t.Fatalf("round %d: %d records, want %d", round, len(got), len(want))
		}
		for i, r := range got {
			if r.Name != fmt.Sprint(want[i]) {
				t.Fatalf("round %d: record %d is %s, want %d", round, i, r.Name, want[i])
			}
		}
	}
}

// TestSnapshotPodRecordsFollowPodChanges checks the Snapshots' shared pod
// list: Snapshots with no pod change in between give the same records, and
// a Snapshot taken once the agent has heard of a pod's add, update or
// delete (OnChange, which enqueues its apply) shows it.
func TestSnapshotPodRecordsFollowPodChanges(t *testing.T) {
	a := pt.Pod("shop", "a", pt.WithLabels("app=a"), pt.WithIP("10.0.0.1"))
	b := pt.Pod("shop", "b", pt.WithLabels("app=b"), pt.WithIP("10.0.0.2"))
	client := fake.NewClientset(a, b, pt.Namespace("shop"))
	c := NewCluster(client)
	heard := make(chan string, 16)
	if err := c.OnChange(func(kind string) {
		if kind == "pod" {
			heard <- kind
		}
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	if !c.Start(stop) {
		t.Fatal("caches did not sync")
	}
	for range 2 {
		<-heard // the initial adds
	}
	records := func() map[string]string {
		t.Helper()
		snap, err := c.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, r := range snap.PodRecords {
			out[r.Name] = r.Labels["app"]
		}
		return out
	}
	first, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(first.PodRecords) != 2 || &first.PodRecords[0] != &again.PodRecords[0] {
		t.Fatalf("two Snapshots with no pod change between them: %d records, shared %v", len(first.PodRecords), &first.PodRecords[0] == &again.PodRecords[0])
	}
	ctx := context.Background()
	wait := func(what string) {
		t.Helper()
		select {
		case <-heard:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no change heard", what)
		}
	}
	if _, err := client.CoreV1().Pods("shop").Create(ctx, pt.Pod("shop", "c", pt.WithLabels("app=c"), pt.WithIP("10.0.0.3")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("create")
	if got := records(); got["c"] != "c" || len(got) != 3 {
		t.Fatalf("after a create: %v", got)
	}
	upd := b.DeepCopy()
	upd.Labels = map[string]string{"app": "b2"}
	if _, err := client.CoreV1().Pods("shop").Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("update")
	if got := records(); got["b"] != "b2" {
		t.Fatalf("after an update: %v", got)
	}
	if err := client.CoreV1().Pods("shop").Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("delete")
	if got := records(); len(got) != 2 || got["a"] != "" {
		t.Fatalf("after a delete: %v", got)
	}
}
