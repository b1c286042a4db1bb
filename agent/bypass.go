//go:build linux

package agent

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/internal/cni"
	"github.com/kubectl-netpol/kubectl-netpol/probe"
)

// The bypass self-check proves, with counters the kernel keeps anyway,
// whether the pods' traffic reaches the agent's hooks. Once per window:
//
//   - per local pod (hostNetwork pods have no interface of their own and
//     are left out), the packets its host-side interface carried (netlink
//     link statistics; a packet that only loops back inside the pod never
//     reaches that interface). A pod with at least minPackets (an idle
//     pod's neighbour discovery stays below) is active;
//   - the whole node: what the pods sent (their interfaces' receive side)
//     against the packets the netfilter programs ran on (their own counter)
//     plus the packets the anti-spoofing check dropped before them and the
//     IPv4 fragments reassembly folded into one. On the normal path every IP
//     packet a pod sends passes FORWARD or LOCAL_IN at least once, so the
//     hooks count at least as much; when the pods sent more than twice
//     what the hooks saw, pod traffic went past them;
//   - per active pod, whether the hooks saw it at all: a flow of the pod in
//     the flow hub's ring or the datapath's stamp of its last new flow
//     (which holds with flow events off), or, for connections opened
//     before the window, a conntrack entry with one of its addresses
//     (conntrack sits on the same netfilter path; a packet redirected
//     between interfaces by tc never creates one). An active pod with none
//     of them is bypassing.
//
// The node is "not enforcing" when every active pod is bypassing or the
// hooks saw less than a tenth of what the pods sent, "partially enforcing"
// when some pod is bypassing or the hooks saw less than half, else
// "enforcing". A window without pod traffic keeps the last verdict.
//
// The cost is one link dump, one read of the counters and a walk of the
// window's flows in the ring per window, and a conntrack dump only in
// windows where some active pod is unexplained by the ring and had no new
// flow (the datapath stamps each endpoint's last new flow, at most once a
// second): only pods whose traffic all belongs to older connections cost
// a dump, however many connections the node opens.
//
// Limits: host traffic through the hooks (the kubelet, the API server)
// hides a bypass smaller than it; a pod with some traffic through
// netfilter (a kubelet probe) is not named as bypassing, though the node's
// totals still show the rest. When drop events were rate-limited or lost
// in the window, an unexplained pod is not counted (its drops may be the
// events that were not delivered).

// Defaults of the self-check.
const (
	bypassWindow     = 10 * time.Second
	bypassMinPackets = 20
	bypassListed     = 5 // bypassing pods named in the status
)

// Enforcement states.
const (
	stateEnforcing = "enforcing"
	statePartial   = "partially enforcing"
	stateNot       = "not enforcing"
)

type bypassCheck struct {
	nl         *netlink.Handle // the node's namespace
	cluster    *Cluster
	node       string
	hub        *flow.Hub
	probe      *probe.Probe
	spoof      *spoofGuard // nil: the check finds interfaces itself
	cni        *cniWatch
	events     *eventSink // nil: no Events (outside a cluster)
	window     time.Duration
	minPackets uint64

	prev      map[string]ifSample // pod key (namespace/name/uid) -> last sample
	prevStats probe.Stats
	prevFrags uint64
	prevTime  time.Time
	ns        netns.NsHandle // the node's namespace (not owned)
	here      bool

	active, bypassing prometheus.Gauge
	state             *prometheus.GaugeVec

	mu       sync.Mutex
	measured *flowv1.Enforcement // nil until a window had pod traffic

	conntrackDumps atomic.Int64 // windows that needed a dump of the conntrack table
}

type ifSample struct {
	ifindex int
	packets uint64 // both directions
	sent    uint64 // by the pod: the host side's receive count
}

// localPod is a pod of this node with its own network.
type localPod struct {
	key, name string // namespace/name/uid, namespace/name
	ips       []netip.Addr
}

func newBypassCheck(nl *netlink.Handle, a *Agent, events *eventSink, reg prometheus.Registerer) (*bypassCheck, error) {
	b := &bypassCheck{nl: nl, cluster: a.cluster, node: a.cfg.NodeName, hub: a.hub, probe: a.probe, spoof: a.spoof, cni: a.cni,
		events: events, window: a.cfg.BypassWindow, minPackets: a.cfg.BypassMinPackets, ns: a.cni.ns, here: a.cni.here,
		active: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: "bypass_active_pods",
			Help: "Local pods whose interface carried traffic in the last self-check window."}),
		bypassing: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: "bypass_pods",
			Help: "Local pods whose traffic in the last window never reached the agent's netfilter hooks (the CNI's datapath bypasses them)."}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: "enforcement",
			Help: "1 for the node's enforcement state: enforcing, partially enforcing or not enforcing (the bypass self-check)."}, []string{"state"}),
	}
	if b.window <= 0 {
		b.window = bypassWindow
	}
	if b.minPackets == 0 {
		b.minPackets = bypassMinPackets
	}
	for _, c := range []prometheus.Collector{b.active, b.bypassing, b.state} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering the bypass self-check's metrics: %w", err)
		}
	}
	return b, nil
}

// newFlowSince says whether the datapath judged a new flow of pod at or
// after the monotonic time t.
func (b *bypassCheck) newFlowSince(pod localPod, t uint64) bool {
	return slices.ContainsFunc(pod.ips, func(ip netip.Addr) bool {
		last, ok := b.probe.LastNewFlow(ip)
		return ok && last >= t
	})
}

// run samples every window until ctx ends.
func (b *bypassCheck) run(ctx context.Context) {
	t := time.NewTicker(b.window)
	defer t.Stop()
	b.sample(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			b.sample(now)
		}
	}
}

// sample takes one window's counters and, when pods carried traffic,
// decides the node's state.
func (b *bypassCheck) sample(now time.Time) {
	pods := b.localPods()
	ifaces := b.interfaces(pods)
	links, err := b.nl.LinkList()
	if err != nil {
		klog.ErrorS(err, "Listing links for the bypass self-check")
		return
	}
	counts := map[int]*netlink.LinkStatistics{}
	for _, l := range links {
		if s := l.Attrs().Statistics; s != nil {
			counts[l.Attrs().Index] = s
		}
	}
	stats, err := b.probe.Stats()
	if err != nil {
		// Without the hooks' counter nothing can be compared: the next
		// window starts a new baseline.
		klog.ErrorS(err, "Reading the datapath counters for the bypass self-check")
		b.prevTime = time.Time{}
		return
	}
	frags := b.fragmentsFolded()
	cur := map[string]ifSample{}
	var active []localPod
	var podSent uint64 // what the pods sent in the window: their interfaces' receive side
	for _, p := range pods {
		ifi, ok := ifaces[p.key]
		if !ok {
			continue
		}
		c, ok := counts[ifi]
		if !ok {
			continue
		}
		smp := ifSample{ifindex: ifi, packets: c.RxPackets + c.TxPackets, sent: c.RxPackets}
		cur[p.key] = smp
		prev, ok := b.prev[p.key]
		if !ok || prev.ifindex != ifi || smp.packets < prev.packets || smp.sent < prev.sent {
			continue // new, or another interface: a baseline
		}
		podSent += smp.sent - prev.sent
		if smp.packets-prev.packets >= b.minPackets {
			active = append(active, p)
		}
	}
	since, prevStats, prevFrags := b.prevTime, b.prevStats, b.prevFrags
	b.prev, b.prevStats, b.prevFrags, b.prevTime = cur, stats, frags, now
	b.active.Set(float64(len(active)))
	if since.IsZero() || (len(active) == 0 && podSent < b.minPackets) {
		b.bypassing.Set(0)
		return // nothing to judge: the last verdict stands
	}
	hooksSaw := (stats.Packets - prevStats.Packets) + (stats.SpoofDropped - prevStats.SpoofDropped)
	if frags >= prevFrags {
		hooksSaw += frags - prevFrags
	}
	seen := map[string]bool{}
	for _, f := range b.hub.Since(since) {
		for _, ep := range []*flowv1.Endpoint{f.GetSource(), f.GetDestination()} {
			if ep.GetPod() != "" {
				seen[ep.GetNamespace()+"/"+ep.GetPod()] = true
			}
		}
	}
	// The datapath's own stamp of each endpoint's last new flow explains
	// pods without flow events (off, or sampled out of the hub's ring); a
	// stamp lags the flows by up to a second, hence the slack.
	stampedSince := monotonicNow() - uint64(now.Sub(since)) - uint64(time.Second)
	var unexplained []localPod
	for _, p := range active {
		if !seen[p.name] && !b.newFlowSince(p, stampedSince) {
			unexplained = append(unexplained, p)
		}
	}
	if len(unexplained) > 0 {
		tracked := b.conntrackAddrs()
		unexplained = slices.DeleteFunc(unexplained, func(p localPod) bool {
			return slices.ContainsFunc(p.ips, func(ip netip.Addr) bool { return tracked[ip] })
		})
	}
	if len(unexplained) > 0 && (stats.RateLimited > prevStats.RateLimited || stats.RingFull > prevStats.RingFull) {
		klog.V(2).InfoS("Drop events were rate-limited or lost in this window: pods without a flow are not counted as bypassing", "pods", len(unexplained))
		unexplained = nil
	}
	b.bypassing.Set(float64(len(unexplained)))
	b.decide(now, len(active), unexplained, podSent, hooksSaw)
}

// decide records the window's verdict and reports a change: active pods
// carried traffic, bypassing ones never reached the hooks, the pods sent
// podSent packets and the hooks saw hooksSaw.
func (b *bypassCheck) decide(now time.Time, active int, bypassing []localPod, podSent, hooksSaw uint64) {
	e := &flowv1.Enforcement{ActivePods: uint32(active), BypassingPods: uint32(len(bypassing)), Checked: timestamppb.New(now)}
	for _, p := range bypassing {
		if len(e.Bypassing) < bypassListed {
			e.Bypassing = append(e.Bypassing, p.name)
		}
	}
	who := b.cniName()
	short := podSent >= b.minPackets && hooksSaw*2 < podSent
	totals := fmt.Sprintf("pods sent %d packets in the last %s and the hooks saw %d", podSent, b.window, hooksSaw)
	switch {
	case (active > 0 && len(bypassing) == active) || (short && hooksSaw*10 < podSent):
		e.State = stateNot
		e.Detail = fmt.Sprintf("%s bypasses netfilter: %s", who, totals)
	case len(bypassing) > 0 || short:
		e.State = statePartial
		e.Detail = fmt.Sprintf("%s bypasses netfilter for part of the pod traffic: %s", who, totals)
	default:
		e.State = stateEnforcing
		e.Detail = fmt.Sprintf("the hooks saw the traffic of all %d pods that carried traffic in the last %s", active, b.window)
	}
	if len(bypassing) > 0 {
		e.Detail += fmt.Sprintf("; %d of %d pods with traffic were never seen (%s)", len(bypassing), active, strings.Join(e.Bypassing, ", "))
	}
	if r, ok := b.cni.current(); ok && e.State != stateEnforcing && r.Coverage == cni.CoverageFull {
		e.Detail += "; " + r.String() + " should pass pod traffic through netfilter: see the node checks (bridge-nf-call-iptables) and look for another eBPF program on the pod interfaces"
	}
	b.mu.Lock()
	prev := b.measured
	b.measured = e
	b.mu.Unlock()
	b.state.Reset()
	b.state.WithLabelValues(e.State).Set(1)
	if prev == nil || prev.State != e.State {
		if e.State == stateEnforcing {
			klog.InfoS("Bypass self-check: pod traffic reaches the hooks", "node", b.node, "detail", e.Detail)
			if prev != nil {
				b.events.emit(corev1.EventTypeNormal, "Enforcing", e.Detail)
			}
		} else {
			klog.InfoS("Bypass self-check: pod traffic bypasses the hooks", "node", b.node, "state", e.State, "detail", e.Detail)
			b.events.emit(corev1.EventTypeWarning, "NetfilterBypass", e.State+": "+e.Detail)
		}
	}
}

func (b *bypassCheck) cniName() string {
	if r, ok := b.cni.current(); ok && r.Name != "" {
		return r.String()
	}
	return "the CNI"
}

// status is the Enforcement Status reports: the last measured verdict, or
// before any pod traffic, what the CNI's mode implies.
func (b *bypassCheck) status() *flowv1.Enforcement {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	m := b.measured
	b.mu.Unlock()
	if m != nil {
		return m
	}
	r, known := b.cni.current()
	e := &flowv1.Enforcement{State: stateEnforcing, Detail: "no pod traffic measured yet; the hooks are attached"}
	if known && r.Bypasses() {
		e.State = stateNot
		if r.Coverage == cni.CoveragePartial {
			e.State = statePartial
		}
		e.Detail = fmt.Sprintf("%s bypasses netfilter: %s (from the CNI's configuration; no pod traffic measured yet)", r, r.Why)
	}
	return e
}

// localPods are this node's pods with their own network.
func (b *bypassCheck) localPods() []localPod {
	var out []localPod
	for _, p := range b.cluster.listPods() {
		if ips := localPodIPs(p, b.node); len(ips) > 0 {
			name := p.Namespace + "/" + p.Name
			out = append(out, localPod{key: name + "/" + string(p.UID), name: name, ips: ips})
		}
	}
	return out
}

// interfaces maps pods to their host-side interface: the anti-spoofing
// guard's findings when it runs, else the same discovery done here.
func (b *bypassCheck) interfaces(pods []localPod) map[string]int {
	if b.spoof != nil {
		return b.spoof.interfaces()
	}
	links, err := b.nl.LinkList()
	if err != nil {
		return nil
	}
	byIndex := map[int]netlink.Link{}
	for _, l := range links {
		byIndex[l.Attrs().Index] = l
	}
	d := &discovery{nl: b.nl, links: byIndex}
	out := map[string]int{}
	for _, p := range pods {
		if prev, ok := b.prev[p.key]; ok && d.stillThere(binding{ifindex: prev.ifindex, mac: macOf(byIndex[prev.ifindex])}) {
			out[p.key] = prev.ifindex
			continue
		}
		if bd, err := d.find(p.ips); err == nil {
			out[p.key] = bd.ifindex
		}
	}
	return out
}

func macOf(l netlink.Link) string {
	if l == nil {
		return ""
	}
	return l.Attrs().HardwareAddr.String()
}

// fragmentsFolded is how many IPv4 fragments the node's reassembly (the
// hooks' defragmentation included) folded into whole packets: the hooks
// count one packet where the pod's interface counted each fragment.
func (b *bypassCheck) fragmentsFolded() uint64 {
	var reqds, oks uint64
	_ = runIn(b.ns, b.here, func() error {
		data, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		reqds, oks = ipReassembly(string(data))
		return nil
	})
	if reqds < oks {
		return 0
	}
	return reqds - oks
}

// ipReassembly reads Ip: ReasmReqds and ReasmOKs from /proc/net/snmp.
func ipReassembly(snmp string) (reqds, oks uint64) {
	var names []string
	for _, line := range strings.Split(snmp, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || fields[0] != "Ip:" {
			continue
		}
		if names == nil {
			names = fields
			continue
		}
		for i := 1; i < len(fields) && i < len(names); i++ {
			v, _ := strconv.ParseUint(fields[i], 10, 64)
			switch names[i] {
			case "ReasmReqds":
				reqds = v
			case "ReasmOKs":
				oks = v
			}
		}
		return reqds, oks
	}
	return 0, 0
}

// conntrackAddrs are the addresses in the node's conntrack entries (both
// tuples of both families).
func (b *bypassCheck) conntrackAddrs() map[netip.Addr]bool {
	b.conntrackDumps.Add(1)
	out := map[netip.Addr]bool{}
	for _, fam := range []netlink.InetFamily{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		flows, err := b.nl.ConntrackTableList(netlink.ConntrackTable, fam)
		if err != nil {
			klog.V(2).InfoS("Reading conntrack for the bypass self-check", "err", err)
			continue
		}
		for _, f := range flows {
			for _, ip := range [][]byte{f.Forward.SrcIP, f.Forward.DstIP, f.Reverse.SrcIP, f.Reverse.DstIP} {
				if a, ok := netip.AddrFromSlice(ip); ok {
					out[a.Unmap()] = true
				}
			}
		}
	}
	return out
}
