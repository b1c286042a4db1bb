package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// Building blocks for the datapath compiler (Compile) and other bulk users.
// They expose the engine's own matching code piece by piece, so nothing
// outside this package re-implements NetworkPolicy semantics.

// PortRange is an inclusive range of destination ports of one protocol.
// Every port of the protocol is First 0, Last 65535.
type PortRange struct {
	Protocol corev1.Protocol `json:"protocol"`
	First    int32           `json:"first"`
	Last     int32           `json:"last"`
}

// AllPorts reports whether r covers every port of its protocol.
func (r PortRange) AllPorts() bool { return r.First == 0 && r.Last == 65535 }

// ErrNamedPortAbsent is returned (wrapped) by ResolvePort when the pod does not
// declare the name for the protocol.
var ErrNamedPortAbsent = errors.New("named port not declared")

// resolveNamed returns the distinct numbers a pod declares under name/proto, sorted.
func resolveNamed(ports []namedPort, name string, proto corev1.Protocol) []int32 {
	var out []int32
	for _, p := range ports {
		if p.name == name && p.proto == proto && !slices.Contains(out, p.port) {
			out = append(out, p.port)
		}
	}
	slices.Sort(out)
	return out
}

// ResolvePort resolves a named port on a destination pod the way policies do:
// by name and protocol (empty = TCP) over the pod's container ports,
// restartable init containers included. When the name is declared with
// several numbers it returns the lowest and a WarnNamedPortAmbiguous warning.
// An undeclared name returns an error wrapping ErrNamedPortAbsent that lists
// what the pod does declare.
func ResolvePort(dst *corev1.Pod, name string, proto corev1.Protocol) (int32, []Warning, error) {
	proto = normProtocol(proto)
	ports := declaredPorts(dst)
	nums := resolveNamed(ports, name, proto)
	key := dst.Namespace + "/" + dst.Name
	switch len(nums) {
	case 0:
		var have []string
		for _, p := range ports {
			have = append(have, fmt.Sprintf("%s=%d/%s", p.name, p.port, p.proto))
		}
		if len(have) == 0 {
			return 0, nil, fmt.Errorf("pod %s declares no named ports, so %q/%s cannot be resolved: %w", key, name, proto, ErrNamedPortAbsent)
		}
		return 0, nil, fmt.Errorf("pod %s does not declare port %q for %s (it declares %v): %w", key, name, proto, have, ErrNamedPortAbsent)
	case 1:
		return nums[0], nil, nil
	}
	return nums[0], []Warning{{Code: WarnNamedPortAmbiguous, Message: ambiguousMsg(key, name, proto, nums)}}, nil
}

// SelectingPolicies returns the policies that isolate pod for dir (after
// policyTypes defaulting), sorted by namespace/name. A hostNetwork pod is
// never isolated and gets none.
func (e *Engine) SelectingPolicies(pod *corev1.Pod, dir Direction) []PolicyRef {
	pi := e.lookupPod(pod)
	if pi.hostNetwork {
		return nil
	}
	pols := pi.ident.selectedBy[dirIndex(dir)]
	out := make([]PolicyRef, len(pols))
	for i, p := range pols {
		out[i] = p.ref
	}
	return out
}

// RuleCount returns how many rules policy ref has in dir that take effect: 0
// when the policy does not isolate for dir (its rules there are ignored) or is
// unknown.
func (e *Engine) RuleCount(ref PolicyRef, dir Direction) int {
	p := e.policyByRef[normRef(ref)]
	if p == nil {
		return 0
	}
	return len(p.rules[dirIndex(dir)])
}

// Isolates reports whether policy ref isolates its selected pods for dir.
func (e *Engine) Isolates(ref PolicyRef, dir Direction) bool {
	p := e.policyByRef[normRef(ref)]
	return p != nil && p.affects[dirIndex(dir)]
}

func (e *Engine) rule(r RuleRef) *ruleInfo {
	p := e.policyByRef[normRef(r.Policy)]
	if p == nil {
		return nil
	}
	rules := p.rules[dirIndex(r.Direction)]
	if r.Index < 0 || r.Index >= len(rules) {
		return nil
	}
	return &rules[r.Index]
}

// RuleShape says how many peer and port entries rule r has; an "all" side
// (empty or absent from/to or ports) has allPeers or allPorts set. ok is false
// for an unknown rule.
func (e *Engine) RuleShape(r RuleRef) (peers, ports int, allPeers, allPorts, ok bool) {
	ri := e.rule(r)
	if ri == nil {
		return 0, 0, false, false, false
	}
	return len(ri.peers), len(ri.ports), ri.allPeers, ri.allPorts, true
}

// PeerMatches reports whether peer entry i of rule r matches p, exactly as
// Evaluate judges it: selectors match Snapshot pods that do not use the host
// network; ipBlock matches p's address (a pod's IP included). An IP owned by
// a Snapshot pod is that pod. False for an unknown rule or index.
func (e *Engine) PeerMatches(r RuleRef, i int, p Peer) bool {
	ri := e.rule(r)
	if ri == nil || i < 0 || i >= len(ri.peers) {
		return false
	}
	ep := e.resolve(p)
	return ri.peers[i].matches(&ep)
}

// PeerIPBlock returns the ipBlock of peer entry i of rule r as parsed
// prefixes (host bits cleared). ok is false when the entry is not an ipBlock.
func (e *Engine) PeerIPBlock(r RuleRef, i int) (cidr netip.Prefix, except []netip.Prefix, ok bool) {
	ri := e.rule(r)
	if ri == nil || i < 0 || i >= len(ri.peers) || !ri.peers[i].ipBlock {
		return netip.Prefix{}, nil, false
	}
	return ri.peers[i].cidr, slices.Clone(ri.peers[i].except), true
}

// PeerPods returns the Snapshot pods that peer entry i of rule r selects by
// pod/namespace selectors (nil for an ipBlock entry: use PeerIPBlock, which
// also covers pod IPs).
func (e *Engine) PeerPods(r RuleRef, i int) []*corev1.Pod {
	ri := e.rule(r)
	if ri == nil || i < 0 || i >= len(ri.peers) || ri.peers[i].ipBlock {
		return nil
	}
	candidates := e.pods
	if ri.peers[i].nsSel == nil { // podSelector alone: the policy's namespace only
		candidates = e.podsByNS[ri.peers[i].policyNS]
	}
	var out []*corev1.Pod
	for _, pi := range candidates {
		ep := endpoint{pod: pi}
		if ri.peers[i].matches(&ep) {
			out = append(out, pi.object())
		}
	}
	return out
}

// PortRanges resolves port entry i of rule r for traffic to dst, exactly as
// Evaluate does: a number or port..endPort gives one range, a protocol-only
// entry gives every port of the protocol, and a named port gives the numbers
// dst declares under that name and protocol. A named port toward an IP (dst
// nil or a hostNetwork pod) or one dst does not declare gives nothing: it
// matches no traffic, and must never widen the rule. Warnings flag an absent
// or ambiguous name.
func (e *Engine) PortRanges(r RuleRef, i int, dst *corev1.Pod) ([]PortRange, []Warning) {
	ri := e.rule(r)
	if ri == nil || i < 0 || i >= len(ri.ports) {
		return nil, nil
	}
	pt := &ri.ports[i]
	switch pt.kind {
	case portAll:
		return []PortRange{{Protocol: pt.proto, First: 0, Last: 65535}}, nil
	case portNumber:
		return []PortRange{{Protocol: pt.proto, First: pt.first, Last: pt.last}}, nil
	}
	if dst == nil {
		return nil, nil
	}
	pi := e.lookupPod(dst)
	if pi.hostNetwork {
		return nil, nil
	}
	nums := resolveNamed(pi.ports, pt.name, pt.proto)
	if len(nums) == 0 {
		return nil, []Warning{{Code: WarnNamedPortAbsent, Message: fmt.Sprintf("named port %q is not declared by %s for %s: a ports entry naming it matches nothing there", pt.name, pi.key, pt.proto)}}
	}
	out := make([]PortRange, len(nums))
	for j, n := range nums {
		out[j] = PortRange{Protocol: pt.proto, First: n, Last: n}
	}
	var warns []Warning
	if len(nums) > 1 {
		warns = []Warning{{Code: WarnNamedPortAmbiguous, Message: ambiguousMsg(pi.key, pt.name, pt.proto, nums)}}
	}
	return out, warns
}

// Exempt reports whether traffic between src and dst bypasses policy on both
// sides as loopback (a pod to itself, 127.0.0.0/8, ::1). The
// per-side exemptions are SideExempt.
func (e *Engine) Exempt(src, dst Peer) bool {
	s, d := e.resolve(src), e.resolve(dst)
	return isLoopback(&s, &d)
}

// SideExempt reports whether one side of traffic between subject (the pod
// whose policies would apply) and other is not subject to policy: subject is
// not a pod (an IP, a hostNetwork pod), or other is a node address (node
// traffic is always allowed).
func (e *Engine) SideExempt(subject, other Peer) bool {
	s, o := e.resolve(subject), e.resolve(other)
	return !s.isPod() || o.node
}
