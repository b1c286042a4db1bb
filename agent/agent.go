//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	"github.com/kubectl-netpol/kubectl-netpol/flow/otlp"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
	"github.com/kubectl-netpol/kubectl-netpol/internal/bpffs"
	"github.com/kubectl-netpol/kubectl-netpol/internal/cni/nodefacts"
	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
	"github.com/kubectl-netpol/kubectl-netpol/internal/version"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
	"github.com/kubectl-netpol/kubectl-netpol/probe"
)

// Config configures the agent.
type Config struct {
	Client kubernetes.Interface
	// CNPClient and Metadata, when both set, make the agent follow
	// ClusterNetworkPolicies (and their CRD, which may come and go).
	CNPClient    cnpclient.Interface
	Metadata     metadata.Interface
	NodeName     string
	PodName      string // this agent's pod (for the uninstall check); "" outside a cluster
	PodNamespace string
	GRPCAddr     string // 127.0.0.1:port
	HTTPAddr     string // 127.0.0.1:port: /healthz, /readyz, /metrics
	Pprof        bool   // serve /debug/pprof/ on HTTPAddr too
	PinRoot      string // default probe.DefaultPinRoot
	Datapath     probe.Config
	// KeepEstablished leaves established connections alone when a new policy
	// denies them (default: revoke them).
	KeepEstablished bool
	RingCapacity    int           // flows kept for Observe (default flow.DefaultHubCapacity)
	ReadPoll        time.Duration // ring-buffer polling interval (default 100ms)

	// AntiSpoofing guards every local pod's interface: packets from it must
	// carry one of the pod's addresses (see spoof.go).
	AntiSpoofing bool

	// FlowEndSummaries publishes an EVENT_TYPE_END flow with packets,
	// bytes and duration when a local pod's connection ends (conntrack).
	FlowEndSummaries bool
	// FlowEndSource chooses where summaries come from: FlowEndSourceAuto
	// (default), FlowEndSourceKernel, FlowEndSourceKernelTCP (TCP only) or
	// FlowEndSourceNetlink.
	FlowEndSource string

	// HistoryDir keeps the node's aggregated connection history across
	// restarts ("": history in memory only, lost on restart, e.g. tests).
	HistoryDir string
	// HistoryMemory and HistoryDisk are its budgets in bytes (0: defaults);
	// HistoryFlushEvery how often it is written (default 1m).
	HistoryMemory, HistoryDisk int64
	HistoryFlushEvery          time.Duration
	// NoHistory keeps no history at all.
	NoHistory bool
	// OTLP, when its Endpoint is set, exports flows and metrics to an
	// OpenTelemetry Collector (Node and Gatherer are filled in by New).
	OTLP otlp.Config
	// CNIConfDir holds the node's CNI configuration files (default
	// /etc/cni/net.d; the DaemonSet mounts the node's at DefaultCNIConfDir).
	CNIConfDir string
	// BPFFSRoot is where other datapaths' pins are looked for (default
	// /sys/fs/bpf).
	BPFFSRoot string
	// BypassWindow is the bypass self-check's window (default 10s), and
	// BypassMinPackets the packets a pod's interface must carry in it to
	// be judged (default 20).
	BypassWindow     time.Duration
	BypassMinPackets uint64

	// OnReady, when set, runs once, after the first apply (ready).
	OnReady func()
}

// DefaultCNIConfDir is where the DaemonSet mounts the node's /etc/cni/net.d.
const DefaultCNIConfDir = install.CNIConfMountPath

// Agent is a running node agent.
type Agent struct {
	cfg      Config
	cluster  *Cluster
	probe    *probe.Probe
	hub      *flow.Hub
	metrics  *Metrics
	enrich   *enricher
	history  *history.Store // nil with NoHistory
	otlp     *otlp.Exporter // nil unless exporting
	spoof    *spoofGuard    // nil when anti-spoofing is off
	cni      *cniWatch
	bypass   *bypassCheck
	bypassNL *netlink.Handle
	queue    workqueue.TypedRateLimitingInterface[string]
	started  time.Time
	// policyCache carries what the engine derived from unchanged objects
	// from one apply to the next.
	policyCache *policy.Cache

	// newFlows are the recent new-flow events, for their connections' ends.
	newFlows *newFlowTable
	// startsReadTo is the monotonic time (ns) up to which every new-flow
	// event was read and remembered: the datapath's ring was found empty
	// then. A kernel flow-end record written before it finds its start.
	startsReadTo atomic.Uint64
	// flowEndSources are where summaries come from, and flowEndWhy why
	// not all from the kernel's conntrack records (under mu).
	flowEndSources []flowEndUse
	flowEndWhy     string

	ready     atomic.Bool
	mu        sync.Mutex
	lastApply time.Time
	// applyStart is when the last finished Apply began reading the caches.
	applyStart time.Time
	lastErr    string
	// cnpReporter publishes what this node enforces of the
	// ClusterNetworkPolicies, and cnpStatus (when elected) writes their
	// status from every node's report; nil outside a cluster.
	cnpReporter *nodeReporter
	cnpStatus   *statusWriter
	// domainNames are the ClusterNetworkPolicies whose domainNames peers
	// the last apply could not enforce.
	domainNames []string
	// changed is when the first unprocessed cluster change arrived: apply
	// latency is measured from it.
	changed time.Time
}

// syncKey is the workqueue's only key: the whole node is recompiled at once,
// so any burst of changes coalesces into one Apply.
const syncKey = "node"

// New loads and attaches the datapath in the current network namespace
// (the node's: the agent runs with hostNetwork) and builds the informers.
func New(cfg Config) (*Agent, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("the node name is not set: run the agent with --node-name or NODE_NAME (the DaemonSet sets it from spec.nodeName)")
	}
	switch cfg.FlowEndSource {
	case FlowEndSourceAuto, FlowEndSourceKernel, FlowEndSourceKernelTCP, FlowEndSourceNetlink:
	default:
		return nil, fmt.Errorf("--flow-end-source=%q: want %q, %q, %q or empty (the default: the kernel's records where they load, else netlink)",
			cfg.FlowEndSource, FlowEndSourceKernel, FlowEndSourceKernelTCP, FlowEndSourceNetlink)
	}
	if cfg.PinRoot == "" {
		cfg.PinRoot = probe.DefaultPinRoot
	}
	if cfg.ReadPoll == 0 {
		cfg.ReadPoll = 100 * time.Millisecond
	}
	// Without bpffs the pins cannot outlive the pod, and the agent (no
	// CAP_SYS_ADMIN) cannot mount it: say so and how to fix it, rather
	// than fail inside the loader.
	if underBPFFS(cfg.PinRoot) {
		if err := bpffs.Check(cfg.NodeName, bpffs.Path); err != nil {
			return nil, err
		}
	}
	p, err := probe.Load(probe.Options{PinRoot: cfg.PinRoot, Config: cfg.Datapath})
	if err != nil {
		return nil, fmt.Errorf("loading the eBPF datapath on node %s: %w (the node needs Linux >= 6.4 with BTF, bpffs at /sys/fs/bpf, and the capabilities BPF, NET_ADMIN and PERFMON)", cfg.NodeName, err)
	}
	p.SetRevocation(!cfg.KeepEstablished)
	runtime.LockOSThread()
	err = p.Attach("node")
	nodeNS, nsErr := netns.Get() // where Attach ran: the pod interfaces are there too
	checkNS, checkNSErr := netns.Get()
	runtime.UnlockOSThread()
	if nsErr == nil && err == nil && !cfg.AntiSpoofing {
		// Guards an earlier agent pinned (anti-spoofing turned off by an
		// upgrade) would go on checking the pods it was turned off for.
		if gerr := p.SetGuardsIn(nodeNS, "node", nil); gerr != nil {
			klog.ErrorS(gerr, "Removing the anti-spoofing guards of an earlier agent", "node", cfg.NodeName)
		}
	}
	if nsErr == nil && (err != nil || !cfg.AntiSpoofing) {
		nodeNS.Close()
	}
	if err == nil && checkNSErr != nil {
		err = fmt.Errorf("opening the node's network namespace: %w", checkNSErr)
	}
	if err != nil {
		if checkNSErr == nil {
			checkNS.Close()
		}
		p.Close()
		return nil, fmt.Errorf("attaching the netfilter programs on node %s: %w (needs NET_ADMIN and nf_conntrack)", cfg.NodeName, err)
	}
	a := &Agent{cfg: cfg, probe: p, cluster: NewCluster(cfg.Client), started: time.Now(), policyCache: policy.NewCache()}
	if cfg.CNPClient != nil && cfg.Metadata != nil {
		a.cluster.WatchClusterPolicies(cfg.CNPClient, cfg.Metadata)
		if cfg.PodNamespace != "" {
			a.cnpReporter = newNodeReporter(cfg.Client, cfg.PodNamespace, cfg.NodeName)
			a.cnpStatus = newStatusWriter(cfg.Client, cfg.CNPClient, cfg.PodNamespace, a.cluster)
		}
	}
	a.enrich = newEnricher(a.cluster, cfg.NodeName)
	a.newFlows = newNewFlowTable(newFlowRecords)
	a.hub = flow.NewHub(cfg.RingCapacity, a.status)
	if !cfg.NoHistory {
		a.history = openHistory(cfg)
	}
	a.metrics = NewMetrics(a.datapathCounters, a.mapUsage, func() float64 {
		st, _ := a.hub.Status(context.Background(), nil)
		return float64(st.GetFlowsDroppedSlowClients())
	})
	if a.history != nil {
		a.metrics.Registry.MustRegister(historyCollector{a.history})
	}
	if cfg.OTLP.Endpoint != "" {
		oc := cfg.OTLP
		oc.Node, oc.Version, oc.Gatherer = cfg.NodeName, version.Version(), a.metrics.Registry
		if a.otlp, err = otlp.New(oc); err != nil {
			p.Close()
			return nil, err
		}
		a.metrics.Registry.MustRegister(a.otlp.Collectors()...)
		a.hub.AddTap(a.otlp.Offer)
	}
	a.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "datapath"})
	if err := a.cluster.OnChange(func(kind string) {
		a.enqueue()
		if a.cnpStatus != nil && (kind == "clusternetworkpolicy" || kind == "node") {
			a.cnpStatus.poke()
		}
	}); err != nil {
		checkNS.Close()
		p.Close()
		return nil, err
	}
	if err := a.newChecks(checkNS); err != nil {
		p.Close()
		return nil, err
	}
	if cfg.AntiSpoofing {
		if nsErr != nil {
			a.closeChecks()
			p.Close()
			return nil, fmt.Errorf("opening the node's network namespace for anti-spoofing: %w", nsErr)
		}
		if a.spoof, err = newSpoofGuard(p, a.cluster, cfg.NodeName, nodeNS, a.metrics.Registry); err != nil {
			nodeNS.Close()
			a.closeChecks()
			p.Close()
			return nil, err
		}
		a.bypass.spoof = a.spoof
		// Its own loop, beside the policy queue: discovery never delays policy.
		// Only this node's pods have interfaces to guard here: a pod
		// churning elsewhere in a large cluster is no work for it.
		if err := a.cluster.OnPodChange(func(p *CachedPod) {
			if p.NodeName == cfg.NodeName {
				a.spoof.kick()
			}
		}); err != nil {
			a.spoof.close()
			a.closeChecks()
			p.Close()
			return nil, err
		}
	}
	return a, nil
}

// newChecks sets up the CNI identification and the bypass self-check in
// ns, the node's network namespace (taking it over).
func (a *Agent) newChecks(ns netns.NsHandle) error {
	bpfRoot := a.cfg.BPFFSRoot
	if bpfRoot == "" {
		bpfRoot = bpffs.Path
	}
	w, err := newCNIWatch(ns, a.cfg.Client, nodefacts.Options{ConfDir: a.cfg.CNIConfDir, BPFFS: bpfRoot}, a.metrics.Registry)
	if err != nil {
		ns.Close()
		return err
	}
	a.cni = w
	open := netlink.NewHandle
	if !w.here {
		open = func(...int) (*netlink.Handle, error) { return netlink.NewHandleAt(ns) }
	}
	if a.bypassNL, err = open(); err != nil {
		w.close()
		return fmt.Errorf("opening netlink in the node's network namespace for the bypass self-check: %w", err)
	}
	if a.bypass, err = newBypassCheck(a.bypassNL, a, newEventSink(a.cfg), a.metrics.Registry); err != nil {
		a.closeChecks()
		return err
	}
	return nil
}

func (a *Agent) closeChecks() {
	if a.bypassNL != nil {
		a.bypassNL.Close()
	}
	if a.cni != nil {
		a.cni.close()
	}
}

// Hub is the flow hub (tests observe it directly).
func (a *Agent) Hub() *flow.Hub { return a.hub }

// Metrics returns the agent's metrics.
func (a *Agent) Metrics() *Metrics { return a.metrics }

func (a *Agent) enqueue() {
	a.mu.Lock()
	if a.changed.IsZero() {
		a.changed = time.Now()
	}
	a.mu.Unlock()
	a.queue.Add(syncKey)
}

// Run serves until ctx ends. Then it stops reading and serving and either
// leaves enforcement in place (restart, upgrade) or, when uninstalling
// (shouldUninstall returns true), removes every pin, link and program.
func (a *Agent) Run(ctx context.Context, shouldUninstall func(context.Context) bool) error {
	grpcLis, err := net.Listen("tcp", a.cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listening for gRPC on %s: %w", a.cfg.GRPCAddr, err)
	}
	httpLis, err := net.Listen("tcp", a.cfg.HTTPAddr)
	if err != nil {
		grpcLis.Close()
		return fmt.Errorf("listening for health and metrics on %s: %w", a.cfg.HTTPAddr, err)
	}
	gs := grpc.NewServer()
	flowv1.RegisterObserverServer(gs, &observer{Hub: a.hub, history: a.history, node: a.cfg.NodeName})
	hs := &http.Server{Handler: a.httpHandler(), ReadHeaderTimeout: 5 * time.Second}

	var wg sync.WaitGroup
	defer a.closeChecks() // after the checks' goroutines are done
	defer wg.Wait()
	wg.Go(func() { _ = gs.Serve(grpcLis) })
	wg.Go(func() { _ = hs.Serve(httpLis) })
	defer func() {
		gs.Stop()
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(shut)
	}()

	rd, err := a.probe.NewReader(a.cfg.ReadPoll)
	if err != nil {
		return err
	}
	wg.Go(func() { a.readEvents(ctx, rd) })
	if a.otlp != nil {
		wg.Go(func() { a.otlp.Run(ctx) })
	}
	defer rd.Close()
	if a.cfg.FlowEndSummaries {
		wg.Go(func() { a.runFlowEnds(ctx) })
	}
	if a.history != nil {
		wg.Go(func() { a.flushHistory(ctx) })
	}

	stop := make(chan struct{})
	go func() { <-ctx.Done(); close(stop) }()
	klog.InfoS("Waiting for the informer caches", "node", a.cfg.NodeName)
	if !a.cluster.Start(stop) {
		return a.shutdown(shouldUninstall)
	}
	a.refreshLocalAddresses()
	a.enqueue()
	a.spoof.start()
	a.cni.refresh(ctx)
	wg.Go(func() { a.cni.run(ctx) })
	wg.Go(func() { a.bypass.run(ctx) })
	if a.cnpStatus != nil {
		wg.Go(func() { a.cnpReporter.run(ctx) })
		wg.Go(func() {
			if err := leadStatus(ctx, a.cnpStatus, a.cfg.NodeName); err != nil {
				klog.ErrorS(err, "Standing for the ClusterNetworkPolicy status writer")
			}
		})
	}
	wg.Go(func() {
		for a.processNext() {
		}
	})
	go func() { <-ctx.Done(); a.queue.ShutDown() }()
	<-ctx.Done()
	return a.shutdown(shouldUninstall)
}

func (a *Agent) shutdown(shouldUninstall func(context.Context) bool) error {
	a.queue.ShutDown()
	a.spoof.close() // no guard is written after this, so an uninstall removes them all
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if shouldUninstall != nil && shouldUninstall(ctx) {
		klog.InfoS("Uninstalling: removing the datapath's programs, links and pins", "node", a.cfg.NodeName, "pins", a.probe.PinDir())
		_, retireErr := a.probe.RetireOtherLayouts() // an upgrade that never became ready
		return errors.Join(a.probe.Uninstall(), retireErr, a.removeHistory())
	}
	klog.InfoS("Stopping; enforcement stays in place (pinned programs and maps)", "node", a.cfg.NodeName)
	return a.probe.Close()
}

// processNext compiles and applies the node's datapath once.
func (a *Agent) processNext() bool {
	key, quit := a.queue.Get()
	if quit {
		return false
	}
	defer a.queue.Done(key)
	a.mu.Lock()
	since := a.changed
	a.changed = time.Time{}
	a.mu.Unlock()
	if since.IsZero() {
		since = time.Now()
	}
	start := time.Now()
	err := a.apply()
	a.mu.Lock()
	a.lastApply, a.applyStart = time.Now(), start
	a.lastErr = ""
	if err != nil {
		a.lastErr = err.Error()
	}
	a.mu.Unlock()
	if err != nil {
		a.metrics.ApplyErrors.Inc()
		klog.ErrorS(err, "Applying policy to the datapath failed; the previous policy stays enforced", "node", a.cfg.NodeName)
		a.queue.AddRateLimited(key)
		return true
	}
	a.metrics.ApplyDuration.Observe(time.Since(since).Seconds())
	a.queue.Forget(key)
	if !a.ready.Swap(true) {
		a.becameReady()
	}
	return true
}

// becameReady runs once, after the first apply.
func (a *Agent) becameReady() {
	klog.InfoS("Ready: policy enforced", "node", a.cfg.NodeName, "after", time.Since(a.started).Round(time.Millisecond))
	if a.cfg.OnReady != nil {
		a.cfg.OnReady()
	}
	// The first Apply retired the older layout attached as "node" (it
	// enforced beside this one until then: no gap); any other layout
	// left under the pin root would go on enforcing a stale policy.
	retired, err := a.probe.RetireOtherLayouts()
	if err != nil {
		klog.ErrorS(err, "Removing an older datapath layout", "node", a.cfg.NodeName)
	}
	if len(retired) > 0 {
		klog.InfoS("Retired older datapath layouts", "node", a.cfg.NodeName, "layouts", retired)
	}
	// The start is the agent's peak of memory (the informers' first lists
	// beside the first engine: at 100k pods a heap of ~2.8x what stays);
	// the runtime would keep those pages for the next peak. Give them
	// back now, once: what the node sees then is what the agent keeps
	// (docs/perf.md, "The agent at 100k pods: memory and ready").
	debug.FreeOSMemory()
}

func (a *Agent) apply() error {
	snap, err := a.cluster.Snapshot()
	if err != nil {
		return err
	}
	err = a.applySnapshot(snap)
	if a.cnpReporter != nil {
		a.cnpReporter.report(snap.ClusterPolicies, err)
	}
	return err
}

func (a *Agent) applySnapshot(snap *policy.Snapshot) error {
	e, err := policy.NewEngineCached(snap, a.policyCache)
	if err != nil {
		return fmt.Errorf("compiling: %w", err)
	}
	dp, err := e.Compile(a.cfg.NodeName)
	if err != nil {
		return fmt.Errorf("compiling: %w", err)
	}
	res, err := a.probe.Apply(dp)
	if err != nil {
		return err
	}
	a.setDomainNames(e.DomainNamePolicies())
	a.metrics.ClusterPolicies.Set(float64(len(snap.ClusterPolicies)))
	a.metrics.Revoked.Add(float64(res.Revoked))
	a.metrics.Endpoints.Set(float64(len(dp.Endpoints)))
	a.metrics.Policies.Set(float64(len(snap.Policies)))
	a.metrics.Identities.Set(float64(len(dp.Identities)))
	klog.V(2).InfoS("Applied", "endpoints", len(dp.Endpoints), "identities", len(dp.Identities), "rules", len(dp.Rules),
		"slotsSwapped", res.SlotsSwapped, "endpointsWritten", res.EndpointsWritten, "endpointsRemoved", res.EndpointsRemoved,
		"ipcacheWritten", res.IPCacheWritten, "ipcacheRemoved", res.IPCacheRemoved, "conntrackScanned", res.ConntrackScanned, "conntrackAddresses", res.ConntrackAddresses, "revoked", res.Revoked)
	return nil
}

// refreshLocalAddresses records the node's own addresses: the kubelet probes
// pods from the bridge's address, which no Node object lists.
func (a *Agent) refreshLocalAddresses() {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		klog.ErrorS(err, "Listing the node's addresses")
		return
	}
	var ips []netip.Addr
	for _, ad := range addrs {
		ip, ok := netip.AddrFromSlice(ad.IP)
		if !ok || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
			continue
		}
		ips = append(ips, ip.Unmap())
	}
	a.cluster.SetLocalAddresses(ips)
}

// readEvents turns kernel events into flows until ctx ends. It never blocks
// the datapath: the kernel drops (and counts) events when the ring is full.
func (a *Agent) readEvents(ctx context.Context, rd *probe.Reader) {
	var ev probe.Event
	var aggs *aggregateReader
	if every := a.cfg.Datapath.AggregateInterval; every > 0 {
		aggs = newAggregateReader(every)
	}
	for ctx.Err() == nil {
		if aggs.due(time.Now()) {
			a.publishNewFlowAggregates(aggs)
		}
		a.markStartsRead(rd)
		if err := rd.Read(&ev); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			if errors.Is(err, probe.ErrUnknownVersion) {
				a.metrics.DecodeErrors.Inc()
				continue
			}
			if ctx.Err() == nil {
				klog.ErrorS(err, "Reading datapath events")
			}
			return
		}
		dp := a.probe.Applied()
		if dp == nil {
			continue
		}
		f := a.enrich.flow(dp, &ev)
		a.count(f)
		a.hub.Publish(f)
		a.record(f)
		if a.cfg.FlowEndSummaries && ev.Type == probe.EventNewFlow {
			a.newFlows.remember(keyOfEvent(&ev), f)
		}
	}
}

// markStartsRead moves startsReadTo to now when rd has nothing unread:
// every event written before now has been handled.
func (a *Agent) markStartsRead(rd *probe.Reader) {
	if !a.cfg.FlowEndSummaries {
		return
	}
	if rd.Pending() != 0 {
		return
	}
	// Still empty after the clock was read: nothing written before now is
	// unread.
	if now := monotonicNow(); rd.Pending() == 0 {
		a.startsReadTo.Store(now)
	}
}

func (a *Agent) count(f *flowv1.Flow) { a.metrics.CountVerdict(f) }

func (a *Agent) datapathCounters() map[string]uint64 {
	s, err := a.probe.Stats()
	if err != nil {
		return nil
	}
	return map[string]uint64{"packets": s.Packets, "established": s.Established, "new_allowed": s.NewAllowed,
		"new_denied": s.NewDenied, "untracked": s.Untracked, "events": s.Events, "ring_full": s.RingFull,
		"rate_limited": s.RateLimited, "not_parsed": s.NotParsed, "spoof_dropped": s.SpoofDropped,
		"flow_ends": s.FlowEnds, "flow_ends_lost": s.FlowEndsLost,
		"aggregated": s.Aggregated, "flow_ends_aggregated": s.FlowEndsAggregated}
}

// mapUsage is what the datapath reports of its maps' fill.
func (a *Agent) mapUsage() []MapUsage {
	var out []MapUsage
	for _, u := range a.probe.MapUsage() {
		out = append(out, MapUsage{Name: u.Name, Entries: u.Entries, Max: u.Max})
	}
	return out
}

// status is the node's part of flow.v1 Status.
func (a *Agent) status(context.Context) (*flowv1.StatusResponse, error) {
	r := &flowv1.StatusResponse{
		Version:     version.Version(),
		Node:        a.cfg.NodeName,
		Ready:       a.ready.Load(),
		Uptime:      durationpb.New(time.Since(a.started)),
		Checks:      append(nodeChecks(), a.spoof.check()),
		Cni:         a.cni.status(),
		Enforcement: a.bypass.status(),
	}
	if a.cfg.FlowEndSummaries {
		r.Checks = append(r.Checks, conntrackAcctCheck(a.tcpEndsFromSockets()), a.flowEndSourceCheck())
	}
	if a.otlp != nil {
		r.Checks = append(r.Checks, a.otlp.Check())
	}
	a.mu.Lock()
	if !a.lastApply.IsZero() {
		r.LastApply = timestamppb.New(a.lastApply)
	}
	r.LastApplyError = a.lastErr
	a.mu.Unlock()
	if dp := a.probe.Applied(); dp != nil {
		r.EndpointsEnforced = uint32(len(dp.Endpoints))
	}
	r.Policies = uint32(a.cluster.Policies())
	r.ClusterPolicies, r.ClusterPoliciesWatched, r.DomainNamePolicies, r.Checks = a.clusterPolicyStatus(r.Checks)
	for _, u := range a.mapUsage() {
		r.Maps = append(r.Maps, &flowv1.MapUsage{Name: u.Name, Entries: u.Entries, MaxEntries: u.Max})
	}
	if s, err := a.probe.Stats(); err == nil {
		r.EventsLost, r.EventsRateLimited = s.RingFull, s.RateLimited
	}
	if a.history != nil {
		r.History = a.history.Coverage()
	}
	return r, nil
}

func (a *Agent) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !a.ready.Load() {
			a.mu.Lock()
			msg := a.lastErr
			a.mu.Unlock()
			http.Error(w, "not ready: waiting for the informer caches and the first policy apply "+msg, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(a.metrics.Registry, promhttp.HandlerOpts{Registry: a.metrics.Registry}))
	if a.cfg.Pprof {
		// Go's profiles, on the same loopback-only address: how the agent's
		// memory and CPU are spent on a real node (heap, allocs, profile).
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// underBPFFS reports whether dir lies in the node's bpffs mount point.
func underBPFFS(dir string) bool {
	rel, err := filepath.Rel(bpffs.Path, filepath.Clean(dir))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
