package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// NamespaceNameLabel is the label the API server puts on every namespace; the
// engine adds it when a namespace object lacks it or is absent from the Snapshot.
const NamespaceNameLabel = "kubernetes.io/metadata.name"

// Engine answers questions about one Snapshot. NewEngine indexes the snapshot
// once; afterwards an Engine is immutable (its selector-match caches are filled
// with atomic operations and are deterministic) and safe for concurrent use.
// The Snapshot's objects must not be modified while the Engine is in use.
type Engine struct {
	namespaces map[string]*nsInfo
	pods       []*podInfo
	// index locates pods by object, name and address (positions in pods);
	// shared with the other Engines of the same pods (podindex.go).
	index        *podIndex
	podsByNS     map[string][]*podInfo
	policies     []*policyInfo // sorted by namespace/name
	policyByRef  map[PolicyRef]*policyInfo
	policiesByNS map[string][]*policyInfo
	// identities are in the pod index's order (podIndex.identFirst), so
	// Engines of the same pods give an identity the same position.
	identities []*identity
	nodeIPs    map[netip.Addr]struct{}
	// nsFrom is what namespaces was made from; Engines that share
	// namespaces share it.
	nsFrom *nsVersions
	// clusters are the ClusterNetworkPolicies in evaluation order.
	clusters []*clusterInfo
	// hasAudited: some policy is audited (see audit.go).
	hasAudited    bool
	clusterByName map[string]*clusterInfo
	clusterByNS   map[string][]*clusterInfo // see clustersForNamespace
	// nodeByIP gives the labels of the Snapshot node owning an address.
	nodeByIP map[netip.Addr]labels.Set
	// cache is the Cache the Engine was built through (NewEngineCached), or
	// nil; Compile keeps its directions there for the next Engine.
	cache *Cache
}

type nsInfo struct {
	name   string
	labels labels.Set
	audit  bool // the namespace's policies are audited by default
}

// identity is a (namespace, pod label set) pair: every pod with the same one is
// selected by the same policies and matched by the same peer selectors, so
// those answers are computed once per identity.
type identity struct {
	id     int // index in Engine.identities; -1 for a pod outside the Snapshot
	ns     *nsInfo
	labels labels.Set
	// selectedBy holds the policies selecting this identity, per direction index.
	selectedBy [2][]*policyInfo
	// cluster holds the ClusterNetworkPolicies selecting it, per direction
	// index and tier (tierAdminIdx, tierBaselineIdx), in evaluation order.
	cluster [2][2][]*clusterInfo
	// audit holds the complete selections, audited policies included, when
	// an audited policy selects the identity (selectedBy and cluster then
	// hold only the enforced ones); nil otherwise.
	audit *tierLists
}

type namedPort struct {
	name  string
	proto corev1.Protocol
	port  int32
}

type podInfo struct {
	pod         *Pod
	obj         *corev1.Pod // the object pod was made from, when the Snapshot gave one
	ident       *identity
	firstIsNode bool // ips[0] is a node address (saves a lookup per query)
	hostNetwork bool
	indexed     bool // part of the Snapshot (unique per namespace/name)
	*podFacts        // shared with the Cache and the Engines of the same pods
}

// podFacts is what a pod object alone determines, independent of the rest of
// the Snapshot; a Cache keeps it per object across Engines, so its slices
// are never modified once built.
type podFacts struct {
	key   string // namespace/name
	ips   []netip.Addr
	ports []namedPort // declared container ports that have a name
	// identKey names the pod's identity (namespace and labels); dpKey adds the
	// named-port signature, naming its datapath identity (see Compile). A
	// Cache fills dpKey; without one, Compile derives it (dpIdentityKey).
	identKey, dpKey string
	err             error // the pod cannot be indexed
}

func (f *podFacts) dpIdentityKey() string {
	if f.dpKey != "" {
		return f.dpKey
	}
	return f.identKey + "\x00ports" + portSignature(f.ports)
}

// derivePod computes a pod's facts. An error is kept in the facts (and
// returned by NewEngine), never partially filled ones used.
func derivePod(pod *Pod) podFacts {
	f := podFacts{key: pod.String()}
	if pod.Name == "" || pod.Namespace == "" {
		f.err = fmt.Errorf("pod %q in namespace %q: metadata.name and metadata.namespace are required", pod.Name, pod.Namespace)
		return f
	}
	if pod.invalid != nil {
		f.err = fmt.Errorf("pod %s: %w", f.key, pod.invalid)
		return f
	}
	f.ips = pod.IPs
	f.ports = pod.ports
	f.identKey = identityKey(pod.Namespace, pod.Labels)
	return f
}

// dirIndex maps a Direction to an array index: Ingress 0, Egress 1.
func dirIndex(d Direction) int {
	if d == Egress {
		return 1
	}
	return 0
}

// NewEngine validates and indexes s. It returns an error naming the object,
// the field path and the reason for anything the API server would reject
// (or that cannot be evaluated, such as an unparsable pod IP). Invalid
// policies are all reported, joined (errors.Join), each a *ValidationError.
func NewEngine(s *Snapshot) (*Engine, error) {
	return newEngine(s, nil)
}

// newEngine is NewEngine, taking what c already derived from the same
// objects when c is not nil (c.mu held).
func newEngine(s *Snapshot, c *Cache) (*Engine, error) {
	if s == nil {
		s = &Snapshot{}
	}
	e := &Engine{
		policyByRef:   make(map[PolicyRef]*policyInfo, len(s.Policies)),
		policiesByNS:  make(map[string][]*policyInfo),
		nodeIPs:       make(map[netip.Addr]struct{}, len(s.NodeIPs)),
		clusterByName: make(map[string]*clusterInfo, len(s.ClusterPolicies)),
		clusterByNS:   map[string][]*clusterInfo{},
		nodeByIP:      map[netip.Addr]labels.Set{},
		cache:         c,
	}
	for _, ip := range s.NodeIPs {
		if ip.IsValid() {
			e.nodeIPs[ip.Unmap()] = struct{}{}
		}
	}
	// Every pod as a record, the objects the Snapshot gave converted once
	// (objs[i] is the object of recs[i], nil for a given record).
	recs := make([]*Pod, 0, len(s.Pods)+len(s.PodRecords))
	objs := make([]*corev1.Pod, 0, len(s.Pods))
	for _, p := range s.Pods {
		var r *Pod
		if p != nil {
			r = c.record(p)
		}
		recs, objs = append(recs, r), append(objs, p)
	}
	recs = append(recs, s.PodRecords...)
	if err := e.indexNodes(s.Nodes, c.podHolds(recs)); err != nil {
		return nil, err
	}
	// A build of the same pods and namespaces as the Cache's last Engine
	// takes what of it still holds (reuse.go).
	idx := c.reusablePodIndex(recs, objs, e.nodeIPs)
	prev := c.reusableEngine(idx, s.Namespaces)
	if prev != nil {
		e.namespaces, e.nsFrom = prev.namespaces, prev.nsFrom
	} else if err := e.indexNamespaces(s.Namespaces, c); err != nil {
		return nil, err
	}

	var invalid []error
	for i, np := range s.Policies {
		if np == nil {
			return nil, fmt.Errorf("snapshot policy %d is nil", i)
		}
		pf := c.policy(np)
		if pf.invalid != nil {
			invalid = append(invalid, pf.invalid)
			continue
		}
		if pf.err != nil {
			return nil, pf.err
		}
		// prev's instance has the same audit flag: the same object in the
		// same namespaces.
		pi := prev.instanceOf(pf.tmpl)
		if pi == nil {
			pi = pf.tmpl
			audited := auditedBy(&np.ObjectMeta, e.namespace(np.Namespace).audit)
			if c != nil || audited != pi.audited {
				// The template is shared with other Engines (with a Cache,
				// or it may still be without one).
				pi = pi.instance()
				pi.audited = audited
			}
		}
		if _, dup := e.policyByRef[pi.ref]; dup {
			return nil, fmt.Errorf("networkpolicy %s/%s: appears twice in the snapshot", np.Namespace, np.Name)
		}
		e.hasAudited = e.hasAudited || pi.audited
		e.policyByRef[pi.ref] = pi
		e.policies = append(e.policies, pi)
	}
	for i, cnp := range s.ClusterPolicies {
		if cnp == nil {
			return nil, fmt.Errorf("snapshot cluster network policy %d is nil", i)
		}
		cf := c.cluster(cnp)
		if cf.invalid != nil {
			invalid = append(invalid, cf.invalid)
			continue
		}
		if cf.err != nil {
			return nil, cf.err
		}
		ci := cf.ci
		if _, dup := e.clusterByName[ci.ref.Name]; dup {
			return nil, fmt.Errorf("clusternetworkpolicy %s: appears twice in the snapshot", cnp.Name)
		}
		e.hasAudited = e.hasAudited || ci.audited
		e.clusterByName[ci.ref.Name] = ci
		e.clusters = append(e.clusters, ci)
	}
	slices.SortFunc(e.clusters, clusterLess)
	if len(invalid) > 0 {
		// Every rejected policy at once, so a directory of files is fixed in one pass.
		return nil, errors.Join(invalid...)
	}
	sort.Slice(e.policies, func(i, j int) bool { return refLess(e.policies[i].ref, e.policies[j].ref) })
	for _, pi := range e.policies {
		e.policiesByNS[pi.ref.Namespace] = append(e.policiesByNS[pi.ref.Namespace], pi)
	}
	c.startSelection(e)

	if idx == nil {
		var err error
		if idx, err = e.buildPodIndex(recs, objs, c); err != nil {
			return nil, err
		}
		c.keepPodIndex(idx)
	}
	e.usePodIndex(idx, c, prev)
	// Every peer caches its selector answer per identity; size the caches now
	// that the identities are known, so the Engine never grows afterwards.
	// prev's instances keep theirs: the same identities at the same
	// positions in the same namespaces give the same answers.
	for _, pi := range e.policies {
		if prev.owns(pi) {
			continue
		}
		for d := range pi.rules {
			for r := range pi.rules[d] {
				for p := range pi.rules[d][r].peers {
					pi.rules[d][r].peers[p].cache = newMatchCache(len(e.identities))
				}
			}
		}
	}
	c.keepEngine(e)
	return e, nil
}

// indexNamespaces makes the Engine's namespaces from the Snapshot's.
func (e *Engine) indexNamespaces(nss []*corev1.Namespace, c *Cache) error {
	e.namespaces = make(map[string]*nsInfo, len(nss))
	for i, ns := range nss {
		if ns == nil {
			return fmt.Errorf("snapshot namespace %d is nil", i)
		}
		if ns.Name == "" {
			return fmt.Errorf("snapshot namespace %d: metadata.name: Required value", i)
		}
		set := make(labels.Set, len(ns.Labels)+1)
		for k, v := range ns.Labels {
			set[k] = v
		}
		set[NamespaceNameLabel] = ns.Name
		e.namespaces[ns.Name] = &nsInfo{name: ns.Name, labels: set, audit: namespaceAudits(ns)}
	}
	if c != nil {
		e.nsFrom = newNSVersions(nss)
	}
	return nil
}

func finished(p *Pod) bool {
	return p.Phase == corev1.PodSucceeded || p.Phase == corev1.PodFailed
}

func refLess(a, b PolicyRef) bool {
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

// namespace returns the indexed namespace, or one carrying only the implicit
// name label when the Snapshot lacks it.
func (e *Engine) namespace(name string) *nsInfo {
	if ns, ok := e.namespaces[name]; ok {
		return ns
	}
	return &nsInfo{name: name, labels: labels.Set{NamespaceNameLabel: name}}
}

// newPodInfo indexes a pod outside the Snapshot from its facts: an unknown
// identity is built on the side without touching the Engine, which keeps it
// immutable.
func (e *Engine) newPodInfo(pod *Pod, f *podFacts) (*podInfo, error) {
	if f.err != nil {
		return nil, f.err
	}
	pi := &podInfo{pod: pod, hostNetwork: pod.HostNetwork, podFacts: f}
	pi.firstIsNode = len(f.ips) > 0 && e.IsNodeIP(f.ips[0])
	if n, ok := e.index.identPos[f.identKey]; ok {
		pi.ident = e.identities[n]
		return pi, nil
	}
	id := &identity{id: -1, ns: e.namespace(pod.Namespace), labels: labels.Set(pod.Labels)}
	pi.ident = id
	e.fillClusterSelectedBy(id, false)
	e.fillSelectedBy(id, nil)
	e.splitAudited(id)
	return pi, nil
}

// registerIdentity makes id the identity of pod, named key, at position n
// of the Engine's identities (only during NewEngine, c being its Cache or
// nil).
func (e *Engine) registerIdentity(id *identity, n int32, pod *Pod, key string, c *Cache) {
	*id = identity{id: -1, ns: e.namespace(pod.Namespace), labels: labels.Set(pod.Labels)}
	c.fillClusterSelectedBy(e, id, key)
	c.fillSelectedBy(e, id, key)
	e.splitAudited(id)
	id.id = int(n)
	e.identities[n] = id
}

func identityKey(ns string, l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString(ns)
	for _, k := range keys {
		b.WriteByte(0)
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(l[k])
	}
	return b.String()
}

// lookupPod finds the Engine's index entry for a pod: by pointer, then by
// namespace/name. A pod outside the Snapshot is indexed on the fly.
func (e *Engine) lookupPod(pod *corev1.Pod) *podInfo {
	if i, ok := e.index.byPtr[pod]; ok {
		return e.pods[i]
	}
	if i, ok := e.index.byKey[pod.Namespace+"/"+pod.Name]; ok && e.pods[i].pod.UID == pod.UID {
		return e.pods[i]
	}
	rec := NewPod(pod)
	f := derivePod(rec)
	pi, err := e.newPodInfo(rec, &f)
	if err != nil {
		// An unindexable pod (bad IP, no name) is still judged by its labels.
		pi = &podInfo{pod: rec, hostNetwork: pod.Spec.HostNetwork,
			podFacts: &podFacts{key: f.key, ports: rec.ports},
			ident:    &identity{id: -1, ns: e.namespace(pod.Namespace), labels: labels.Set(pod.Labels)}}
		e.fillSelectedBy(pi.ident, nil)
		e.fillClusterSelectedBy(pi.ident, false)
		e.splitAudited(pi.ident)
	}
	pi.obj = pod
	return pi
}

// fillSelectedBy finds the policies selecting an identity, per direction;
// picked (when not nil) learns each one's position among its namespace's.
func (e *Engine) fillSelectedBy(id *identity, picked func(d, i int)) {
	for i, pol := range e.policiesByNS[id.ns.name] {
		if pol.podSel.Matches(id.labels) {
			for d := range 2 {
				if pol.affects[d] {
					id.selectedBy[d] = append(id.selectedBy[d], pol)
					if picked != nil {
						picked(d, i)
					}
				}
			}
		}
	}
}

// Pods returns the Snapshot's pods in Snapshot order.
func (e *Engine) Pods() []*corev1.Pod {
	return podsOf(e.pods)
}

// PodsInNamespace returns the Snapshot's pods of one namespace in Snapshot order.
func (e *Engine) PodsInNamespace(ns string) []*corev1.Pod {
	return podsOf(e.podsByNS[ns])
}

func podsOf(pis []*podInfo) []*corev1.Pod {
	out := make([]*corev1.Pod, len(pis))
	for i, p := range pis {
		out[i] = p.object()
	}
	return out
}

// object is the pod as the Snapshot gave it, or made from its record.
func (pi *podInfo) object() *corev1.Pod {
	if pi.obj != nil {
		return pi.obj
	}
	return pi.pod.Object()
}

// Pod returns the Snapshot's pod namespace/name, or nil.
func (e *Engine) Pod(namespace, name string) *corev1.Pod {
	if i, ok := e.index.byKey[namespace+"/"+name]; ok {
		return e.pods[i].object()
	}
	return nil
}

// PodByIP returns the non-hostNetwork pod of the Snapshot that owns ip, or nil.
func (e *Engine) PodByIP(ip netip.Addr) *corev1.Pod {
	if pi := e.podByIP(ip.Unmap()); pi != nil {
		return pi.object()
	}
	return nil
}

// Policies returns the validated policies sorted by namespace/name.
func (e *Engine) Policies() []*networkingv1.NetworkPolicy {
	out := make([]*networkingv1.NetworkPolicy, len(e.policies))
	for i, p := range e.policies {
		out[i] = p.obj
	}
	return out
}

// Policy returns the policy ref names, or nil.
func (e *Engine) Policy(ref PolicyRef) *networkingv1.NetworkPolicy {
	if p := e.policyByRef[normRef(ref)]; p != nil {
		return p.obj
	}
	return nil
}

// IsNodeIP reports whether ip is one of the Snapshot's NodeIPs.
func (e *Engine) IsNodeIP(ip netip.Addr) bool {
	if len(e.nodeIPs) == 0 || !ip.IsValid() {
		return false
	}
	_, ok := e.nodeIPs[ip.Unmap()]
	return ok
}

// NamespaceLabels returns the labels the engine matches namespace selectors
// against, including kubernetes.io/metadata.name. Do not modify the result.
func (e *Engine) NamespaceLabels(name string) labels.Set {
	return e.namespace(name).labels
}

func normRef(r PolicyRef) PolicyRef {
	if r.Kind == "" {
		r.Kind = KindNetworkPolicy
	}
	return r
}

// indexNodes makes the addresses of the Snapshot's Nodes node addresses and
// remembers each one's labels, for node peers of ClusterNetworkPolicies.
func (e *Engine) indexNodes(nodes []*corev1.Node, podHolds func(netip.Addr) bool) error {
	if len(nodes) == 0 {
		return nil
	}
	byName := make(map[string]labels.Set, len(nodes))
	for i, n := range nodes {
		if n == nil {
			return fmt.Errorf("snapshot node %d is nil", i)
		}
		byName[n.Name] = labels.Set(n.Labels)
	}
	for _, a := range NodeAddresses(nodes, podHolds) {
		e.nodeIPs[a.IP] = struct{}{}
		e.nodeByIP[a.IP] = byName[a.Node]
	}
	return nil
}
