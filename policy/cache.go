package policy

import (
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"

	networkingv1 "k8s.io/api/networking/v1"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// Cache carries what NewEngineCached derived from each object into the next
// build, for a caller that rebuilds the Engine on every cluster change (the
// node agent): a pod's parsed IPs, named ports and identity key; a policy's
// validation and compiled selectors; which policies select each identity.
//
// An entry is reused only for the same object (pointer) with the same
// non-empty ResourceVersion, as informer caches hand out: an update is a new
// object, never an in-place change. Objects without a ResourceVersion (built
// by hand, read from files) are derived afresh on every build. Entries of
// objects absent from a build are dropped at its end, so the Cache holds at
// most one build's worth of objects. A Cache is safe for concurrent use;
// builds through it are serialised.
type Cache struct {
	mu   sync.Mutex
	gen  uint64 // the build in progress; entries seen in it carry it
	pods map[*Pod]*entry[podFacts]
	// records are the records made of the Snapshots' pod objects, so that
	// a caller giving objects reuses their facts as one giving records does.
	records map[*corev1.Pod]*entry[*Pod]
	// keys holds one copy of each identity key the pods' facts hold: pods
	// of one workload share labels, and at 100k pods a copy each was a
	// fifth of the Cache (entries not derived again in a build are
	// dropped; a later pod then makes a new copy, which is only less
	// sharing).
	keys      map[string]*entry[string]
	policies  map[*networkingv1.NetworkPolicy]*entry[policyFacts]
	clusters  map[*cnpv1beta1.ClusterNetworkPolicy]*entry[clusterFacts]
	selection map[string]*nsSelection // by namespace
	// clusterSel remembers which ClusterNetworkPolicies select each
	// identity, valid while the build's list of them is the same.
	clusterSel clusterSelection
	stats      CacheStats
	// podIndex is the last build's (see reusablePodIndex); podsKept is set
	// while a build reuses it, whose pods' entries sweep then keeps.
	podIndex *podIndex
	podsKept bool
	// last is the last Engine built (see reusableEngine); identsKept is set
	// while a build takes its identities, whose selections sweep then keeps.
	last       *Engine
	identsKept bool
	// compiled is what Engine.Compile keeps for the next Engine's.
	compiled *compileCache
}

type clusterSelection struct {
	cis     []*clusterInfo
	byIdent map[string]*clusterSelEntry
	// For the build in progress: each policy's index, each namespace's
	// labels as a key.
	pos   map[*clusterInfo]int32
	nsKey map[*nsInfo]string
}

// clusterSelEntry holds indexes into clusterSelection.cis per direction
// and tier.
type clusterSelEntry struct {
	idx  [2][2][]int32
	seen uint64
}

// CacheStats counts a Cache's entries and how often an object was found.
type CacheStats struct {
	Pods, Policies int // entries held
	// Hits and Misses count pods and policies looked up, over all builds;
	// an object without a ResourceVersion is a miss.
	Hits, Misses uint64
	// DirectionsReused and DirectionsCompiled count the plain directions
	// Engine.Compile took from the previous Compile or built, over all
	// Compiles of Engines made through the Cache.
	DirectionsReused, DirectionsCompiled uint64
	// IdentitiesReused and IdentitiesBuilt count the identities (with
	// their policy lists) builds took from the previous Engine or made.
	IdentitiesReused, IdentitiesBuilt uint64
}

// entry is the facts derived from one object at one ResourceVersion.
type entry[F any] struct {
	rv    string
	facts F
	seen  uint64
}

// nsSelection remembers, for one namespace's list of policies, which of
// them select each identity: valid as long as the list is the same
// templates in the same order.
type nsSelection struct {
	pols    []*policyInfo // templates
	byIdent map[string]*selEntry
	seen    uint64
}

// selEntry holds indexes into the namespace's policies, per direction.
type selEntry struct {
	idx  [2][]int32
	seen uint64
}

// NewCache returns an empty Cache.
func NewCache() *Cache {
	return &Cache{
		pods:      map[*Pod]*entry[podFacts]{},
		records:   map[*corev1.Pod]*entry[*Pod]{},
		keys:      map[string]*entry[string]{},
		policies:  map[*networkingv1.NetworkPolicy]*entry[policyFacts]{},
		clusters:  map[*cnpv1beta1.ClusterNetworkPolicy]*entry[clusterFacts]{},
		selection: map[string]*nsSelection{},
		compiled:  newCompileCache(),
	}
}

// NewEngineCached is NewEngine (same Engine, same errors) reusing what c
// holds from earlier builds. A nil c is NewEngine.
func NewEngineCached(s *Snapshot, c *Cache) (*Engine, error) {
	if c == nil {
		return NewEngine(s)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	defer c.sweep()
	return newEngine(s, c)
}

// Stats returns the Cache's current counts.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.stats
	st.Pods, st.Policies = len(c.pods), len(c.policies)
	c.compiled.mu.Lock()
	st.DirectionsReused, st.DirectionsCompiled = c.compiled.reused, c.compiled.built
	c.compiled.mu.Unlock()
	return st
}

// pod returns the facts of pod, derived or reused. A nil c derives them.
func (c *Cache) pod(pod *Pod) *podFacts {
	if c == nil {
		f := derivePod(pod)
		return &f
	}
	return reuse(c, c.pods, pod, pod.ResourceVersion, func(pod *Pod) podFacts {
		f := derivePod(pod)
		if f.err == nil {
			f.dpKey = c.intern(f.dpIdentityKey()) // once per object, not per Compile
			f.identKey = c.intern(f.identKey)
		}
		return f
	})
}

// intern returns the Cache's copy of s.
func (c *Cache) intern(s string) string {
	en := c.keys[s]
	if en == nil {
		en = &entry[string]{facts: s}
		c.keys[s] = en
	}
	en.seen = c.gen
	return en.facts
}

// record returns the record of pod, made or reused (not counted in the
// stats: the facts of the record are). A nil c makes it.
func (c *Cache) record(pod *corev1.Pod) *Pod {
	if c == nil || pod.ResourceVersion == "" {
		return NewPod(pod)
	}
	if en := c.records[pod]; en != nil && en.rv == pod.ResourceVersion {
		en.seen = c.gen
		return en.facts
	}
	r := NewPod(pod)
	c.records[pod] = &entry[*Pod]{rv: pod.ResourceVersion, facts: r, seen: c.gen}
	return r
}

// policy returns the facts of np, derived or reused. A nil c derives them.
func (c *Cache) policy(np *networkingv1.NetworkPolicy) policyFacts {
	if c == nil {
		return derivePolicy(np)
	}
	return *reuse(c, c.policies, np, np.ResourceVersion, derivePolicy)
}

// clusterFacts is a validated, compiled ClusterNetworkPolicy (immutable,
// shared by Engines), or why it is invalid.
type clusterFacts struct {
	ci      *clusterInfo
	invalid error
	err     error
}

func deriveCluster(cnp *cnpv1beta1.ClusterNetworkPolicy) clusterFacts {
	if err := ValidateClusterPolicy(cnp); err != nil {
		return clusterFacts{invalid: err}
	}
	ci, err := compileCluster(cnp)
	if err != nil {
		return clusterFacts{err: err}
	}
	ci.audited = auditedBy(&cnp.ObjectMeta, false)
	return clusterFacts{ci: ci}
}

// cluster returns the facts of cnp, derived or reused. A nil c derives them.
func (c *Cache) cluster(cnp *cnpv1beta1.ClusterNetworkPolicy) clusterFacts {
	if c == nil {
		return deriveCluster(cnp)
	}
	return *reuse(c, c.clusters, cnp, cnp.ResourceVersion, deriveCluster)
}

// reuse returns the facts m holds for obj at version rv, or derives and
// keeps them (an object without a version is derived every time). The
// facts are shared: never modified.
func reuse[O comparable, F any](c *Cache, m map[O]*entry[F], obj O, rv string, derive func(O) F) *F {
	if en := m[obj]; en != nil && en.rv == rv && rv != "" {
		en.seen = c.gen
		c.stats.Hits++
		return &en.facts
	}
	c.stats.Misses++
	f := derive(obj)
	if rv != "" {
		en := &entry[F]{rv: rv, facts: f, seen: c.gen}
		m[obj] = en
		return &en.facts
	}
	return &f
}

// startSelection keeps the remembered selections of every namespace of e
// whose policies are unchanged, and forgets those of the others.
func (c *Cache) startSelection(e *Engine) {
	if c == nil {
		return
	}
	c.startClusterSelection(e)
	for ns, pols := range e.policiesByNS {
		sel := c.selection[ns]
		if sel == nil || !sameTemplates(sel.pols, pols) {
			sel = &nsSelection{pols: make([]*policyInfo, len(pols)), byIdent: map[string]*selEntry{}}
			for i, p := range pols {
				sel.pols[i] = p.tmpl
			}
			c.selection[ns] = sel
		}
		sel.seen = c.gen
	}
}

func sameTemplates(tmpls, pols []*policyInfo) bool {
	if len(tmpls) != len(pols) {
		return false
	}
	for i, p := range pols {
		if p.tmpl != tmpls[i] {
			return false
		}
	}
	return true
}

// fillClusterSelectedBy is Engine.fillClusterSelectedBy for an identity of
// e being registered under key, through the remembered selections.
func (c *Cache) fillClusterSelectedBy(e *Engine, id *identity, key string) {
	if c == nil || len(e.clusters) == 0 {
		e.fillClusterSelectedBy(id, true)
		return
	}
	cs := &c.clusterSel
	// A subject's namespace selector reads the namespace's labels.
	nk, ok := cs.nsKey[id.ns]
	if !ok {
		nk = id.ns.labels.String()
		cs.nsKey[id.ns] = nk
	}
	key += "|" + nk
	if en := cs.byIdent[key]; en != nil {
		en.seen = c.gen
		for d := range en.idx {
			for t := range en.idx[d] {
				for _, i := range en.idx[d][t] {
					id.cluster[d][t] = append(id.cluster[d][t], e.clusters[i])
				}
			}
		}
		return
	}
	e.fillClusterSelectedBy(id, true)
	en := &clusterSelEntry{seen: c.gen}
	for d := range id.cluster {
		for t := range id.cluster[d] {
			for _, ci := range id.cluster[d][t] {
				en.idx[d][t] = append(en.idx[d][t], cs.pos[ci])
			}
		}
	}
	cs.byIdent[key] = en
}

// startClusterSelection keeps the remembered cluster policy selections when
// the build's policies are the same as the last build's, in the same order.
func (c *Cache) startClusterSelection(e *Engine) {
	cs := &c.clusterSel
	if !slices.Equal(cs.cis, e.clusters) {
		*cs = clusterSelection{cis: slices.Clone(e.clusters), byIdent: map[string]*clusterSelEntry{}}
	}
	cs.pos = make(map[*clusterInfo]int32, len(e.clusters))
	for i, ci := range e.clusters {
		cs.pos[ci] = int32(i)
	}
	cs.nsKey = map[*nsInfo]string{}
}

// fillSelectedBy is Engine.fillSelectedBy for an identity of e being
// registered under key, through the remembered selections.
func (c *Cache) fillSelectedBy(e *Engine, id *identity, key string) {
	pols := e.policiesByNS[id.ns.name]
	if c == nil || len(pols) == 0 {
		e.fillSelectedBy(id, nil)
		return
	}
	sel := c.selection[id.ns.name] // set by startSelection
	if en := sel.byIdent[key]; en != nil {
		en.seen = c.gen
		for d := range en.idx {
			for _, i := range en.idx[d] {
				id.selectedBy[d] = append(id.selectedBy[d], pols[i])
			}
		}
		return
	}
	en := &selEntry{seen: c.gen}
	e.fillSelectedBy(id, func(d, i int) { en.idx[d] = append(en.idx[d], int32(i)) })
	sel.byIdent[key] = en
}

// sweep drops the entries the build that just ended did not use.
func (c *Cache) sweep() {
	if !c.podsKept {
		evict(c.pods, c.gen)
		evict(c.keys, c.gen)
	}
	c.podsKept = false
	evict(c.records, c.gen)
	evict(c.policies, c.gen)
	evict(c.clusters, c.gen)
	// A build that took the last one's identities looked up only those it
	// made again; the others are still the same identities.
	keepIdents := c.identsKept
	c.identsKept = false
	for ns, sel := range c.selection {
		if sel.seen != c.gen {
			delete(c.selection, ns)
			continue
		}
		if !keepIdents {
			evictSeen(sel.byIdent, c.gen)
		}
	}
	if !keepIdents {
		evictSeen(c.clusterSel.byIdent, c.gen)
	}
}

type seenEntry interface{ seenIn() uint64 }

func (en *selEntry) seenIn() uint64        { return en.seen }
func (en *clusterSelEntry) seenIn() uint64 { return en.seen }

func evictSeen[E seenEntry](m map[string]E, gen uint64) {
	for k, en := range m {
		if en.seenIn() != gen {
			delete(m, k)
		}
	}
}

func evict[O comparable, F any](m map[O]*entry[F], gen uint64) {
	for k, en := range m {
		if en.seen != gen {
			delete(m, k)
		}
	}
}
