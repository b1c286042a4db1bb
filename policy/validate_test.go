package policy_test

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	. "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

func TestValidationErrors(t *testing.T) {
	named := func(name string) networkingv1.NetworkPolicyPort {
		p := NamedPort(name, tcp)
		end := int32(90)
		p.EndPort = &end
		return p
	}
	endOnly := networkingv1.NetworkPolicyPort{EndPort: func() *int32 { v := int32(90); return &v }()}
	icmp := corev1.Protocol("ICMP")
	port80 := intstr.FromInt32(80)
	cases := []struct {
		name   string
		policy *networkingv1.NetworkPolicy
		want   []string // substrings of the error, in addition to the object name
	}{
		{"bad selector operator", Policy("x", "bad", Selecting(Expr("app", "Equals", "a"))),
			[]string{"spec.podSelector.matchExpressions[0].operator", "Equals"}},
		{"In without values", Policy("x", "bad", IngressRule(Peers(PodPeer(Expr("app", metav1.LabelSelectorOpIn))))),
			[]string{"spec.ingress[0].from[0].podSelector.matchExpressions[0].values", "must be specified"}},
		{"Exists with values", Policy("x", "bad", IngressRule(Peers(NSPeer(Expr("app", metav1.LabelSelectorOpExists, "a"))))),
			[]string{"spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].values"}},
		{"invalid label value", Policy("x", "bad", Selecting(Sel("app=not valid!"))),
			[]string{"spec.podSelector.matchLabels"}},
		{"port out of range", Policy("x", "bad", IngressRule(nil, Port(tcp, 70000))),
			[]string{"spec.ingress[0].ports[0].port", "between 1 and 65535"}},
		{"port zero", Policy("x", "bad", EgressRule(nil, Port(udp, 0))),
			[]string{"spec.egress[0].ports[0].port"}},
		{"endPort without port", Policy("x", "bad", IngressRule(nil, endOnly)),
			[]string{"spec.ingress[0].ports[0].endPort", "may not be specified when `port` is not specified"}},
		{"endPort with a named port", Policy("x", "bad", IngressRule(nil, named("http"))),
			[]string{"spec.ingress[0].ports[0].endPort", "non-numeric"}},
		{"endPort below port", Policy("x", "bad", EgressRule(nil, PortRange(tcp, 100, 99))),
			[]string{"spec.egress[0].ports[0].endPort", "greater than or equal to `port`"}},
		{"endPort out of range", Policy("x", "bad", EgressRule(nil, PortRange(tcp, 100, 65536))),
			[]string{"spec.egress[0].ports[0].endPort", "between 1 and 65535"}},
		{"invalid port name", Policy("x", "bad", IngressRule(nil, NamedPort("Not_A_Name", tcp))),
			[]string{"spec.ingress[0].ports[0].port", "Not_A_Name"}},
		{"unknown protocol", Policy("x", "bad", IngressRule(nil, networkingv1.NetworkPolicyPort{Protocol: &icmp, Port: &port80})),
			[]string{"spec.ingress[0].ports[0].protocol", `"ICMP"`, "TCP", "UDP", "SCTP"}},
		{"invalid CIDR", Policy("x", "bad", IngressRule(Peers(IPPeer("10.0.0.0/33")))),
			[]string{"spec.ingress[0].from[0].ipBlock.cidr", "10.0.0.0/33"}},
		{"missing CIDR", Policy("x", "bad", IngressRule(Peers(IPPeer("")))),
			[]string{"spec.ingress[0].from[0].ipBlock.cidr", "Required"}},
		{"except outside cidr", Policy("x", "bad", EgressRule(Peers(IPPeer("10.0.0.0/16", "10.1.0.0/24")))),
			[]string{"spec.egress[0].to[0].ipBlock.except[0]", "strict subset of `cidr`"}},
		{"except equal to cidr", Policy("x", "bad", EgressRule(Peers(IPPeer("10.0.0.0/16", "10.0.0.0/16")))),
			[]string{"spec.egress[0].to[0].ipBlock.except[0]", "strict subset"}},
		{"except of the other family", Policy("x", "bad", EgressRule(Peers(IPPeer("10.0.0.0/8", "fd00::/64")))),
			[]string{"spec.egress[0].to[0].ipBlock.except[0]", "strict subset"}},
		{"ipBlock with a selector", Policy("x", "bad", IngressRule(Peers(networkingv1.NetworkPolicyPeer{
			PodSelector: Sel("app=a"), IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8"}}))),
			[]string{"spec.ingress[0].from[0]", "may not specify both ipBlock and another peer"}},
		{"empty peer", Policy("x", "bad", IngressRule(Peers(networkingv1.NetworkPolicyPeer{}))),
			[]string{"spec.ingress[0].from[0]", "must specify a peer"}},
		{"unknown policyType", Policy("x", "bad", Types("Sideways")),
			[]string{"spec.policyTypes[0]", "Sideways"}},
		{"three policyTypes", Policy("x", "bad", Types("Ingress", "Egress", "Ingress")),
			[]string{"spec.policyTypes", "more than two"}},
		{"invalid name", Policy("x", "Bad_Name"), []string{"metadata.name"}},
		{"missing namespace", Policy("", "p"), []string{"metadata.namespace", "Required"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policy.NewEngine(&policy.Snapshot{Policies: []*networkingv1.NetworkPolicy{tc.policy}})
			if err == nil {
				t.Fatal("NewEngine accepted a policy the API server rejects")
			}
			want := append([]string{"networkpolicy " + tc.policy.Namespace + "/" + tc.policy.Name}, tc.want...)
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
				if testing.Verbose() && w == want[0] {
					t.Log(err)
				}
			}
			var ve *policy.ValidationError
			if !errors.As(err, &ve) || ve.Name != tc.policy.Name {
				t.Errorf("error %v is not a *ValidationError for %s", err, tc.policy.Name)
			}
		})
	}
}

func TestValidationAccepts(t *testing.T) {
	good := []*networkingv1.NetworkPolicy{
		Policy("x", "legacy-cidr", IngressRule(Peers(IPPeer("10.0.0.1/8", "10.1.0.0/16")))), // host bits: stored objects may have them
		Policy("x", "v6", EgressRule(Peers(IPPeer("fd00::/48", "fd00::/64")), ProtoOnly(sctp))),
		Policy("x", "range", EgressRule(nil, PortRange(udp, 1, 65535))),
		Policy("x", "types", Types("Egress", "Ingress")),
	}
	if _, err := policy.NewEngine(&policy.Snapshot{Policies: good}); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotErrors(t *testing.T) {
	cases := []struct {
		name string
		s    *policy.Snapshot
		want string
	}{
		{"bad pod IP", &policy.Snapshot{Pods: []*corev1.Pod{Pod("x", "p", WithIP("10.0.0.300"))}}, `pod x/p: status.podIP: Invalid value: "10.0.0.300"`},
		{"pod without namespace", &policy.Snapshot{Pods: []*corev1.Pod{Pod("", "p")}}, `pod "p" in namespace ""`},
		{"nil pod", &policy.Snapshot{Pods: []*corev1.Pod{nil}}, "snapshot pod 0 is nil"},
		{"nil policy", &policy.Snapshot{Policies: []*networkingv1.NetworkPolicy{nil}}, "snapshot policy 0 is nil"},
		{"duplicate policy", &policy.Snapshot{Policies: []*networkingv1.NetworkPolicy{Policy("x", "p"), Policy("x", "p")}}, "networkpolicy x/p: appears twice"},
		{"duplicate pod", &policy.Snapshot{Pods: []*corev1.Pod{Pod("x", "p"), Pod("x", "p")}}, "pod x/p: appears twice"},
		{"namespace without name", &policy.Snapshot{Namespaces: []*corev1.Namespace{Namespace("")}}, "metadata.name"},
		{"bad pod IP in a record", &policy.Snapshot{PodRecords: []*policy.Pod{policy.NewPod(Pod("x", "p", WithIP("10.0.0.1", "fd00::zz")))}}, `pod x/p: status.podIPs[1].ip: Invalid value: "fd00::zz"`},
		{"nil pod record", &policy.Snapshot{Pods: []*corev1.Pod{Pod("x", "p")}, PodRecords: []*policy.Pod{nil}}, "snapshot pod record 0 is nil"},
		{"pod as object and record", &policy.Snapshot{Pods: []*corev1.Pod{Pod("x", "p")}, PodRecords: []*policy.Pod{policy.NewPod(Pod("x", "p"))}}, "pod x/p: appears twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policy.NewEngine(tc.s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := policy.NewEngine(nil); err != nil {
		t.Errorf("nil snapshot: %v", err)
	}
}

func TestValidationReportsEveryInvalidPolicy(t *testing.T) {
	_, err := policy.NewEngine(&policy.Snapshot{Policies: []*networkingv1.NetworkPolicy{
		Policy("x", "bad-port", IngressRule(nil, Port(tcp, 0))),
		Policy("x", "good"),
		Policy("y", "bad-cidr", EgressRule(Peers(IPPeer("10.0.0.0/99")))),
	}})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"networkpolicy x/bad-port", "networkpolicy y/bad-cidr"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "x/good") {
		t.Errorf("error blames a valid policy: %v", err)
	}
}
