package policy_test

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	. "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

const (
	tcp  = corev1.ProtocolTCP
	udp  = corev1.ProtocolUDP
	sctp = corev1.ProtocolSCTP
)

var (
	both   = Types(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress)
	egress = Types(networkingv1.PolicyTypeEgress)
)

// world is the fixed cluster the semantic cases run against:
//
//	x (team=a)          x/a app=a 10.10.0.1 http=80/TCP dns=53/UDP   x/b app=b 10.10.0.2 web=8080/TCP
//	                    x/noip app=c (no IP yet)
//	y (team=b, env="")  y/a app=a 10.10.1.1                          y/b app=b,env=prod 10.10.1.2 web=9090/TCP
//	z (no labels)       z/c app=c 10.10.2.1
//	w (not in snapshot) w/d app=d 10.10.3.1
//	kube-system         kube-system/h  hostNetwork 172.31.0.1 (a node IP)
//	                    kube-system/h2 hostNetwork 172.31.9.9 (not a node IP)
func world() *policy.Snapshot {
	return &policy.Snapshot{
		Namespaces: []*corev1.Namespace{
			Namespace("x", "team=a"), Namespace("y", "team=b", "env="), Namespace("z"), Namespace("kube-system"),
		},
		Pods: []*corev1.Pod{
			Pod("x", "a", WithLabels("app=a"), WithIP("10.10.0.1"), WithPort("http", 80, ""), WithPort("dns", 53, udp)),
			Pod("x", "b", WithLabels("app=b"), WithIP("10.10.0.2"), WithPort("web", 8080, tcp)),
			Pod("x", "noip", WithLabels("app=c")),
			Pod("y", "a", WithLabels("app=a"), WithIP("10.10.1.1")),
			Pod("y", "b", WithLabels("app=b", "env=prod"), WithIP("10.10.1.2"), WithPort("web", 9090, tcp)),
			Pod("z", "c", WithLabels("app=c"), WithIP("10.10.2.1")),
			Pod("w", "d", WithLabels("app=d"), WithIP("10.10.3.1")),
			Pod("kube-system", "h", HostNetwork(), WithIP("172.31.0.1")),
			Pod("kube-system", "h2", HostNetwork(), WithIP("172.31.9.9")),
		},
		NodeIPs: []netip.Addr{Addr("172.31.0.1")},
	}
}

// peer turns "ns/name" into a pod of s, anything else into an IP.
func peer(t testing.TB, s *policy.Snapshot, ref string) policy.Peer {
	t.Helper()
	if ns, name, ok := strings.Cut(ref, "/"); ok {
		for _, p := range s.Pods {
			if p.Namespace == ns && p.Name == name {
				return policy.Peer{Pod: p}
			}
		}
		t.Fatalf("no pod %s in the test world", ref)
	}
	return policy.Peer{IP: Addr(ref)}
}

type flow struct {
	src, dst string
	proto    corev1.Protocol
	port     int32
	want     bool
}

func allow(src, dst string, proto corev1.Protocol, port int32) flow {
	return flow{src, dst, proto, port, true}
}
func deny(src, dst string, proto corev1.Protocol, port int32) flow {
	return flow{src, dst, proto, port, false}
}

func TestSemantics(t *testing.T) {
	cases := []struct {
		name     string
		policies []*networkingv1.NetworkPolicy
		flows    []flow
	}{
		{"no policies allow everything", nil, []flow{
			allow("x/a", "y/b", tcp, 1), allow("z/c", "x/a", udp, 53), allow("192.0.2.1", "x/b", sctp, 9),
		}},
		{"default deny ingress isolates the namespace's pods only for ingress", []*networkingv1.NetworkPolicy{
			Policy("x", "deny"),
		}, []flow{
			deny("y/a", "x/a", tcp, 80), deny("x/b", "x/a", tcp, 80), allow("x/a", "y/a", tcp, 80), allow("x/a", "192.0.2.1", udp, 53),
		}},
		{"policyTypes defaults to Egress too when egress rules exist", []*networkingv1.NetworkPolicy{
			Policy("x", "eg", Selecting(Sel("app=a")), EgressRule(Peers(PodPeer(Sel("app=b"))), Port(tcp, 80))),
		}, []flow{
			allow("x/a", "x/b", tcp, 80), deny("x/a", "x/b", tcp, 81), deny("x/a", "y/a", tcp, 80),
			deny("y/a", "x/a", tcp, 80), // Ingress is isolated too (no ingress rules)
		}},
		{"policyTypes Egress only: ingress rules are ignored, ingress not isolated", []*networkingv1.NetworkPolicy{
			Policy("x", "eg", Selecting(Sel("app=a")), egress, IngressRule(Peers(PodPeer(Sel("app=zzz"))))),
		}, []flow{
			allow("y/a", "x/a", tcp, 80), deny("x/a", "x/b", tcp, 80), deny("x/a", "192.0.2.1", udp, 53),
		}},
		{"additive union of policies", []*networkingv1.NetworkPolicy{
			Policy("x", "p1", Selecting(Sel("app=a")), IngressRule(Peers(PodNSPeer(Sel("app=a"), Sel("team=b"))))),
			Policy("x", "p2", Selecting(Sel("app=a")), IngressRule(Peers(PodPeer(Sel("app=b"))))),
		}, []flow{
			allow("y/a", "x/a", tcp, 80), allow("x/b", "x/a", tcp, 80), deny("z/c", "x/a", tcp, 80), deny("y/b", "x/a", tcp, 80),
		}},
		{"egress of source AND ingress of destination", []*networkingv1.NetworkPolicy{
			Policy("x", "a-out", Selecting(Sel("app=a")), egress, EgressRule(Peers(NSPeer(Sel("team=b"))))),
			Policy("y", "b-in", Selecting(Sel("app=b")), IngressRule(Peers(PodPeer(Sel())))),
		}, []flow{
			allow("x/a", "y/a", tcp, 80), deny("x/a", "y/b", tcp, 80), deny("x/a", "z/c", tcp, 80), allow("y/a", "y/b", tcp, 80),
		}},
		{"from AND ports within a rule, OR within lists", []*networkingv1.NetworkPolicy{
			Policy("x", "p", Selecting(Sel("app=a")), IngressRule(
				Peers(PodPeer(Sel("app=b")), NSPeer(Sel("team=b"))), Port(tcp, 80), Port(udp, 53))),
		}, []flow{
			allow("x/b", "x/a", tcp, 80), allow("y/b", "x/a", udp, 53), deny("x/b", "x/a", tcp, 81),
			deny("x/b", "x/a", udp, 80), deny("z/c", "x/a", tcp, 80),
		}},
		{"empty from list and absent from both mean all sources", []*networkingv1.NetworkPolicy{
			Policy("x", "empty", Selecting(Sel("app=a")), IngressRule(Peers(), Port(tcp, 80))),
			Policy("x", "absent", Selecting(Sel("app=b")), IngressRule(nil, Port(tcp, 80))),
		}, []flow{
			allow("z/c", "x/a", tcp, 80), allow("192.0.2.1", "x/b", tcp, 80), deny("z/c", "x/a", tcp, 81),
		}},
		{"rule {} allows everything; no rules denies everything", []*networkingv1.NetworkPolicy{
			Policy("x", "all", Selecting(Sel("app=a")), IngressRule(nil)),
			Policy("x", "none", Selecting(Sel("app=b"))),
		}, []flow{
			allow("z/c", "x/a", sctp, 7), allow("192.0.2.1", "x/a", udp, 9), deny("x/a", "x/b", tcp, 8080),
		}},
		{"podSelector {} alone means every pod of the policy's namespace", []*networkingv1.NetworkPolicy{
			Policy("x", "p", IngressRule(Peers(PodPeer(Sel())))),
		}, []flow{
			allow("x/b", "x/a", tcp, 80), deny("y/a", "x/a", tcp, 80), deny("192.0.2.1", "x/a", tcp, 80),
		}},
		{"namespaceSelector {} alone means every pod everywhere, not external IPs", []*networkingv1.NetworkPolicy{
			Policy("x", "p", IngressRule(Peers(NSPeer(Sel())))),
		}, []flow{
			allow("y/a", "x/a", tcp, 80), allow("w/d", "x/a", tcp, 80), deny("192.0.2.1", "x/a", tcp, 80),
		}},
		{"podSelector alone does not reach other namespaces", []*networkingv1.NetworkPolicy{
			Policy("x", "p", IngressRule(Peers(PodPeer(Sel("app=a"))))),
		}, []flow{
			deny("y/a", "x/b", tcp, 80), allow("x/a", "x/b", tcp, 80),
		}},
		{"namespaceSelector alone matches all pods in matching namespaces", []*networkingv1.NetworkPolicy{
			Policy("x", "p", IngressRule(Peers(NSPeer(Sel("team=b"))))),
		}, []flow{
			allow("y/a", "x/a", tcp, 80), allow("y/b", "x/a", tcp, 80), deny("x/b", "x/a", tcp, 80), deny("z/c", "x/a", tcp, 80),
		}},
		{"both selectors in one peer AND; separate peers OR", []*networkingv1.NetworkPolicy{
			Policy("x", "and", Selecting(Sel("app=a")), IngressRule(Peers(PodNSPeer(Sel("app=a"), Sel("team=b"))))),
			Policy("x", "or", Selecting(Sel("app=b")), IngressRule(Peers(PodPeer(Sel("app=a")), NSPeer(Sel("team=b"))))),
		}, []flow{
			allow("y/a", "x/a", tcp, 80), deny("y/b", "x/a", tcp, 80), deny("x/b", "x/a", tcp, 80),
			allow("x/a", "x/b", tcp, 80), allow("y/b", "x/b", tcp, 80), deny("z/c", "x/b", tcp, 80),
		}},
		{"NotIn and DoesNotExist match objects lacking the key", []*networkingv1.NetworkPolicy{
			Policy("x", "notin", Selecting(Sel("app=a")), IngressRule(Peers(NSPeer(Expr("env", metav1.LabelSelectorOpNotIn, "prod"))))),
			Policy("y", "dne", Selecting(Sel("app=a")), IngressRule(Peers(PodNSPeer(Expr("env", metav1.LabelSelectorOpDoesNotExist), Sel())))),
		}, []flow{
			allow("z/c", "x/a", tcp, 80), allow("y/b", "x/a", tcp, 80), // z lacks env; y has env=""
			allow("z/c", "y/a", tcp, 80), // z/c lacks env
		}},
		{"NotIn rejects a listed value and accepts a missing key", []*networkingv1.NetworkPolicy{
			Policy("y", "notin", Selecting(Sel("app=a")), IngressRule(Peers(PodPeer(Expr("env", metav1.LabelSelectorOpNotIn, "prod"))))),
		}, []flow{
			deny("y/b", "y/a", tcp, 80), deny("x/a", "y/a", tcp, 80),
		}},
		{"DoesNotExist rejects a pod carrying the key", []*networkingv1.NetworkPolicy{
			Policy("y", "dne", Selecting(Sel("app=a")), IngressRule(Peers(PodPeer(Expr("env", metav1.LabelSelectorOpDoesNotExist))))),
		}, []flow{
			deny("y/b", "y/a", tcp, 80),
		}},
		{`k: "" requires the key`, []*networkingv1.NetworkPolicy{
			Policy("x", "p", IngressRule(Peers(NSPeer(Sel("env="))))),
		}, []flow{
			allow("y/a", "x/a", tcp, 80), deny("z/c", "x/a", tcp, 80), deny("x/b", "x/a", tcp, 80),
		}},
		{"namespaces carry kubernetes.io/metadata.name, even when absent from the snapshot", []*networkingv1.NetworkPolicy{
			Policy("x", "p", IngressRule(Peers(NSPeer(Expr(policy.NamespaceNameLabel, metav1.LabelSelectorOpIn, "y", "w"))))),
		}, []flow{
			allow("y/a", "x/a", tcp, 80), allow("w/d", "x/a", tcp, 80), deny("z/c", "x/a", tcp, 80),
		}},
		{"protocol defaults to TCP", []*networkingv1.NetworkPolicy{
			Policy("x", "p", IngressRule(nil, PortNoProto(80))),
		}, []flow{
			allow("z/c", "x/a", tcp, 80), deny("z/c", "x/a", udp, 80), deny("z/c", "x/a", sctp, 80),
		}},
		{"protocol-only port entry means every port of that protocol", []*networkingv1.NetworkPolicy{
			Policy("x", "p", IngressRule(nil, ProtoOnly(udp))),
		}, []flow{
			allow("z/c", "x/a", udp, 1234), allow("z/c", "x/a", udp, 65535), deny("z/c", "x/a", tcp, 1234),
		}},
		{"endPort is inclusive", []*networkingv1.NetworkPolicy{
			Policy("x", "p", IngressRule(nil, PortRange(tcp, 80, 90))),
		}, []flow{
			allow("z/c", "x/a", tcp, 80), allow("z/c", "x/a", tcp, 90), deny("z/c", "x/a", tcp, 79), deny("z/c", "x/a", tcp, 91), deny("z/c", "x/a", udp, 85),
		}},
		{"named port resolves on the destination pod by name and protocol", []*networkingv1.NetworkPolicy{
			Policy("x", "p", Selecting(Sel("app=a")), IngressRule(nil, NamedPort("http", ""), NamedPort("dns", udp))),
		}, []flow{
			allow("z/c", "x/a", tcp, 80), deny("z/c", "x/a", tcp, 81), deny("z/c", "x/a", udp, 80),
			allow("z/c", "x/a", udp, 53), deny("z/c", "x/a", tcp, 53),
		}},
		{"egress named port resolves per destination pod", []*networkingv1.NetworkPolicy{
			Policy("x", "p", Selecting(Sel("app=a")), egress, EgressRule(Peers(NSPeer(Sel())), NamedPort("web", tcp))),
		}, []flow{
			allow("x/a", "x/b", tcp, 8080), allow("x/a", "y/b", tcp, 9090), deny("x/a", "y/b", tcp, 8080), deny("x/a", "y/a", tcp, 8080),
		}},
		{"named port never matches traffic to an IP", []*networkingv1.NetworkPolicy{
			Policy("x", "p", Selecting(Sel("app=a")), egress, EgressRule(Peers(IPPeer("0.0.0.0/0")), NamedPort("http", ""))),
		}, []flow{
			deny("x/a", "192.0.2.1", tcp, 80), deny("x/a", "172.31.9.9", tcp, 80),
		}},
		{"a named port that resolves nowhere never widens the rule", []*networkingv1.NetworkPolicy{
			Policy("x", "missing", Selecting(Sel("app=b")), IngressRule(Peers(PodPeer(Sel("app=a"))), NamedPort("missing", ""))),
			Policy("x", "wrongproto", Selecting(Sel("app=a")), IngressRule(Peers(PodPeer(Sel("app=b"))), NamedPort("http", udp))),
		}, []flow{
			deny("x/a", "x/b", tcp, 80), deny("x/a", "x/b", udp, 53), deny("x/a", "x/b", tcp, 8080),
			deny("x/b", "x/a", tcp, 80), deny("x/b", "x/a", udp, 80), deny("x/b", "x/a", sctp, 80),
		}},
		{"ipBlock matches pod IPs", []*networkingv1.NetworkPolicy{
			Policy("x", "p", Selecting(Sel("app=a")), IngressRule(Peers(IPPeer("10.10.1.0/24")))),
		}, []flow{
			allow("y/a", "x/a", tcp, 80), allow("y/b", "x/a", tcp, 80), deny("x/b", "x/a", tcp, 80), deny("x/noip", "x/a", tcp, 80),
		}},
		{"ipBlock except carves addresses out", []*networkingv1.NetworkPolicy{
			Policy("x", "p", Selecting(Sel("app=a")), IngressRule(Peers(IPPeer("10.10.0.0/16", "10.10.1.0/24")))),
		}, []flow{
			deny("y/a", "x/a", tcp, 80), allow("z/c", "x/a", tcp, 80), allow("10.10.200.1", "x/a", tcp, 80), deny("192.0.2.1", "x/a", tcp, 80),
		}},
		{"external IPs are matched only by ipBlock", []*networkingv1.NetworkPolicy{
			Policy("x", "sel", Selecting(Sel("app=a")), IngressRule(Peers(NSPeer(Sel())))),
			Policy("x", "ip", Selecting(Sel("app=b")), IngressRule(Peers(IPPeer("192.0.2.0/24")))),
		}, []flow{
			deny("192.0.2.1", "x/a", tcp, 80), allow("192.0.2.1", "x/b", tcp, 80), deny("198.51.100.1", "x/b", tcp, 80),
		}},
		{"a policy with both types never lets egress rules count as ingress", []*networkingv1.NetworkPolicy{
			Policy("x", "p", both, IngressRule(Peers(PodPeer(Sel("app=zzz")))), EgressRule(nil)),
		}, []flow{
			deny("x/a", "x/b", tcp, 80), deny("x/b", "x/a", tcp, 80), allow("x/a", "y/a", tcp, 80), deny("y/a", "x/a", tcp, 80),
		}},
		{"a policy with both types never lets ingress rules count as egress", []*networkingv1.NetworkPolicy{
			Policy("x", "p", both, IngressRule(nil)),
		}, []flow{
			deny("x/a", "x/b", tcp, 80), allow("y/a", "x/a", tcp, 80), deny("x/a", "y/a", tcp, 80),
		}},
		{"SCTP is distinct from TCP and UDP", []*networkingv1.NetworkPolicy{
			Policy("x", "p", IngressRule(nil, Port(sctp, 80))),
		}, []flow{
			allow("z/c", "x/a", sctp, 80), deny("z/c", "x/a", tcp, 80), deny("z/c", "x/a", udp, 80),
		}},
		{"hostNetwork pods are not subject to policy and selectors never match them", []*networkingv1.NetworkPolicy{
			Policy("kube-system", "deny", both),
			Policy("x", "p", IngressRule(Peers(NSPeer(Sel())))),
			Policy("y", "p", IngressRule(Peers(IPPeer("172.31.9.0/24")))),
		}, []flow{
			allow("z/c", "kube-system/h2", tcp, 80), allow("kube-system/h2", "z/c", tcp, 80),
			deny("kube-system/h2", "x/a", tcp, 80), allow("kube-system/h2", "y/a", tcp, 80),
		}},
		{"loopback is always allowed", []*networkingv1.NetworkPolicy{
			Policy("x", "deny", both),
		}, []flow{
			allow("x/a", "x/a", tcp, 80), allow("127.0.0.1", "x/a", tcp, 80), allow("x/a", "::1", tcp, 80), deny("x/b", "x/a", tcp, 80),
		}},
		{"node traffic is allowed on the pod's side", []*networkingv1.NetworkPolicy{
			Policy("x", "deny", both),
		}, []flow{
			allow("172.31.0.1", "x/a", tcp, 80), allow("x/a", "172.31.0.1", tcp, 10250), allow("kube-system/h", "x/a", tcp, 80),
			deny("172.31.9.9", "x/a", tcp, 80),
		}},
		{"a pod without IP is judged by its labels", []*networkingv1.NetworkPolicy{
			Policy("x", "p", Selecting(Sel("app=a")), IngressRule(Peers(PodPeer(Sel("app=c"))))),
		}, []flow{
			allow("x/noip", "x/a", tcp, 80), deny("z/c", "x/a", tcp, 80),
		}},
		{"an IP owned by a pod is that pod", []*networkingv1.NetworkPolicy{
			Policy("x", "p", Selecting(Sel("app=a")), IngressRule(Peers(PodNSPeer(Sel("app=a"), Sel("team=b"))))),
		}, []flow{
			allow("10.10.1.1", "x/a", tcp, 80), deny("10.10.1.2", "x/a", tcp, 80),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := world()
			s.Policies = tc.policies
			e, err := policy.NewEngine(s)
			if err != nil {
				t.Fatalf("NewEngine: %v", err)
			}
			for _, f := range tc.flows {
				tr := policy.Traffic{Src: peer(t, s, f.src), Dst: peer(t, s, f.dst), Protocol: f.proto, Port: f.port}
				d := e.Evaluate(tr)
				if d.Allowed != f.want {
					t.Errorf("%s -> %s %d/%s: allowed=%v, want %v\n%s", f.src, f.dst, f.port, f.proto, d.Allowed, f.want, dump(d))
				}
				if got := e.Allowed(tr); got != d.Allowed {
					t.Errorf("%s -> %s %d/%s: Allowed()=%v but Evaluate().Allowed=%v", f.src, f.dst, f.port, f.proto, got, d.Allowed)
				}
				if got := refAllowed(s, tr); got != f.want {
					t.Errorf("%s -> %s %d/%s: reference evaluator says %v, want %v (fix the test oracle)", f.src, f.dst, f.port, f.proto, got, f.want)
				}
				checkInvariants(t, e, tr, d)
			}
		})
	}
}

func dump(d policy.Decision) string {
	var b strings.Builder
	for _, dd := range []policy.DirectionDecision{d.Egress, d.Ingress} {
		b.WriteString("  " + string(dd.Direction) + ": " + string(dd.Reason) + "\n")
		for _, pe := range dd.Policies {
			b.WriteString("    " + pe.Summary + "\n")
			for _, r := range pe.Rules {
				for _, m := range r.Mismatches {
					b.WriteString("      - " + m.Message + "\n")
				}
			}
		}
	}
	for _, w := range d.Warnings {
		b.WriteString("  warning " + string(w.Code) + ": " + w.Message + "\n")
	}
	return b.String()
}

// TestDualStack: a pod has one IP per family; ipBlock judges the address the
// traffic actually uses, and either address names the pod.
func TestDualStack(t *testing.T) {
	ds := Pod("x", "ds", WithLabels("app=ds"), WithIP("10.10.0.50", "fd00::50"))
	dst := Pod("x", "dst", WithLabels("app=dst"), WithIP("10.10.0.60", "fd00::60"))
	s := &policy.Snapshot{
		Pods: []*corev1.Pod{ds, dst},
		Policies: []*networkingv1.NetworkPolicy{
			Policy("x", "v6-only", Selecting(Sel("app=dst")), IngressRule(Peers(IPPeer("fd00::/64")))),
		},
	}
	e, err := policy.NewEngine(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		src  policy.Peer
		want bool
	}{
		{policy.Peer{Pod: ds}, false}, // defaults to status.podIP, the IPv4 one
		{policy.Peer{Pod: ds, IP: Addr("fd00::50")}, true},
		{policy.Peer{IP: Addr("fd00::50")}, true},
		{policy.Peer{IP: Addr("10.10.0.50")}, false},
	} {
		tr := policy.Traffic{Src: c.src, Dst: policy.Peer{Pod: dst, IP: Addr("fd00::60")}, Port: 80}
		d := e.Evaluate(tr)
		if d.Allowed != c.want || e.Allowed(tr) != c.want {
			t.Errorf("%v -> dst: allowed=%v, want %v\n%s", c.src.IP, d.Allowed, c.want, dump(d))
		}
		checkInvariants(t, e, tr, d)
	}
	if e.PodByIP(Addr("fd00::50")) != ds || e.PodByIP(Addr("10.10.0.50")) != ds {
		t.Error("both addresses must name the pod")
	}
}
