package policy_test

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	"github.com/kubectl-netpol/kubectl-netpol/policy/conformance"
)

// entryAllows is the meaning of a compiled Entry, written from its doc
// comment (independent of how the probe encodes it into maps).
func entryAllows(e policy.Entry, peer netip.Addr, peerID uint32, proto corev1.Protocol, port int32) bool {
	if e.CIDR.IsValid() {
		if !e.CIDR.Contains(peer) {
			return false
		}
		for _, x := range e.Except {
			if x.Contains(peer) {
				return false
			}
		}
	} else if e.Identity != policy.IdentityAny && e.Identity != peerID {
		return false
	}
	if e.Protocol == "" {
		return true
	}
	return e.Protocol == proto && port >= int32(e.PortMin) && port <= int32(e.PortMax)
}

func identityOf(dp *policy.Datapath, ip netip.Addr) uint32 {
	for _, h := range dp.HostIPs {
		if h == ip {
			return policy.IdentityHost
		}
	}
	for _, id := range dp.Identities {
		for _, a := range id.IPs {
			if a == ip {
				return id.ID
			}
		}
	}
	return policy.IdentityWorld
}

func endpointOf(dp *policy.Datapath, ip netip.Addr) *policy.Endpoint {
	for i := range dp.Endpoints {
		for _, a := range dp.Endpoints[i].IPs {
			if a == ip {
				return &dp.Endpoints[i]
			}
		}
	}
	return nil
}

func sideAllows(ep *policy.EndpointPolicy, peer netip.Addr, peerID uint32, proto corev1.Protocol, port int32) bool {
	if !ep.Isolated {
		return true
	}
	for _, e := range ep.Entries {
		if entryAllows(e, peer, peerID, proto, port) {
			return true
		}
	}
	return false
}

// dpAllows is the datapath's verdict on a new connection, from Entries.
func dpAllows(dp *policy.Datapath, src, dst netip.Addr, proto corev1.Protocol, port int32) bool {
	if ep := endpointOf(dp, src); ep != nil && !sideAllows(&ep.Egress, dst, identityOf(dp, dst), proto, port) {
		return false
	}
	if ep := endpointOf(dp, dst); ep != nil && !sideAllows(&ep.Ingress, src, identityOf(dp, src), proto, port) {
		return false
	}
	return true
}

// TestCompileMatchesEngineOnConformance checks, for every upstream case,
// step, probe and pair of pods, that the compiled datapath's verdict equals
// Engine.Allowed, and that each compiled rule ID maps back to a rule of a
// policy the engine lists. All pods are on the compiled node.
func TestCompileMatchesEngineOnConformance(t *testing.T) {
	env := conformance.DefaultEnv()
	cases, err := conformance.Cases(env)
	if err != nil {
		t.Fatal(err)
	}
	cells := 0
	for _, c := range cases {
		for si := range c.Steps {
			snap, err := c.Snapshot(si, env)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range snap.Pods {
				p.Spec.NodeName = "n1"
			}
			eng, err := policy.NewEngine(snap)
			if err != nil {
				t.Fatalf("%s step %d: %v", c.Name, si, err)
			}
			dp, err := eng.Compile("n1")
			if err != nil {
				t.Fatalf("%s step %d: Compile: %v", c.Name, si, err)
			}
			if len(dp.Endpoints) != len(c.Model.Pods) {
				t.Fatalf("%s: %d endpoints, want %d", c.Name, len(dp.Endpoints), len(c.Model.Pods))
			}
			for _, ep := range dp.Endpoints {
				for _, side := range []policy.EndpointPolicy{ep.Ingress, ep.Egress} {
					for _, en := range side.Entries {
						if en.Rule == policy.RuleNodeTraffic {
							continue
						}
						if _, ok := dp.RuleByID(en.Rule); !ok {
							t.Fatalf("%s: entry rule %d not in the rule table", c.Name, en.Rule)
						}
					}
				}
			}
			for _, probe := range c.Steps[si].Probes {
				for _, from := range snap.Pods {
					for _, to := range snap.Pods {
						if from == to {
							continue
						}
						src, dst := netip.MustParseAddr(from.Status.PodIP), netip.MustParseAddr(to.Status.PodIP)
						want := eng.Allowed(policy.Traffic{Src: policy.Peer{Pod: from}, Dst: policy.Peer{Pod: to}, Protocol: probe.Protocol, Port: probe.Port})
						got := dpAllows(dp, src, dst, probe.Protocol, probe.Port)
						cells++
						if got != want {
							t.Errorf("%s step %d %s %s/%s -> %s/%s: datapath %v, engine %v",
								c.Name, si, probe, from.Namespace, from.Name, to.Namespace, to.Name, got, want)
						}
					}
				}
			}
		}
	}
	if cells < 500 {
		t.Fatalf("only %d cells compared", cells)
	}
	t.Logf("%d cells of %d cases agree", cells, len(cases))
}

func compileTCP(port int32) networkingv1.NetworkPolicyPort {
	p := corev1.ProtocolTCP
	v := intstr.FromInt32(port)
	return networkingv1.NetworkPolicyPort{Protocol: &p, Port: &v}
}

func compilePod(ns, name, node, ip string, labels map[string]string, ports ...corev1.ContainerPort) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Ports: ports}}},
		Status:     corev1.PodStatus{PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
}

// TestCompileShape checks the parts the conformance cases do not show:
// only local pods are endpoints, node addresses get the host identity and the
// implicit node allowance, named ports resolve per destination pod, endPort
// ranges and ipBlock excepts are kept, and IDs are stable when an unrelated
// policy is added.
func TestCompileShape(t *testing.T) {
	end := int32(90)
	web := map[string]string{"app": "web"}
	snap := &policy.Snapshot{
		NodeIPs: []netip.Addr{netip.MustParseAddr("10.77.255.1")},
		Pods: []*corev1.Pod{
			compilePod("ns", "web", "n1", "10.77.0.1", web),
			compilePod("ns", "db1", "n1", "10.77.0.2", map[string]string{"app": "db"}, corev1.ContainerPort{Name: "sql", ContainerPort: 5432}),
			compilePod("ns", "db2", "n2", "10.77.0.3", map[string]string{"app": "db"}, corev1.ContainerPort{Name: "sql", ContainerPort: 6432}),
		},
		Policies: []*networkingv1.NetworkPolicy{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-egress"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: web},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress: []networkingv1.NetworkPolicyEgressRule{
					{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}},
						Ports: []networkingv1.NetworkPolicyPort{{Port: &intstr.IntOrString{Type: intstr.String, StrVal: "sql"}}}},
					{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "192.0.2.0/24", Except: []string{"192.0.2.128/25"}}}},
						Ports: []networkingv1.NetworkPolicyPort{func() networkingv1.NetworkPolicyPort { p := compileTCP(80); p.EndPort = &end; return p }()}},
				},
			},
		}},
	}
	dp, err := policy.Compile(snap, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if len(dp.Endpoints) != 2 {
		t.Fatalf("endpoints %+v: want the two pods of n1", dp.Endpoints)
	}
	webIP, db1, db2 := netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("10.77.0.2"), netip.MustParseAddr("10.77.0.3")
	node := netip.MustParseAddr("10.77.255.1")
	checks := []struct {
		dst   netip.Addr
		port  int32
		allow bool
	}{
		{db1, 5432, true}, {db1, 6432, false}, // named port per destination pod
		{db2, 6432, true}, {db2, 5432, false},
		{netip.MustParseAddr("192.0.2.10"), 80, true}, {netip.MustParseAddr("192.0.2.10"), 90, true},
		{netip.MustParseAddr("192.0.2.10"), 91, false}, {netip.MustParseAddr("192.0.2.200"), 80, false},
		{node, 22, true}, // node traffic is never restricted
	}
	for _, c := range checks {
		if got := dpAllows(dp, webIP, c.dst, corev1.ProtocolTCP, c.port); got != c.allow {
			t.Errorf("web -> %s:%d: datapath %v, want %v", c.dst, c.port, got, c.allow)
		}
	}
	ep := endpointOf(dp, webIP)
	if !ep.Egress.Isolated || ep.Ingress.Isolated || len(ep.Egress.IsolatedBy) != 1 || ep.Egress.IsolatedBy[0].Name != "web-egress" {
		t.Errorf("web isolation: %+v", ep)
	}

	// An unrelated policy in another namespace changes no existing ID.
	snap.Policies = append(snap.Policies, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "deny"},
		Spec:       networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{}}},
	})
	dp2, err := policy.Compile(snap, "n1")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range dp.Rules {
		r2, ok := dp2.RuleByID(r.ID)
		if !ok || r2 != r {
			t.Errorf("rule %d changed after an unrelated policy was added: %+v -> %+v", r.ID, r, r2)
		}
	}
	for i := range dp.Endpoints {
		if dp.Endpoints[i].ID != dp2.Endpoints[i].ID || dp.Endpoints[i].Identity != dp2.Endpoints[i].Identity {
			t.Errorf("endpoint %s changed ID or identity", dp.Endpoints[i].Name)
		}
	}
}
