package policy_test

import (
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	. "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

func TestBuildingBlocks(t *testing.T) {
	s := world()
	s.Policies = []*networkingv1.NetworkPolicy{
		Policy("x", "both", Selecting(Sel("app=a")), both,
			IngressRule(Peers(PodPeer(Sel("app=b")), IPPeer("10.10.0.0/16", "10.10.1.0/24")), NamedPort("http", ""), PortRange(udp, 50, 60)),
			EgressRule(Peers(NSPeer(Sel())), NamedPort("web", tcp), ProtoOnly(sctp))),
		Policy("x", "egress-ignored", Selecting(Sel("app=a")), Types(networkingv1.PolicyTypeIngress), EgressRule(nil)),
		Policy("x", "deny-b"),
	}
	e, err := policy.NewEngine(s)
	if err != nil {
		t.Fatal(err)
	}
	pod := func(ref string) *corev1.Pod { return peer(t, s, ref).Pod }
	ref := func(name string) policy.PolicyRef {
		return policy.PolicyRef{Kind: "NetworkPolicy", Namespace: "x", Name: name}
	}
	in := policy.RuleRef{Policy: ref("both"), Direction: policy.Ingress}
	out := policy.RuleRef{Policy: ref("both"), Direction: policy.Egress}

	if got := e.SelectingPolicies(pod("x/a"), policy.Ingress); !slices.Equal(got, []policy.PolicyRef{ref("both"), ref("deny-b"), ref("egress-ignored")}) {
		t.Errorf("ingress selecting x/a: %v", got)
	}
	if got := e.SelectingPolicies(pod("x/a"), policy.Egress); !slices.Equal(got, []policy.PolicyRef{ref("both")}) {
		t.Errorf("egress selecting x/a: %v", got)
	}
	if got := e.SelectingPolicies(pod("kube-system/h"), policy.Ingress); got != nil {
		t.Errorf("hostNetwork pod selected by %v", got)
	}
	if e.Isolates(ref("egress-ignored"), policy.Egress) || e.RuleCount(ref("egress-ignored"), policy.Egress) != 0 {
		t.Error("egress rules of an Ingress-only policy must not take effect")
	}
	if n := e.RuleCount(ref("deny-b"), policy.Ingress); n != 0 || !e.Isolates(ref("deny-b"), policy.Ingress) {
		t.Errorf("deny-b: %d rules, isolates=%v", n, e.Isolates(ref("deny-b"), policy.Ingress))
	}
	if peers, ports, allPeers, allPorts, ok := e.RuleShape(in); !ok || peers != 2 || ports != 2 || allPeers || allPorts {
		t.Errorf("RuleShape(ingress 0) = %d %d %v %v %v", peers, ports, allPeers, allPorts, ok)
	}

	peerCases := []struct {
		rule policy.RuleRef
		i    int
		p    string
		want bool
	}{
		{in, 0, "x/b", true}, {in, 0, "y/b", false}, {in, 0, "10.10.0.2", true}, {in, 0, "kube-system/h2", false},
		{in, 1, "x/b", true}, {in, 1, "y/a", false}, {in, 1, "10.10.200.1", true}, {in, 1, "x/noip", false},
		{out, 0, "w/d", true}, {out, 0, "192.0.2.1", false}, {in, 5, "x/b", false},
	}
	for _, c := range peerCases {
		if got := e.PeerMatches(c.rule, c.i, peer(t, s, c.p)); got != c.want {
			t.Errorf("PeerMatches(%s %d, peer %d, %s) = %v", c.rule.Direction, c.rule.Index, c.i, c.p, got)
		}
	}
	if cidr, except, ok := e.PeerIPBlock(in, 1); !ok || cidr != netip.MustParsePrefix("10.10.0.0/16") || !slices.Equal(except, []netip.Prefix{netip.MustParsePrefix("10.10.1.0/24")}) {
		t.Errorf("PeerIPBlock = %v %v %v", cidr, except, ok)
	}
	if _, _, ok := e.PeerIPBlock(in, 0); ok {
		t.Error("PeerIPBlock on a selector peer")
	}
	var names []string
	for _, p := range e.PeerPods(in, 0) {
		names = append(names, p.Namespace+"/"+p.Name)
	}
	if !slices.Equal(names, []string{"x/b"}) {
		t.Errorf("PeerPods(ingress 0, peer 0) = %v", names)
	}
	if got := len(e.PeerPods(out, 0)); got != 7 { // every pod but the two hostNetwork ones
		t.Errorf("PeerPods(egress 0, namespaceSelector {}) = %d pods, want 7", got)
	}

	portCases := []struct {
		rule  policy.RuleRef
		i     int
		dst   string
		want  []policy.PortRange
		warns int
	}{
		{in, 0, "x/a", []policy.PortRange{{Protocol: tcp, First: 80, Last: 80}}, 0},
		{in, 0, "x/b", nil, 1},
		{in, 1, "", []policy.PortRange{{Protocol: udp, First: 50, Last: 60}}, 0},
		{out, 0, "x/b", []policy.PortRange{{Protocol: tcp, First: 8080, Last: 8080}}, 0},
		{out, 0, "y/b", []policy.PortRange{{Protocol: tcp, First: 9090, Last: 9090}}, 0},
		{out, 0, "", nil, 0},
		{out, 0, "kube-system/h", nil, 0},
		{out, 1, "", []policy.PortRange{{Protocol: sctp, First: 0, Last: 65535}}, 0},
	}
	for _, c := range portCases {
		var dst *corev1.Pod
		if c.dst != "" {
			dst = pod(c.dst)
		}
		got, warns := e.PortRanges(c.rule, c.i, dst)
		if !slices.Equal(got, c.want) || len(warns) != c.warns {
			t.Errorf("PortRanges(%s, port %d, %q) = %v %v, want %v and %d warnings", c.rule.Direction, c.i, c.dst, got, warns, c.want, c.warns)
		}
	}
	if !(policy.PortRange{Protocol: sctp, First: 0, Last: 65535}).AllPorts() {
		t.Error("AllPorts")
	}

	if !e.Exempt(peer(t, s, "x/a"), peer(t, s, "x/a")) || !e.Exempt(peer(t, s, "127.0.0.1"), peer(t, s, "x/a")) || e.Exempt(peer(t, s, "x/a"), peer(t, s, "x/b")) {
		t.Error("Exempt: loopback")
	}
	if !e.SideExempt(peer(t, s, "x/a"), peer(t, s, "172.31.0.1")) || !e.SideExempt(peer(t, s, "kube-system/h2"), peer(t, s, "x/a")) ||
		!e.SideExempt(peer(t, s, "192.0.2.1"), peer(t, s, "x/a")) || e.SideExempt(peer(t, s, "x/a"), peer(t, s, "x/b")) {
		t.Error("SideExempt")
	}
	if got := e.PodsInNamespace("y"); len(got) != 2 || got[0] != pod("y/a") || got[1] != pod("y/b") {
		t.Errorf("PodsInNamespace(y) = %v", got)
	}
	if e.Pod("x", "a") != pod("x/a") || e.PodByIP(Addr("10.10.1.2")) != pod("y/b") || e.PodByIP(Addr("172.31.0.1")) != nil {
		t.Error("Pod / PodByIP")
	}
	if !e.IsNodeIP(Addr("172.31.0.1")) || e.IsNodeIP(Addr("172.31.9.9")) {
		t.Error("IsNodeIP")
	}
	if got := e.NamespaceLabels("w"); got[policy.NamespaceNameLabel] != "w" {
		t.Errorf("NamespaceLabels(w) = %v", got)
	}
}

// TestPodOutsideSnapshot: a pod the Snapshot does not hold (a copy with
// another UID, a pod being created) is judged by its own labels, without
// changing the Engine.
func TestPodOutsideSnapshot(t *testing.T) {
	s := world()
	s.Policies = []*networkingv1.NetworkPolicy{
		Policy("x", "p", Selecting(Sel("app=new")), IngressRule(Peers(PodPeer(Sel("app=b"))))),
	}
	e, err := policy.NewEngine(s)
	if err != nil {
		t.Fatal(err)
	}
	fresh := Pod("x", "fresh", WithLabels("app=new"), WithIP("10.10.0.99"))
	fresh.UID = "other"
	for range 2 {
		if e.Allowed(policy.Traffic{Src: peer(t, s, "z/c"), Dst: policy.Peer{Pod: fresh}, Port: 80}) {
			t.Error("z/c reached a pod selected by a policy allowing only app=b")
		}
		if !e.Allowed(policy.Traffic{Src: peer(t, s, "x/b"), Dst: policy.Peer{Pod: fresh}, Port: 80}) {
			t.Error("x/b denied")
		}
		if !e.Allowed(policy.Traffic{Src: policy.Peer{Pod: fresh}, Dst: peer(t, s, "z/c"), Port: 80}) {
			t.Error("egress of an unselected side denied")
		}
	}
	if e.PodByIP(Addr("10.10.0.99")) != nil {
		t.Error("the Engine learned a pod it was only asked about")
	}
}
