package conformance

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Policy builders shaped like upstream's policies.go, so a case reads like
// the upstream test it ports. The namespace is set by builder.create.

var (
	tcp  = corev1.ProtocolTCP
	udp  = corev1.ProtocolUDP
	sctp = corev1.ProtocolSCTP
)

type policyOption func(*networkingv1.NetworkPolicy)

// netpol builds a policy selecting pods with podSelector.
func netpol(name string, podSelector metav1.LabelSelector, opts ...policyOption) *networkingv1.NetworkPolicy {
	p := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	p.Spec.PodSelector = podSelector
	for _, o := range opts {
		o(p)
	}
	return p
}

// matchLabels is a selector {matchLabels: {k: v, ...}}; with no arguments it
// is an empty, non-nil map, as upstream writes map[string]string{}.
func matchLabels(kv ...string) metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return metav1.LabelSelector{MatchLabels: m}
}

// matchExpression is a selector with one requirement.
func matchExpression(key string, op metav1.LabelSelectorOperator, values ...string) metav1.LabelSelector {
	return metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

// ingress adds rules and, the first time, Ingress to policyTypes: an empty
// call makes a deny-all-ingress policy.
func ingress(rules ...networkingv1.NetworkPolicyIngressRule) policyOption {
	return func(p *networkingv1.NetworkPolicy) {
		if p.Spec.Ingress == nil {
			p.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{}
			p.Spec.PolicyTypes = append(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
		}
		p.Spec.Ingress = append(p.Spec.Ingress, rules...)
	}
}

// egress is ingress for Egress.
func egress(rules ...networkingv1.NetworkPolicyEgressRule) policyOption {
	return func(p *networkingv1.NetworkPolicy) {
		if p.Spec.Egress == nil {
			p.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{}
			p.Spec.PolicyTypes = append(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
		p.Spec.Egress = append(p.Spec.Egress, rules...)
	}
}

// from is an ingress rule allowing peers on ports (all ports when none).
func from(peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyIngressRule {
	return networkingv1.NetworkPolicyIngressRule{From: peers, Ports: ports}
}

// to is an egress rule allowing peers on ports (all ports when none).
func to(peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) networkingv1.NetworkPolicyEgressRule {
	return networkingv1.NetworkPolicyEgressRule{To: peers, Ports: ports}
}

func peers(p ...networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyPeer { return p }

func podPeer(s metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: &s}
}

func nsPeer(s metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: &s}
}

func nsPodPeer(ns, pod metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: &ns, PodSelector: &pod}
}

func ipBlockPeer(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

// port is a numbered port; proto nil leaves the protocol to the API default (TCP).
func port(n int32, proto *corev1.Protocol) networkingv1.NetworkPolicyPort {
	p := intstr.FromInt32(n)
	return networkingv1.NetworkPolicyPort{Port: &p, Protocol: proto}
}

// namedPort is a port by container port name.
func namedPort(name string, proto *corev1.Protocol) networkingv1.NetworkPolicyPort {
	p := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Port: &p, Protocol: proto}
}

// protocolOnly is a port entry with a protocol and no port: every port of it.
func protocolOnly(proto *corev1.Protocol) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: proto}
}

// hostCIDR is the /32 (or /128) of ip, as upstream builds it from a pod IP.
func hostCIDR(ip netip.Addr) string { return netip.PrefixFrom(ip, ip.BitLen()).String() }

// largeCIDR is the /4 containing ip: upstream's makeLargeCIDRForIP.
func largeCIDR(ip netip.Addr) string { return netip.PrefixFrom(ip, 4).Masked().String() }
