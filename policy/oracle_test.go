package policy_test

import (
	"encoding/json"
	"net"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// refAllowed is a deliberately naive second reading of the NetworkPolicy
// documentation, written straight against the API objects with different
// helpers (net.ParseCIDR, fresh selector parsing each time, no indexes). The
// engine must agree with it on every traffic; the fuzz test relies on it.
func refAllowed(s *policy.Snapshot, t policy.Traffic) bool {
	proto := t.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	srcPod, srcIP := refResolve(s, t.Src)
	dstPod, dstIP := refResolve(s, t.Dst)
	if srcPod != nil && dstPod != nil && srcPod.Namespace == dstPod.Namespace && srcPod.Name == dstPod.Name {
		return true
	}
	if (srcIP != nil && dstIP != nil && srcIP.Equal(dstIP)) || (srcIP != nil && srcIP.IsLoopback()) || (dstIP != nil && dstIP.IsLoopback()) {
		return true
	}
	return refSide(s, networkingv1.PolicyTypeEgress, srcPod, dstPod, dstIP, dstPod, proto, t.Port) &&
		refSide(s, networkingv1.PolicyTypeIngress, dstPod, srcPod, srcIP, dstPod, proto, t.Port)
}

// refSide is one side through the tiers (cluster_fuzz_test.go), the
// NetworkPolicy tier being refNetworkPolicySide.
func refSide(s *policy.Snapshot, dir networkingv1.PolicyType, subject, otherPod *corev1.Pod, otherIP net.IP, dst *corev1.Pod, proto corev1.Protocol, port int32) bool {
	return refClusterSide(s, dir == networkingv1.PolicyTypeIngress, subject, otherPod, otherIP, dst, proto, port, func() (bool, bool) {
		return refNetworkPolicySide(s, dir, subject, otherPod, otherIP, dst, proto, port)
	})
}

func refIsNode(s *policy.Snapshot, ip net.IP) bool {
	if ip == nil {
		return false
	}
	for _, n := range s.NodeIPs {
		if net.ParseIP(n.String()).Equal(ip) {
			return true
		}
	}
	for _, n := range s.Nodes {
		for _, a := range n.Status.Addresses {
			if net.ParseIP(a.Address).Equal(ip) {
				return true
			}
		}
	}
	return false
}

func refResolve(s *policy.Snapshot, p policy.Peer) (*corev1.Pod, net.IP) {
	var ip net.IP
	if p.IP.IsValid() {
		ip = net.ParseIP(p.IP.String())
	}
	if p.Pod != nil {
		if ip == nil && p.Pod.Status.PodIP != "" {
			ip = net.ParseIP(p.Pod.Status.PodIP)
		}
		return p.Pod, ip
	}
	for _, pod := range s.Pods {
		if ip != nil && !pod.Spec.HostNetwork && net.ParseIP(pod.Status.PodIP).Equal(ip) {
			return pod, ip
		}
	}
	return nil, ip
}

// refNetworkPolicySide is the NetworkPolicy verdict of a pod's side and
// whether a policy isolates it (node traffic is allowed either way).
func refNetworkPolicySide(s *policy.Snapshot, dir networkingv1.PolicyType, subject, otherPod *corev1.Pod, otherIP net.IP, dst *corev1.Pod, proto corev1.Protocol, port int32) (allowed, isolated bool) {
	node := refIsNode(s, otherIP)
	for _, np := range s.Policies {
		if np.Namespace != subject.Namespace || !refSelects(&np.Spec.PodSelector, subject.Labels) {
			continue
		}
		types := np.Spec.PolicyTypes
		if len(types) == 0 {
			types = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
			if len(np.Spec.Egress) > 0 {
				types = append(types, networkingv1.PolicyTypeEgress)
			}
		}
		if !slices.Contains(types, dir) {
			continue
		}
		isolated = true
		type rule struct {
			peers []networkingv1.NetworkPolicyPeer
			ports []networkingv1.NetworkPolicyPort
		}
		var rules []rule
		if dir == networkingv1.PolicyTypeIngress {
			for _, r := range np.Spec.Ingress {
				rules = append(rules, rule{r.From, r.Ports})
			}
		} else {
			for _, r := range np.Spec.Egress {
				rules = append(rules, rule{r.To, r.Ports})
			}
		}
		for _, r := range rules {
			peerOK := len(r.peers) == 0
			for _, p := range r.peers {
				peerOK = peerOK || refPeer(s, np.Namespace, &p, otherPod, otherIP)
			}
			portOK := len(r.ports) == 0
			for _, p := range r.ports {
				portOK = portOK || refPort(&p, dst, proto, port)
			}
			if peerOK && portOK {
				return true, true
			}
		}
	}
	return !isolated || node, isolated
}

func refSelects(sel *metav1.LabelSelector, l map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(labels.Set(l))
}

func refPeer(s *policy.Snapshot, policyNS string, p *networkingv1.NetworkPolicyPeer, pod *corev1.Pod, ip net.IP) bool {
	if p.IPBlock != nil {
		if ip == nil {
			return false
		}
		_, cidr, _ := net.ParseCIDR(p.IPBlock.CIDR)
		if !cidr.Contains(ip) {
			return false
		}
		for _, e := range p.IPBlock.Except {
			if _, ex, _ := net.ParseCIDR(e); ex.Contains(ip) {
				return false
			}
		}
		return true
	}
	if pod == nil || pod.Spec.HostNetwork {
		return false
	}
	if p.NamespaceSelector == nil {
		if pod.Namespace != policyNS {
			return false
		}
	} else {
		nsLabels := map[string]string{}
		for _, ns := range s.Namespaces {
			if ns.Name == pod.Namespace {
				for k, v := range ns.Labels {
					nsLabels[k] = v
				}
			}
		}
		nsLabels["kubernetes.io/metadata.name"] = pod.Namespace
		if !refSelects(p.NamespaceSelector, nsLabels) {
			return false
		}
	}
	return p.PodSelector == nil || refSelects(p.PodSelector, pod.Labels)
}

func refPort(p *networkingv1.NetworkPolicyPort, dst *corev1.Pod, proto corev1.Protocol, port int32) bool {
	want := corev1.ProtocolTCP
	if p.Protocol != nil {
		want = *p.Protocol
	}
	if want != proto {
		return false
	}
	if p.Port == nil {
		return true
	}
	if p.Port.Type == intstr.Int {
		end := p.Port.IntVal
		if p.EndPort != nil {
			end = *p.EndPort
		}
		return port >= p.Port.IntVal && port <= end
	}
	return refDeclares(dst, p.Port.StrVal, proto, port)
}

// refDeclares: the destination pod (not hostNetwork) declares the named
// port for that protocol with that number.
func refDeclares(dst *corev1.Pod, name string, proto corev1.Protocol, port int32) bool {
	if dst == nil || dst.Spec.HostNetwork {
		return false
	}
	for _, c := range dst.Spec.Containers {
		for _, cp := range c.Ports {
			cproto := cp.Protocol
			if cproto == "" {
				cproto = corev1.ProtocolTCP
			}
			if cp.Name == name && cproto == proto && cp.ContainerPort == port {
				return true
			}
		}
	}
	return false
}

// checkInvariants asserts what must hold for every Decision.
func checkInvariants(t testing.TB, e *policy.Engine, tr policy.Traffic, d policy.Decision) {
	t.Helper()
	if d.Allowed != (d.Egress.Allowed && d.Ingress.Allowed) {
		t.Errorf("Allowed=%v but egress=%v ingress=%v", d.Allowed, d.Egress.Allowed, d.Ingress.Allowed)
	}
	if d.Egress.Direction != policy.Egress || d.Ingress.Direction != policy.Ingress {
		t.Errorf("directions %q/%q", d.Egress.Direction, d.Ingress.Direction)
	}
	for _, side := range []struct {
		dd          policy.DirectionDecision
		other, subj policy.Peer
	}{{d.Egress, tr.Dst, tr.Src}, {d.Ingress, tr.Src, tr.Dst}} {
		dd := side.dd
		switch dd.Reason {
		case policy.ReasonNotIsolated:
			if !dd.Allowed || dd.Isolated {
				t.Errorf("%s: NotIsolated but allowed=%v isolated=%v", dd.Direction, dd.Allowed, dd.Isolated)
			}
		case policy.ReasonNotApplicable:
			if !dd.Allowed {
				t.Errorf("%s: NotApplicable but denied", dd.Direction)
			}
		case policy.ReasonAllowedByRule:
			if !dd.Allowed || !dd.Isolated || len(dd.AllowedBy) == 0 {
				t.Errorf("%s: AllowedByRule but allowed=%v isolated=%v allowedBy=%v", dd.Direction, dd.Allowed, dd.Isolated, dd.AllowedBy)
			}
		case policy.ReasonNoRuleMatched:
			if dd.Allowed || !dd.Isolated || len(dd.AllowedBy) != 0 {
				t.Errorf("%s: NoRuleMatched but allowed=%v isolated=%v allowedBy=%v", dd.Direction, dd.Allowed, dd.Isolated, dd.AllowedBy)
			}
		case policy.ReasonAcceptedByClusterPolicy, policy.ReasonDeniedByClusterPolicy:
			cr := dd.ClusterRule
			want := policy.ActionAccept
			if dd.Reason == policy.ReasonDeniedByClusterPolicy {
				want = policy.ActionDeny
			}
			if cr == nil || cr.Rule.Action != want || dd.Allowed != (want == policy.ActionAccept) || cr.Rule.Tier != dd.Tier {
				t.Errorf("%s: %s with allowed=%v tier=%s clusterRule=%+v", dd.Direction, dd.Reason, dd.Allowed, dd.Tier, cr)
			}
			if dd.Tier == policy.TierAdmin && len(dd.Policies) > 0 {
				t.Errorf("%s: Admin decided, yet NetworkPolicies were evaluated", dd.Direction)
			}
		default:
			t.Errorf("%s: unknown reason %q", dd.Direction, dd.Reason)
		}
		if len(dd.ClusterPolicies) > 0 && (dd.Summary == "" || strings.Contains(dd.Summary, "%!")) {
			t.Errorf("%s: cluster policies consulted, bad summary %q", dd.Direction, dd.Summary)
		}
		for _, m := range dd.Passed {
			if m.Rule.Action != policy.ActionPass {
				t.Errorf("%s: passed %+v is not a Pass rule", dd.Direction, m)
			}
		}
		if dd.Isolated != (len(dd.IsolatedBy) > 0) {
			t.Errorf("%s: isolated=%v with isolatedBy=%v", dd.Direction, dd.Isolated, dd.IsolatedBy)
		}
		for _, m := range dd.AllowedBy {
			peers, ports, allPeers, allPorts, ok := e.RuleShape(m.Rule)
			if !ok || m.Rule.Direction != dd.Direction || !slices.Contains(dd.IsolatedBy, m.Rule.Policy) {
				t.Errorf("%s: allowedBy %+v names a rule that does not exist here", dd.Direction, m.Rule)
				continue
			}
			if (m.Peer == -1) != allPeers || m.Peer >= peers || (m.Port == -1) != allPorts || m.Port >= ports {
				t.Errorf("%s: allowedBy %+v: peer/port index out of the rule (peers=%d ports=%d)", dd.Direction, m, peers, ports)
			}
			if m.Peer >= 0 && !e.PeerMatches(m.Rule, m.Peer, side.other) {
				t.Errorf("%s: allowedBy %+v but PeerMatches says no", dd.Direction, m)
			}
		}
		if dd.Reason == policy.ReasonAllowedByRule || dd.Reason == policy.ReasonNoRuleMatched {
			if len(dd.Policies) != len(dd.IsolatedBy) {
				t.Errorf("%s: %d policy evaluations for %d isolating policies", dd.Direction, len(dd.Policies), len(dd.IsolatedBy))
			}
			for _, pe := range dd.Policies {
				if pe.Summary == "" || pe.Rules == nil || len(pe.Rules) != e.RuleCount(pe.Policy, dd.Direction) {
					t.Errorf("%s: policy evaluation %+v incomplete", dd.Direction, pe)
				}
				for _, r := range pe.Rules {
					if !r.Matched && len(r.Mismatches) == 0 {
						t.Errorf("%s: rule %+v did not match and says nothing why", dd.Direction, r.Rule)
					}
					for _, m := range r.Mismatches {
						if m.Message == "" || strings.Contains(m.Message, "%!") {
							t.Errorf("%s: rule %+v: bad mismatch message %q", dd.Direction, r.Rule, m.Message)
						}
					}
				}
			}
		}
	}
	if _, err := json.Marshal(d); err != nil {
		t.Errorf("marshal: %v", err)
	}
}
