package conformance

import (
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The three ginkgo contexts of UpstreamSource.
const (
	ctxTCP  = "NetworkPolicy between server and client "
	ctxUDP  = "NetworkPolicy between server and client using UDP "
	ctxSCTP = "NetworkPolicy between server and client using SCTP "
)

// nameLabel is the label the API server sets on every namespace.
const nameLabel = corev1.LabelMetadataName

var (
	onlyTCP = []corev1.Protocol{corev1.ProtocolTCP}
	all     = Peer{}
)

func inNS(ns string) Peer                           { return Peer{Namespace: ns} }
func pod(ns, name string) Peer                      { return Peer{Namespace: ns, Pod: name} }
func ports(p ...int32) []int32                      { return p }
func protos(p ...corev1.Protocol) []corev1.Protocol { return p }

// Cases builds every ported upstream case for env, in upstream's order.
// env.PodIPs must hold the pods whose IPs the ipBlock cases use (x/b, y/b);
// AssignPodIPs and DefaultEnv cover the whole model.
func Cases(env Env) ([]Case, error) {
	var out []Case
	var errs []error
	for _, build := range upstreamCases {
		c, err := build(env).done()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, c)
	}
	return out, errors.Join(errs...)
}

// CaseNamed builds the one case called name for env.
func CaseNamed(name string, env Env) (Case, error) {
	for _, build := range upstreamCases {
		if b := build(env); b.c.Name == name {
			return b.done()
		}
	}
	return Case{}, fmt.Errorf("no conformance case named %q", name)
}

// upstreamCases are in the order of UpstreamSource.
var upstreamCases = []func(Env) *builder{
	defaultDenyIngress,
	defaultDenyAll,
	allowFromPodSelector,
	allowIngressForTarget,
	allowFromAllNamespaces,
	allowFromNamespaceSelector,
	podSelectorMatchExpressions,
	namespaceSelectorMatchExpressions,
	podSelectorOrNamespaceSelector,
	podSelectorAndNamespaceSelector,
	multiplePodAndNamespaceSelectors,
	anyPodSelectors,
	podInOtherNamespace(ctxTCP, "", tcp),
	enforcePorts,
	stackedPolicies,
	allowAll,
	namedPortIngress,
	namedPortIngressFromNamespace,
	namedPortEgress,
	unresolvableNamedPort,
	updatedPolicy,
	updatedNamespace,
	updatedPod,
	denyIngressFromOtherNamespaces,
	denyIngressToUpdatedPod,
	denyEgressPodSelector,
	denyEgressNamespace,
	ingressAndEgressTogether,
	denyEgressOnClientSide,
	egressToPodInOtherNamespace,
	ingressProtocolOnly,
	ingressAllowAllPrecedence,
	egressAllowAllPrecedence,
	deletedPolicies,
	egressToCIDR,
	egressCIDRExcept,
	egressCIDRExceptOverlap,
	ingressEgressIndependent,
	sctpIsNotTCP,
	sctpPolicyIsolates,
	udpPolicyIsNotTCP,
	defaultNamespaceLabelMatchLabels,
	defaultNamespaceLabelMatchExpressions,
	defaultDenyIngressProto(ctxUDP, "udp/", udp),
	enforcePortsProto(ctxUDP, "udp/", udp),
	podInOtherNamespace(ctxUDP, "udp/", udp),
	defaultDenyIngressProto(ctxSCTP, "sctp/", sctp),
	enforcePortsProto(ctxSCTP, "sctp/", sctp),
	podInOtherNamespace(ctxSCTP, "sctp/", sctp),
}

func defaultDenyIngress(env Env) *builder {
	return defaultDenyIngressProto(ctxTCP, "", tcp)(env)
}

// defaultDenyIngressProto: an empty podSelector with no ingress rules isolates
// all of x; y is untouched. The UDP and SCTP variants name the policy deny-all.
func defaultDenyIngressProto(context, prefix string, proto corev1.Protocol) func(Env) *builder {
	return func(env Env) *builder {
		b := newCase(env, prefix+"default-deny-ingress", context+"should support a 'default-deny-ingress' policy",
			protos(proto), ports(80), "x/a", "x/b", "y/a", "y/b")
		name := "deny-all"
		if proto == tcp {
			name = "deny-ingress"
		}
		b.create("x", netpol(name, metav1.LabelSelector{}, ingress()))
		r := b.reach()
		r.ExpectPeer(all, inNS("x"), false)
		b.validate(80, proto, r)
		return b
	}
}

func defaultDenyAll(env Env) *builder {
	b := newCase(env, "default-deny-all", ctxTCP+"should support a 'default-deny-all' policy",
		onlyTCP, ports(80), "x/a", "x/b", "y/a")
	b.create("x", netpol("deny-all", metav1.LabelSelector{}, ingress(), egress()))
	r := b.reach()
	r.ExpectPeer(all, inNS("x"), false)
	r.ExpectPeer(inNS("x"), all, false)
	b.validate(80, tcp, r)
	return b
}

func allowFromPodSelector(env Env) *builder {
	return xaOnlyFromXB(env, "allow-from-pod-selector", "should enforce policy to allow traffic from pods within server namespace based on PodSelector",
		[]string{"x/a", "x/b", "x/c", "y/a"}, matchLabels("pod", "b"))
}

// xaOnlyFromXB: a policy on x/a admits ingress only from pods of x selected by sel (x/b).
func xaOnlyFromXB(env Env, name, upstream string, pods []string, sel metav1.LabelSelector) *builder {
	b := newCase(env, name, ctxTCP+upstream, onlyTCP, ports(80), pods...)
	b.create("x", netpol("x-a-allows-x-b", matchLabels("pod", "a"), ingress(from(peers(podPeer(sel))))))
	r := b.reach()
	r.ExpectAllIngress("x/a", false)
	r.Set("x/b", "x/a", true)
	b.validate(80, tcp, r)
	return b
}

func allowIngressForTarget(env Env) *builder {
	b := newCase(env, "allow-ingress-for-target", ctxTCP+"should enforce policy to allow ingress traffic for a target",
		onlyTCP, ports(80), "x/a", "x/b", "y/a")
	b.create("x", netpol("deny-all", metav1.LabelSelector{}, ingress()))
	b.create("x", netpol("allow-all-to-a", matchLabels("pod", "a"),
		ingress(from(peers(nsPodPeer(metav1.LabelSelector{}, metav1.LabelSelector{}))))))
	r := b.reach()
	r.ExpectAllIngress("x/a", true)
	r.ExpectAllIngress("x/b", false)
	b.validate(80, tcp, r)
	return b
}

func allowFromAllNamespaces(env Env) *builder {
	b := newCase(env, "allow-from-all-namespaces", ctxTCP+"should enforce policy to allow ingress traffic from pods in all namespaces",
		onlyTCP, ports(80), "x/a", "x/b", "y/a", "z/a")
	b.create("x", netpol("allow-from-another-ns", matchLabels("pod", "a"),
		ingress(from(peers(nsPeer(matchLabels()))))))
	b.validate(80, tcp, b.reach())
	return b
}

func allowFromNamespaceSelector(env Env) *builder {
	return xaOnlyFromNamespaceY(env, "allow-from-namespace-selector", "should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector",
		"allow-client-a-via-ns-selector", func(y string) metav1.LabelSelector { return matchLabels(nameLabel, y) })
}

// xaOnlyFromNamespaceY: a policy on x/a admits ingress only from the
// namespaces sel(real name of y) selects; x and z are refused.
func xaOnlyFromNamespaceY(env Env, name, upstream, policyName string, sel func(y string) metav1.LabelSelector) *builder {
	b := newCase(env, name, ctxTCP+upstream, onlyTCP, ports(80), "x/a", "x/b", "y/a", "z/a")
	b.create("x", netpol(policyName, matchLabels("pod", "a"), ingress(from(peers(nsPeer(sel(b.ns("y"))))))))
	r := b.reach()
	r.ExpectPeer(inNS("x"), pod("x", "a"), false)
	r.ExpectPeer(inNS("z"), pod("x", "a"), false)
	b.validate(80, tcp, r)
	return b
}

func podSelectorMatchExpressions(env Env) *builder {
	return xaOnlyFromXB(env, "pod-selector-match-expressions", "should enforce policy based on PodSelector with MatchExpressions",
		[]string{"x/a", "x/b", "y/a"}, matchExpression("pod", metav1.LabelSelectorOpIn, "b"))
}

func namespaceSelectorMatchExpressions(env Env) *builder {
	return xaOnlyFromNamespaceY(env, "namespace-selector-match-expressions", "should enforce policy based on NamespaceSelector with MatchExpressions",
		"allow-ns-y-match-selector", func(y string) metav1.LabelSelector { return matchExpression(nameLabel, metav1.LabelSelectorOpIn, y) })
}

func podSelectorOrNamespaceSelector(env Env) *builder {
	b := newCase(env, "pod-selector-or-namespace-selector", ctxTCP+"should enforce policy based on PodSelector or NamespaceSelector",
		onlyTCP, ports(80), "x/a", "x/b", "x/c", "y/a")
	b.create("x", netpol("allow-ns-y-match-selector", matchLabels("pod", "a"),
		ingress(from(peers(
			nsPeer(matchExpression(nameLabel, metav1.LabelSelectorOpNotIn, b.ns("x"))),
			podPeer(matchLabels("pod", "b")),
		)))))
	r := b.reach()
	r.Set("x/a", "x/a", false)
	r.Set("x/c", "x/a", false)
	b.validate(80, tcp, r)
	return b
}

func podSelectorAndNamespaceSelector(env Env) *builder {
	b := newCase(env, "pod-selector-and-namespace-selector", ctxTCP+"should enforce policy based on PodSelector and NamespaceSelector",
		onlyTCP, ports(80), "x/a", "x/b", "y/a", "y/b", "z/b")
	b.create("x", netpol("allow-ns-y-podselector-and-nsselector", matchLabels("pod", "a"),
		ingress(from(peers(nsPodPeer(
			matchExpression(nameLabel, metav1.LabelSelectorOpNotIn, b.ns("x")),
			matchLabels("pod", "b"),
		))))))
	r := b.reach()
	r.ExpectAllIngress("x/a", false)
	r.Set("y/b", "x/a", true)
	r.Set("z/b", "x/a", true)
	b.validate(80, tcp, r)
	return b
}

func multiplePodAndNamespaceSelectors(env Env) *builder {
	b := newCase(env, "multiple-pod-and-namespace-selectors", ctxTCP+"should enforce policy based on Multiple PodSelectors and NamespaceSelectors",
		onlyTCP, ports(80), "x/a", "x/b", "y/a", "y/b", "y/c")
	b.create("x", netpol("allow-ns-y-z-pod-b-c", matchLabels("pod", "a"),
		ingress(from(peers(nsPodPeer(
			matchExpression(nameLabel, metav1.LabelSelectorOpNotIn, b.ns("x")),
			matchExpression("pod", metav1.LabelSelectorOpIn, "b", "c"),
		))))))
	r := b.reach()
	r.ExpectPeer(inNS("x"), pod("x", "a"), false)
	r.Set("y/a", "x/a", false)
	b.validate(80, tcp, r)
	return b
}

func anyPodSelectors(env Env) *builder {
	b := newCase(env, "any-pod-selectors", ctxTCP+"should enforce policy based on any PodSelectors",
		onlyTCP, ports(80), "x/a", "x/b", "x/c")
	b.create("x", netpol("allow-ns-x-pod-b-c", matchLabels("pod", "a"),
		ingress(from(peers(podPeer(matchLabels("pod", "b")), podPeer(matchLabels("pod", "c")))))))
	r := b.reach()
	r.ExpectAllIngress("x/a", false)
	r.Set("x/b", "x/a", true)
	r.Set("x/c", "x/a", true)
	b.validate(80, tcp, r)
	return b
}

// podInOtherNamespace: x/a admits only y/a (namespace AND pod selector). The
// UDP and SCTP variants use fewer pods.
func podInOtherNamespace(context, prefix string, proto corev1.Protocol) func(Env) *builder {
	return func(env Env) *builder {
		pods := []string{"x/a", "x/b", "y/a", "y/b", "z/a"}
		if proto != tcp {
			pods = []string{"x/a", "x/b", "y/a"}
		}
		b := newCase(env, prefix+"pod-in-other-namespace", context+"should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector",
			protos(proto), ports(80), pods...)
		b.create("x", netpol("allow-ns-y-pod-a-via-namespace-pod-selector", matchLabels("pod", "a"),
			ingress(from(peers(nsPodPeer(matchLabels(nameLabel, b.ns("y")), matchLabels("pod", "a")))))))
		r := b.reach()
		r.ExpectAllIngress("x/a", false)
		r.Set("y/a", "x/a", true)
		b.validate(80, proto, r)
		return b
	}
}

func enforcePorts(env Env) *builder {
	b := newCase(env, "enforce-ports", ctxTCP+"should enforce policy based on Ports",
		onlyTCP, ports(81), "x/a", "x/b", "y/a", "y/b", "z/a")
	b.create("x", netpol("allow-client-a-via-ns-selector", matchLabels("pod", "a"),
		ingress(from(peers(nsPeer(matchLabels(nameLabel, b.ns("y")))), port(81, &tcp)))))
	r := b.reach()
	r.ExpectPeer(inNS("x"), pod("x", "a"), false)
	r.ExpectPeer(inNS("y"), pod("x", "a"), true)
	r.ExpectPeer(inNS("z"), pod("x", "a"), false)
	b.validate(81, tcp, r)
	return b
}

// enforcePortsProto is the UDP and SCTP "should enforce policy based on Ports".
func enforcePortsProto(context, prefix string, proto corev1.Protocol) func(Env) *builder {
	return func(env Env) *builder {
		b := newCase(env, prefix+"enforce-ports", context+"should enforce policy based on Ports",
			protos(proto), ports(81), "x/a", "x/b", "y/a", "z/a")
		b.create("x", netpol("allow-ingress-on-port-81-ns-x", matchLabels("pod", "a"),
			ingress(from(peers(nsPeer(matchLabels(nameLabel, b.ns("y")))), port(81, &proto)))))
		r := b.reach()
		r.ExpectPeer(inNS("x"), pod("x", "a"), false)
		r.ExpectPeer(inNS("z"), pod("x", "a"), false)
		b.validate(81, proto, r)
		return b
	}
}

func stackedPolicies(env Env) *builder {
	b := newCase(env, "stacked-policies", ctxTCP+"should enforce multiple, stacked policies with overlapping podSelectors",
		onlyTCP, ports(80, 81), "x/a", "x/b", "y/a", "y/b", "z/a")
	fromY := peers(nsPeer(matchLabels(nameLabel, b.ns("y"))))
	b.create("x", netpol("allow-client-a-via-ns-selector", matchLabels("pod", "a"), ingress(from(fromY, port(81, &tcp)))))
	allowFromY := func() *TruthTable {
		r := b.reach()
		r.ExpectPeer(inNS("x"), pod("x", "a"), false)
		r.ExpectPeer(inNS("y"), pod("x", "a"), true)
		r.ExpectPeer(inNS("z"), pod("x", "a"), false)
		return r
	}
	b.validate(81, tcp, allowFromY())
	deny := b.reach()
	deny.ExpectAllIngress("x/a", false)
	b.validate(80, tcp, deny)

	b.create("x", netpol("allow-client-a-via-ns-selector-80", matchLabels("pod", "a"), ingress(from(fromY, port(80, &tcp)))))
	b.validate(80, tcp, allowFromY())
	return b
}

func allowAll(env Env) *builder {
	b := newCase(env, "allow-all", ctxTCP+"should support allow-all policy",
		onlyTCP, ports(80, 81), "x/a", "x/b", "y/a")
	b.create("x", netpol("allow-all", matchLabels(), ingress(from(nil))))
	b.validate(80, tcp, b.reach())
	b.validate(81, tcp, b.reach())
	return b
}

func namedPortIngress(env Env) *builder {
	b := newCase(env, "named-port-ingress", ctxTCP+"should allow ingress access on one named port",
		onlyTCP, ports(80, 81), "x/a", "x/b", "y/a")
	b.create("x", netpol("allow-all", matchLabels(), ingress(from(nil, namedPort("serve-81-tcp", nil)))))
	b.validate(81, tcp, b.reach())
	r := b.reach()
	r.ExpectPeer(all, inNS("x"), false)
	b.validate(80, tcp, r)
	return b
}

func namedPortIngressFromNamespace(env Env) *builder {
	b := newCase(env, "named-port-ingress-from-namespace", ctxTCP+"should allow ingress access from namespace on one named port",
		onlyTCP, ports(80, 81), "x/a", "x/b", "y/a", "z/a")
	b.create("x", netpol("allow-client-a-via-ns-selector-80", matchLabels("pod", "a"),
		ingress(from(peers(nsPeer(matchLabels(nameLabel, b.ns("y")))), namedPort("serve-80-tcp", &tcp)))))
	r := b.reach()
	r.ExpectPeer(inNS("x"), pod("x", "a"), false)
	r.ExpectPeer(inNS("z"), pod("x", "a"), false)
	b.validate(80, tcp, r)
	fail := b.reach()
	fail.ExpectAllIngress("x/a", false)
	b.validate(81, tcp, fail)
	return b
}

func namedPortEgress(env Env) *builder {
	b := newCase(env, "named-port-egress", ctxTCP+"should allow egress access on one named port",
		onlyTCP, ports(80, 81), "x/a", "y/a")
	b.create("x", netpol("allow-egress", matchLabels(), egress(to(nil, namedPort("serve-80-tcp", nil)))))
	b.validate(80, tcp, b.reach())
	r := b.reach()
	r.ExpectPeer(inNS("x"), all, false)
	b.validate(81, tcp, r)
	return b
}

func unresolvableNamedPort(env Env) *builder {
	return xaOnlyOnPort(env, "unresolvable-named-port", "should not allow all ports if it cannot limit to the requested port",
		"allow-ingress-on-nonexistent-port", 80, namedPort("no-such-port", &tcp))
}

// xaOnlyOnPort: a policy on x/a admits ingress from anywhere but only on
// allowed, which never matches TCP to probePort; so x/a is isolated and
// nothing reaches it there.
func xaOnlyOnPort(env Env, name, upstream, policyName string, probePort int32, allowed networkingv1.NetworkPolicyPort) *builder {
	b := newCase(env, name, ctxTCP+upstream, onlyTCP, ports(probePort), "x/a", "y/a")
	b.create("x", netpol(policyName, matchLabels("pod", "a"), ingress(from(nil, allowed))))
	r := b.reach()
	r.ExpectAllIngress("x/a", false)
	b.validate(probePort, tcp, r)
	return b
}

func updatedPolicy(env Env) *builder {
	b := newCase(env, "updated-policy", ctxTCP+"should enforce updated policy",
		onlyTCP, ports(81), "x/a", "y/a")
	b.create("x", netpol("allow-all-mutate-to-deny-all", matchLabels(), ingress(from(nil))))
	b.validate(81, tcp, b.reach())
	// Upstream empties spec.ingress and keeps policyTypes [Ingress].
	b.update("x", netpol("allow-all-mutate-to-deny-all", matchLabels(), ingress()))
	r := b.reach()
	r.ExpectPeer(all, inNS("x"), false)
	b.validate(81, tcp, r)
	return b
}

func updatedNamespace(env Env) *builder {
	b := newCase(env, "updated-namespace", ctxTCP+"should allow ingress access from updated namespace",
		onlyTCP, ports(80), "x/a", "y/a")
	b.create("x", netpol("allow-client-a-via-ns-selector", matchLabels("pod", "a"),
		ingress(from(peers(nsPeer(matchLabels("ns2", "updated")))))))
	r := b.reach()
	r.ExpectAllIngress("x/a", false)
	b.validate(80, tcp, r)
	b.addNamespaceLabel("y", "ns2", "updated")
	r = b.reach()
	r.ExpectAllIngress("x/a", false)
	r.ExpectPeer(inNS("y"), all, true)
	b.validate(80, tcp, r)
	return b
}

func updatedPod(env Env) *builder {
	b := newCase(env, "updated-pod", ctxTCP+"should allow ingress access from updated pod",
		onlyTCP, ports(80), "x/a", "x/b")
	b.create("x", netpol("allow-client-a-via-pod-selector", matchLabels("pod", "a"),
		ingress(from(peers(podPeer(matchLabels("pod", "b", "pod2", "updated")))))))
	r := b.reach()
	r.ExpectAllIngress("x/a", false)
	b.validate(80, tcp, r)
	b.addPodLabels("x/b", map[string]string{"pod": "b", "pod2": "updated"})
	r = b.reach()
	r.ExpectAllIngress("x/a", false)
	r.Set("x/b", "x/a", true)
	b.validate(80, tcp, r)
	return b
}

func denyIngressFromOtherNamespaces(env Env) *builder {
	b := newCase(env, "deny-ingress-from-other-namespaces", ctxTCP+"should deny ingress from pods on other namespaces",
		onlyTCP, ports(80), "x/a", "x/b", "y/a", "z/a")
	b.create("x", netpol("deny-empty-policy", metav1.LabelSelector{}, ingress(from(peers(podPeer(matchLabels()))))))
	r := b.reach()
	r.ExpectPeer(inNS("y"), inNS("x"), false)
	r.ExpectPeer(inNS("z"), inNS("x"), false)
	b.validate(80, tcp, r)
	return b
}

func denyIngressToUpdatedPod(env Env) *builder {
	b := newCase(env, "deny-ingress-to-updated-pod", ctxTCP+"should deny ingress access to updated pod",
		onlyTCP, ports(80), "x/a", "y/a")
	b.create("x", netpol("deny-ingress-via-label-selector", matchLabels("target", "isolated"), ingress()))
	b.validate(80, tcp, b.reach())
	b.addPodLabels("x/a", map[string]string{"target": "isolated"})
	r := b.reach()
	r.ExpectAllIngress("x/a", false)
	b.validate(80, tcp, r)
	return b
}

func denyEgressPodSelector(env Env) *builder {
	b := newCase(env, "deny-egress-pod-selector", ctxTCP+"should deny egress from pods based on PodSelector",
		onlyTCP, ports(80), "x/a", "x/b", "y/a")
	b.create("x", netpol("deny-egress-pod-a", matchLabels("pod", "a"), egress()))
	r := b.reach()
	r.ExpectAllEgress("x/a", false)
	b.validate(80, tcp, r)
	return b
}

func denyEgressNamespace(env Env) *builder {
	b := newCase(env, "deny-egress-namespace", ctxTCP+"should deny egress from all pods in a namespace",
		onlyTCP, ports(80), "x/a", "x/b", "y/a")
	b.create("x", netpol("deny-egress-ns-x", metav1.LabelSelector{}, egress()))
	r := b.reach()
	r.ExpectPeer(inNS("x"), all, false)
	b.validate(80, tcp, r)
	return b
}

func ingressAndEgressTogether(env Env) *builder {
	b := newCase(env, "ingress-and-egress-together", ctxTCP+"should work with Ingress, Egress specified together",
		onlyTCP, ports(80, 81), "x/a", "x/b", "x/c", "y/a")
	p := netpol("allow-client-a-via-pod-selector", matchLabels("pod", "a"),
		ingress(from(peers(podPeer(matchLabels("pod", "b"))))),
		egress(to(nil, port(80, nil))))
	// Upstream sets the egress rules by hand and writes policyTypes in this order.
	p.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress, networkingv1.PolicyTypeIngress}
	b.create("x", p)
	r80 := b.reach()
	r80.ExpectAllIngress("x/a", false)
	r80.Set("x/b", "x/a", true)
	b.validate(80, tcp, r80)
	r81 := b.reach()
	r81.ExpectAllIngress("x/a", false)
	r81.ExpectAllEgress("x/a", false)
	r81.Set("x/b", "x/a", true)
	b.validate(81, tcp, r81)
	return b
}

func denyEgressOnClientSide(env Env) *builder {
	b := newCase(env, "deny-egress-on-client-side", ctxTCP+"should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)",
		onlyTCP, ports(80), "x/a", "y/a", "y/b")
	b.create("x", netpol("allow-to-ns-y-pod-a", matchLabels("pod", "a"),
		egress(to(peers(nsPodPeer(matchLabels(nameLabel, b.ns("y")), matchLabels("pod", "a")))))))
	fromXA := from(peers(nsPodPeer(matchLabels(nameLabel, b.ns("x")), matchLabels("pod", "a"))))
	b.create("y", netpol("allow-from-xa-on-ya-match-selector", matchLabels("pod", "a"), ingress(fromXA)))
	b.create("y", netpol("allow-from-xa-on-yb-match-selector", matchLabels("pod", "b"), ingress(fromXA)))
	r := b.reach()
	r.ExpectPeer(pod("x", "a"), all, false)
	r.ExpectPeer(all, pod("y", "a"), false)
	r.ExpectPeer(pod("x", "a"), pod("y", "a"), true)
	r.ExpectPeer(all, pod("y", "b"), false)
	b.validate(80, tcp, r)
	return b
}

func egressToPodInOtherNamespace(env Env) *builder {
	b := newCase(env, "egress-to-pod-in-other-namespace", ctxTCP+"should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector",
		onlyTCP, ports(80), "x/a", "y/a", "y/b")
	b.create("x", netpol("allow-to-ns-y-pod-a", matchLabels("pod", "a"),
		egress(to(peers(nsPodPeer(matchLabels(nameLabel, b.ns("y")), matchLabels("pod", "a")))))))
	r := b.reach()
	r.ExpectAllEgress("x/a", false)
	r.Set("x/a", "y/a", true)
	b.validate(80, tcp, r)
	return b
}

func ingressProtocolOnly(env Env) *builder {
	b := newCase(env, "ingress-protocol-only", ctxTCP+"should enforce ingress policy allowing any port traffic to a server on a specific protocol",
		protos(tcp, udp), ports(80), "x/a", "y/a")
	b.create("x", netpol("allow-ingress-by-proto", matchLabels("pod", "a"), ingress(from(nil, protocolOnly(&tcp)))))
	b.validate(80, tcp, b.reach())
	r := b.reach()
	r.ExpectPeer(all, pod("x", "a"), false)
	b.validate(80, udp, r)
	return b
}

func ingressAllowAllPrecedence(env Env) *builder {
	b := newCase(env, "ingress-allow-all-precedence", ctxTCP+"should enforce multiple ingress policies with ingress allow-all policy taking precedence",
		onlyTCP, ports(81), "x/a", "y/a")
	b.create("x", netpol("allow-ingress-port-80", matchLabels(), ingress(from(nil, port(80, nil)))))
	r := b.reach()
	r.ExpectPeer(all, inNS("x"), false)
	b.validate(81, tcp, r)
	b.create("x", netpol("allow-ingress", matchLabels(), ingress(from(nil))))
	b.validate(81, tcp, b.reach())
	return b
}

func egressAllowAllPrecedence(env Env) *builder {
	b := newCase(env, "egress-allow-all-precedence", ctxTCP+"should enforce multiple egress policies with egress allow-all policy taking precedence",
		onlyTCP, ports(81), "x/a", "y/a")
	b.create("x", netpol("allow-egress-port-80", matchLabels(), egress(to(nil, port(80, nil)))))
	r := b.reach()
	r.ExpectPeer(inNS("x"), all, false)
	b.validate(81, tcp, r)
	b.create("x", netpol("allow-egress", matchLabels(), egress(to(nil))))
	b.validate(81, tcp, b.reach())
	return b
}

func deletedPolicies(env Env) *builder {
	b := newCase(env, "deleted-policies", ctxTCP+"should stop enforcing policies after they are deleted",
		onlyTCP, ports(80), "x/a", "y/a")
	b.create("x", netpol("deny-all", metav1.LabelSelector{}, ingress(), egress()))
	r := b.reach()
	r.ExpectPeer(inNS("x"), all, false)
	r.ExpectPeer(all, inNS("x"), false)
	b.validate(80, tcp, r)
	b.deleteAllPolicies()
	b.validate(80, tcp, b.reach())
	return b
}

func egressToCIDR(env Env) *builder {
	b := newCase(env, "egress-to-cidr", ctxTCP+"should allow egress access to server in CIDR block",
		onlyTCP, ports(80), "x/a", "y/a", "y/b")
	b.create("x", netpol("allow-client-a-via-cidr-egress-rule", matchLabels("pod", "a"),
		egress(to(peers(ipBlockPeer(hostCIDR(b.ip("y/b"))))))))
	r := b.reach()
	r.ExpectAllEgress("x/a", false)
	r.Set("x/a", "y/b", true)
	b.validate(80, tcp, r)
	return b
}

// exceptOnlyXB allows x/a egress to the /4 around x/b except x/b itself.
func exceptOnlyXB(b *builder) {
	xb := b.ip("x/b")
	b.create("x", netpol("allow-client-a-via-cidr-egress-rule", matchLabels("pod", "a"),
		egress(to(peers(ipBlockPeer(largeCIDR(xb), hostCIDR(xb)))))))
	r := b.reach()
	r.Set("x/a", "x/b", false)
	b.validate(80, tcp, r)
}

func egressCIDRExcept(env Env) *builder {
	b := newCase(env, "egress-cidr-except", ctxTCP+"should enforce except clause while egress access to server in CIDR block",
		onlyTCP, ports(80), "x/a", "x/b", "x/c")
	exceptOnlyXB(b)
	return b
}

func egressCIDRExceptOverlap(env Env) *builder {
	b := newCase(env, "egress-cidr-except-overlap", ctxTCP+"should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed",
		onlyTCP, ports(80), "x/a", "x/b", "x/c")
	exceptOnlyXB(b)
	// Upstream updates the policy of the same name: it replaces the first rule
	// rather than adding a second policy.
	b.update("x", netpol("allow-client-a-via-cidr-egress-rule", matchLabels("pod", "a"),
		egress(to(peers(ipBlockPeer(hostCIDR(b.ip("x/b"))))))))
	r := b.reach()
	r.ExpectAllEgress("x/a", false)
	r.Set("x/a", "x/b", true)
	b.validate(80, tcp, r)
	return b
}

func ingressEgressIndependent(env Env) *builder {
	b := newCase(env, "ingress-egress-independent", ctxTCP+"should enforce policies to check ingress and egress policies can be controlled independently based on PodSelector",
		onlyTCP, ports(80), "x/a", "x/b", "y/a")
	b.create("x", netpol("allow-egress-for-target", matchLabels("pod", "a"), egress(to(nil))))
	b.validate(80, tcp, b.reach())
	b.create("x", netpol("deny-ingress-via-label-selector", matchLabels("pod", "a"), ingress()))
	r := b.reach()
	r.ExpectAllIngress("x/a", false)
	b.validate(80, tcp, r)
	return b
}

func sctpIsNotTCP(env Env) *builder {
	b := newCase(env, "sctp-is-not-tcp", ctxTCP+"should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP",
		onlyTCP, ports(81), "x/a", "y/a")
	b.create("x", netpol("deny-ingress", metav1.LabelSelector{}, ingress()))
	b.create("x", netpol("allow-only-sctp-ingress-on-port-81", matchLabels("pod", "a"), ingress(from(nil, port(81, &sctp)))))
	r := b.reach()
	r.ExpectPeer(all, inNS("x"), false)
	b.validate(81, tcp, r)
	return b
}

func sctpPolicyIsolates(env Env) *builder {
	return xaOnlyOnPort(env, "sctp-policy-isolates", "should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't support SCTP",
		"allow-only-sctp-ingress-on-port-80", 81, port(80, &sctp))
}

func udpPolicyIsNotTCP(env Env) *builder {
	return xaOnlyOnPort(env, "udp-policy-is-not-tcp", "should not allow access by TCP when a policy specifies only UDP",
		"allow-only-udp-ingress-on-port-81", 81, port(81, &udp))
}

func defaultNamespaceLabelMatchLabels(env Env) *builder {
	return xaOnlyFromNamespaceY(env, "default-namespace-label-match-labels", "should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label",
		"allow-client-a-via-ns-selector-for-immutable-ns-label", func(y string) metav1.LabelSelector { return matchLabels(nameLabel, y) })
}

func defaultNamespaceLabelMatchExpressions(env Env) *builder {
	b := newCase(env, "default-namespace-label-match-expressions", ctxTCP+"should enforce policy based on NamespaceSelector with MatchExpressions using default ns label",
		onlyTCP, ports(80), "x/a", "x/b", "y/a", "z/a")
	b.create("x", netpol("allow-ns-y-match-selector-for-immutable-ns-label", matchLabels("pod", "a"),
		egress(to(peers(nsPeer(matchExpression(nameLabel, metav1.LabelSelectorOpNotIn, b.ns("y"))))))))
	r := b.reach()
	r.ExpectPeer(pod("x", "a"), inNS("y"), false)
	b.validate(80, tcp, r)
	return b
}
