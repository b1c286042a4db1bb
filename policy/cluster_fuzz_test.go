package policy_test

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	. "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

// randomClusterPolicies adds two labelled nodes and up to 4 valid
// ClusterNetworkPolicies of both tiers using every subject, peer, action
// and protocol form (few priorities, so ties happen).
func randomClusterPolicies(c *chooser, s *policy.Snapshot, sel func() *metav1.LabelSelector) {
	for i, ip := range []string{"172.31.0.1", "172.31.0.2"} {
		s.Nodes = append(s.Nodes, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("n%d", i), Labels: Labels(c.pick("role=cp", "role=worker", "app=a"))},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}}})
	}
	actions := []cnpv1beta1.ClusterNetworkPolicyRuleAction{"Accept", "Deny", "Pass"}
	protocols := func(named bool) []cnpv1beta1.ClusterNetworkPolicyProtocol {
		var out []cnpv1beta1.ClusterNetworkPolicyProtocol
		for range c.n(3) {
			port := &cnpv1beta1.Port{Number: []int32{80, 53, 8080}[c.n(3)]}
			if c.n(2) == 0 {
				port = &cnpv1beta1.Port{Range: &cnpv1beta1.PortRange{Start: 50, End: []int32{53, 80, 8080}[c.n(3)]}}
			}
			switch c.n(4) {
			case 0:
				out = append(out, cnpv1beta1.ClusterNetworkPolicyProtocol{TCP: &cnpv1beta1.ClusterNetworkPolicyProtocolTCP{DestinationPort: port}})
			case 1:
				out = append(out, cnpv1beta1.ClusterNetworkPolicyProtocol{UDP: &cnpv1beta1.ClusterNetworkPolicyProtocolUDP{DestinationPort: port}})
			case 2:
				out = append(out, cnpv1beta1.ClusterNetworkPolicyProtocol{SCTP: &cnpv1beta1.ClusterNetworkPolicyProtocolSCTP{DestinationPort: port}})
			default:
				if named {
					out = append(out, cnpv1beta1.ClusterNetworkPolicyProtocol{DestinationNamedPort: c.pick("http", "dns", "web", "missing")})
				}
			}
		}
		return out
	}
	for j := range c.n(5) {
		p := &cnpv1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cnp%d", j)}}
		p.Spec.Tier = cnpv1beta1.Tier(c.pick("Admin", "Baseline"))
		p.Spec.Priority = int32(c.n(3))
		if c.n(2) == 0 {
			p.Spec.Subject.Namespaces = sel()
		} else {
			p.Spec.Subject.Pods = &cnpv1beta1.NamespacedPod{NamespaceSelector: *sel(), PodSelector: *sel()}
		}
		for range c.n(3) {
			r := cnpv1beta1.ClusterNetworkPolicyIngressRule{Name: fmt.Sprintf("in-%d", c.n(9)), Action: actions[c.n(3)]}
			for range 1 + c.n(2) {
				if c.n(2) == 0 {
					r.From = append(r.From, cnpv1beta1.ClusterNetworkPolicyIngressPeer{Namespaces: sel()})
				} else {
					r.From = append(r.From, cnpv1beta1.ClusterNetworkPolicyIngressPeer{Pods: &cnpv1beta1.NamespacedPod{NamespaceSelector: *sel(), PodSelector: *sel()}})
				}
			}
			r.Protocols = protocols(true)
			p.Spec.Ingress = append(p.Spec.Ingress, r)
		}
		for range c.n(3) {
			r := cnpv1beta1.ClusterNetworkPolicyEgressRule{Action: actions[c.n(3)]}
			named := true
			for range 1 + c.n(2) {
				switch c.n(5) {
				case 0:
					r.To = append(r.To, cnpv1beta1.ClusterNetworkPolicyEgressPeer{Namespaces: sel()})
				case 1:
					r.To = append(r.To, cnpv1beta1.ClusterNetworkPolicyEgressPeer{Pods: &cnpv1beta1.NamespacedPod{NamespaceSelector: *sel(), PodSelector: *sel()}})
				case 2:
					named = false
					r.To = append(r.To, cnpv1beta1.ClusterNetworkPolicyEgressPeer{Networks: []cnpv1beta1.CIDR{cnpv1beta1.CIDR(c.pick("10.0.0.0/16", "10.0.1.0/24", "0.0.0.0/0", "fd00::/64", "172.31.0.0/16"))}})
				case 3:
					named = false
					r.To = append(r.To, cnpv1beta1.ClusterNetworkPolicyEgressPeer{Nodes: sel()})
				default:
					if r.Action == "Accept" {
						named = false
						r.To = append(r.To, cnpv1beta1.ClusterNetworkPolicyEgressPeer{DomainNames: []cnpv1beta1.DomainName{"example.com"}})
					} else {
						r.To = append(r.To, cnpv1beta1.ClusterNetworkPolicyEgressPeer{Namespaces: sel()})
					}
				}
			}
			r.Protocols = protocols(named)
			p.Spec.Egress = append(p.Spec.Egress, r)
		}
		s.ClusterPolicies = append(s.ClusterPolicies, p)
	}
}

// refClusterSide is the reference reading of the tiers for one side:
// Admin (priority, name, rule order; first match), NetworkPolicy for the pods
// it selects, Baseline, allow. np is the reference NetworkPolicy verdict.
func refClusterSide(s *policy.Snapshot, ingress bool, subject, otherPod *corev1.Pod, otherIP net.IP, dst *corev1.Pod, proto corev1.Protocol, port int32,
	np func() (allowed, isolated bool)) bool {
	if subject == nil || subject.Spec.HostNetwork {
		return true
	}
	pols := slices.Clone(s.ClusterPolicies)
	slices.SortFunc(pols, func(a, b *cnpv1beta1.ClusterNetworkPolicy) int {
		if a.Spec.Tier != b.Spec.Tier {
			return strings.Compare(string(a.Spec.Tier), string(b.Spec.Tier)) // Admin < Baseline
		}
		if a.Spec.Priority != b.Spec.Priority {
			return int(a.Spec.Priority - b.Spec.Priority)
		}
		return strings.Compare(a.Name, b.Name)
	})
	tier := func(t cnpv1beta1.Tier) (bool, bool) {
		for _, p := range pols {
			if p.Spec.Tier != t || !refCNPSubject(s, p, subject) {
				continue
			}
			type rule struct {
				action cnpv1beta1.ClusterNetworkPolicyRuleAction
				peers  []cnpv1beta1.ClusterNetworkPolicyEgressPeer
				protos []cnpv1beta1.ClusterNetworkPolicyProtocol
			}
			var rules []rule
			if ingress {
				for _, r := range p.Spec.Ingress {
					var peers []cnpv1beta1.ClusterNetworkPolicyEgressPeer
					for _, f := range r.From {
						peers = append(peers, cnpv1beta1.ClusterNetworkPolicyEgressPeer{Namespaces: f.Namespaces, Pods: f.Pods})
					}
					rules = append(rules, rule{r.Action, peers, r.Protocols})
				}
			} else {
				for _, r := range p.Spec.Egress {
					rules = append(rules, rule{r.Action, r.To, r.Protocols})
				}
			}
			for _, r := range rules {
				peerOK := false
				for _, pe := range r.peers {
					peerOK = peerOK || refCNPPeer(s, &pe, otherPod, otherIP)
				}
				portOK := len(r.protos) == 0
				for _, pr := range r.protos {
					portOK = portOK || refCNPProtocol(&pr, dst, proto, port)
				}
				if peerOK && portOK {
					switch r.action {
					case "Accept":
						return true, true
					case "Deny":
						return false, true
					}
					return false, false
				}
			}
		}
		return false, false
	}
	if v, ok := tier("Admin"); ok {
		return v
	}
	if allowed, isolated := np(); isolated {
		return allowed
	}
	if v, ok := tier("Baseline"); ok {
		return v
	}
	return true
}

func refNSLabels(s *policy.Snapshot, ns string) map[string]string {
	l := map[string]string{}
	for _, n := range s.Namespaces {
		if n.Name == ns {
			for k, v := range n.Labels {
				l[k] = v
			}
		}
	}
	l[policy.NamespaceNameLabel] = ns
	return l
}

func refCNPSubject(s *policy.Snapshot, p *cnpv1beta1.ClusterNetworkPolicy, pod *corev1.Pod) bool {
	if p.Spec.Subject.Namespaces != nil {
		return refSelects(p.Spec.Subject.Namespaces, refNSLabels(s, pod.Namespace))
	}
	return refSelects(&p.Spec.Subject.Pods.NamespaceSelector, refNSLabels(s, pod.Namespace)) && refSelects(&p.Spec.Subject.Pods.PodSelector, pod.Labels)
}

func refCNPPeer(s *policy.Snapshot, pe *cnpv1beta1.ClusterNetworkPolicyEgressPeer, pod *corev1.Pod, ip net.IP) bool {
	selectable := pod != nil && !pod.Spec.HostNetwork
	switch {
	case pe.Namespaces != nil:
		return selectable && refSelects(pe.Namespaces, refNSLabels(s, pod.Namespace))
	case pe.Pods != nil:
		return selectable && refSelects(&pe.Pods.NamespaceSelector, refNSLabels(s, pod.Namespace)) && refSelects(&pe.Pods.PodSelector, pod.Labels)
	case pe.Networks != nil:
		for _, n := range pe.Networks {
			if _, cidr, _ := net.ParseCIDR(string(n)); ip != nil && cidr.Contains(ip) {
				return true
			}
		}
	case pe.Nodes != nil:
		for _, n := range s.Nodes {
			for _, a := range n.Status.Addresses {
				if ip != nil && net.ParseIP(a.Address).Equal(ip) && refSelects(pe.Nodes, n.Labels) {
					return true
				}
			}
		}
	}
	return false
}

func refCNPProtocol(pr *cnpv1beta1.ClusterNetworkPolicyProtocol, dst *corev1.Pod, proto corev1.Protocol, port int32) bool {
	var want corev1.Protocol
	var dp *cnpv1beta1.Port
	switch {
	case pr.TCP != nil:
		want, dp = corev1.ProtocolTCP, pr.TCP.DestinationPort
	case pr.UDP != nil:
		want, dp = corev1.ProtocolUDP, pr.UDP.DestinationPort
	case pr.SCTP != nil:
		want, dp = corev1.ProtocolSCTP, pr.SCTP.DestinationPort
	default:
		return refDeclares(dst, pr.DestinationNamedPort, proto, port)
	}
	if want != proto {
		return false
	}
	if dp.Range != nil {
		return port >= dp.Range.Start && port <= dp.Range.End
	}
	return port == dp.Number
}

// TestClusterRandomWorlds checks the engine against the reference on many
// random worlds with ClusterNetworkPolicies, beyond the fuzz seeds.
func TestClusterRandomWorlds(t *testing.T) {
	for n := range 300 {
		data := []byte(fmt.Sprintf("%064d", n*7919))
		for i := range data {
			data[i] = byte((int(data[i])*31 + i*17 + n*13) % 251)
		}
		s := randomWorld(&chooser{b: data})
		e, err := policy.NewEngine(s)
		if err != nil {
			t.Fatalf("world %d: %v", n, err)
		}
		checkWorld(t, s, e)
	}
}
