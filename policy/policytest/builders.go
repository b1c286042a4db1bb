// Package policytest builds Kubernetes objects and snapshots for tests and
// benchmarks of the policy engine and its users: builder + tweak functions in
// the style of kube-network-policies, and Synthetic, a deterministic snapshot
// generator for benchmarks at scale.
package policytest

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Labels turns "k=v" strings into a label map; a bare "k" gives k="".
func Labels(kv ...string) map[string]string {
	if len(kv) == 0 {
		return nil
	}
	m := make(map[string]string, len(kv))
	for _, s := range kv {
		k, v, _ := strings.Cut(s, "=")
		m[k] = v
	}
	return m
}

// Namespace builds a namespace with labels "k=v" (the engine adds kubernetes.io/metadata.name).
func Namespace(name string, kv ...string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: Labels(kv...)}}
}

// PodTweak changes a pod under construction.
type PodTweak func(*corev1.Pod)

// Pod builds a running pod with one container "c" and no ports.
func Pod(ns, name string, tweaks ...PodTweak) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "pause"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, t := range tweaks {
		t(p)
	}
	return p
}

// WithLabels sets the pod's labels from "k=v" strings.
func WithLabels(kv ...string) PodTweak { return func(p *corev1.Pod) { p.Labels = Labels(kv...) } }

// WithIP sets status.podIP and status.podIPs.
func WithIP(ips ...string) PodTweak {
	return func(p *corev1.Pod) {
		p.Status.PodIP = ips[0]
		p.Status.PodIPs = nil
		for _, ip := range ips {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
		}
	}
}

// WithPort adds a container port to the first container; proto "" stays empty (TCP by default).
func WithPort(name string, port int32, proto corev1.Protocol) PodTweak {
	return func(p *corev1.Pod) {
		c := &p.Spec.Containers[0]
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: name, ContainerPort: port, Protocol: proto})
	}
}

// HostNetwork marks the pod as using the node's network namespace.
func HostNetwork() PodTweak { return func(p *corev1.Pod) { p.Spec.HostNetwork = true } }

// PolicyTweak changes a policy under construction.
type PolicyTweak func(*networkingv1.NetworkPolicy)

// Policy builds a NetworkPolicy selecting every pod ({}) with no rules and no
// policyTypes (so: isolates for Ingress, denies all ingress).
func Policy(ns, name string, tweaks ...PolicyTweak) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, t := range tweaks {
		t(np)
	}
	return np
}

// Selecting sets spec.podSelector.
func Selecting(sel *metav1.LabelSelector) PolicyTweak {
	return func(np *networkingv1.NetworkPolicy) { np.Spec.PodSelector = *sel }
}

// Types sets spec.policyTypes.
func Types(t ...networkingv1.PolicyType) PolicyTweak {
	return func(np *networkingv1.NetworkPolicy) { np.Spec.PolicyTypes = t }
}

// IngressRule appends an ingress rule. nil peers means "from" absent.
func IngressRule(peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) PolicyTweak {
	return func(np *networkingv1.NetworkPolicy) {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: peers, Ports: ports})
	}
}

// EgressRule appends an egress rule. nil peers means "to" absent.
func EgressRule(peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) PolicyTweak {
	return func(np *networkingv1.NetworkPolicy) {
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: peers, Ports: ports})
	}
}

// Sel is a selector with matchLabels from "k=v" strings; Sel() is {}.
func Sel(kv ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: Labels(kv...)}
}

// Expr is a selector with one matchExpressions requirement.
func Expr(key string, op metav1.LabelSelectorOperator, values ...string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

// Peers collects peers into a from/to list.
func Peers(p ...networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyPeer { return p }

// PodPeer is a peer with podSelector only (the policy's namespace).
func PodPeer(sel *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: sel}
}

// NSPeer is a peer with namespaceSelector only (every pod there).
func NSPeer(sel *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: sel}
}

// PodNSPeer is a peer with both selectors (AND).
func PodNSPeer(pod, ns *metav1.LabelSelector) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: pod, NamespaceSelector: ns}
}

// IPPeer is an ipBlock peer.
func IPPeer(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func proto(p corev1.Protocol) *corev1.Protocol { return &p }

// Port is a numeric port entry with an explicit protocol.
func Port(p corev1.Protocol, port int32) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(port)
	return networkingv1.NetworkPolicyPort{Protocol: proto(p), Port: &v}
}

// PortNoProto is a numeric port entry with protocol omitted (TCP by default).
func PortNoProto(port int32) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(port)
	return networkingv1.NetworkPolicyPort{Port: &v}
}

// PortRange is port..endPort of one protocol.
func PortRange(p corev1.Protocol, first, last int32) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt32(first)
	return networkingv1.NetworkPolicyPort{Protocol: proto(p), Port: &v, EndPort: &last}
}

// NamedPort is a named port entry; proto "" leaves the protocol omitted.
func NamedPort(name string, p corev1.Protocol) networkingv1.NetworkPolicyPort {
	v := intstr.FromString(name)
	pp := networkingv1.NetworkPolicyPort{Port: &v}
	if p != "" {
		pp.Protocol = proto(p)
	}
	return pp
}

// ProtoOnly is a port entry with a protocol and no port: every port of it.
func ProtoOnly(p corev1.Protocol) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: proto(p)}
}

// Addr parses an IP address and panics on a typo in a test table.
func Addr(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		panic(fmt.Sprintf("policytest.Addr(%q): %v", s, err))
	}
	return a
}
