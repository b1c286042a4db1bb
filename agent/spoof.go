//go:build linux

package agent

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/probe"
)

// Anti-spoofing: the datapath keys endpoints by IP, so a pod that sends
// with another pod's source address would be judged as that pod. The
// spoofGuard finds the host side of every local pod's interface and has the
// probe check, at its ingress, that IP packets come from that pod's
// addresses.
//
// Discovery, in the node's network namespace, per pod address:
//   - the kernel's route to the address (RouteGet) with no gateway. When
//     it leaves through a veth whose peer lives in another namespace, that is
//     the pod's interface (routed CNIs: Calico, Cilium's veths, kube-router
//     without bridge, ptp).
//   - when it leaves through a bridge (bridge CNIs: bridge, flannel,
//     kube-router): the address's neighbour entry on the bridge gives the
//     pod's MAC and the bridge's forwarding database the port that MAC was
//     learned on, which must be such a veth. With no neighbour entry yet
//     the kernel is asked to resolve it (NTF_USE: one ARP or neighbour
//     solicitation, no data packet) and the pod is retried.
//
// Anything else (a gateway, the uplink, a local address, a veth whose peer
// is in this namespace) is never guarded: guarding the wrong interface
// would cut traffic that is not the pod's.
//
// A found interface is kept for the pod (name and UID) while an interface with
// that index and MAC exists: the neighbour table and the forwarding
// database are learned from what pods send, so a later ARP reply forged by
// another pod on the bridge cannot move an address already bound.
//
// Following the veth peer into the pod's namespace would be exact, but
// needs the pod's namespace (hostPID or the runtime's netns directory
// mounted into the agent): more privilege than this is worth.

// Defaults of the guard loop.
const (
	spoofResync = 10 * time.Second // full reconcile even with no event
	spoofRetry  = time.Second      // first retry while a pod's interface is not found
	spoofGrace  = 30 * time.Second // unguarded this long fails the status check
)

// spoofGuard keeps the probe's anti-spoofing guards equal to the local pods.
type spoofGuard struct {
	probe   *probe.Probe
	cluster *Cluster
	node    string
	ns      netns.NsHandle // the node's network namespace (owned)
	here    bool           // the process runs in it
	nl      *netlink.Handle

	resync, retry, grace time.Duration
	// recovered are the guards found at start (address -> interface), used
	// by the first reconcile only: later, a pod's address on an interface
	// can be a deleted pod's whose guard is not removed yet.
	recovered map[netip.Addr]int

	kickc chan struct{}
	stopc chan struct{}
	done  chan struct{}

	guardedIfs prometheus.Gauge
	unguarded  prometheus.Gauge
	syncErrors prometheus.Counter

	mu    sync.Mutex
	bound map[string]binding
	// waiting are the pods whose interface is not found: since when, why.
	waiting map[string]pending
	guarded int
	lastErr string
}

// binding is a pod's interface as found: the index and the host side's MAC
// (a new interface that reuses the index has another MAC).
type binding struct {
	ifindex int
	mac     string
}

type pending struct {
	since  time.Time
	reason string
}

// newSpoofGuard takes ownership of ns, the node's network namespace.
func newSpoofGuard(p *probe.Probe, c *Cluster, node string, ns netns.NsHandle, reg prometheus.Registerer) (*spoofGuard, error) {
	// In a cluster the agent runs in the node's namespace, without the
	// CAP_SYS_ADMIN that entering it (setns) would take; tests run it in
	// a namespace of their own.
	here := false
	if self, err := netns.GetFromPath("/proc/self/ns/net"); err == nil {
		here = self.Equal(ns)
		self.Close()
	}
	open := netlink.NewHandle
	if !here {
		open = func(...int) (*netlink.Handle, error) { return netlink.NewHandleAt(ns) }
	}
	nl, err := open()
	if err != nil {
		return nil, fmt.Errorf("opening netlink in the node's network namespace: %w", err)
	}
	g := &spoofGuard{
		probe: p, cluster: c, node: node, ns: ns, here: here, nl: nl,
		resync: spoofResync, retry: spoofRetry, grace: spoofGrace,
		kickc:   make(chan struct{}, 1),
		bound:   map[string]binding{},
		waiting: map[string]pending{},
		guardedIfs: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: "spoof_guarded_interfaces",
			Help: "Pod interfaces whose source addresses the datapath checks (anti-spoofing)."}),
		unguarded: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: "spoof_unguarded_pods",
			Help: "Local pods with addresses whose interface is not found yet (not protected against spoofing; retried)."}),
		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Name: "spoof_sync_errors_total",
			Help: "Anti-spoofing reconciles that failed to write a guard (retried)."}),
	}
	if err := errors.Join(reg.Register(g.guardedIfs), reg.Register(g.unguarded), reg.Register(g.syncErrors)); err != nil {
		nl.Close()
		return nil, fmt.Errorf("registering anti-spoofing metrics: %w", err)
	}
	return g, nil
}

// kick asks for a reconcile soon; bursts coalesce.
func (g *spoofGuard) kick() {
	if g == nil {
		return
	}
	select {
	case g.kickc <- struct{}{}:
	default:
	}
}

// start runs the reconcile loop until stop: on pod changes, on links
// appearing or going in the node's namespace, and periodically. It runs
// beside the policy workqueue, so a slow discovery never delays policy.
func (g *spoofGuard) start() {
	if g == nil {
		return
	}
	g.stopc, g.done = make(chan struct{}), make(chan struct{})
	// A previous agent's guards hold what it found: the first reconcile
	// keeps them (for the same addresses on the same live interface)
	// rather than asking the neighbour table again.
	if guards, err := g.probe.Guards("node"); err == nil {
		g.recovered = map[netip.Addr]int{}
		for ifi, addrs := range guards {
			for _, a := range addrs {
				g.recovered[a] = ifi
			}
		}
	}
	links := make(chan netlink.LinkUpdate, 64)
	opts := netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) { klog.V(2).InfoS("Link updates for anti-spoofing", "err", err) },
	}
	if !g.here {
		ns := g.ns
		opts.Namespace = &ns
	}
	err := netlink.LinkSubscribeWithOptions(links, g.stopc, opts)
	if err != nil {
		klog.ErrorS(err, "Watching links for anti-spoofing; relying on pod events and the periodic resync")
	}
	go func() {
		defer close(g.done)
		next := time.NewTimer(0)
		defer next.Stop()
		retry := g.retry
		waited := map[string]bool{}
		for {
			select {
			case <-g.stopc:
				return
			case <-g.kickc:
			case <-links:
			case <-next.C:
			}
			wait := g.resync
			if g.sync() {
				// Doubling from retry up to resync, so that a pod whose
				// interface never shows up does not keep the loop busy;
				// from retry again when another pod starts waiting.
				if g.newlyWaiting(waited) {
					retry = g.retry
				}
				wait = min(retry, g.resync)
				retry *= 2
			} else {
				retry = g.retry
			}
			next.Reset(wait)
		}
	}()
}

// stop ends the loop and waits for it (before an uninstall removes the
// pins, so that no guard is written after).
func (g *spoofGuard) stop() {
	if g == nil || g.stopc == nil {
		return
	}
	close(g.stopc)
	<-g.done
	g.stopc = nil
}

func (g *spoofGuard) close() {
	if g == nil {
		return
	}
	g.stop()
	g.nl.Close()
	g.ns.Close()
}

// newlyWaiting reports whether a pod waits that was not in seen, and
// makes seen the pods waiting now.
func (g *spoofGuard) newlyWaiting(seen map[string]bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	fresh := false
	for k := range g.waiting {
		fresh = fresh || !seen[k]
	}
	clear(seen)
	for k := range g.waiting {
		seen[k] = true
	}
	return fresh
}

// sync reconciles once; it reports whether some pod is still waiting for
// its interface (to retry sooner).
func (g *spoofGuard) sync() bool {
	pods := g.cluster.listPods()
	links, err := g.nl.LinkList()
	if err != nil {
		klog.ErrorS(err, "Listing links for anti-spoofing")
		return true
	}
	byIndex := map[int]netlink.Link{}
	for _, l := range links {
		byIndex[l.Attrs().Index] = l
	}
	d := &discovery{nl: g.nl, links: byIndex, recovered: g.recovered}
	g.recovered = nil

	g.mu.Lock()
	prevBound, prevWaiting := g.bound, g.waiting
	g.mu.Unlock()
	bound := map[string]binding{}
	waiting := map[string]pending{}
	want := map[int][]netip.Addr{}
	now := time.Now()
	for _, pod := range pods {
		ips := localPodIPs(pod, g.node)
		if len(ips) == 0 {
			continue
		}
		key := pod.Namespace + "/" + pod.Name
		// The UID tells a re-created pod of the same name apart.
		b, ok := prevBound[key+"/"+string(pod.UID)]
		if !ok || !d.stillThere(b) {
			var reason error
			if b, reason = d.find(ips); reason != nil {
				since := now
				if p, ok := prevWaiting[key]; ok {
					since = p.since
				}
				waiting[key] = pending{since: since, reason: reason.Error()}
				klog.V(2).InfoS("Pod interface not found yet; it is not guarded against spoofing", "pod", klog.KObj(pod), "ips", ips, "reason", reason)
				continue
			}
			klog.V(2).InfoS("Guarding pod interface against spoofing", "pod", klog.KObj(pod), "ips", ips, "ifindex", b.ifindex, "interface", byIndex[b.ifindex].Attrs().Name)
		}
		bound[key+"/"+string(pod.UID)] = b
		want[b.ifindex] = append(want[b.ifindex], ips...)
	}
	err = g.probe.SetGuardsIn(g.ns, "node", want)
	if err != nil {
		g.syncErrors.Inc()
		klog.ErrorS(err, "Writing anti-spoofing guards; retrying")
	}
	g.guardedIfs.Set(float64(len(want)))
	g.unguarded.Set(float64(len(waiting)))
	g.mu.Lock()
	g.bound, g.waiting, g.guarded = bound, waiting, len(want)
	g.lastErr = ""
	if err != nil {
		g.lastErr = err.Error()
	}
	g.mu.Unlock()
	return len(waiting) > 0 || err != nil
}

// check is the node check `kubectl netpol status` shows.
func (g *spoofGuard) check() *flowv1.NodeCheck {
	c := &flowv1.NodeCheck{Name: "anti-spoofing", Ok: true}
	if g == nil {
		c.Detail = "off (--anti-spoofing=false): a pod can send with another pod's source address and be judged as that pod"
		return c
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var late []string
	for _, key := range slices.Sorted(maps.Keys(g.waiting)) {
		if p := g.waiting[key]; time.Since(p.since) >= g.grace {
			late = append(late, fmt.Sprintf("%s (%s)", key, p.reason))
		}
	}
	switch {
	case g.lastErr != "":
		c.Ok = false
		c.Detail = "writing guards failed: " + g.lastErr
	case len(late) > 0:
		c.Ok = false
		if len(late) > 3 {
			late = append(late[:3], fmt.Sprintf("and %d more", len(late)-3))
		}
		c.Detail = fmt.Sprintf("%d pod interfaces guarded; not found for %s, so not guarded: %s", g.guarded, g.grace, strings.Join(late, ", "))
	default:
		c.Detail = fmt.Sprintf("%d pod interfaces guarded", g.guarded)
		if n := len(g.waiting); n > 0 {
			c.Detail += fmt.Sprintf(", %d pods being looked up", n)
		}
	}
	return c
}

// localPodIPs are the addresses of a pod of this node that has its own
// network (hostNetwork pods use the node's) and is not finished (its
// address may already be another pod's).
func localPodIPs(pod *CachedPod, node string) []netip.Addr {
	if pod.NodeName != node || pod.HostNetwork || pod.finished() {
		return nil
	}
	return pod.IPs
}

// discovery finds pod interfaces in the node's namespace, with the links
// and (once read) the neighbour tables of one reconcile.
type discovery struct {
	nl    *netlink.Handle
	links map[int]netlink.Link
	neigh map[int][]netlink.Neigh // by bridge index, both families
	fdb   []netlink.Neigh

	recovered map[netip.Addr]int
}

// stillThere: the bound interface exists and is the same one.
func (d *discovery) stillThere(b binding) bool {
	l, ok := d.links[b.ifindex]
	return ok && podVeth(l) && l.Attrs().HardwareAddr.String() == b.mac
}

// find returns the interface of the first of ips that leads to one; all of
// a pod's addresses are guarded on it.
func (d *discovery) find(ips []netip.Addr) (binding, error) {
	if ifi, ok := d.recovered[ips[0]]; ok {
		b := binding{ifindex: ifi}
		if l, ok := d.links[ifi]; ok {
			b.mac = l.Attrs().HardwareAddr.String()
		}
		if d.stillThere(b) && !slices.ContainsFunc(ips, func(ip netip.Addr) bool { return d.recovered[ip] != ifi }) {
			return b, nil
		}
	}
	var errs []string
	for _, ip := range ips {
		l, err := d.lookup(ip)
		if err == nil {
			return binding{ifindex: l.Attrs().Index, mac: l.Attrs().HardwareAddr.String()}, nil
		}
		errs = append(errs, fmt.Sprintf("%s: %v", ip, err))
	}
	return binding{}, errors.New(strings.Join(errs, "; "))
}

func (d *discovery) lookup(ip netip.Addr) (netlink.Link, error) {
	routes, err := d.nl.RouteGet(ip.AsSlice())
	if err != nil {
		return nil, fmt.Errorf("no route: %w", err)
	}
	if len(routes) == 0 {
		return nil, errors.New("no route")
	}
	r := routes[0]
	if r.Gw != nil {
		return nil, fmt.Errorf("routed through gateway %s: not on an interface of this node", r.Gw)
	}
	l, ok := d.links[r.LinkIndex]
	if !ok {
		return nil, fmt.Errorf("route leaves through interface %d, which is gone", r.LinkIndex)
	}
	switch {
	case podVeth(l):
		return l, nil
	case l.Type() == "bridge":
		return d.bridgePort(l, ip)
	default:
		return nil, fmt.Errorf("route leaves through %s (%s), not a pod's veth or a bridge", l.Attrs().Name, l.Type())
	}
}

// bridgePort finds the bridge port behind ip: its MAC from the neighbour
// table, then the port that MAC was learned on.
func (d *discovery) bridgePort(br netlink.Link, ip netip.Addr) (netlink.Link, error) {
	bi := br.Attrs().Index
	if d.neigh == nil {
		d.neigh = map[int][]netlink.Neigh{}
	}
	if _, ok := d.neigh[bi]; !ok {
		ns, err := d.nl.NeighList(bi, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("reading the neighbours of %s: %w", br.Attrs().Name, err)
		}
		d.neigh[bi] = ns
	}
	var mac net.HardwareAddr
	for _, n := range d.neigh[bi] {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == ip && len(n.HardwareAddr) == 6 &&
			n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE|netlink.NUD_PERMANENT) != 0 {
			mac = n.HardwareAddr
			break
		}
	}
	if mac == nil {
		// Ask the kernel to resolve it (one ARP request or neighbour
		// solicitation); the next reconcile finds the answer.
		fam := netlink.FAMILY_V4
		if ip.Is6() {
			fam = netlink.FAMILY_V6
		}
		err := d.nl.NeighSet(&netlink.Neigh{LinkIndex: bi, Family: fam, IP: ip.AsSlice(), Flags: netlink.NTF_USE})
		if err != nil {
			return nil, fmt.Errorf("no neighbour entry on %s, and asking to resolve it failed: %w", br.Attrs().Name, err)
		}
		return nil, fmt.Errorf("no neighbour entry on %s yet: resolving", br.Attrs().Name)
	}
	if d.fdb == nil {
		fdb, err := d.nl.NeighList(0, unix.AF_BRIDGE)
		if err != nil {
			return nil, fmt.Errorf("reading the bridges' forwarding database: %w", err)
		}
		d.fdb = fdb
	}
	for _, e := range d.fdb {
		if e.MasterIndex != bi || e.State&netlink.NUD_PERMANENT != 0 || e.HardwareAddr.String() != mac.String() {
			continue
		}
		if port, ok := d.links[e.LinkIndex]; ok && podVeth(port) && port.Attrs().MasterIndex == bi {
			return port, nil
		}
	}
	return nil, fmt.Errorf("MAC %s is in no forwarding entry of a pod port of %s (aged out or not learned yet)", mac, br.Attrs().Name)
}

// podVeth: a veth whose peer is in another network namespace (a pod's),
// never the node's uplink, a bridge, or a veth pair inside the node.
func podVeth(l netlink.Link) bool {
	return l.Type() == "veth" && l.Attrs().NetNsID >= 0
}

// interfaces maps each guarded pod (namespace/name/uid) to the index of its
// host-side interface.
func (g *spoofGuard) interfaces() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]int, len(g.bound))
	for k, b := range g.bound {
		out[k] = b.ifindex
	}
	return out
}
