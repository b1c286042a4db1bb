package policy

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Reserved datapath identities. Pod identities are >= FirstPodIdentity.
const (
	// IdentityAny is the wildcard peer of a rule without from/to.
	IdentityAny uint32 = 0
	// IdentityWorld is every address that is neither a pod nor a node.
	IdentityWorld uint32 = 1
	// IdentityHost is every node address (and hostNetwork pods, which use it).
	IdentityHost uint32 = 2
	// FirstPodIdentity is the lowest identity given to a group of pods.
	FirstPodIdentity uint32 = 256
)

// Reserved rule IDs. Compiled rule IDs are >= FirstRuleID and below
// RuleAudit: the two top bits of an entry's rule are flags the kernel reads.
const (
	// RuleNodeTraffic is the implicit allowance of traffic between a pod and
	// a node, which NetworkPolicy never restricts.
	RuleNodeTraffic uint32 = 1
	// RuleNotIsolated allows, in a resolved direction, what no tier decided
	// for a pod that no NetworkPolicy isolates.
	RuleNotIsolated uint32 = 2
	// RuleIsolated (always with RuleDeny) denies, in a resolved direction,
	// what no NetworkPolicy rule allows for a pod that NetworkPolicy
	// isolates: the default deny, attributed to EndpointPolicy.IsolatedBy.
	RuleIsolated uint32 = 3
	FirstRuleID  uint32 = 16
)

// Flags in the top bits of Entry.Rule (and of the rule IDs in the kernel's
// flow events). RuleByID takes the ID with or without them.
const (
	// RuleDeny: the entry denies. Only resolved directions have such entries.
	RuleDeny uint32 = 1 << 31
	// RuleAudit: enforcing the audited policies would give the other verdict
	// (CompiledRule.Audit says which rule would decide).
	RuleAudit uint32 = 1 << 30
	// RuleIDMask keeps the ID without the flags.
	RuleIDMask uint32 = RuleAudit - 1
)

// Datapath is what the kernel enforces on one node: Compile's output. It is
// plain data (no selectors), ready to be written into maps.
type Datapath struct {
	Node string
	// Identities are the groups of pods (cluster-wide) that every policy
	// treats alike: same namespace, labels and named ports. Sorted by ID;
	// read-only (shared by the Datapaths of Engines with the same pods).
	Identities []Identity
	// HostIPs are node addresses; they have IdentityHost unless a node
	// identity lists them.
	HostIPs []netip.Addr
	// Endpoints are the pods on Node that policy applies to (not
	// hostNetwork, with an IP). Sorted by ID.
	Endpoints []Endpoint
	// Rules maps every rule ID used in an Entry back to the policy rule,
	// peer and port it came from. Sorted by ID.
	Rules []CompiledRule
}

// Identity is a group of pods the policies cannot tell apart, or (Node) of
// node addresses: node identities exist when a ClusterNetworkPolicy has
// node peers (Labels are then the Node's); node addresses in no node
// identity have IdentityHost.
type Identity struct {
	ID        uint32
	Namespace string
	Labels    map[string]string
	// IPs are sorted; read-only (shared by the Datapaths of Engines with
	// the same pods).
	IPs  []netip.Addr
	Node bool
}

// Endpoint is one local pod and its policy per direction.
type Endpoint struct {
	ID        uint32
	Namespace string
	Name      string
	IPs       []netip.Addr
	Identity  uint32
	Ingress   EndpointPolicy
	Egress    EndpointPolicy
}

// EndpointPolicy is one direction of one endpoint.
//
// Unless Resolved, entries are allowances (NetworkPolicy alone): when
// Isolated is false everything is allowed and Entries is empty; when true
// only Entries allow, and their union decides.
//
// Resolved directions (a ClusterNetworkPolicy or an audited policy applies)
// hold decisions instead, the tiers already resolved at compile time: every
// entry allows or denies (RuleDeny) and the most specific match decides, in
// the kernel's lookup order. A peer's identity entries come first, the most
// specific port first (exact port, range, all ports of the protocol, every
// protocol); where none of them matches, the peer address's region decides:
// the entries of the longest CIDR holding the address (CIDR entries of a
// resolved direction never have Except and are not merged with the entries
// of wider CIDRs). Regions 0.0.0.0/0 and ::/0 are always present, so every
// packet gets a decision. Isolated and IsolatedBy keep their NetworkPolicy
// meaning (for attribution of RuleIsolated).
type EndpointPolicy struct {
	Resolved bool
	Isolated bool
	// IsolatedBy names the policies that isolate this direction: the
	// attribution of a drop that no rule allowed.
	IsolatedBy []PolicyRef
	// Entries are shared by the endpoints of one datapath identity (the
	// replicas of a workload): read-only.
	Entries []Entry
}

// Entry allows (or, in a resolved direction, decides) traffic to/from one
// peer on one protocol and port range. The peer is a CIDR (when CIDR is
// valid, minus Except), else Identity (IdentityAny for every peer). Rule is
// the rule ID with its flags (RuleDeny, RuleAudit).
type Entry struct {
	Rule     uint32
	Identity uint32
	CIDR     netip.Prefix
	Except   []netip.Prefix
	// Protocol "" means every protocol and port (a rule without ports).
	Protocol corev1.Protocol
	// PortMin..PortMax, inclusive; 0..65535 for every port of Protocol.
	PortMin, PortMax uint16
}

// CompiledRule is the meaning of a rule ID: the Peer-th from/to entry and
// the Port-th ports entry (-1: the rule has none, so all) of a policy rule,
// a NetworkPolicy rule (Rule) or a ClusterNetworkPolicy rule (Cluster, whose
// Port indexes its protocols). Reserved IDs (RuleNotIsolated, RuleIsolated)
// appear as CompiledRules only when they carry an Audit.
type CompiledRule struct {
	ID      uint32
	Rule    RuleRef
	Cluster *ClusterRuleRef
	Peer    int
	Port    int
	// Base is, for an audited decision whose enforced part is a reserved ID
	// (RuleNotIsolated, RuleIsolated, RuleNodeTraffic), that ID.
	Base uint32
	// Audit is, for an entry flagged RuleAudit, what would decide were the
	// audited policies enforced.
	Audit *AuditDecision
}

// AuditDecision is the other verdict of an audited entry.
type AuditDecision struct {
	// Allowed is the would-be verdict.
	Allowed bool
	// Rule decides under the audited policies: a NetworkPolicy or
	// ClusterNetworkPolicy rule, or, for a would-be default deny, none, and
	// IsolatedBy names the (audited) policies that would isolate.
	Rule       *CompiledRule
	IsolatedBy []PolicyRef
}

// Compile builds the datapath of the node named node from the snapshot.
func Compile(s *Snapshot, node string) (*Datapath, error) {
	e, err := NewEngine(s)
	if err != nil {
		return nil, err
	}
	return e.Compile(node)
}

// dpIdentity is a datapath identity while compiling.
type dpIdentity struct {
	idx   int // position in compiler.idents
	key   string
	ident *identity
	rep   *podInfo // a pod of the group: named ports resolve against it
	out   *Identity
}

// Compile builds the datapath of the node named node. It uses the engine's
// own selector, ipBlock and port semantics, so the kernel and Evaluate agree.
// IDs are derived from names (a hash, probed on collision), so they stay the
// same when unrelated objects change and a re-compile yields minimal diffs.
func (e *Engine) Compile(node string) (*Datapath, error) {
	dp := &Datapath{Node: node}
	for ip := range e.nodeIPs {
		dp.HostIPs = append(dp.HostIPs, ip)
	}
	slices.SortFunc(dp.HostIPs, netip.Addr.Compare)

	// With ClusterNetworkPolicies or audited policies, identities are also
	// split by the CIDRs holding their addresses, and node addresses get
	// identities, so that every rule matches a whole identity or none of it
	// (compile_resolved.go).
	var cidrs map[netip.Prefix]int
	var nodeKeys map[string]*nodeIdent
	if len(e.clusters) > 0 || e.hasAudited {
		cidrs = e.collectCIDRs()
		nodeKeys = e.nodeIdentityKeys(cidrs)
	}

	g, err := e.index.grouping(cidrs, nodeKeys)
	if err != nil {
		return nil, err
	}
	idents := make([]*dpIdentity, len(g.keys))
	slab := make([]dpIdentity, len(g.keys))
	for i, k := range g.keys {
		rep := e.pods[g.reps[i]]
		slab[i] = dpIdentity{idx: i, key: k, ident: rep.ident, rep: rep, out: &g.out[i]}
		idents[i] = &slab[i]
	}
	nodes := make([]*nodeIdent, 0, len(nodeKeys))
	for k, ni := range nodeKeys {
		ni.out.ID = g.nodeIDs[k]
		nodes = append(nodes, ni)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].out.ID < nodes[j].out.ID })
	dp.Identities = g.out // sorted by ID
	if len(nodes) > 0 {
		dp.Identities = make([]Identity, 0, len(g.out)+len(nodes))
		dp.Identities = append(dp.Identities, g.out...)
		for _, ni := range nodes {
			dp.Identities = append(dp.Identities, ni.out)
		}
		slices.SortFunc(dp.Identities, func(a, b Identity) int { return int(int64(a.ID) - int64(b.ID)) })
	}

	c := &compiler{e: e, idents: idents, nodes: nodes, slots: map[ruleSlot]uint32{}}
	res := &resolver{c: c, memo: map[resolvedKey][]Entry{}, selCache: map[string][]int8{}}
	var epKeys []string
	locals := map[string]int{} // by key, the position in e.pods
	for _, i := range e.index.podsOnNode(node) {
		pi := e.pods[i]
		if pi.hostNetwork || len(pi.ips) == 0 {
			continue
		}
		epKeys = append(epKeys, pi.key)
		locals[pi.key] = int(i)
	}
	epIDs, err := stableIDs(epKeys, 1, 1<<31)
	if err != nil {
		return nil, fmt.Errorf("compiling endpoints: %w", err)
	}
	// The local pods of one datapath identity (the replicas of a workload)
	// have the same policy: compiled once, their entries shared.
	plain := map[resolvedKey]*plainDir{}
	var plainDirs []*plainDir
	cc := e.compileCache()
	if cc != nil {
		cc.mu.Lock()
		defer cc.mu.Unlock()
		cc.observe(g, e.nsFrom, idents, nodes)
	}
	for _, k := range epKeys {
		pi := e.pods[locals[k]]
		subject := idents[g.of[locals[k]]]
		ep := Endpoint{ID: epIDs[k], Namespace: pi.pod.Namespace, Name: pi.pod.Name,
			IPs: slices.Clone(pi.ips), Identity: subject.out.ID}
		for _, d := range []struct {
			dir Direction
			out *EndpointPolicy
		}{{Ingress, &ep.Ingress}, {Egress, &ep.Egress}} {
			if needsResolving(pi, dirIndex(d.dir)) {
				*d.out = res.direction(d.dir, pi, subject)
				continue
			}
			key := resolvedKey{subject, d.dir}
			pd, ok := plain[key]
			if !ok {
				pd = c.plainDirection(cc, d.dir, pi, subject)
				plain[key] = pd
				if pd.slots != nil {
					plainDirs = append(plainDirs, pd)
				}
			}
			*d.out = pd.out
			d.out.IsolatedBy = slices.Clone(pd.out.IsolatedBy)
		}
		dp.Endpoints = append(dp.Endpoints, ep)
	}
	sort.Slice(dp.Endpoints, func(i, j int) bool { return dp.Endpoints[i].ID < dp.Endpoints[j].ID })

	final, err := c.assignRuleIDs(dp, plainDirs)
	if err != nil {
		return nil, err
	}
	if cc != nil {
		cc.finish(plainDirs, final, dp)
	}
	return dp, nil
}

// compileCache is the Engine's Cache's, or nil.
func (e *Engine) compileCache() *compileCache {
	if e.cache == nil {
		return nil
	}
	return e.cache.compiled
}

// plainDirection is direction through cc (nil: no cache): a cached
// direction still valid is reused, its rules registered as a fresh compile
// would; slots is nil when no policy selects the subject.
func (c *compiler) plainDirection(cc *compileCache, dir Direction, pi *podInfo, subject *dpIdentity) *plainDir {
	di := dirIndex(dir)
	pols := pi.ident.selectedBy[di]
	pd := &plainDir{key: cachedDirKey{subject.key, dir}, pols: pols, subject: pi}
	if len(pols) == 0 {
		return pd
	}
	pd.slots = []uint32{}
	var prior map[spanKey][]Entry
	if cc != nil {
		cd, valid := cc.lookup(pd.key, pols, pi)
		if valid {
			pd.reused, pd.spans = cd, cd.spans
			pd.out = EndpointPolicy{Isolated: true, Entries: cd.entries}
			for _, p := range pols {
				pd.out.IsolatedBy = append(pd.out.IsolatedBy, p.ref)
				for ri := range p.rules[di] {
					c.ruleSlots(&p.rules[di][ri], func(id uint32, _, _ int, _ *peerInfo, _ *portInfo) {
						pd.slots = append(pd.slots, id)
					})
				}
			}
			return pd
		}
		prior = cc.priorSpans(cd, pi)
	}
	pd.out, pd.spans = c.direction(dir, pi, &pd.slots, prior)
	return pd
}

type compiler struct {
	e      *Engine
	idents []*dpIdentity
	nodes  []*nodeIdent
	// rules are the (rule, peer, port) triples used, in order of first use;
	// until assignRuleIDs, entries carry FirstRuleID + the index in rules.
	rules []CompiledRule
	slots map[ruleSlot]uint32
	// expanded memoizes the entries of a (rule, peer, port) placeholder that
	// do not depend on the subject pod: every local endpoint a policy
	// selects shares them, so selectors are matched against the identities
	// once per rule instead of once per endpoint.
	expanded map[uint32][]Entry
}

func ruleKey(r CompiledRule) string {
	if c := r.Cluster; c != nil {
		return fmt.Sprintf("%s//%s/%s/%d/%d/%d", c.Policy.Kind, c.Policy.Name, c.Direction, c.Index, r.Peer, r.Port)
	}
	return fmt.Sprintf("%s/%s/%s/%s/%d/%d/%d", r.Rule.Policy.Kind, r.Rule.Policy.Namespace, r.Rule.Policy.Name, r.Rule.Direction, r.Rule.Index, r.Peer, r.Port)
}

// ruleSlot is a (rule, peer, port) triple of the Engine being compiled: a
// rule is one ruleInfo (or clusterRule) per Engine, so its address names it.
type ruleSlot struct {
	rule       *ruleInfo
	cluster    *clusterRule
	audit      auditPair
	peer, port int
}

// auditPair is an audited decision: the enforced one (base) and the one
// under the audited policies (would), both placeholders or reserved IDs
// with their flags, and the policies that would isolate (names, for a
// would-be default deny).
type auditPair struct {
	base, would uint32
	isolatedBy  string
}

// placeholder returns the temporary rule number of a (rule, peer, port).
func (c *compiler) placeholder(r *ruleInfo, peer, port int) uint32 {
	return c.slot(ruleSlot{rule: r, peer: peer, port: port}, func() CompiledRule { return CompiledRule{Rule: r.ref} })
}

// clusterPlaceholder is placeholder for a ClusterNetworkPolicy rule.
func (c *compiler) clusterPlaceholder(r *clusterRule, peer, port int) uint32 {
	return c.slot(ruleSlot{cluster: r, peer: peer, port: port}, func() CompiledRule {
		ref := r.ref
		return CompiledRule{Cluster: &ref}
	})
}

// auditPlaceholder is the placeholder of an audited decision.
func (c *compiler) auditPlaceholder(base, would uint32, isolatedBy []PolicyRef) uint32 {
	names := make([]string, len(isolatedBy))
	for i, r := range isolatedBy {
		names[i] = r.Namespace + "/" + r.Name
	}
	pair := auditPair{base: base, would: would, isolatedBy: strings.Join(names, ",")}
	return c.slot(ruleSlot{audit: pair}, func() CompiledRule {
		var iso []PolicyRef
		if would&RuleIDMask == RuleIsolated {
			iso = isolatedBy
		}
		return CompiledRule{Audit: &AuditDecision{Allowed: would&RuleDeny == 0, IsolatedBy: iso}}
	})
}

// slot numbers s on first use, remembering what it means.
func (c *compiler) slot(s ruleSlot, meaning func() CompiledRule) uint32 {
	id, ok := c.slots[s]
	if !ok {
		id = FirstRuleID + uint32(len(c.rules))
		c.slots[s] = id
		cr := meaning()
		cr.ID, cr.Peer, cr.Port = id, s.peer, s.port
		c.rules = append(c.rules, cr)
	}
	return id
}

// assignRuleIDs replaces placeholders by stable IDs, derived from ruleKey,
// in the entries of dp's endpoints except the reused plain directions' (which
// carry final IDs already); final maps a placeholder (minus FirstRuleID) to
// its ID.
func (c *compiler) assignRuleIDs(dp *Datapath, plain []*plainDir) ([]uint32, error) {
	// An audited decision is named by its two parts, numbered before it.
	keys := make([]string, len(c.rules))
	partKey := func(v uint32) string {
		if id := v & RuleIDMask; id >= FirstRuleID {
			return fmt.Sprintf("%s#%x", keys[id-FirstRuleID], v&^RuleIDMask)
		}
		return fmt.Sprintf("reserved:%x", v)
	}
	auditOf := map[int]auditPair{}
	for s, id := range c.slots {
		if s.rule == nil && s.cluster == nil {
			auditOf[int(id-FirstRuleID)] = s.audit
		}
	}
	for i, r := range c.rules {
		if a, ok := auditOf[i]; ok {
			keys[i] = "audit|" + partKey(a.base) + "|" + partKey(a.would) + "|" + a.isolatedBy
			continue
		}
		keys[i] = ruleKey(r)
	}
	ids, err := stableIDs(keys, uint64(FirstRuleID), uint64(RuleAudit))
	if err != nil {
		return nil, fmt.Errorf("compiling rule IDs: %w", err)
	}
	final := make([]uint32, len(c.rules))
	for i, k := range keys {
		final[i] = ids[k]
	}
	for i := range c.rules {
		r := c.rules[i]
		r.ID = final[i]
		if a, ok := auditOf[i]; ok {
			// The enforced part's meaning, and the would-be part's rule.
			if id := a.base & RuleIDMask; id >= FirstRuleID {
				b := c.rules[id-FirstRuleID]
				r.Rule, r.Cluster, r.Peer, r.Port = b.Rule, b.Cluster, b.Peer, b.Port
			} else {
				r.Base = id
			}
			if id := a.would & RuleIDMask; id >= FirstRuleID {
				w := c.rules[id-FirstRuleID]
				w.ID = final[id-FirstRuleID]
				r.Audit.Rule = &w
			}
		}
		dp.Rules = append(dp.Rules, r)
	}
	sort.Slice(dp.Rules, func(i, j int) bool { return dp.Rules[i].ID < dp.Rules[j].ID })
	// Endpoints of one identity share their entries: rewrite each once.
	done := map[*Entry]bool{}
	for _, pd := range plain {
		if pd.reused != nil {
			done[&pd.out.Entries[0]] = true
		}
	}
	for i := range dp.Endpoints {
		for _, ep := range []*EndpointPolicy{&dp.Endpoints[i].Ingress, &dp.Endpoints[i].Egress} {
			if len(ep.Entries) == 0 || done[&ep.Entries[0]] {
				continue
			}
			done[&ep.Entries[0]] = true
			for j := range ep.Entries {
				r := ep.Entries[j].Rule
				if id := r & RuleIDMask; id >= FirstRuleID {
					ep.Entries[j].Rule = final[id-FirstRuleID] | r&^RuleIDMask
				}
			}
		}
	}
	return final, nil
}

// direction compiles one direction of a local pod, appending the
// placeholders of its rules to slots. prior holds the entries of (rule,
// peer, port) triples that an earlier Compile expanded in the same world
// (nil: none); they are taken with their rule renumbered.
func (c *compiler) direction(dir Direction, pi *podInfo, slots *[]uint32, prior map[spanKey][]Entry) (EndpointPolicy, []span) {
	di := dirIndex(dir)
	pols := pi.ident.selectedBy[di]
	var out EndpointPolicy
	if len(pols) == 0 {
		return out, nil
	}
	out.Isolated = true
	for _, p := range pols {
		out.IsolatedBy = append(out.IsolatedBy, p.ref)
	}
	// Traffic between a pod and a node is never restricted (as in Evaluate).
	node := []Entry{{Rule: RuleNodeTraffic, Identity: IdentityHost}}
	for _, ni := range c.nodes {
		node = append(node, Entry{Rule: RuleNodeTraffic, Identity: ni.out.ID})
	}
	chunks := []chunk{{es: node}}
	for _, pol := range pols {
		for ri := range pol.rules[di] {
			chunks = c.rule(chunks, dir, pi, pol, ri, slots, prior)
		}
	}
	// One allocation of the final size: the chunks are mostly the shared
	// expansions, and an endpoint can have tens of thousands of entries.
	n := 0
	for _, ch := range chunks {
		n += len(ch.es)
	}
	out.Entries = make([]Entry, 0, n)
	spans := make([]span, 0, len(chunks)-1)
	for _, ch := range chunks {
		lo := len(out.Entries)
		out.Entries = append(out.Entries, ch.es...)
		if ch.renumber {
			for j := lo; j < len(out.Entries); j++ {
				out.Entries[j].Rule = ch.rule
			}
		}
		if ch.rule != 0 {
			spans = append(spans, span{key: ch.key, lo: int32(lo), hi: int32(len(out.Entries))})
		}
	}
	return out, spans
}

// chunk is the entries of one (rule, peer, port) triple (rule 0: the node
// traffic), to be renumbered to rule when taken from an earlier Compile.
type chunk struct {
	es       []Entry
	key      spanKey
	rule     uint32
	renumber bool
}

// spanKey names a (rule, peer, port) triple across Engines: by the
// policy's template.
type spanKey struct {
	tmpl             *policyInfo
	rule, peer, port int32
}

// span locates a triple's entries in a compiled direction.
type span struct {
	key    spanKey
	lo, hi int32
}

// rule appends the entries of one rule of pol, as chunks: the cross product
// of its peers and ports, resolving named ports against the destination pod.
func (c *compiler) rule(out []chunk, dir Direction, subject *podInfo, pol *policyInfo, ri int, slots *[]uint32, prior map[spanKey][]Entry) []chunk {
	r := &pol.rules[dirIndex(dir)][ri]
	tmpl := templateOf(pol)
	c.ruleSlots(r, func(id uint32, peer, port int, p *peerInfo, pt *portInfo) {
		*slots = append(*slots, id)
		key := spanKey{tmpl: tmpl, rule: int32(ri), peer: int32(peer), port: int32(port)}
		if es, ok := prior[key]; ok {
			out = append(out, chunk{es: es, key: key, rule: id, renumber: true})
			return
		}
		out = append(out, chunk{es: c.peerPortShared(dir, subject, p, pt, id), key: key, rule: id})
	})
	return out
}

// ruleSlots registers the (peer, port) pairs of a rule, in order, giving
// each its placeholder (p nil: every peer; pt nil: every port).
func (c *compiler) ruleSlots(r *ruleInfo, visit func(id uint32, peer, port int, p *peerInfo, pt *portInfo)) {
	plo, phi := slotRange(r.allPeers, len(r.peers))
	xlo, xhi := slotRange(r.allPorts, len(r.ports))
	for pi := plo; pi < phi; pi++ {
		var p *peerInfo
		if pi >= 0 {
			p = &r.peers[pi]
		}
		for xi := xlo; xi < xhi; xi++ {
			var pt *portInfo
			if xi >= 0 {
				pt = &r.ports[xi]
			}
			visit(c.placeholder(r, pi, xi), pi, xi, p, pt)
		}
	}
}

// slotRange is the indexes of a rule's peers or ports: -1 alone when the
// rule has none (all of them).
func slotRange(all bool, n int) (lo, hi int) {
	if all {
		return -1, 0
	}
	return 0, n
}

// peerPortShared is peerPort through the memo; only an ingress rule on a
// named port depends on the subject (the port number is the subject's). The
// result is read only: the caller copies it into the endpoint.
func (c *compiler) peerPortShared(dir Direction, subject *podInfo, p *peerInfo, pt *portInfo, id uint32) []Entry {
	if pt != nil && pt.kind == portNamed && dir == Ingress {
		return c.peerPort(nil, dir, subject, p, pt, id)
	}
	if es, ok := c.expanded[id]; ok {
		return es
	}
	es := c.peerPort(nil, dir, subject, p, pt, id)
	if c.expanded == nil {
		c.expanded = map[uint32][]Entry{}
	}
	c.expanded[id] = es
	return es
}

// peerPort appends entries for one (peer, port) pair of a rule.
func (c *compiler) peerPort(out []Entry, dir Direction, subject *podInfo, p *peerInfo, pt *portInfo, id uint32) []Entry {
	named := pt != nil && pt.kind == portNamed
	// For a named port the destination decides the number: on ingress the
	// subject itself, on egress each peer pod.
	if !named || dir == Ingress {
		var dst *podInfo
		if named {
			dst = subject
		}
		ranges, ok := portRanges(pt, dst)
		if !ok {
			return out
		}
		for _, pr := range ranges {
			switch {
			case p == nil:
				out = append(out, pr.entry(id, IdentityAny))
			case p.ipBlock:
				en := pr.entry(id, 0)
				en.CIDR, en.Except = p.cidr, slices.Clone(p.except)
				out = append(out, en)
			default:
				for _, di := range c.idents {
					if p.selects(di.ident) {
						out = append(out, pr.entry(id, di.out.ID))
					}
				}
			}
		}
		return out
	}
	// Egress to a named port: per destination identity (pods of one identity
	// declare the same named ports). An ipBlock peer matches a pod address
	// in the block, so it becomes that pod's /32 or /128.
	for _, di := range c.idents {
		ranges, ok := portRanges(pt, di.rep)
		if !ok {
			continue
		}
		switch {
		case p == nil || (!p.ipBlock && p.selects(di.ident)):
			for _, pr := range ranges {
				out = append(out, pr.entry(id, di.out.ID))
			}
		case p.ipBlock:
			for _, ip := range di.out.IPs {
				if !p.inBlock(ip) {
					continue
				}
				for _, pr := range ranges {
					en := pr.entry(id, 0)
					en.CIDR = netip.PrefixFrom(ip, ip.BitLen())
					out = append(out, en)
				}
			}
		}
	}
	return out
}

type portRange struct {
	proto    corev1.Protocol
	min, max uint16
}

func (pr portRange) entry(rule, identity uint32) Entry {
	return Entry{Rule: rule, Identity: identity, Protocol: pr.proto, PortMin: pr.min, PortMax: pr.max}
}

// portRanges resolves one ports entry (nil: the rule has none) to a protocol
// and range; named ports against dst's declared ports. ok is false when a
// named port does not resolve (it then matches nothing).
func portRanges(pt *portInfo, dst *podInfo) ([]portRange, bool) {
	if pt == nil {
		return []portRange{{}}, true
	}
	switch pt.kind {
	case portAll:
		return []portRange{{proto: pt.proto, min: 0, max: 65535}}, true
	case portNumber:
		return []portRange{{proto: pt.proto, min: uint16(pt.first), max: uint16(pt.last)}}, true
	}
	var out []portRange
	for _, np := range dst.ports {
		if np.name == pt.name && np.proto == pt.proto {
			out = append(out, portRange{proto: pt.proto, min: uint16(np.port), max: uint16(np.port)})
		}
	}
	return out, len(out) > 0
}

func portSignature(ports []namedPort) string {
	s := make([]string, 0, len(ports))
	for _, p := range ports {
		s = append(s, fmt.Sprintf("%s/%s/%d", p.name, p.proto, p.port))
	}
	slices.Sort(s)
	return strings.Join(s, ",")
}

// stableIDs gives every key an ID in [lo, hi) derived from its hash, probing
// upwards on collision in sorted key order, so IDs are deterministic and an
// ID changes only when an earlier key collides with it.
func stableIDs(keys []string, lo, hi uint64) (map[string]uint32, error) {
	span := hi - lo
	if uint64(len(keys)) >= span {
		return nil, fmt.Errorf("%d objects do not fit in %d IDs", len(keys), span)
	}
	sorted := slices.Clone(keys)
	slices.Sort(sorted)
	used := make(map[uint64]bool, len(keys))
	out := make(map[string]uint32, len(keys))
	for _, k := range sorted {
		h := fnv.New64a()
		h.Write([]byte(k))
		v := h.Sum64() % span
		for used[v] {
			v = (v + 1) % span
		}
		used[v] = true
		out[k] = uint32(lo + v)
	}
	return out, nil
}

// SameIdentities reports whether a and b give every address the same
// identity because they share one identity list (Compile hands the
// Datapaths of Engines with the same pods the same read-only list) and
// have the same host addresses. False says nothing: the lists may still be
// equal.
func SameIdentities(a, b *Datapath) bool {
	return len(a.Identities) == len(b.Identities) && len(a.Identities) > 0 &&
		&a.Identities[0] == &b.Identities[0] && slices.Equal(a.HostIPs, b.HostIPs)
}

// RuleByID returns the compiled rule with that ID.
func (dp *Datapath) RuleByID(id uint32) (CompiledRule, bool) {
	id &= RuleIDMask
	i, ok := slices.BinarySearchFunc(dp.Rules, id, func(r CompiledRule, id uint32) int {
		return int(int64(r.ID) - int64(id))
	})
	if !ok {
		return CompiledRule{}, false
	}
	return dp.Rules[i], true
}

// EndpointByID returns the endpoint with that ID.
func (dp *Datapath) EndpointByID(id uint32) (*Endpoint, bool) {
	i, ok := slices.BinarySearchFunc(dp.Endpoints, id, func(ep Endpoint, id uint32) int {
		return int(int64(ep.ID) - int64(id))
	})
	if !ok {
		return nil, false
	}
	return &dp.Endpoints[i], true
}
