package policytest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// Synthetic returns a deterministic snapshot of pods pods and policies
// policies for benchmarks: one namespace per 100 pods (team and env labels),
// pods labelled app/tier/version with IPs in 10.128.0.0/9 and named ports
// http (8080/TCP), metrics (9090/TCP) and dns (53/UDP, on a third of them),
// and policies mixing every feature: default deny, podSelector and
// namespaceSelector peers (matchLabels and matchExpressions), ipBlock with
// except, numeric, ranged, named and protocol-only ports, both directions.
// The same (pods, policies, seed) always gives the same snapshot.
func Synthetic(pods, policies int, seed uint64) *policy.Snapshot {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	nsCount := max(1, pods/100)
	s := &policy.Snapshot{NodeIPs: []netip.Addr{Addr("172.31.0.1"), Addr("172.31.0.2"), Addr("172.31.0.3")}}
	envs := []string{"prod", "dev", "staging"}
	for i := range nsCount {
		s.Namespaces = append(s.Namespaces, Namespace(nsName(i), fmt.Sprintf("team=team-%d", i%8), "env="+envs[i%3]))
	}
	tiers := []string{"web", "api", "db"}
	for i := range pods {
		ip := fmt.Sprintf("10.%d.%d.%d", 128+(i>>16)&127, (i>>8)&255, i&255)
		tweaks := []PodTweak{
			WithLabels(fmt.Sprintf("app=app-%d", (i/nsCount)%10), "tier="+tiers[i%3], fmt.Sprintf("version=v%d", i%2+1)),
			WithIP(ip),
			WithPort("http", 8080, corev1.ProtocolTCP),
			WithPort("metrics", 9090, corev1.ProtocolTCP),
		}
		if i%3 == 0 {
			tweaks = append(tweaks, WithPort("dns", 53, corev1.ProtocolUDP))
		}
		s.Pods = append(s.Pods, Pod(nsName(i%nsCount), fmt.Sprintf("pod-%05d", i), tweaks...))
	}
	for j := range policies {
		ns := nsName(j % nsCount)
		name := fmt.Sprintf("np-%05d", j)
		app := func() string { return fmt.Sprintf("app=app-%d", r.IntN(10)) }
		var np *networkingv1.NetworkPolicy
		switch r.IntN(6) {
		case 0: // default deny ingress for one tier
			np = Policy(ns, name, Selecting(Sel("tier="+tiers[r.IntN(3)])))
		case 1: // same-namespace app to app on a number
			np = Policy(ns, name, Selecting(Sel(app())),
				IngressRule(Peers(PodPeer(Sel(app()))), Port(corev1.ProtocolTCP, 8080)))
		case 2: // web pods of a team's namespaces on the named port
			np = Policy(ns, name, Selecting(Sel("tier=api")),
				IngressRule(Peers(PodNSPeer(Sel("tier=web"), Sel(fmt.Sprintf("team=team-%d", r.IntN(8))))), NamedPort("http", "")))
		case 3: // egress: DNS to a block, a port range to prod namespaces
			np = Policy(ns, name, Selecting(Sel(app())), Types(networkingv1.PolicyTypeEgress),
				EgressRule(Peers(IPPeer("10.0.0.0/8", "10.128.0.0/16")), Port(corev1.ProtocolUDP, 53)),
				EgressRule(Peers(NSPeer(Sel("env=prod"))), PortRange(corev1.ProtocolTCP, 8000, 8100)))
		case 4: // both directions with expressions
			np = Policy(ns, name,
				Selecting(Expr("version", metav1.LabelSelectorOpIn, "v1")),
				Types(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress),
				IngressRule(Peers(NSPeer(Expr("env", metav1.LabelSelectorOpNotIn, "dev")), PodPeer(Expr("tier", metav1.LabelSelectorOpExists))),
					ProtoOnly(corev1.ProtocolTCP)),
				EgressRule(Peers(PodPeer(Sel())), NamedPort("metrics", corev1.ProtocolTCP), NamedPort("dns", corev1.ProtocolUDP)))
		default: // allow from a few namespaces by name
			np = Policy(ns, name, Selecting(Sel(app(), "tier="+tiers[r.IntN(3)])),
				IngressRule(Peers(NSPeer(Expr(policy.NamespaceNameLabel, metav1.LabelSelectorOpIn,
					nsName(r.IntN(nsCount)), nsName(r.IntN(nsCount)))))))
		}
		s.Policies = append(s.Policies, np)
	}
	return s
}

func nsName(i int) string { return fmt.Sprintf("ns-%03d", i) }

// SyntheticCluster adds n ClusterNetworkPolicies to s for benchmarks: Admin
// and Baseline, priorities spread over 0-1000, subjects by namespace team
// or pod app, and rules of every action over namespaces, pods and networks
// peers with numbers, ranges and named ports. Deterministic per seed.
func SyntheticCluster(s *policy.Snapshot, n int, seed uint64) {
	r := rand.New(rand.NewPCG(seed, seed^0x51f15e))
	actions := []cnpv1beta1.ClusterNetworkPolicyRuleAction{"Accept", "Deny", "Pass"}
	sel := func(kv string) *metav1.LabelSelector { return Sel(kv) }
	protos := func() []cnpv1beta1.ClusterNetworkPolicyProtocol {
		switch r.IntN(4) {
		case 0:
			return nil
		case 1:
			return []cnpv1beta1.ClusterNetworkPolicyProtocol{{TCP: &cnpv1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &cnpv1beta1.Port{Number: 8080}}}}
		case 2:
			return []cnpv1beta1.ClusterNetworkPolicyProtocol{{TCP: &cnpv1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: &cnpv1beta1.Port{Range: &cnpv1beta1.PortRange{Start: 8000, End: 8100}}}},
				{UDP: &cnpv1beta1.ClusterNetworkPolicyProtocolUDP{DestinationPort: &cnpv1beta1.Port{Number: 53}}}}
		}
		return []cnpv1beta1.ClusterNetworkPolicyProtocol{{DestinationNamedPort: "metrics"}}
	}
	for j := range n {
		p := &cnpv1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cnp-%05d", j)}}
		p.Spec.Tier = cnpv1beta1.AdminTier
		if r.IntN(2) == 0 {
			p.Spec.Tier = cnpv1beta1.BaselineTier
		}
		p.Spec.Priority = int32(r.IntN(1001))
		if r.IntN(2) == 0 {
			p.Spec.Subject.Namespaces = sel(fmt.Sprintf("team=team-%d", r.IntN(8)))
		} else {
			p.Spec.Subject.Pods = &cnpv1beta1.NamespacedPod{NamespaceSelector: *Sel(), PodSelector: *sel(fmt.Sprintf("app=app-%d", r.IntN(10)))}
		}
		for k := range 1 + r.IntN(3) {
			from := []cnpv1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: sel("env=" + []string{"prod", "dev", "staging"}[r.IntN(3)])}}
			if r.IntN(2) == 0 {
				from = []cnpv1beta1.ClusterNetworkPolicyIngressPeer{{Pods: &cnpv1beta1.NamespacedPod{NamespaceSelector: *sel(fmt.Sprintf("team=team-%d", r.IntN(8))), PodSelector: *sel("tier=web")}}}
			}
			p.Spec.Ingress = append(p.Spec.Ingress, cnpv1beta1.ClusterNetworkPolicyIngressRule{Name: fmt.Sprintf("in-%d", k), Action: actions[r.IntN(3)], From: from, Protocols: protos()})
		}
		if r.IntN(2) == 0 {
			p.Spec.Egress = append(p.Spec.Egress, cnpv1beta1.ClusterNetworkPolicyEgressRule{Name: "out", Action: actions[r.IntN(3)],
				To: []cnpv1beta1.ClusterNetworkPolicyEgressPeer{{Networks: []cnpv1beta1.CIDR{cnpv1beta1.CIDR(fmt.Sprintf("10.%d.0.0/16", 128+r.IntN(4)))}}}})
		}
		s.ClusterPolicies = append(s.ClusterPolicies, p)
	}
}
