package policy

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	netutils "k8s.io/utils/net"
)

// KindNetworkPolicy is PolicyRef.Kind for networking.k8s.io/v1 NetworkPolicy.
const KindNetworkPolicy = "NetworkPolicy"

// policyInfo is a validated policy with its selectors parsed once.
type policyInfo struct {
	obj    *networkingv1.NetworkPolicy
	ref    PolicyRef
	podSel labels.Selector
	// affects says whether the policy isolates its pods per direction index,
	// after policyTypes defaulting.
	affects [2]bool
	rules   [2][]ruleInfo
	// audited: evaluated but not enforced (audit.go).
	audited bool
	// tmpl is the policyInfo this one was instantiated from (see instance).
	tmpl *policyInfo
}

// policyFacts is what one policy object determines: its validation error,
// or its compiled form, the template of every Engine's policyInfo for it.
// A Cache keeps it per object across Engines, so it is never modified.
type policyFacts struct {
	tmpl    *policyInfo
	invalid error // ValidatePolicy's
	err     error // compilePolicy's
}

func derivePolicy(np *networkingv1.NetworkPolicy) policyFacts {
	if err := ValidatePolicy(np); err != nil {
		return policyFacts{invalid: err}
	}
	pi, err := compilePolicy(np)
	if err != nil {
		return policyFacts{err: err}
	}
	return policyFacts{tmpl: pi}
}

// instance copies a template for one Engine: its peers get match caches of
// their own (sized by NewEngine), everything else is immutable and shared.
func (t *policyInfo) instance() *policyInfo {
	pi := *t
	pi.tmpl = t
	for d := range pi.rules {
		pi.rules[d] = slices.Clone(t.rules[d])
		for r := range pi.rules[d] {
			pi.rules[d][r].peers = slices.Clone(t.rules[d][r].peers)
		}
	}
	return &pi
}

type ruleInfo struct {
	ref      RuleRef
	allPeers bool // from/to empty or absent
	peers    []peerInfo
	allPorts bool // ports empty or absent
	ports    []portInfo
}

type peerInfo struct {
	spec     *networkingv1.NetworkPolicyPeer
	policyNS string
	podSel   labels.Selector // nil when podSelector is absent
	nsSel    labels.Selector // nil when namespaceSelector is absent
	ipBlock  bool
	cidr     netip.Prefix
	except   []netip.Prefix
	cache    *matchCache // selector answer per identity
}

type portKind uint8

const (
	portAll    portKind = iota // protocol only: every port of the protocol
	portNumber                 // port, or port..endPort
	portNamed                  // a container port name, resolved per destination pod
)

type portInfo struct {
	proto       corev1.Protocol
	kind        portKind
	first, last int32
	name        string
}

// PolicyTypes returns the directions a policy isolates its pods for, with the
// API's defaulting: Ingress always when policyTypes is empty, plus Egress when
// the policy has egress rules.
func PolicyTypes(np *networkingv1.NetworkPolicy) (ingress, egress bool) {
	if len(np.Spec.PolicyTypes) == 0 {
		return true, len(np.Spec.Egress) > 0
	}
	for _, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		}
	}
	return ingress, egress
}

// compilePolicy parses a policy that ValidatePolicy accepted.
func compilePolicy(np *networkingv1.NetworkPolicy) (*policyInfo, error) {
	pi := &policyInfo{obj: np, ref: PolicyRef{Kind: KindNetworkPolicy, Namespace: np.Namespace, Name: np.Name}}
	fail := func(path string, err error) (*policyInfo, error) {
		return nil, fmt.Errorf("networkpolicy %s/%s: %s: %w", np.Namespace, np.Name, path, err)
	}
	var err error
	if pi.podSel, err = metav1.LabelSelectorAsSelector(&np.Spec.PodSelector); err != nil {
		return fail("spec.podSelector", err)
	}
	pi.affects[0], pi.affects[1] = PolicyTypes(np)
	// Rules of a direction the policy does not isolate never apply: keeping
	// them out here means egress rules can never count as ingress, or back.
	for di, dir := range []Direction{Ingress, Egress} {
		if !pi.affects[di] {
			continue
		}
		for i, r := range ruleSpecs(np, dir) {
			ri, err := compileRule(pi.ref, dir, i, r.peers, r.ports)
			if err != nil {
				return fail(fmt.Sprintf("spec.%s[%d]", strings.ToLower(string(dir)), i), err)
			}
			pi.rules[di] = append(pi.rules[di], ri)
		}
	}
	return pi, nil
}

// ruleSpec is one ingress or egress rule: its from/to list and its ports.
type ruleSpec struct {
	peers []networkingv1.NetworkPolicyPeer
	ports []networkingv1.NetworkPolicyPort
}

// ruleSpecs returns np's rules in dir as written, whatever policyTypes says.
func ruleSpecs(np *networkingv1.NetworkPolicy, dir Direction) []ruleSpec {
	var out []ruleSpec
	if dir == Egress {
		for _, r := range np.Spec.Egress {
			out = append(out, ruleSpec{r.To, r.Ports})
		}
		return out
	}
	for _, r := range np.Spec.Ingress {
		out = append(out, ruleSpec{r.From, r.Ports})
	}
	return out
}

func compileRule(ref PolicyRef, dir Direction, idx int, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) (ruleInfo, error) {
	ri := ruleInfo{ref: RuleRef{Policy: ref, Direction: dir, Index: idx}, allPeers: len(peers) == 0, allPorts: len(ports) == 0}
	for i := range peers {
		p, err := compilePeer(&peers[i], ref.Namespace)
		if err != nil {
			return ri, fmt.Errorf("peer %d: %w", i, err)
		}
		ri.peers = append(ri.peers, p)
	}
	for i := range ports {
		ri.ports = append(ri.ports, compilePort(&ports[i]))
	}
	return ri, nil
}

func compilePeer(spec *networkingv1.NetworkPolicyPeer, policyNS string) (peerInfo, error) {
	p := peerInfo{spec: spec, policyNS: policyNS}
	var err error
	if spec.IPBlock != nil {
		p.ipBlock = true
		if p.cidr, err = parseCIDR(spec.IPBlock.CIDR); err != nil {
			return p, err
		}
		for _, s := range spec.IPBlock.Except {
			ex, err := parseCIDR(s)
			if err != nil {
				return p, err
			}
			p.except = append(p.except, ex)
		}
		return p, nil
	}
	if spec.PodSelector != nil {
		if p.podSel, err = metav1.LabelSelectorAsSelector(spec.PodSelector); err != nil {
			return p, err
		}
	}
	if spec.NamespaceSelector != nil {
		if p.nsSel, err = metav1.LabelSelectorAsSelector(spec.NamespaceSelector); err != nil {
			return p, err
		}
	}
	return p, nil
}

func compilePort(spec *networkingv1.NetworkPolicyPort) portInfo {
	pt := portInfo{proto: corev1.ProtocolTCP}
	if spec.Protocol != nil {
		pt.proto = *spec.Protocol
	}
	switch {
	case spec.Port == nil:
		pt.kind = portAll
	case spec.Port.Type == intstr.String:
		pt.kind, pt.name = portNamed, spec.Port.StrVal
	default:
		pt.kind, pt.first, pt.last = portNumber, spec.Port.IntVal, spec.Port.IntVal
		if spec.EndPort != nil {
			pt.last = *spec.EndPort
		}
	}
	return pt
}

// parseCIDR accepts what the API server accepts for ipBlock (including the
// legacy forms with leading zeros or host bits set) and returns the network.
func parseCIDR(s string) (netip.Prefix, error) {
	_, n, err := netutils.ParseCIDRSloppy(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: %w", s, err)
	}
	return prefixFromIPNet(n)
}

func prefixFromIPNet(n *net.IPNet) (netip.Prefix, error) {
	addr, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %s", n)
	}
	bits, _ := n.Mask.Size()
	if addr.Is4In6() && bits >= 96 {
		addr, bits = addr.Unmap(), bits-96
	}
	return netip.PrefixFrom(addr, bits).Masked(), nil
}

// matchCache memoises a peer's selector answer per identity: two bits per
// identity (known, match) set together by one atomic OR, so concurrent
// readers see either nothing or the final, deterministic answer. The bits
// are allocated on the first answer: at 100k pods (30k identities) and 10k
// policies, caches made up front for every peer were 111 MB per Engine, and
// a node's compile asks only the peers of the policies that select its pods.
type matchCache struct {
	identities int
	words      atomic.Pointer[[]atomic.Uint64]
}

func newMatchCache(identities int) *matchCache { return &matchCache{identities: identities} }

func (c *matchCache) get(id int) (match, known bool) {
	if c == nil || id < 0 || id >= c.identities {
		return false, false
	}
	w := c.words.Load()
	if w == nil {
		return false, false
	}
	v := (*w)[id/32].Load() >> (2 * (id % 32))
	return v&2 != 0, v&1 != 0
}

func (c *matchCache) put(id int, match bool) {
	if c == nil || id < 0 || id >= c.identities {
		return
	}
	w := c.words.Load()
	if w == nil {
		fresh := make([]atomic.Uint64, (c.identities+31)/32)
		if c.words.CompareAndSwap(nil, &fresh) {
			w = &fresh
		} else {
			w = c.words.Load() // another reader allocated first
		}
	}
	bits := uint64(1)
	if match {
		bits |= 2
	}
	(*w)[id/32].Or(bits << (2 * (id % 32)))
}

// endpoint is one resolved end of a Traffic.
type endpoint struct {
	pod  *podInfo // nil for an address that is not a Snapshot pod
	ip   netip.Addr
	node bool // ip is a node address
}

// isPod reports whether policy selectors can see this end: a pod that does
// not use the host network.
func (ep *endpoint) isPod() bool { return ep.pod != nil && !ep.pod.hostNetwork }

// nsMatches is the namespace half of a selector peer.
func (p *peerInfo) nsMatches(ns *nsInfo) bool {
	if p.nsSel == nil {
		// podSelector alone: the policy's own namespace.
		return ns.name == p.policyNS
	}
	return p.nsSel.Matches(ns.labels)
}

func (p *peerInfo) podMatches(l labels.Set) bool {
	return p.podSel == nil || p.podSel.Matches(l)
}

// selects is the whole selector peer for one identity, memoised.
func (p *peerInfo) selects(id *identity) bool {
	if m, ok := p.cache.get(id.id); ok {
		return m
	}
	m := p.nsMatches(id.ns) && p.podMatches(id.labels)
	p.cache.put(id.id, m)
	return m
}

// inBlock is ipBlock membership: inside cidr and outside every except.
func (p *peerInfo) inBlock(ip netip.Addr) bool {
	if !p.cidr.Contains(ip) {
		return false
	}
	for _, ex := range p.except {
		if ex.Contains(ip) {
			return false
		}
	}
	return true
}

// matches is the semantics of one from/to entry. ipBlock matches any address,
// pod IPs included (as the upstream e2e suite expects); selectors match only
// pods that do not use the host network.
func (p *peerInfo) matches(other *endpoint) bool {
	if p.ipBlock {
		return other.ip.IsValid() && p.inBlock(other.ip)
	}
	return other.isPod() && p.selects(other.pod.ident)
}

// matches is the semantics of one ports entry for traffic to dst. A named
// port matches only a destination pod declaring that name for that protocol
// with that number, so a name that resolves nowhere matches nothing.
func (pt *portInfo) matches(proto corev1.Protocol, port int32, dst *endpoint) bool {
	// A ClusterNetworkPolicy named port has no protocol of its own: the
	// pod's declaration gives it (checked below).
	if pt.proto != "" && proto != pt.proto {
		return false
	}
	switch pt.kind {
	case portAll:
		return true
	case portNumber:
		return port >= pt.first && port <= pt.last
	}
	if !dst.isPod() {
		return false
	}
	for _, np := range dst.pod.ports {
		if np.port == port && np.name == pt.name && np.proto == proto {
			return true
		}
	}
	return false
}

// match is the semantics of one rule: some peer AND some port (an empty list
// matches everything). It returns the indexes that matched (-1 for "all").
// With explain set it does not stop at a failing peer list, so the caller can
// report the ports too; the verdict is the same either way.
func (r *ruleInfo) match(other, dst *endpoint, proto corev1.Protocol, port int32, explain bool) (peer, portIdx int, peerOK, portOK bool) {
	peer, portIdx = -1, -1
	peerOK = r.allPeers
	for i := 0; !peerOK && i < len(r.peers); i++ {
		if r.peers[i].matches(other) {
			peer, peerOK = i, true
		}
	}
	if !peerOK && !explain {
		return peer, portIdx, false, false
	}
	portOK = r.allPorts
	for i := 0; !portOK && i < len(r.ports); i++ {
		if r.ports[i].matches(proto, port, dst) {
			portIdx, portOK = i, true
		}
	}
	return peer, portIdx, peerOK, portOK
}
