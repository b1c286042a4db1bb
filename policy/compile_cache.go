package policy

import (
	"net/netip"
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/labels"
)

// compileCache carries the plain (NetworkPolicy-only) directions that
// Engine.Compile built into the next Compile of an Engine made through the
// same Cache, so that a change recompiles only the directions it can
// change. A direction's entries are a function of:
//   - the policies selecting its subject for that direction (their
//     templates: a Cache hands out the same template for an unchanged
//     object);
//   - the subject's named ports, in their order (ingress named ports
//     resolve against them);
//   - the world its peers are matched against: the datapath identities
//     (key, ID), their namespaces' labels and the node identities; for an
//     egress named port, the ports of each identity's representative pod;
//     for an egress named port with an ipBlock peer, each identity's
//     addresses;
//   - the final rule IDs of its rules (IDs are hashes of the rule names,
//     probed on collision, so a new rule can move an old one's ID).
//
// The world is compared with the previous Compile's; each part that differs
// bumps a generation, and a cached direction is reused only while the
// generations it read are current, so the result is the one a fresh Compile
// gives (TestIncrementalCompileMatchesFull). Resolved directions
// (ClusterNetworkPolicies, audit) are always compiled afresh.
type compileCache struct {
	mu sync.Mutex
	// The previous Compile's world and its generations.
	world                   compileWorld
	selGen, repGen, addrGen uint64
	// dirs are the plain directions of the last Compile, by subject
	// datapath identity key and direction.
	dirs map[cachedDirKey]*cachedDir
	// compiles counts the Compiles; a direction unused for keepCompiles of
	// them is dropped (the cache serves every node's Compile alike, as a
	// direction depends on its subject's identity, not on the node).
	compiles      uint64
	reused, built uint64
}

const keepCompiles = 4

type cachedDirKey struct {
	ident string
	dir   Direction
}

// compileWorld is what the plain directions' peer expansions read.
type compileWorld struct {
	grouping *dpGrouping
	nsFrom   *nsVersions
	keys     []string // datapath identities, sorted by ID
	ids      []uint32
	repPorts [][]namedPort
	addrs    [][]netip.Addr
	ns       map[string]labels.Set
	nodes    []uint32
}

type cachedDir struct {
	pols                    []*policyInfo // templates, in selection order
	subjectPorts            []namedPort
	selGen, repGen, addrGen uint64
	usesReps, usesAddrs     bool
	// slots are the direction's rules in registration order (ruleSlots),
	// finals their IDs in entries.
	finals  []uint32
	entries []Entry
	// spans locate each (rule, peer, port) triple's entries.
	spans []span
	used  uint64 // the last Compile that took or built it
}

func newCompileCache() *compileCache {
	return &compileCache{dirs: map[cachedDirKey]*cachedDir{}}
}

// observe compares the world of the Compile in progress with the previous
// one, bumping the generations of what differs, and keeps it. The same
// grouping with the same namespaces (nsFrom; nil: not known) is the same
// world: a grouping is made once per pod index, except one with node
// identities or CIDRs, which is made per Compile.
func (cc *compileCache) observe(g *dpGrouping, nsFrom *nsVersions, idents []*dpIdentity, nodes []*nodeIdent) {
	if g == cc.world.grouping && nsFrom != nil && nsFrom == cc.world.nsFrom {
		return
	}
	w := compileWorld{grouping: g, nsFrom: nsFrom,
		keys:     make([]string, len(idents)),
		ids:      make([]uint32, len(idents)),
		repPorts: make([][]namedPort, len(idents)),
		addrs:    make([][]netip.Addr, len(idents)),
		ns:       map[string]labels.Set{},
		nodes:    make([]uint32, len(nodes)),
	}
	for i, di := range idents {
		w.keys[i], w.ids[i], w.repPorts[i], w.addrs[i] = di.key, di.out.ID, di.rep.ports, di.out.IPs
		if _, ok := w.ns[di.ident.ns.name]; !ok {
			w.ns[di.ident.ns.name] = di.ident.ns.labels
		}
	}
	for i, ni := range nodes {
		w.nodes[i] = ni.out.ID
	}
	prev := &cc.world
	sameSel := slices.Equal(prev.keys, w.keys) && slices.Equal(prev.ids, w.ids) && slices.Equal(prev.nodes, w.nodes) &&
		len(prev.ns) == len(w.ns)
	if sameSel {
		for name, l := range w.ns {
			if p, ok := prev.ns[name]; !ok || !labels.Equals(p, l) {
				sameSel = false
				break
			}
		}
	}
	if !sameSel {
		cc.selGen++
	}
	if !sameSel || !slices.EqualFunc(prev.repPorts, w.repPorts, slices.Equal) {
		cc.repGen++
	}
	if !sameSel || !slices.EqualFunc(prev.addrs, w.addrs, slices.Equal) {
		cc.addrGen++
	}
	cc.world = w
}

// lookup returns the cached direction of subject for dir, and whether it
// is still what a fresh compile would build, rule IDs aside (see finish).
func (cc *compileCache) lookup(key cachedDirKey, pols []*policyInfo, subject *podInfo) (*cachedDir, bool) {
	cd := cc.dirs[key]
	if cd == nil || cd.selGen != cc.selGen || (cd.usesReps && cd.repGen != cc.repGen) ||
		(cd.usesAddrs && cd.addrGen != cc.addrGen) || !slices.Equal(cd.subjectPorts, subject.ports) ||
		len(cd.pols) != len(pols) {
		return cd, false
	}
	for i, p := range pols {
		if cd.pols[i] != templateOf(p) {
			return cd, false
		}
	}
	return cd, true
}

// priorSpans returns the entries of each (rule, peer, port) triple of cd
// when cd was compiled in the current world for a subject with the same
// named ports: a direction whose policies changed takes the triples of
// those that did not (nil otherwise).
func (cc *compileCache) priorSpans(cd *cachedDir, subject *podInfo) map[spanKey][]Entry {
	if cd == nil || cd.selGen != cc.selGen || cd.repGen != cc.repGen || cd.addrGen != cc.addrGen ||
		!slices.Equal(cd.subjectPorts, subject.ports) {
		return nil
	}
	m := make(map[spanKey][]Entry, len(cd.spans))
	for _, sp := range cd.spans {
		m[sp.key] = cd.entries[sp.lo:sp.hi:sp.hi]
	}
	return m
}

func templateOf(p *policyInfo) *policyInfo {
	if p.tmpl != nil {
		return p.tmpl
	}
	return p
}

// worldUse says which optional parts of the world a plain direction of
// pols reads: representatives' ports (an egress named port) and addresses
// (an egress named port with an ipBlock peer).
func worldUse(dir Direction, pols []*policyInfo) (reps, addrs bool) {
	if dir != Egress {
		return false, false
	}
	for _, p := range pols {
		for _, r := range p.rules[1] {
			for _, pt := range r.ports {
				if pt.kind != portNamed {
					continue
				}
				reps = true
				for _, peer := range r.peers {
					addrs = addrs || peer.ipBlock
				}
			}
		}
	}
	return reps, addrs
}

// plainDir is one plain direction of the Compile in progress: built afresh
// or taken from the cache.
type plainDir struct {
	key     cachedDirKey
	pols    []*policyInfo
	subject *podInfo
	slots   []uint32 // placeholders, in registration order
	out     EndpointPolicy
	spans   []span
	reused  *cachedDir
}

// finish runs after assignRuleIDs: a reused direction whose rules kept
// their IDs keeps its entries; one whose rules moved gets a rewritten copy.
// Every plain direction is then remembered for the next Compile.
func (cc *compileCache) finish(dirs []*plainDir, final []uint32, dp *Datapath) {
	cc.compiles++
	for k, cd := range cc.dirs {
		if cd.used+keepCompiles < cc.compiles || cd.selGen != cc.selGen {
			delete(cc.dirs, k)
		}
	}
	rewritten := map[*Entry][]Entry{}
	for _, pd := range dirs {
		finals := make([]uint32, len(pd.slots))
		for i, s := range pd.slots {
			finals[i] = final[s-FirstRuleID]
		}
		if pd.reused != nil {
			cc.reused++
		} else {
			cc.built++
		}
		if cd := pd.reused; cd != nil && !slices.Equal(cd.finals, finals) {
			moved := make(map[uint32]uint32, len(finals))
			for i, f := range cd.finals {
				moved[f] = finals[i]
			}
			es := slices.Clone(cd.entries)
			for j := range es {
				if id := es[j].Rule & RuleIDMask; id >= FirstRuleID {
					es[j].Rule = moved[id] | es[j].Rule&^RuleIDMask
				}
			}
			rewritten[&cd.entries[0]] = es
			pd.out.Entries = es
		}
		reps, addrs := worldUse(pd.key.dir, pd.pols)
		tmpls := make([]*policyInfo, len(pd.pols))
		for i, p := range pd.pols {
			tmpls[i] = templateOf(p)
		}
		cc.dirs[pd.key] = &cachedDir{pols: tmpls, subjectPorts: pd.subject.ports,
			selGen: cc.selGen, repGen: cc.repGen, addrGen: cc.addrGen, usesReps: reps, usesAddrs: addrs,
			finals: finals, entries: pd.out.Entries, spans: pd.spans, used: cc.compiles}
	}
	if len(rewritten) > 0 {
		for i := range dp.Endpoints {
			for _, ep := range []*EndpointPolicy{&dp.Endpoints[i].Ingress, &dp.Endpoints[i].Egress} {
				if len(ep.Entries) > 0 && !ep.Resolved {
					if es, ok := rewritten[&ep.Entries[0]]; ok {
						ep.Entries = es
					}
				}
			}
		}
	}
}
