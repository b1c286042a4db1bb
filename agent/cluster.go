package agent

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/kubectl-netpol/kubectl-netpol/history"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// Index names of the informer caches.
const (
	indexClusterIP = "clusterIP"
)

// Cluster is the agent's view of the cluster: informer caches for
// everything policy depends on, and the look-ups that enrich flows.
type Cluster struct {
	factory    informers.SharedInformerFactory
	pods       cache.SharedIndexInformer
	services   cache.SharedIndexInformer
	nsLister   corelisters.NamespaceLister
	npLister   networkinglisters.NetworkPolicyLister
	nodeLister corelisters.NodeLister
	// cnp follows ClusterNetworkPolicies (nil: not watched, see
	// WatchClusterPolicies).
	cnp *clusterPolicies

	changeMu  sync.Mutex
	changeFns []func(kind string)

	mu      sync.RWMutex
	localIP []netip.Addr // this node's own addresses (kubelet probes come from them)
	// nodeByIP maps every node address of the last Snapshot to its node
	// ("" for a local address no Node object accounts for).
	nodeByIP map[netip.Addr]string

	// podsByIP indexes the cached pods by address (PodByIP), hostNetwork
	// pods apart. Here rather than a client-go index, which keeps a set
	// per address: ~250 bytes per pod at 100k pods of one address each
	// (docs/perf.md, "compact pod records").
	ipMu           sync.RWMutex
	podsByIP       map[netip.Addr][]*CachedPod
	podsByIPSynced cache.InformerSynced

	// gen changes after every change that can alter PodByIP, ServiceByIP
	// or NodeByIP: the enricher's caches hold what was looked up under one
	// generation (see Generation).
	gen atomic.Uint64

	// podsGen changes with every pod added, updated or deleted, before the
	// store shows it; records are the pod records of the last Snapshot,
	// listed when podsGen was recordsGen: a Snapshot taken while podsGen is
	// the same gives them again (a policy change lists no pod).
	podsGen    atomic.Uint64
	recordsMu  sync.Mutex
	records    []*policy.Pod
	recordsGen uint64
}

// NewCluster builds the informers (not started: see Start).
func NewCluster(client kubernetes.Interface) *Cluster {
	// No periodic resync: the datapath is a pure function of the caches,
	// and a resync would recompile for nothing.
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(trimForCache))
	c := &Cluster{
		factory:    f,
		pods:       f.Core().V1().Pods().Informer(),
		services:   f.Core().V1().Services().Informer(),
		nsLister:   f.Core().V1().Namespaces().Lister(),
		npLister:   f.Networking().V1().NetworkPolicies().Lister(),
		nodeLister: f.Core().V1().Nodes().Lister(),
		podsByIP:   map[netip.Addr][]*CachedPod{},
	}
	// Pods and services are looked up by address for every flow. The
	// store calls the index functions under its write lock for every add,
	// update and delete, before any look-up can see the change: the place
	// to move the generation on, with no window in which a cached answer
	// outlives the store's. The pods' own index moves it under its lock,
	// after the change (reindexPod).
	reg, _ := c.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.reindexPod(nil, cachedPodOf(obj)) },
		UpdateFunc: func(old, cur any) { c.reindexPod(cachedPodOf(old), cachedPodOf(cur)) },
		DeleteFunc: func(obj any) { c.reindexPod(cachedPodOf(obj), nil) },
	})
	if reg != nil {
		c.podsByIPSynced = reg.HasSynced
	}
	_ = c.services.AddIndexers(cache.Indexers{indexClusterIP: func(obj any) ([]string, error) {
		c.gen.Add(1)
		return clusterIPs(obj)
	}})
	_ = c.pods.AddIndexers(cache.Indexers{indexPodsChanged: func(any) ([]string, error) {
		c.podsGen.Add(1)
		return nil, nil // indexes nothing
	}})
	return c
}

// indexPodsChanged is the pods' index that only moves podsGen on.
const indexPodsChanged = "netpol-pods-changed"

// podRecords returns the cached pods' records in creation order, those of
// the last call while no pod changed.
func (c *Cluster) podRecords() []*policy.Pod {
	c.recordsMu.Lock()
	defer c.recordsMu.Unlock()
	// Read before listing: a change the list misses has moved it on since.
	gen := c.podsGen.Load()
	if c.records == nil || gen != c.recordsGen {
		c.records, c.recordsGen = podRecordsInOrder(c.listPods()), gen
	}
	return c.records
}

// Generation identifies the state of the address look-ups (PodByIP,
// ServiceByIP, NodeByIP): it changes after any pod or Service is added,
// updated or deleted and after each Snapshot (node addresses). A caller
// that reads it before a look-up may reuse the answer while it is
// unchanged.
func (c *Cluster) Generation() uint64 { return c.gen.Load() }

// cachedPodOf is the pod of an informer event (a tombstone's too), or nil.
func cachedPodOf(obj any) *CachedPod {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, _ := obj.(*CachedPod)
	return p
}

// reindexPod moves a pod's addresses in podsByIP from old to cur (either
// nil), then the generation on.
func (c *Cluster) reindexPod(old, cur *CachedPod) {
	c.ipMu.Lock()
	defer c.ipMu.Unlock()
	if old != nil && !old.HostNetwork {
		for _, ip := range old.IPs {
			rest := slices.DeleteFunc(c.podsByIP[ip], func(p *CachedPod) bool {
				return p.Namespace == old.Namespace && p.Name == old.Name
			})
			if len(rest) == 0 {
				delete(c.podsByIP, ip)
			} else {
				c.podsByIP[ip] = slices.Clip(rest)
			}
		}
	}
	if cur != nil && !cur.HostNetwork { // a hostNetwork pod's address is its node's
		for _, ip := range cur.IPs {
			c.podsByIP[ip] = append(c.podsByIP[ip], cur)
		}
	}
	c.gen.Add(1)
}

// listPods returns the cached pods.
func (c *Cluster) listPods() []*CachedPod {
	return cachedPods(c.pods.GetStore().List())
}

// podsInNamespace returns the cached pods of namespace ns that sel selects.
func (c *Cluster) podsInNamespace(ns string, sel labels.Selector) ([]*CachedPod, error) {
	objs, err := c.pods.GetIndexer().ByIndex(cache.NamespaceIndex, ns)
	if err != nil {
		return nil, err
	}
	pods := cachedPods(objs)
	return slices.DeleteFunc(pods, func(p *CachedPod) bool { return !sel.Matches(labels.Set(p.Labels)) }), nil
}

// podRecordsInOrder returns the records of pods in creation order: a
// radix sort on the sequence numbers (at 100k pods a comparison sort took
// ~20 ms of each Snapshot).
func podRecordsInOrder(pods []*CachedPod) []*policy.Pod {
	type bySeq struct {
		seq uint64
		p   *CachedPod
	}
	order, tmp := make([]bySeq, len(pods)), make([]bySeq, len(pods))
	var maxSeq uint64
	for i, p := range pods {
		order[i] = bySeq{p.seq, p}
		maxSeq = max(maxSeq, p.seq)
	}
	for shift := uint(0); shift < 64 && maxSeq>>shift > 0; shift += 16 {
		var count [1<<16 + 1]int
		for _, o := range order {
			count[(o.seq>>shift)&0xffff+1]++
		}
		for d := 1; d < len(count); d++ {
			count[d] += count[d-1]
		}
		for _, o := range order {
			d := (o.seq >> shift) & 0xffff
			tmp[count[d]] = o
			count[d]++
		}
		order, tmp = tmp, order
	}
	out := make([]*policy.Pod, len(order))
	for i, o := range order {
		out[i] = &o.p.Pod
	}
	return out
}

func cachedPods(objs []any) []*CachedPod {
	out := make([]*CachedPod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*CachedPod); ok {
			out = append(out, p)
		}
	}
	return out
}

func clusterIPs(obj any) ([]string, error) {
	s, ok := obj.(*corev1.Service)
	if !ok {
		return nil, nil
	}
	var out []string
	for _, ip := range s.Spec.ClusterIPs {
		if ip != "" && ip != corev1.ClusterIPNone {
			out = append(out, ip)
		}
	}
	out = append(out, s.Spec.ExternalIPs...)
	for _, in := range s.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			out = append(out, in.IP)
		}
	}
	return out, nil
}

// WatchClusterPolicies adds ClusterNetworkPolicies (and their CRD, through
// meta) to what the cluster view follows; call it before OnChange and Start.
func (c *Cluster) WatchClusterPolicies(client cnpclient.Interface, meta metadata.Interface) {
	c.cnp = newClusterPolicies(client, meta, func() { c.changed("clusternetworkpolicy") })
}

// changed runs the OnChange functions for kind.
func (c *Cluster) changed(kind string) {
	c.changeMu.Lock()
	fns := slices.Clone(c.changeFns)
	c.changeMu.Unlock()
	for _, fn := range fns {
		fn(kind)
	}
}

// OnChange registers fn to run on every add, update or delete of an object
// the datapath depends on.
func (c *Cluster) OnChange(fn func(kind string)) error {
	c.changeMu.Lock()
	c.changeFns = append(c.changeFns, fn)
	c.changeMu.Unlock()
	for kind, inf := range map[string]cache.SharedIndexInformer{
		"pod":           c.pods,
		"namespace":     c.factory.Core().V1().Namespaces().Informer(),
		"networkpolicy": c.factory.Networking().V1().NetworkPolicies().Informer(),
		"node":          c.factory.Core().V1().Nodes().Informer(),
	} {
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(any) { fn(kind) },
			UpdateFunc: func(old, cur any) {
				// Nodes are updated often (status, conditions); only their
				// addresses matter to the datapath.
				if o, ok := old.(*corev1.Node); ok {
					if c, ok := cur.(*corev1.Node); ok && policy.SameNodeForPolicy(o, c) {
						return
					}
				}
				// So are pods (conditions, container states, readiness):
				// an update that changed nothing the cache keeps
				// (trimForCache) changes nothing anyone can read.
				if o, ok := old.(*CachedPod); ok {
					if c, ok := cur.(*CachedPod); ok && sameCachedPod(o, c) {
						return
					}
				}
				fn(kind)
			},
			DeleteFunc: func(any) { fn(kind) },
		}); err != nil {
			return fmt.Errorf("watching %ss: %w", kind, err)
		}
	}
	return nil
}

// OnPodChange registers fn to run with the pod of every add, update (the
// new pod) or delete that changed what the cache keeps of it.
func (c *Cluster) OnPodChange(fn func(*CachedPod)) error {
	call := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if p, ok := obj.(*CachedPod); ok {
			fn(p)
		}
	}
	_, err := c.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: call,
		UpdateFunc: func(old, cur any) {
			if o, ok := old.(*CachedPod); ok {
				if p, ok := cur.(*CachedPod); ok && sameCachedPod(o, p) {
					return
				}
			}
			call(cur)
		},
		DeleteFunc: call,
	})
	if err != nil {
		return fmt.Errorf("watching pods: %w", err)
	}
	return nil
}

// clusterPolicyWait bounds how long Start waits for ClusterNetworkPolicies
// it cannot list (see clusterPolicies.start).
const clusterPolicyWait = 30 * time.Second

// Start starts the informers and waits for their caches; it returns false if
// stop closed first.
func (c *Cluster) Start(stop <-chan struct{}) bool {
	c.factory.Start(stop)
	if c.cnp != nil && !c.cnp.start(stop, clusterPolicyWait) {
		return false
	}
	for _, ok := range c.factory.WaitForCacheSync(stop) {
		if !ok {
			return false
		}
	}
	return c.podsByIPSynced == nil || cache.WaitForCacheSync(stop, c.podsByIPSynced)
}

// SetLocalAddresses records this node's own addresses, which are host
// traffic for policy even when no Node object lists them (e.g. the bridge's
// address, the source of the kubelet's probes).
func (c *Cluster) SetLocalAddresses(ips []netip.Addr) {
	c.mu.Lock()
	c.localIP = ips
	c.mu.Unlock()
}

// Snapshot is the policy input from the current caches.
func (c *Cluster) Snapshot() (*policy.Snapshot, error) {
	s := &policy.Snapshot{}
	var err error
	if s.Namespaces, err = c.nsLister.List(labels.Everything()); err != nil {
		return nil, err
	}
	// The records themselves: no copy, and the same pointers from one
	// Snapshot to the next, which is what the agent's policy.Cache keys on.
	// The list is shared by the Snapshots of the same pods: read-only.
	s.PodRecords = c.podRecords()
	if s.Policies, err = c.npLister.List(labels.Everything()); err != nil {
		return nil, err
	}
	if c.cnp != nil {
		if s.ClusterPolicies, err = c.cnp.list(); err != nil {
			return nil, err
		}
	}
	nodes, err := c.nodeLister.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	s.Nodes = nodes // node peers of ClusterNetworkPolicies
	addrs := policy.NodeAddresses(nodes, func(ip netip.Addr) bool { return c.PodByIP(ip) != nil })
	byIP := make(map[netip.Addr]string, len(addrs))
	for _, a := range addrs {
		byIP[a.IP] = a.Node
	}
	s.NodeIPs = policy.NodeIPs(addrs)
	c.mu.Lock()
	for _, a := range c.localIP {
		if _, ok := byIP[a]; !ok {
			byIP[a] = "" // this node's, named by the enricher
			s.NodeIPs = append(s.NodeIPs, a)
		}
	}
	changed := !maps.Equal(c.nodeByIP, byIP)
	c.nodeByIP = byIP
	c.mu.Unlock()
	if changed {
		c.gen.Add(1) // after the change: see Generation
	}
	return s, nil
}

// NodeByIP returns the node that owns ip (policy.NodeAddresses, as of the
// last Snapshot); ok with an empty name for this node's own addresses that
// no Node object accounts for.
func (c *Cluster) NodeByIP(ip netip.Addr) (name string, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	name, ok = c.nodeByIP[ip.Unmap()]
	return name, ok
}

// PodByIP returns the (non hostNetwork) pod that has ip now. Among several
// (a terminated pod keeps its address for a while) the running one wins.
func (c *Cluster) PodByIP(ip netip.Addr) *CachedPod {
	c.ipMu.RLock()
	defer c.ipMu.RUnlock()
	var best *CachedPod
	for _, p := range c.podsByIP[ip.Unmap()] {
		if best == nil || (p.Phase == corev1.PodRunning && best.Phase != corev1.PodRunning) {
			best = p
		}
	}
	return best
}

// ServiceByIP returns the Service with that cluster (or external) IP.
func (c *Cluster) ServiceByIP(ip netip.Addr) *corev1.Service {
	objs, _ := c.services.GetIndexer().ByIndex(indexClusterIP, ip.String())
	if len(objs) == 0 {
		return nil
	}
	return objs[0].(*corev1.Service)
}

// Policies counts the NetworkPolicies in the cache.
func (c *Cluster) Policies() int {
	ps, _ := c.npLister.List(labels.Everything())
	return len(ps)
}

// ClusterPolicies reports the ClusterNetworkPolicies in the cache, whether
// they are followed (the CRD exists and they are listed) and the last
// failure to list or watch them.
func (c *Cluster) ClusterPolicies() (n int, watched bool, lastErr string) {
	if c.cnp == nil {
		return 0, false, ""
	}
	ps, _ := c.cnp.list()
	st := c.cnp.state()
	return len(ps), st.watched, st.err
}

// Workload names the controller behind a pod (history.Workload: the
// history's keys and the flows' workloads are the same).
func Workload(p *corev1.Pod) (kind, name string) { return history.Workload(p) }
