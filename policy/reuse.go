package policy

import (
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// An Engine built through a Cache from the same pods (the same pod index)
// and the same namespaces as the Cache's last Engine takes from it what
// only those and the policies determine, instead of making it again for
// every policy change (at 100k pods ~30k identities, their policy lists,
// and 100k podInfos):
//   - the namespaces;
//   - each policy instance of the same template (the same object: the
//     same audit flag in the same namespaces), match caches included: the
//     same identities at the same positions in the same namespaces get the
//     same answers;
//   - the identities of every namespace whose policies are those same
//     instances (with the same ClusterNetworkPolicies), and the pods
//     pointing at them.
//
// What a change touches is made afresh, exactly as a fresh build makes it
// (TestEngineReuseMatchesFresh).

// nsVersions are the namespace objects an Engine's namespaces were made
// from, with their versions and positions.
type nsVersions struct {
	of map[*corev1.Namespace]nsVersion
}

type nsVersion struct {
	rv  string
	pos int
}

func newNSVersions(nss []*corev1.Namespace) *nsVersions {
	v := &nsVersions{of: make(map[*corev1.Namespace]nsVersion, len(nss))}
	for i, ns := range nss {
		v.of[ns] = nsVersion{ns.ResourceVersion, i}
	}
	return v
}

// same reports whether nss are the same objects at the same versions, in
// any order (listers list in no order); an object without a version may
// have been changed in place: never the same.
func (v *nsVersions) same(nss []*corev1.Namespace) bool {
	if v == nil || len(v.of) != len(nss) {
		return false
	}
	seen := make([]bool, len(nss))
	for _, ns := range nss {
		was, ok := v.of[ns]
		if !ok || ns.ResourceVersion == "" || ns.ResourceVersion != was.rv || seen[was.pos] {
			return false
		}
		seen[was.pos] = true
	}
	return true
}

// reusableEngine returns the Cache's last Engine when this build's pods
// are its (idx: reusablePodIndex's, not nil only then) and its namespaces
// the same; nil otherwise, and for a nil c. (The last Engine was built on
// the last pod index: a build keeps both or neither.)
func (c *Cache) reusableEngine(idx *podIndex, nss []*corev1.Namespace) *Engine {
	if c == nil || c.last == nil || idx == nil || !c.last.nsFrom.same(nss) {
		return nil
	}
	return c.last
}

// keepEngine remembers e for the next build (a nil c keeps nothing).
func (c *Cache) keepEngine(e *Engine) {
	if c != nil {
		c.last = e
	}
}

// instanceOf returns prev's instance of tmpl; nil when it has none and for
// a nil prev.
func (prev *Engine) instanceOf(tmpl *policyInfo) *policyInfo {
	if prev == nil {
		return nil
	}
	if pi := prev.policyByRef[tmpl.ref]; pi != nil && pi.tmpl == tmpl {
		return pi
	}
	return nil
}

// owns reports whether pi is one of prev's instances (shared, never
// modified).
func (prev *Engine) owns(pi *policyInfo) bool {
	return prev != nil && prev.policyByRef[pi.ref] == pi
}

// identitiesToRedo reports whether the Engine being built can take prev's
// identities, and lists the namespaces whose identities it must make
// again: those whose policies are not prev's instances in the same order.
func (e *Engine) identitiesToRedo(prev *Engine) ([]string, bool) {
	// (hasAudited needs no check: an identity of a namespace with the same
	// instances and the same cluster policies has the same audited ones.)
	if prev == nil || !slices.Equal(prev.clusters, e.clusters) {
		return nil, false
	}
	var changed []string
	for ns, pols := range e.policiesByNS {
		if !slices.Equal(pols, prev.policiesByNS[ns]) {
			changed = append(changed, ns)
		}
	}
	for ns := range prev.policiesByNS {
		if _, ok := e.policiesByNS[ns]; !ok {
			changed = append(changed, ns)
		}
	}
	slices.Sort(changed)
	return changed, true
}

// redoIdentities takes prev's identities and pods, making those of the
// changed namespaces again (c: the Cache, whose selections of the other
// namespaces' identities then stay).
func (e *Engine) redoIdentities(prev *Engine, changed []string, c *Cache) {
	idx := e.index
	c.identsKept = true
	e.identities, e.pods, e.podsByNS = prev.identities, prev.pods, prev.podsByNS
	if len(e.clusters) > 0 {
		// The same cluster policies and namespaces: the same lists.
		e.clusterByNS = maps.Clone(prev.clusterByNS)
	}
	n := 0
	for _, ns := range changed {
		n += len(idx.identsByNS[ns])
	}
	c.stats.IdentitiesReused += uint64(len(prev.identities) - n)
	c.stats.IdentitiesBuilt += uint64(n)
	if n == 0 {
		return
	}
	e.identities = slices.Clone(prev.identities)
	islab := make([]identity, 0, n)
	var positions []int32
	for _, ns := range changed {
		for _, j := range idx.identsByNS[ns] {
			first := idx.identFirst[j]
			islab = islab[:len(islab)+1]
			e.registerIdentity(&islab[len(islab)-1], j, idx.recs[first], idx.infos[first].identKey, c)
		}
		positions = append(positions, idx.byNS[ns]...)
	}
	e.pods = slices.Clone(prev.pods)
	slab := make([]podInfo, len(positions))
	for k, i := range positions {
		slab[k] = idx.infos[i]
		slab[k].ident = e.identities[idx.identOf[i]]
		e.pods[i] = &slab[k]
	}
	e.podsByNS = maps.Clone(prev.podsByNS)
	for _, ns := range changed {
		if _, ok := idx.byNS[ns]; ok {
			e.podsByNS[ns] = e.podsOfNamespace(ns)
		}
	}
}
