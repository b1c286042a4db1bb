package policy

import (
	"fmt"
	"maps"
	"net/netip"

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
	// of each identity.
	identOf    []int32
	identFirst []int32
	byPtr      map[*corev1.Pod]int32
	byKey      map[string]int32 // namespace/name
	byIP       map[netip.Addr]int32
	byNS       map[string][]int32
}

// buildPodIndex indexes the pods, checking each (c: the Cache or nil).
func (e *Engine) buildPodIndex(recs []*Pod, objs []*corev1.Pod, c *Cache) (*podIndex, error) {
	idx := &podIndex{
		recs: recs, rvs: make([]string, len(recs)), objs: objs, nodeIPs: e.nodeIPs,
		infos:   make([]podInfo, len(recs)),
		identOf: make([]int32, len(recs)),
		byPtr:   make(map[*corev1.Pod]int32, len(objs)),
		byKey:   make(map[string]int32, len(recs)),
		byIP:    make(map[netip.Addr]int32, len(recs)),
		byNS:    map[string][]int32{},
	}
	identPos := map[string]int32{}
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
		id, ok := identPos[f.identKey]
		if !ok {
			id = int32(len(idx.identFirst))
			identPos[f.identKey] = id
			idx.identFirst = append(idx.identFirst, n)
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

// usePodIndex makes the Engine's pods and identities from idx.
func (e *Engine) usePodIndex(idx *podIndex, c *Cache) {
	e.index = idx
	idents := make([]*identity, len(idx.identFirst))
	for j, first := range idx.identFirst {
		idents[j] = e.registerIdentity(idx.recs[first], idx.infos[first].identKey, c)
	}
	slab := make([]podInfo, len(idx.infos))
	copy(slab, idx.infos)
	e.pods = make([]*podInfo, len(slab))
	for i := range slab {
		slab[i].ident = idents[idx.identOf[i]]
		e.pods[i] = &slab[i]
	}
	e.podsByNS = make(map[string][]*podInfo, len(idx.byNS))
	for ns, is := range idx.byNS {
		pis := make([]*podInfo, len(is))
		for k, i := range is {
			pis[k] = e.pods[i]
		}
		e.podsByNS[ns] = pis
	}
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
	if c == nil || c.podIndex == nil {
		return nil
	}
	idx := c.podIndex
	if len(idx.recs) != len(recs) || len(idx.objs) != len(objs) || !maps.Equal(idx.nodeIPs, nodeIPs) {
		return nil
	}
	for i, r := range recs {
		if r != idx.recs[i] || r == nil || r.ResourceVersion == "" || r.ResourceVersion != idx.rvs[i] {
			return nil
		}
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

// keepPodIndex remembers idx for the next build (a nil c keeps nothing).
func (c *Cache) keepPodIndex(idx *podIndex) {
	if c != nil {
		c.podIndex = idx
	}
}
