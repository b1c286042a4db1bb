package policy

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"
)

// podIndex is the part of an Engine that only the pods (and the node
// addresses) determine: each pod's facts, its identity's position, and the
// pods by object, name, namespace and address. It is immutable, so the
// Engines of one list of pods share it: a Cache hands the last one to the
// next build when the pods are the same records (a policy changed, not a
// pod), which then skips the per-pod work, the largest part of a build at
// 100k pods.
type podIndex struct {
	recs    []*Pod
	rvs     []string
	objs    []*corev1.Pod // objs[i] is the object of recs[i], nil for a given record
	nodeIPs map[netip.Addr]struct{}
	// infos are the Engines' podInfos without their identity.
	infos []podInfo
	// identOf is each pod's identity's position; identFirst the first pod
	// of each identity; identPos the position by identity key; identsByNS
	// the positions by namespace.
	identOf    []int32
	identFirst []int32
	identPos   map[string]int32
	identsByNS map[string][]int32
	byPtr      map[*corev1.Pod]int32
	byKey      map[string]int32 // namespace/name
	byIP       map[netip.Addr]int32
	byNS       map[string][]int32
	// plain is the grouping into datapath identities without CIDRs (no
	// ClusterNetworkPolicy, nothing audited), made by the first Compile;
	// onNode the positions of each node's pods, made by its first Compile.
	mu     sync.Mutex
	plain  *dpGrouping
	onNode map[string][]int32
}

// podsOnNode returns the positions of the pods whose node is node, in
// order.
func (idx *podIndex) podsOnNode(node string) []int32 {
	idx.mu.Lock()
	defer idx.mu.Unlock()
	if is, ok := idx.onNode[node]; ok {
		return is
	}
	var is []int32
	for i := range idx.infos {
		if idx.infos[i].pod.NodeName == node {
			is = append(is, int32(i))
		}
	}
	if idx.onNode == nil {
		idx.onNode = map[string][]int32{}
	}
	idx.onNode[node] = is
	return is
}

// dpGrouping is the pods grouped into datapath identities: the engine
// identity plus the named-port signature (a named port resolves per
// destination pod) and, with cidrs, the CIDRs holding the pod's addresses.
type dpGrouping struct {
	// Per identity, sorted by ID: key, ID, the first pod (named ports
	// resolve against it), and the addresses (sorted; read-only, shared by
	// the Datapaths).
	keys []string
	ids  []uint32
	reps []int32
	ips  [][]netip.Addr
	// of is each pod's identity's position (-1: hostNetwork or no address).
	of []int32
	// nodeIDs are the node identities' IDs, by key.
	nodeIDs map[string]uint32
	// out are the identities as a Datapath lists them (read-only: shared by
	// the Datapaths compiled from the grouping).
	out []Identity
}

// grouping returns the pods' datapath identities given the CIDRs that split
// them and the node identities' keys (numbered with them).
func (idx *podIndex) grouping(cidrs map[netip.Prefix]int, nodeKeys map[string]*nodeIdent) (*dpGrouping, error) {
	if len(cidrs) > 0 || len(nodeKeys) > 0 {
		return idx.group(cidrs, nodeKeys)
	}
	idx.mu.Lock()
	defer idx.mu.Unlock()
	if idx.plain == nil {
		g, err := idx.group(nil, nil)
		if err != nil {
			return nil, err
		}
		idx.plain = g
	}
	return idx.plain, nil
}

func (idx *podIndex) group(cidrs map[netip.Prefix]int, nodeKeys map[string]*nodeIdent) (*dpGrouping, error) {
	g := &dpGrouping{of: make([]int32, len(idx.infos))}
	byKey := map[string]int32{}
	for i := range idx.infos {
		pi := &idx.infos[i]
		g.of[i] = -1
		if pi.hostNetwork || len(pi.ips) == 0 {
			continue
		}
		key := pi.dpIdentityKey()
		if sig := cidrSignature(cidrs, pi.ips); sig != "" {
			key += "|cidrs:" + sig
		}
		n, ok := byKey[key]
		if !ok {
			n = int32(len(g.keys))
			byKey[key] = n
			g.keys, g.reps, g.ips = append(g.keys, key), append(g.reps, int32(i)), append(g.ips, nil)
		}
		g.ips[n] = append(g.ips[n], pi.ips...)
		g.of[i] = n
	}
	keys := slices.Clone(g.keys)
	for k := range nodeKeys {
		keys = append(keys, k)
	}
	ids, err := stableIDs(keys, uint64(FirstPodIdentity), 1<<31)
	if err != nil {
		return nil, fmt.Errorf("compiling identities: %w", err)
	}
	g.nodeIDs = make(map[string]uint32, len(nodeKeys))
	for k := range nodeKeys {
		g.nodeIDs[k] = ids[k]
	}
	// Sorted by ID; of follows.
	order := make([]int32, len(g.keys))
	for i := range order {
		order[i] = int32(i)
		slices.SortFunc(g.ips[i], netip.Addr.Compare)
	}
	slices.SortFunc(order, func(a, b int32) int { return cmp.Compare(ids[g.keys[a]], ids[g.keys[b]]) })
	pos := make([]int32, len(order))
	sorted := &dpGrouping{of: g.of, nodeIDs: g.nodeIDs, keys: make([]string, len(order)), ids: make([]uint32, len(order)),
		reps: make([]int32, len(order)), ips: make([][]netip.Addr, len(order))}
	sorted.out = make([]Identity, len(order))
	for to, from := range order {
		pos[from] = int32(to)
		sorted.keys[to], sorted.ids[to], sorted.reps[to], sorted.ips[to] = g.keys[from], ids[g.keys[from]], g.reps[from], g.ips[from]
		rep := idx.infos[g.reps[from]].pod
		sorted.out[to] = Identity{ID: sorted.ids[to], Namespace: rep.Namespace, Labels: rep.Labels, IPs: sorted.ips[to]}
	}
	for i, n := range g.of {
		if n >= 0 {
			g.of[i] = pos[n]
		}
	}
	return sorted, nil
}

// buildPodIndex indexes the pods, checking each (c: the Cache or nil).
func (e *Engine) buildPodIndex(recs []*Pod, objs []*corev1.Pod, c *Cache) (*podIndex, error) {
	idx := &podIndex{
		recs: recs, rvs: make([]string, len(recs)), objs: objs, nodeIPs: e.nodeIPs,
		infos:      make([]podInfo, len(recs)),
		identOf:    make([]int32, len(recs)),
		byPtr:      make(map[*corev1.Pod]int32, len(objs)),
		byKey:      make(map[string]int32, len(recs)),
		byIP:       make(map[netip.Addr]int32, len(recs)),
		byNS:       map[string][]int32{},
		identPos:   map[string]int32{},
		identsByNS: map[string][]int32{},
	}
	for i, pod := range recs {
		if pod == nil {
			if i >= len(objs) {
				return nil, fmt.Errorf("snapshot pod record %d is nil", i-len(objs))
			}
			return nil, fmt.Errorf("snapshot pod %d is nil", i)
		}
		f := c.pod(pod)
		if f.err != nil {
			return nil, f.err
		}
		if _, dup := idx.byKey[f.key]; dup {
			return nil, fmt.Errorf("pod %s: appears twice in the snapshot", f.key)
		}
		n := int32(i)
		pi := &idx.infos[i]
		*pi = podInfo{pod: pod, hostNetwork: pod.HostNetwork, indexed: true, podFacts: f}
		pi.firstIsNode = len(f.ips) > 0 && e.IsNodeIP(f.ips[0])
		idx.rvs[i] = pod.ResourceVersion
		id, ok := idx.identPos[f.identKey]
		if !ok {
			id = int32(len(idx.identFirst))
			idx.identPos[f.identKey] = id
			idx.identFirst = append(idx.identFirst, n)
			idx.identsByNS[pod.Namespace] = append(idx.identsByNS[pod.Namespace], id)
		}
		idx.identOf[i] = id
		if i < len(objs) {
			pi.obj = objs[i]
			idx.byPtr[pi.obj] = n
		}
		idx.byKey[f.key] = n
		idx.byNS[pod.Namespace] = append(idx.byNS[pod.Namespace], n)
		if !pi.hostNetwork {
			// hostNetwork pods share the node's address; an IP names them only as the node.
			// An IP is reused once a pod terminates: the first live pod keeps it.
			for _, ip := range pi.ips {
				if prev, ok := idx.byIP[ip]; !ok || (finished(recs[prev]) && !finished(pod)) {
					idx.byIP[ip] = n
				}
			}
		}
	}
	return idx, nil
}

// usePodIndex makes the Engine's pods and identities from idx, taking
// prev's where they still hold (prev: see Cache.reusableEngine; nil for
// none).
func (e *Engine) usePodIndex(idx *podIndex, c *Cache, prev *Engine) {
	e.index = idx
	if changed, ok := e.identitiesToRedo(prev); ok {
		e.redoIdentities(prev, changed, c)
		return
	}
	if c != nil {
		c.stats.IdentitiesBuilt += uint64(len(idx.identFirst))
	}
	e.identities = make([]*identity, len(idx.identFirst))
	islab := make([]identity, len(idx.identFirst))
	for j, first := range idx.identFirst {
		e.registerIdentity(&islab[j], int32(j), idx.recs[first], idx.infos[first].identKey, c)
	}
	slab := make([]podInfo, len(idx.infos))
	copy(slab, idx.infos)
	e.pods = make([]*podInfo, len(slab))
	for i := range slab {
		slab[i].ident = e.identities[idx.identOf[i]]
		e.pods[i] = &slab[i]
	}
	e.podsByNS = make(map[string][]*podInfo, len(idx.byNS))
	for ns := range idx.byNS {
		e.podsByNS[ns] = e.podsOfNamespace(ns)
	}
}

// podsOfNamespace lists the Engine's pods of ns in Snapshot order.
func (e *Engine) podsOfNamespace(ns string) []*podInfo {
	is := e.index.byNS[ns]
	pis := make([]*podInfo, len(is))
	for k, i := range is {
		pis[k] = e.pods[i]
	}
	return pis
}

// podByIP is the Snapshot's non-hostNetwork pod owning ip, or nil.
func (e *Engine) podByIP(ip netip.Addr) *podInfo {
	if i, ok := e.index.byIP[ip]; ok {
		return e.pods[i]
	}
	return nil
}

// reusablePodIndex returns the index of the last build when this build's
// pods are the same records at the same versions, in the same order, with
// the same node addresses; nil otherwise (and for a nil c). The pods' cache
// entries are then kept as they are, not looked up again.
func (c *Cache) reusablePodIndex(recs []*Pod, objs []*corev1.Pod, nodeIPs map[netip.Addr]struct{}) *podIndex {
	idx := c.indexOfPods(recs)
	if idx == nil || len(idx.objs) != len(objs) || !maps.Equal(idx.nodeIPs, nodeIPs) {
		return nil
	}
	for i, o := range objs {
		if o != idx.objs[i] {
			return nil
		}
	}
	c.podsKept = true
	c.stats.Hits += uint64(len(recs)) // every pod's facts reused at once
	return idx
}

// indexOfPods returns the kept pod index when recs are its records: the same
// pods at the same versions, in the same order.
func (c *Cache) indexOfPods(recs []*Pod) *podIndex {
	if c == nil || c.podIndex == nil {
		return nil
	}
	idx := c.podIndex
	if len(idx.recs) != len(recs) {
		return nil
	}
	for i, r := range recs {
		if r != idx.recs[i] || r == nil || r.ResourceVersion == "" || r.ResourceVersion != idx.rvs[i] {
			return nil
		}
	}
	return idx
}

// podHolds is podsHold(recs) for NodeAddresses. When recs are the kept pod
// index's records it answers from the index's address map, which has the
// same keys (every address of a pod that is not hostNetwork), instead of
// making a map of every pod's address again: at 100k pods that map was a
// fifth of a policy change's CPU in the agent, with its garbage.
func (c *Cache) podHolds(recs []*Pod) func(netip.Addr) bool {
	if idx := c.indexOfPods(recs); idx != nil {
		return func(ip netip.Addr) bool {
			_, ok := idx.byIP[ip.Unmap()]
			return ok
		}
	}
	return podsHold(recs)
}

// keepPodIndex remembers idx for the next build (a nil c keeps nothing).
func (c *Cache) keepPodIndex(idx *podIndex) {
	if c != nil {
		c.podIndex = idx
	}
}
