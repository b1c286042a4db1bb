package policy_test

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

func flannelNode(name, ip, podCIDR string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{
			"flannel.alpha.coreos.com/public-ip":    ip,
			"flannel.alpha.coreos.com/backend-type": "vxlan",
			"flannel.alpha.coreos.com/backend-data": `{"VNI":1,"VtepMAC":"de:ad:be:ef:00:01"}`,
		}},
		Spec: corev1.NodeSpec{PodCIDR: podCIDR, PodCIDRs: []string{podCIDR}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: ip},
			{Type: corev1.NodeHostName, Address: name},
		}},
	}
}

func TestNodeAddressesFlannel(t *testing.T) {
	nodes := []*corev1.Node{
		flannelNode("node-b", "10.250.0.3", "10.244.2.0/24"),
		flannelNode("node-a", "10.250.0.2", "10.244.1.0/24"),
	}
	// A pod holding .1 of node-b's range (a CNI that hands it out) keeps it.
	pods := []*corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "odd"}, Status: corev1.PodStatus{PodIP: "10.244.2.1"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "proxy"}, Spec: corev1.PodSpec{HostNetwork: true},
			Status: corev1.PodStatus{PodIP: "10.250.0.2"}},
	}
	got := policy.NodeAddresses(nodes, policy.PodsHold(pods))
	want := []policy.NodeAddress{
		{IP: netip.MustParseAddr("10.244.1.0"), Node: "node-a", Source: "podCIDR"},
		{IP: netip.MustParseAddr("10.244.1.1"), Node: "node-a", Source: "podCIDR"},
		{IP: netip.MustParseAddr("10.244.2.0"), Node: "node-b", Source: "podCIDR"},
		{IP: netip.MustParseAddr("10.250.0.2"), Node: "node-a", Source: "status"},
		{IP: netip.MustParseAddr("10.250.0.3"), Node: "node-b", Source: "status"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestNodeAddressesAnnotationsAndIPv6(t *testing.T) {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", Annotations: map[string]string{
			"projectcalico.org/IPv4Address":         "192.168.5.7/24",
			"projectcalico.org/IPv4VXLANTunnelAddr": "10.42.7.192",
			"network.cilium.io/ipv4-cilium-host":    "not-an-ip",
		}},
		Spec: corev1.NodeSpec{PodCIDRs: []string{"10.42.0.7/24", "fd00:10:244:1::/64", "garbage"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeExternalIP, Address: "203.0.113.9"},
			{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, // never a node address
		}},
	}
	got := map[string]string{}
	for _, a := range policy.NodeAddresses([]*corev1.Node{n}, nil) {
		got[a.IP.String()] = a.Source
	}
	want := map[string]string{
		"203.0.113.9":      "status",
		"192.168.5.7":      "projectcalico.org/IPv4Address",
		"10.42.7.192":      "projectcalico.org/IPv4VXLANTunnelAddr",
		"10.42.0.0":        "podCIDR", // masked: the range's network address
		"10.42.0.1":        "podCIDR",
		"fd00:10:244:1::":  "podCIDR",
		"fd00:10:244:1::1": "podCIDR",
	}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for ip, src := range want {
		if got[ip] != src {
			t.Errorf("%s: source %q, want %q", ip, got[ip], src)
		}
	}
}

// A host process on node B reaching a pod on node A comes from B's
// flannel.1 address: node traffic, allowed even into an isolated pod, in
// explain (the engine) as in the datapath (Compile's HostIPs).
func TestRemoteFlannelAddressIsNodeTraffic(t *testing.T) {
	nodes := []*corev1.Node{flannelNode("node-a", "10.250.0.2", "10.244.1.0/24"), flannelNode("node-b", "10.250.0.3", "10.244.2.0/24")}
	db := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "db", Labels: map[string]string{"app": "db"}},
		Spec:       corev1.PodSpec{NodeName: "node-a"},
		Status:     corev1.PodStatus{PodIP: "10.244.1.5", PodIPs: []corev1.PodIP{{IP: "10.244.1.5"}}},
	}
	snap := &policy.Snapshot{
		Pods:    []*corev1.Pod{db},
		NodeIPs: policy.NodeIPs(policy.NodeAddresses(nodes, policy.PodsHold([]*corev1.Pod{db}))),
	}
	e, err := policy.NewEngine(snap)
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{"10.244.2.0", "10.244.2.1", "10.250.0.3"} {
		if !e.IsNodeIP(netip.MustParseAddr(src)) {
			t.Errorf("%s is not node traffic", src)
		}
	}
	if e.IsNodeIP(netip.MustParseAddr("10.244.1.5")) {
		t.Error("the pod's address became node traffic")
	}
	dp, err := e.Compile("node-a")
	if err != nil {
		t.Fatal(err)
	}
	host := map[netip.Addr]bool{}
	for _, ip := range dp.HostIPs {
		host[ip] = true
	}
	for _, ip := range snap.NodeIPs {
		if !host[ip] {
			t.Errorf("Compile: %s not among HostIPs %v", ip, dp.HostIPs)
		}
	}
}

// 1,000 nodes and 100,000 pods: NodeAddresses runs on every policy apply
// (the agent answers podHolds from its informer's index, as held does here).
func BenchmarkNodeAddresses(b *testing.B) {
	var nodes []*corev1.Node
	var pods []*corev1.Pod
	for i := range 1000 {
		pfx := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)
		nodes = append(nodes, flannelNode("n"+string(rune('a'+i%26))+netip.AddrFrom4([4]byte{0, 0, byte(i >> 8), byte(i)}).String(),
			netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)}).String(), pfx.String()))
		for j := range 100 {
			pods = append(pods, &corev1.Pod{Status: corev1.PodStatus{PodIP: netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), byte(j + 2)}).String()}})
		}
	}
	b.ResetTimer()
	for b.Loop() {
		if n := len(policy.NodeAddresses(nodes, policy.PodsHold(pods))); n != 3000 {
			b.Fatalf("%d addresses", n)
		}
	}
}

func TestSameNodeForPolicy(t *testing.T) {
	a := flannelNode("n1", "10.250.0.2", "10.244.1.0/24")
	b := a.DeepCopy()
	b.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	b.Annotations["node.alpha.kubernetes.io/ttl"] = "0"
	if !policy.SameNodeForPolicy(a, b) {
		t.Error("a status or unrelated annotation change counts as an address change")
	}
	for name, change := range map[string]func(*corev1.Node){
		"podCIDRs": func(n *corev1.Node) { n.Spec.PodCIDRs = []string{"10.244.9.0/24"} },
		"address":  func(n *corev1.Node) { n.Status.Addresses[0].Address = "10.250.0.9" },
		"flannel":  func(n *corev1.Node) { n.Annotations["flannel.alpha.coreos.com/public-ip"] = "10.250.0.9" },
		"new cidr": func(n *corev1.Node) { n.Spec.PodCIDR = "" },
	} {
		c := a.DeepCopy()
		change(c)
		if policy.SameNodeForPolicy(a, c) {
			t.Errorf("%s change not seen", name)
		}
	}
}

// TestNodeAddressesThroughCache: an Engine built through a Cache whose pods
// are the last build's answers "does a pod hold this address" from the kept
// pod index, and must give what a fresh Engine gives: a derived address a
// pod holds is that pod's, and one a pod gave up becomes the node's again.
func TestNodeAddressesThroughCache(t *testing.T) {
	nodes := []*corev1.Node{
		flannelNode("node-b", "10.250.0.3", "10.244.2.0/24"),
		flannelNode("node-a", "10.250.0.2", "10.244.1.0/24"),
	}
	odd := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "odd", ResourceVersion: "1"},
		Status: corev1.PodStatus{PodIP: "10.244.2.1", PodIPs: []corev1.PodIP{{IP: "10.244.2.1"}}}}
	proxy := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "proxy", ResourceVersion: "2"},
		Spec: corev1.PodSpec{HostNetwork: true}, Status: corev1.PodStatus{PodIP: "10.244.1.1", PodIPs: []corev1.PodIP{{IP: "10.244.1.1"}}}}
	nss := []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "x", ResourceVersion: "3"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "kube-system", ResourceVersion: "4"}}}
	c := policy.NewCache()
	check := func(what string, s *policy.Snapshot, node, pod []string) {
		t.Helper()
		fresh, err := policy.NewEngine(s)
		if err != nil {
			t.Fatal(err)
		}
		cached, err := policy.NewEngineCached(s, c)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range []*policy.Engine{fresh, cached} {
			for _, ip := range node {
				if !e.IsNodeIP(netip.MustParseAddr(ip)) {
					t.Errorf("%s: %s is not a node address", what, ip)
				}
			}
			for _, ip := range pod {
				if e.IsNodeIP(netip.MustParseAddr(ip)) {
					t.Errorf("%s: %s, a pod's, is a node address", what, ip)
				}
			}
		}
	}
	s := &policy.Snapshot{Nodes: nodes, Namespaces: nss, Pods: []*corev1.Pod{odd, proxy}}
	// The first build makes the pod index, the second answers from it.
	check("first build", s, []string{"10.244.1.0", "10.244.1.1", "10.244.2.0"}, []string{"10.244.2.1"})
	check("same pods", s, []string{"10.244.1.0", "10.244.1.1", "10.244.2.0"}, []string{"10.244.2.1"})
	gone := &policy.Snapshot{Nodes: nodes, Namespaces: nss, Pods: []*corev1.Pod{proxy}}
	check("the pod gone", gone, []string{"10.244.1.0", "10.244.1.1", "10.244.2.0", "10.244.2.1"}, nil)
	check("the pod gone, again", gone, []string{"10.244.1.0", "10.244.1.1", "10.244.2.0", "10.244.2.1"}, nil)
}
