package policy

import (
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// NodeAddress is one address that belongs to a cluster node: traffic from
// it is node traffic (kubelet probes, hostNetwork pods, host processes).
type NodeAddress struct {
	IP   netip.Addr
	Node string
	// Source says where the address was read: "status" (InternalIP,
	// ExternalIP), "podCIDR" (the pod range's network or first address),
	// or the annotation's key.
	Source string
}

// Annotations with a node's own addresses, written by pod-network CNIs.
// Values are an address or a CIDR (Calico writes "10.250.0.2/24").
var nodeAddressAnnotations = []string{
	"flannel.alpha.coreos.com/public-ip",
	"flannel.alpha.coreos.com/public-ipv6",
	"flannel.alpha.coreos.com/public-ip-overwrite",
	"projectcalico.org/IPv4Address",
	"projectcalico.org/IPv6Address",
	"projectcalico.org/IPv4VXLANTunnelAddr",
	"projectcalico.org/IPv6VXLANTunnelAddr",
	"projectcalico.org/IPv4IPIPTunnelAddr",
	"projectcalico.org/IPv4WireguardInterfaceAddr",
	"network.cilium.io/ipv4-cilium-host",
	"network.cilium.io/ipv6-cilium-host",
}

// NodeAddresses derives every address of every node, the one rule the agent
// (Compile's HostIPs, flow labels) and the CLI (explain) share:
//   - status.addresses of type InternalIP and ExternalIP;
//   - the node-address annotations of Flannel (public-ip), Calico (node and
//     tunnel addresses) and Cilium (cilium_host);
//   - for each spec.podCIDRs range, its network address and first address:
//     what bridge and overlay CNIs give the node inside its pod range
//     (Flannel vxlan: flannel.1 is 10.244.N.0/32 and the cni0 bridge
//     10.244.N.1; host processes on N reach pods on other nodes from
//     10.244.N.0; host-local IPAM hands pods .2 and up).
//
// An address derived from the pod range or an annotation is left out when
// podHolds says a pod (not hostNetwork) holds it: a pod's address must never
// become node traffic, which policy does not restrict. The agent answers
// from its pod-by-IP index (only the few derived addresses are looked up);
// PodsHold builds the answer from a list. podHolds may be nil (then nothing
// is left out). Loopback, link-local and unspecified addresses are
// never listed. The result is sorted by address; an address claimed by two
// nodes goes to the first by name.
func NodeAddresses(nodes []*corev1.Node, podHolds func(netip.Addr) bool) []NodeAddress {
	sorted := slices.Clone(nodes)
	slices.SortFunc(sorted, func(a, b *corev1.Node) int { return strings.Compare(a.Name, b.Name) })
	usable := func(ip netip.Addr) bool {
		return ip.IsValid() && !ip.IsLoopback() && !ip.IsUnspecified() && !ip.IsLinkLocalUnicast()
	}
	seen := map[netip.Addr]bool{}
	var out []NodeAddress
	for _, n := range sorted {
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil && usable(ip.Unmap()) && !seen[ip.Unmap()] {
				seen[ip.Unmap()] = true
				out = append(out, NodeAddress{IP: ip.Unmap(), Node: n.Name, Source: "status"})
			}
		}
	}
	// Derived addresses come second, so a status address always keeps its
	// own node even if another node's annotation repeats it.
	var derived []NodeAddress
	candidate := map[netip.Addr]bool{}
	add := func(ip netip.Addr, node, source string) {
		if ip = ip.Unmap(); usable(ip) && !seen[ip] && !candidate[ip] {
			candidate[ip] = true
			derived = append(derived, NodeAddress{IP: ip, Node: node, Source: source})
		}
	}
	for _, n := range sorted {
		for _, key := range nodeAddressAnnotations {
			if v := n.Annotations[key]; v != "" {
				if ip, ok := parseAddrOrPrefix(v); ok {
					add(ip, n.Name, key)
				}
			}
		}
		cidrs := n.Spec.PodCIDRs
		if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
			cidrs = []string{n.Spec.PodCIDR}
		}
		for _, c := range cidrs {
			pfx, err := netip.ParsePrefix(c)
			if err != nil {
				continue
			}
			pfx = pfx.Masked()
			add(pfx.Addr(), n.Name, "podCIDR")
			if first := pfx.Addr().Next(); first.IsValid() && pfx.Contains(first) {
				add(first, n.Name, "podCIDR")
			}
		}
	}
	for _, d := range derived {
		if podHolds == nil || !podHolds(d.IP) {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b NodeAddress) int { return a.IP.Compare(b.IP) })
	return out
}

// SameNodeForPolicy reports whether policy reads the same from a and b: what
// NodeAddresses reads, and the labels (for node selectors of cluster-wide
// policies). The agent skips the recompile for Node updates that change
// neither (conditions, heartbeats, images, other annotations).
func SameNodeForPolicy(a, b *corev1.Node) bool {
	if a.Name != b.Name || !maps.Equal(a.Labels, b.Labels) || a.Spec.PodCIDR != b.Spec.PodCIDR || !slices.Equal(a.Spec.PodCIDRs, b.Spec.PodCIDRs) ||
		!slices.Equal(a.Status.Addresses, b.Status.Addresses) {
		return false
	}
	for _, k := range nodeAddressAnnotations {
		if a.Annotations[k] != b.Annotations[k] {
			return false
		}
	}
	return true
}

// PodsHold returns a podHolds for NodeAddresses: whether a pod of pods (not
// hostNetwork) has the address.
func PodsHold(pods []*corev1.Pod) func(netip.Addr) bool {
	recs := make([]*Pod, 0, len(pods))
	for _, p := range pods {
		if p != nil {
			recs = append(recs, NewPod(p))
		}
	}
	return podsHold(recs)
}

func parseAddrOrPrefix(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr(), true
	}
	a, err := netip.ParseAddr(s)
	return a, err == nil
}

// NodeIPs is the addresses of NodeAddresses, for Snapshot.NodeIPs.
func NodeIPs(addrs []NodeAddress) []netip.Addr {
	out := make([]netip.Addr, len(addrs))
	for i, a := range addrs {
		out[i] = a.IP
	}
	return out
}
