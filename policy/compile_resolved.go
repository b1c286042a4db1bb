package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// This file compiles resolved directions (see EndpointPolicy): where a
// ClusterNetworkPolicy applies, first match across tiers cannot be the
// kernel's union of allowances, so the compiler runs the tiers itself, per
// class of peers that every rule treats alike, and writes each class's
// decision for every protocol and port.
//
// Peer classes: a pod identity, a node identity, or a region (a CIDR of the
// direction's rules minus the more specific ones, down to 0.0.0.0/0 and
// ::/0). Pod and node identities are split by the CIDRs holding their
// addresses (cidrSignature), so each class is homogeneous: every rule
// matches all of it or none of it. An identity needs entries only where its
// decision differs from the region holding its address, since the kernel
// falls back to the region there.

// Values painted into a portFn while running the tiers: 0 is "not decided";
// passMark is a Pass, which ends the Admin tier without deciding.
const passMark = ^uint32(0)

var resolvedProtocols = [3]corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}

func resolvedProtoIndex(p corev1.Protocol) int {
	for i, rp := range resolvedProtocols {
		if rp == p {
			return i
		}
	}
	return -1
}

// seg is one run of ports with the same decision.
type seg struct {
	lo, hi int32
	v      uint32
}

// portFn is a decision for every protocol and port: runs of TCP, UDP and
// SCTP ports covering 0..65535, and one value for every other protocol.
type portFn struct {
	proto [3][]seg
	other uint32
}

func newPortFn() *portFn {
	f := &portFn{}
	for i := range f.proto {
		f.proto[i] = []seg{{0, 65535, 0}}
	}
	return f
}

// paint sets v on the undecided ports lo..hi of protocol index pi.
func (f *portFn) paint(pi int, lo, hi int32, v uint32) {
	var out []seg
	for _, s := range f.proto[pi] {
		if s.v != 0 || s.hi < lo || s.lo > hi {
			out = append(out, s)
			continue
		}
		if s.lo < lo {
			out = append(out, seg{s.lo, lo - 1, 0})
		}
		out = append(out, seg{max(s.lo, lo), min(s.hi, hi), v})
		if s.hi > hi {
			out = append(out, seg{hi + 1, s.hi, 0})
		}
	}
	f.proto[pi] = coalesce(out)
}

// paintAll sets v on everything undecided.
func (f *portFn) paintAll(v uint32) {
	for pi := range f.proto {
		f.paint(pi, 0, 65535, v)
	}
	if f.other == 0 {
		f.other = v
	}
}

// replace turns every from into to.
func (f *portFn) replace(from, to uint32) {
	for pi := range f.proto {
		for i := range f.proto[pi] {
			if f.proto[pi][i].v == from {
				f.proto[pi][i].v = to
			}
		}
		f.proto[pi] = coalesce(f.proto[pi])
	}
	if f.other == from {
		f.other = to
	}
}

func coalesce(s []seg) []seg {
	out := s[:0]
	for _, x := range s {
		if n := len(out); n > 0 && out[n-1].v == x.v && out[n-1].hi+1 == x.lo {
			out[n-1].hi = x.hi
			continue
		}
		out = append(out, x)
	}
	return out
}

// peerClass is a set of peers every rule of the direction treats alike.
type peerClass struct {
	ident  *dpIdentity // a pod identity
	node   *nodeIdent  // a node identity
	region netip.Prefix
	ip     netip.Addr // an address of the identity (none for a region)
}

// nodeIdent is a group of node addresses with the same Node labels and
// CIDR signature.
type nodeIdent struct {
	labels labels.Set
	out    Identity
}

// resolver compiles the resolved directions of one Compile.
type resolver struct {
	c *compiler
	// selCache: per selector key (clusterPeer.selKey), per identity index:
	// 0 not yet known, 1 no match, 2 match.
	selCache map[string][]int8
	memo     map[resolvedKey][]Entry
}

type resolvedKey struct {
	subject *dpIdentity
	dir     Direction
}

// needsResolving reports whether the subject's direction needs decisions:
// a cluster policy applies, or an audited policy (whose verdict differs
// from the enforced one's only where the datapath says so).
func needsResolving(pi *podInfo, di int) bool {
	l := pi.ident.cluster[di]
	if a := pi.ident.audit; a != nil {
		l = a.cluster[di]
		if len(a.nps[di]) != len(pi.ident.selectedBy[di]) {
			return true
		}
	}
	return len(l[tierAdminIdx]) > 0 || len(l[tierBaselineIdx]) > 0
}

// collectCIDRs gathers the prefixes that split identities.
func (e *Engine) collectCIDRs() map[netip.Prefix]int {
	out := map[netip.Prefix]int{}
	add := func(p netip.Prefix) {
		p = p.Masked()
		if _, ok := out[p]; !ok {
			out[p] = len(out)
		}
	}
	for _, ci := range e.clusters {
		for d := range ci.rules {
			for _, r := range ci.rules[d] {
				for _, p := range r.peers {
					for _, n := range p.networks {
						add(n)
					}
				}
			}
		}
	}
	for _, pol := range e.policies {
		for d := range pol.rules {
			for _, r := range pol.rules[d] {
				for _, p := range r.peers {
					if p.ipBlock {
						add(p.cidr)
						for _, x := range p.except {
							add(x)
						}
					}
				}
			}
		}
	}
	return out
}

// cidrSignature names the prefixes of cidrs holding any of ips, found
// through each address's ancestors rather than by testing every prefix.
func cidrSignature(cidrs map[netip.Prefix]int, ips []netip.Addr) string {
	if len(cidrs) == 0 {
		return ""
	}
	var idx []int
	for _, ip := range ips {
		for bits := 0; bits <= ip.BitLen(); bits++ {
			if i, ok := cidrs[netip.PrefixFrom(ip, bits).Masked()]; ok {
				idx = append(idx, i)
			}
		}
	}
	if len(idx) == 0 {
		return ""
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	var b strings.Builder
	for i, x := range idx {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprint(&b, x)
	}
	return b.String()
}

// nodeIdentityKeys groups the node addresses into node identities (keys
// prefixed "node|", given IDs with the pod identities).
func (e *Engine) nodeIdentityKeys(cidrs map[netip.Prefix]int) map[string]*nodeIdent {
	out := map[string]*nodeIdent{}
	for ip := range e.nodeIPs {
		l, _ := e.nodeLabels(ip)
		key := "node|" + labels.Set(l).String() + "|" + cidrSignature(cidrs, []netip.Addr{ip})
		ni := out[key]
		if ni == nil {
			ni = &nodeIdent{labels: l, out: Identity{Labels: l, Node: true}}
			out[key] = ni
		}
		ni.out.IPs = append(ni.out.IPs, ip)
	}
	for _, ni := range out {
		slices.SortFunc(ni.out.IPs, netip.Addr.Compare)
	}
	return out
}

// direction compiles a resolved direction of the local pod pi.
func (r *resolver) direction(dir Direction, pi *podInfo, subject *dpIdentity) EndpointPolicy {
	di := dirIndex(dir)
	out := EndpointPolicy{Resolved: true}
	for _, p := range pi.ident.selectedBy[di] {
		out.IsolatedBy = append(out.IsolatedBy, p.ref)
	}
	out.Isolated = len(out.IsolatedBy) > 0
	key := resolvedKey{subject, dir}
	es, ok := r.memo[key]
	if !ok {
		es = r.entries(dir, pi)
		r.memo[key] = es
	}
	out.Entries = es // shared by the subject's endpoints (Compile rewrites rule IDs once)
	return out
}

// entries runs the tiers for every peer class of the subject's direction:
// with the enforced policies, and, when audited ones select the subject,
// with all of them too, flagging where the verdicts differ.
func (r *resolver) entries(dir Direction, subject *podInfo) []Entry {
	di := dirIndex(dir)
	ident := subject.ident
	enforced := &tierLists{nps: ident.selectedBy, cluster: ident.cluster}
	full := ident.audit
	lists := enforced
	if full != nil {
		lists = full // a superset: its regions and peers cover the enforced ones'
	}
	admin, baseline := lists.cluster[di][tierAdminIdx], lists.cluster[di][tierBaselineIdx]
	nps := lists.nps[di]

	// Regions: the direction's CIDRs and the two whole address families.
	regionSet := map[netip.Prefix]bool{
		netip.MustParsePrefix("0.0.0.0/0"): true,
		netip.MustParsePrefix("::/0"):      true,
	}
	namedEgress := false
	for _, ci := range append(slices.Clone(admin), baseline...) {
		for _, cr := range ci.rules[di] {
			for _, p := range cr.peers {
				for _, n := range p.networks {
					regionSet[n.Masked()] = true
				}
			}
			for _, pt := range cr.ports {
				namedEgress = namedEgress || (pt.kind == portNamed && dir == Egress)
			}
		}
	}
	for _, pol := range nps {
		for _, nr := range pol.rules[di] {
			for _, p := range nr.peers {
				if p.ipBlock {
					regionSet[p.cidr.Masked()] = true
					for _, x := range p.except {
						regionSet[x.Masked()] = true
					}
				}
			}
			for _, pt := range nr.ports {
				namedEgress = namedEgress || (pt.kind == portNamed && dir == Egress)
			}
		}
	}
	regions := make([]netip.Prefix, 0, len(regionSet))
	for p := range regionSet {
		regions = append(regions, p)
	}
	sort.Slice(regions, func(i, j int) bool {
		if regions[i].Addr().Is4() != regions[j].Addr().Is4() {
			return regions[i].Addr().Is4()
		}
		if regions[i].Bits() != regions[j].Bits() {
			return regions[i].Bits() < regions[j].Bits()
		}
		return regions[i].Addr().Less(regions[j].Addr())
	})
	regionOf := func(ip netip.Addr) netip.Prefix {
		var best netip.Prefix
		for _, p := range regions {
			if p.Contains(ip) && (!best.IsValid() || p.Bits() > best.Bits()) {
				best = p
			}
		}
		return best
	}

	decideWith := func(l *tierLists, pc *peerClass) *portFn {
		return r.decide(dir, subject, pc, l.cluster[di][tierAdminIdx], l.nps[di], l.cluster[di][tierBaselineIdx])
	}
	var isolatedBy []PolicyRef
	if full != nil {
		for _, p := range full.nps[di] {
			isolatedBy = append(isolatedBy, p.ref)
		}
	}
	run := func(pc *peerClass) *portFn {
		f := decideWith(enforced, pc)
		if full == nil {
			return f
		}
		return r.auditMerge(f, decideWith(full, pc), isolatedBy)
	}
	var out []Entry
	regionFn := map[netip.Prefix]*portFn{}
	for _, p := range regions {
		f := run(&peerClass{region: p})
		regionFn[p] = f
		out = emitDiff(out, f, nil, Entry{CIDR: p})
	}
	// base is the decision the kernel falls back to for an identity's
	// addresses: their region's, when they all share one.
	base := func(ips []netip.Addr) *portFn {
		var reg netip.Prefix
		for i, ip := range ips {
			p := regionOf(ip)
			if i > 0 && p != reg {
				return nil
			}
			reg = p
		}
		return regionFn[reg]
	}
	// Identities that the same selector peers match, with the same named
	// ports (when they matter) and the same region, decide alike: run the
	// tiers once per such group.
	peers := r.selectorPeers(admin, nps, baseline, di)
	type group struct {
		f    *portFn
		base *portFn
	}
	groups := map[string]group{}
	var key []byte
	for _, id := range r.c.idents {
		if len(id.out.IPs) == 0 {
			continue
		}
		key = key[:0]
		matched := false
		for _, m := range peers {
			b := byte('0')
			if m(id) {
				b, matched = '1', true
			}
			key = append(key, b)
		}
		if !matched && !namedEgress {
			continue // decides like its region, to which the kernel falls back
		}
		if namedEgress {
			key = append(key, portSignature(id.rep.ports)...)
		}
		key = append(key, '|')
		key = append(key, regionOf(id.out.IPs[0]).String()...)
		g, ok := groups[string(key)]
		if !ok {
			g = group{f: run(&peerClass{ident: id, ip: id.out.IPs[0]}), base: base(id.out.IPs)}
			groups[string(key)] = g
		}
		b := g.base
		if len(id.out.IPs) > 1 {
			b = base(id.out.IPs) // several addresses: their regions may differ
		}
		out = emitDiff(out, g.f, b, Entry{Identity: id.out.ID})
	}
	for _, ni := range r.c.nodes {
		f := run(&peerClass{node: ni, ip: ni.out.IPs[0]})
		out = emitDiff(out, f, base(ni.out.IPs), Entry{Identity: ni.out.ID})
	}
	return out
}

// auditMerge is f where g (the decision under the audited policies) gives
// the same verdict, and an audited decision naming both where not.
func (r *resolver) auditMerge(f, g *portFn, isolatedBy []PolicyRef) *portFn {
	merge := func(a, b uint32) uint32 {
		if a&RuleDeny == b&RuleDeny {
			return a
		}
		return r.c.auditPlaceholder(a, b, isolatedBy) | RuleAudit | a&RuleDeny
	}
	out := &portFn{other: merge(f.other, g.other)}
	for pi := range f.proto {
		zipSegs(f.proto[pi], g.proto[pi], func(lo, hi int32, a, b uint32) {
			out.proto[pi] = append(out.proto[pi], seg{lo, hi, merge(a, b)})
		})
		out.proto[pi] = coalesce(out.proto[pi])
	}
	return out
}

// selectorPeers lists, once each, the selector peers of the direction's
// rules as match functions over identities (other peers match no pod
// identity by selector: networks and ipBlocks are the region's business).
func (r *resolver) selectorPeers(admin []*clusterInfo, nps []*policyInfo, baseline []*clusterInfo, d int) []func(*dpIdentity) bool {
	var out []func(*dpIdentity) bool
	seen := map[string]bool{}
	for _, tier := range [][]*clusterInfo{admin, baseline} {
		for _, ci := range tier {
			for _, cr := range ci.rules[d] {
				for i := range cr.peers {
					p := &cr.peers[i]
					if (p.kind == cpNamespaces || p.kind == cpPods) && !seen[p.selKey] {
						seen[p.selKey] = true
						out = append(out, func(id *dpIdentity) bool { return r.selects(p, id) })
					}
				}
			}
		}
	}
	for _, pol := range nps {
		for _, nr := range pol.rules[d] {
			for i := range nr.peers {
				if p := &nr.peers[i]; !p.ipBlock {
					out = append(out, func(id *dpIdentity) bool { return p.selects(id.ident) })
				}
			}
		}
	}
	return out
}

// selects is a namespaces or pods peer's selector on an identity, cached by
// selector across the peers of every policy of the Compile.
func (r *resolver) selects(p *clusterPeer, id *dpIdentity) bool {
	m := r.selCache[p.selKey]
	if m == nil {
		m = make([]int8, len(r.c.idents))
		r.selCache[p.selKey] = m
	}
	switch m[id.idx] {
	case 1:
		return false
	case 2:
		return true
	}
	ok := p.nsSel.Matches(id.ident.ns.labels) && (p.kind == cpNamespaces || p.podSel.Matches(id.ident.labels))
	m[id.idx] = 1
	if ok {
		m[id.idx] = 2
	}
	return ok
}

// decide runs the tiers, as Engine.side does, for one peer class: Admin,
// then NetworkPolicy for the pods it isolates, else Baseline, then allow.
func (r *resolver) decide(dir Direction, subject *podInfo, pc *peerClass, admin []*clusterInfo, nps []*policyInfo, baseline []*clusterInfo) *portFn {
	f := newPortFn()
	r.clusterTier(f, dir, subject, pc, admin)
	if len(nps) > 0 {
		if pc.node != nil {
			f.paintAll(RuleNodeTraffic)
		}
		for _, pol := range nps {
			for ri := range pol.rules[dirIndex(dir)] {
				r.npRule(f, dir, subject, pc, &pol.rules[dirIndex(dir)][ri])
			}
		}
		f.paintAll(RuleIsolated | RuleDeny)
		return f
	}
	r.clusterTier(f, dir, subject, pc, baseline)
	if pc.node != nil {
		f.paintAll(RuleNodeTraffic)
	}
	f.paintAll(RuleNotIsolated)
	return f
}

// clusterTier paints the first matching rule of each port over the tier's
// policies in order; a Pass ends the tier there without deciding.
func (r *resolver) clusterTier(f *portFn, dir Direction, subject *podInfo, pc *peerClass, pols []*clusterInfo) {
	if len(pols) == 0 {
		return
	}
	di := dirIndex(dir)
	for _, ci := range pols {
		for ri := range ci.rules[di] {
			cr := &ci.rules[di][ri]
			peer := -1
			for i := range cr.peers {
				if r.clusterPeerMatches(&cr.peers[i], pc) {
					peer = i
					break
				}
			}
			if peer < 0 {
				continue
			}
			value := func(port int) uint32 {
				switch cr.ref.Action {
				case ActionPass:
					return passMark
				case ActionDeny:
					return r.c.clusterPlaceholder(cr, peer, port) | RuleDeny
				}
				return r.c.clusterPlaceholder(cr, peer, port)
			}
			if cr.ports == nil {
				f.paintAll(value(-1))
				continue
			}
			for pix := range cr.ports {
				r.paintPort(f, dir, subject, pc, &cr.ports[pix], value(pix))
			}
		}
	}
	f.replace(passMark, 0)
}

// npRule paints one NetworkPolicy rule's allowances.
func (r *resolver) npRule(f *portFn, dir Direction, subject *podInfo, pc *peerClass, nr *ruleInfo) {
	peer := -1
	if !nr.allPeers {
		for i := range nr.peers {
			if npPeerMatches(&nr.peers[i], pc) {
				peer = i
				break
			}
		}
		if peer < 0 {
			return
		}
	}
	if nr.allPorts {
		f.paintAll(r.c.placeholder(nr, peer, -1))
		return
	}
	for pix := range nr.ports {
		r.paintPort(f, dir, subject, pc, &nr.ports[pix], r.c.placeholder(nr, peer, pix))
	}
}

// paintPort paints one ports entry; a named port resolves against the
// destination: the subject on ingress, the peer pod on egress (regions and
// nodes declare no ports).
func (r *resolver) paintPort(f *portFn, dir Direction, subject *podInfo, pc *peerClass, pt *portInfo, v uint32) {
	switch pt.kind {
	case portAll:
		if pi := resolvedProtoIndex(pt.proto); pi >= 0 {
			f.paint(pi, 0, 65535, v)
		}
		return
	case portNumber:
		if pi := resolvedProtoIndex(pt.proto); pi >= 0 {
			f.paint(pi, pt.first, pt.last, v)
		}
		return
	}
	var ports []namedPort
	switch {
	case dir == Ingress:
		ports = subject.ports
	case pc.ident != nil:
		ports = pc.ident.rep.ports
	}
	for _, np := range ports {
		if np.name != pt.name || (pt.proto != "" && np.proto != pt.proto) {
			continue
		}
		if pi := resolvedProtoIndex(np.proto); pi >= 0 {
			f.paint(pi, np.port, np.port, v)
		}
	}
}

// clusterPeerMatches is clusterPeer.matches for a peer class.
func (r *resolver) clusterPeerMatches(p *clusterPeer, pc *peerClass) bool {
	switch p.kind {
	case cpNamespaces, cpPods:
		return pc.ident != nil && r.selects(p, pc.ident)
	case cpNetworks:
		for _, n := range p.networks {
			if pc.holds(n) {
				return true
			}
		}
	case cpNodes:
		return pc.node != nil && p.nsSel.Matches(pc.node.labels)
	}
	return false
}

// npPeerMatches is peerInfo.matches for a peer class.
func npPeerMatches(p *peerInfo, pc *peerClass) bool {
	if !p.ipBlock {
		return pc.ident != nil && p.selects(pc.ident.ident)
	}
	if !pc.holds(p.cidr) {
		return false
	}
	for _, x := range p.except {
		if pc.holds(x) {
			return false
		}
	}
	return true
}

// holds reports whether the class's addresses are in n: for a region, n
// covers it (the region's more specific prefixes are other regions).
func (pc *peerClass) holds(n netip.Prefix) bool {
	if pc.ident == nil && pc.node == nil {
		return n.Bits() <= pc.region.Bits() && n.Contains(pc.region.Addr())
	}
	return n.Contains(pc.ip)
}

// emitDiff appends entries (tmpl with protocol, ports and rule filled in)
// for f where it differs from base; with base nil, for all of f, so that
// the entries decide every packet alone.
func emitDiff(out []Entry, f, base *portFn, tmpl Entry) []Entry {
	if base == nil || f.other != base.other {
		e := tmpl
		e.Rule = f.other
		out = append(out, e)
		for pi, segs := range f.proto {
			// Ports of a protocol fall back to the every-protocol entry.
			common := mostPorts(segs)
			e := tmpl
			e.Rule, e.Protocol, e.PortMin, e.PortMax = common, resolvedProtocols[pi], 0, 65535
			if common != f.other {
				out = append(out, e)
			}
			for _, s := range segs {
				if s.v != common {
					e.Rule, e.PortMin, e.PortMax = s.v, uint16(s.lo), uint16(s.hi)
					out = append(out, e)
				}
			}
		}
		return out
	}
	for pi := range f.proto {
		e := tmpl
		e.Protocol = resolvedProtocols[pi]
		for _, d := range diffSegs(f.proto[pi], base.proto[pi]) {
			e.Rule, e.PortMin, e.PortMax = d.v, uint16(d.lo), uint16(d.hi)
			out = append(out, e)
		}
	}
	return out
}

// mostPorts is the value covering the most ports.
func mostPorts(segs []seg) uint32 {
	count := map[uint32]int32{}
	var best uint32
	for _, s := range segs {
		count[s.v] += s.hi - s.lo + 1
		if count[s.v] > count[best] || (count[s.v] == count[best] && s.v < best) {
			best = s.v
		}
	}
	return best
}

// diffSegs returns the runs of a whose value differs from b's.
func diffSegs(a, b []seg) []seg {
	var out []seg
	zipSegs(a, b, func(lo, hi int32, av, bv uint32) {
		if av != bv {
			out = append(out, seg{lo, hi, av})
		}
	})
	return coalesce(out)
}

// zipSegs walks two coverings of the same ports run by common run.
func zipSegs(a, b []seg, fn func(lo, hi int32, av, bv uint32)) {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		lo, hi := max(a[i].lo, b[j].lo), min(a[i].hi, b[j].hi)
		fn(lo, hi, a[i].v, b[j].v)
		if a[i].hi == hi {
			i++
		}
		if b[j].hi == hi {
			j++
		}
	}
}
