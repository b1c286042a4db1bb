//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
	"github.com/kubectl-netpol/kubectl-netpol/probe"
)

// Flow-end summaries come from the kernel's conntrack DESTROY events
// (NFNLGRP_CONNTRACK_DESTROY) in the node's network namespace: the entry's
// last state carries both tuples and, with nf_conntrack_acct=1, its packet
// and byte counters. ti-mo/conntrack decodes the messages; the receive loop
// is ours so that a socket overrun (ENOBUFS) is counted and survived, each
// event costs one recvmsg, and the kernel never waits on the enrichment.

const (
	// flowEndQueue is how many decoded DESTROY events wait for enrichment;
	// past it they are dropped and counted.
	flowEndQueue = 16384
	// flowEndSocketBuffer is the netlink socket's receive buffer, forced
	// past net.core.rmem_max (the agent has NET_ADMIN) so bursts of
	// connection ends (a pod deleted, a conntrack flush) fit: 8 MiB lost
	// events in a burst of 50k, 32 MiB none (BenchmarkFlowEndEvents). The
	// kernel charges it only while events wait.
	flowEndSocketBuffer = 32 << 20
	// newFlowRecords bounds the new-flow events kept to attribute the end
	// of their connection (older ones are forgotten first).
	newFlowRecords = 65536
)

// Reasons a flow-end event was lost (kubectl_netpol_flow_end_events_lost_total).
const (
	lostQueueFull     = "queue_full"     // the enrichment fell behind: one event each
	lostSocketOverrun = "socket_overrun" // the kernel reported ENOBUFS: one or more events each
)

// flowEnd is one DESTROY event and when it was received.
type flowEnd struct {
	ct *conntrack.Flow
	at time.Time
}

// flowEndListener receives DESTROY events into a bounded queue.
type flowEndListener struct {
	conn   *netlink.Conn
	events chan flowEnd
	lost   *prometheus.CounterVec
	done   chan struct{}
}

// listenFlowEnds subscribes to conntrack DESTROY events in the network
// namespace netnsFD (0: the caller's, the node's for the hostNetwork agent),
// with a socket buffer of rcvbuf bytes and a queue of queue events.
func listenFlowEnds(netnsFD, queue, rcvbuf int, lost *prometheus.CounterVec) (*flowEndListener, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netnsFD})
	if err != nil {
		return nil, fmt.Errorf("opening a netfilter netlink socket for conntrack events: %w (needs NET_ADMIN)", err)
	}
	if err := c.JoinGroup(uint32(netfilter.GroupCTDestroy)); err != nil {
		c.Close()
		return nil, fmt.Errorf("subscribing to conntrack destroy events: %w (needs NET_ADMIN and nf_conntrack_netlink)", err)
	}
	if err := forceReadBuffer(c, rcvbuf); err != nil {
		// Not fatal: the default buffer works, it overruns sooner.
		klog.InfoS("Keeping the default receive buffer for conntrack events", "err", err)
	}
	l := &flowEndListener{conn: c, events: make(chan flowEnd, queue), lost: lost, done: make(chan struct{})}
	go l.receive()
	return l, nil
}

func forceReadBuffer(c *netlink.Conn, size int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
	}); err != nil {
		return err
	}
	if serr != nil {
		return c.SetReadBuffer(size)
	}
	return nil
}

// receive decodes events until the socket is closed. It never blocks on
// the queue: a full queue drops the event and counts it.
func (l *flowEndListener) receive() {
	defer close(l.done)
	defer close(l.events)
	rc, err := l.conn.SyscallConn()
	if err != nil {
		return
	}
	// One recvmsg per event into a reused buffer: the library's Receive
	// peeks first and allocates a page per call, which halves the rate.
	buf := make([]byte, 64<<10)
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, _, _, _, rerr = unix.Recvmsg(int(fd), buf, nil, unix.MSG_DONTWAIT)
			return rerr != unix.EAGAIN && rerr != unix.EWOULDBLOCK
		})
		if err != nil {
			return // closed (Close)
		}
		if errors.Is(rerr, unix.ENOBUFS) {
			// The kernel dropped events it could not queue; the socket
			// stays usable.
			l.lost.WithLabelValues(lostSocketOverrun).Inc()
			continue
		}
		if rerr == unix.EINTR {
			continue
		}
		if rerr != nil {
			klog.ErrorS(rerr, "Receiving conntrack events; flow-end summaries stop")
			return
		}
		raw, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			continue
		}
		for _, r := range raw {
			l.decode(netlink.Message{Header: netlink.Header{Length: r.Header.Len, Type: netlink.HeaderType(r.Header.Type),
				Flags: netlink.HeaderFlags(r.Header.Flags), Sequence: r.Header.Seq, PID: r.Header.Pid}, Data: r.Data})
		}
	}
}

func (l *flowEndListener) decode(m netlink.Message) {
	var ev conntrack.Event
	if ev.Unmarshal(m) != nil || ev.Type != conntrack.EventDestroy || ev.Flow == nil {
		return
	}
	// Byte slices may share the reused receive buffer; nothing reads them.
	ev.Flow.Labels, ev.Flow.LabelsMask = nil, nil
	select {
	case l.events <- flowEnd{ct: ev.Flow, at: time.Now()}:
	default:
		l.lost.WithLabelValues(lostQueueFull).Inc()
	}
}

// Close stops receiving and waits for the receive loop to end.
func (l *flowEndListener) Close() error {
	err := l.conn.Close()
	<-l.done
	return err
}

// ctKey is a connection by its original-direction 5-tuple (before any NAT):
// what both the new-flow event (its pre-NAT tuple) and conntrack know.
type ctKey struct {
	proto      uint8
	src, dst   netip.Addr
	sport, dpt uint16
}

// keyOfEvent is the conntrack original tuple of a new-flow event: the
// datapath runs after DNAT, so a Service's address is in OrigTuple.
func keyOfEvent(ev *probe.Event) ctKey {
	src, dst := probe.TupleAddrs(ev.Tuple)
	k := ctKey{proto: ev.Protocol, src: src, dst: dst, sport: ev.Tuple.Sport, dpt: ev.Tuple.Dport}
	if ev.Flags&probe.FlagDNAT != 0 {
		_, k.dst = probe.TupleAddrs(ev.OrigTuple)
		k.dpt = ev.OrigTuple.Dport
	}
	return k
}

func keyOfConntrack(f *conntrack.Flow) ctKey {
	o := f.TupleOrig
	return ctKey{proto: o.Proto.Protocol, src: o.IP.SourceAddress.Unmap(), dst: o.IP.DestinationAddress.Unmap(),
		sport: o.Proto.SourcePort, dpt: o.Proto.DestinationPort}
}

// newFlowTable remembers the flows published for new connections, so a
// connection's end carries the attribution (and pod identities) of its
// start. Bounded: the oldest record is forgotten first.
type newFlowTable struct {
	mu    sync.Mutex
	max   int
	n     uint64
	m     map[ctKey]newFlowRecord
	order []slotEntry // ring of insertions, slot (n-1)%max (grown as used)
}

type newFlowRecord struct {
	flow *flowv1.Flow
	n    uint64
}

type slotEntry struct {
	key ctKey
	n   uint64
}

func newNewFlowTable(max int) *newFlowTable {
	return &newFlowTable{max: max, m: map[ctKey]newFlowRecord{}}
}

// remember records the published flow f of a new connection.
func (t *newFlowTable) remember(k ctKey, f *flowv1.Flow) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n++
	if len(t.order) < t.max {
		t.order = append(t.order, slotEntry{})
	}
	slot := &t.order[(t.n-1)%uint64(t.max)]
	if r, ok := t.m[slot.key]; ok && slot.n != 0 && r.n == slot.n {
		delete(t.m, slot.key)
	}
	*slot = slotEntry{key: k, n: t.n}
	t.m[k] = newFlowRecord{flow: f, n: t.n}
}

// take returns and forgets the record of k (nil when none).
func (t *newFlowTable) take(k ctKey) *flowv1.Flow {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.m[k]
	if !ok {
		return nil
	}
	delete(t.m, k)
	return r.flow
}

func (t *newFlowTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// endpointIndex is the applied datapath by address: local endpoints and
// every address's identity, rebuilt when a new datapath is applied.
type endpointIndex struct {
	dp       *policy.Datapath
	local    map[netip.Addr]*policy.Endpoint
	identity map[netip.Addr]uint32
}

func (x *endpointIndex) use(dp *policy.Datapath) {
	if x.dp == dp {
		return
	}
	x.dp = dp
	x.local = map[netip.Addr]*policy.Endpoint{}
	x.identity = map[netip.Addr]uint32{}
	for _, id := range dp.Identities {
		for _, ip := range id.IPs {
			x.identity[ip] = id.ID
		}
	}
	for _, ip := range dp.HostIPs {
		x.identity[ip] = policy.IdentityHost
	}
	for i := range dp.Endpoints {
		for _, ip := range dp.Endpoints[i].IPs {
			x.local[ip] = &dp.Endpoints[i]
		}
	}
}

func (x *endpointIndex) identityOf(ip netip.Addr) uint32 {
	if id, ok := x.identity[ip]; ok {
		return id
	}
	return policy.IdentityWorld
}

// endFlow is the flow-end summary of conntrack entry ct, or nil when the
// datapath did not judge it (no local endpoint at either end). rec is the
// flow published when the connection started, when still known.
func (e *enricher) endFlow(x *endpointIndex, ct *conntrack.Flow, rec *flowv1.Flow, now time.Time) *flowv1.Flow {
	orig, reply := ct.TupleOrig, ct.TupleReply
	src := orig.IP.SourceAddress.Unmap()
	// After DNAT the destination is the reply's source (the backend).
	dst, dport := reply.IP.SourceAddress.Unmap(), reply.Proto.SourcePort
	srcEP, dstEP := x.local[src], x.local[dst]
	if srcEP == nil && dstEP == nil {
		return nil
	}
	var f *flowv1.Flow
	if rec != nil {
		// The start's enrichment: pods as they were then, and the rules
		// that admitted the connection.
		f = &flowv1.Flow{Verdict: rec.GetVerdict(), Reason: rec.GetReason(), Direction: rec.GetDirection(),
			Ip: rec.GetIp(), Source: rec.GetSource(), Destination: rec.GetDestination(), Service: rec.GetService(),
			AllowedBy: rec.GetAllowedBy(), RuleId: rec.GetRuleId(),
			L4: &flowv1.Layer4{Protocol: rec.GetL4().GetProtocol(), SourcePort: rec.GetL4().GetSourcePort(),
				DestinationPort: rec.GetL4().GetDestinationPort()}}
		if !rec.GetTime().AsTime().IsZero() {
			f.Duration = durationpb.New(now.Sub(rec.GetTime().AsTime()))
		}
	} else {
		f = e.flow(x.dp, e.judged(x, ct, src, dst, dport, srcEP, dstEP))
		f.L4.TcpFlags = nil
	}
	f.Type = flowv1.EventType_EVENT_TYPE_END
	f.Node = e.node
	f.Time = timestamppb.New(now)
	f.Packets = ct.CountersOrig.Packets + ct.CountersReply.Packets
	f.Bytes = ct.CountersOrig.Bytes + ct.CountersReply.Bytes
	if ts := ct.Timestamp; !ts.Start.IsZero() {
		stop := ts.Stop
		if stop.IsZero() {
			stop = now
		}
		f.Time = timestamppb.New(stop)
		f.Duration = durationpb.New(stop.Sub(ts.Start))
	}
	return f
}

// judged rebuilds the new-flow event the datapath would have emitted for
// ct under the applied datapath (when the connection's own event is no
// longer known), so the end is enriched by the same path as a start.
func (e *enricher) judged(x *endpointIndex, ct *conntrack.Flow, src, dst netip.Addr, dport uint16, srcEP, dstEP *policy.Endpoint) *probe.Event {
	orig := ct.TupleOrig
	ev := &probe.Event{Version: probe.EventVersion, Type: probe.EventNewFlow, Verdict: probe.VerdictAllow,
		Protocol: orig.Proto.Protocol, SrcIdentity: x.identityOf(src), DstIdentity: x.identityOf(dst)}
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	ev.TimestampNs = uint64(ts.Nano())
	ev.Tuple.Saddr, ev.Tuple.Daddr = src.As16(), dst.As16()
	ev.Tuple.Sport, ev.Tuple.Dport = orig.Proto.SourcePort, dport
	if vip := orig.IP.DestinationAddress.Unmap(); vip != dst || orig.Proto.DestinationPort != dport {
		ev.Flags |= probe.FlagDNAT
		ev.OrigTuple = ev.Tuple
		ev.OrigTuple.Daddr, ev.OrigTuple.Dport = vip.As16(), orig.Proto.DestinationPort
	}
	if src.Is6() {
		ev.Flags |= probe.FlagIPv6
	}
	proto := protocolName(orig.Proto.Protocol)
	if srcEP != nil {
		ev.SrcEndpoint = srcEP.ID
		ev.EgressRule = ruleAllowing(srcEP.Egress, x.identityOf(dst), dst, proto, dport)
	}
	if dstEP != nil {
		ev.DstEndpoint = dstEP.ID
		ev.IngressRule = ruleAllowing(dstEP.Ingress, x.identityOf(src), src, proto, dport)
	}
	return ev
}

func protocolName(p uint8) corev1.Protocol {
	switch p {
	case unix.IPPROTO_TCP:
		return corev1.ProtocolTCP
	case unix.IPPROTO_UDP:
		return corev1.ProtocolUDP
	case unix.IPPROTO_SCTP:
		return corev1.ProtocolSCTP
	}
	return ""
}

// ruleAllowing is the lowest rule ID of one endpoint direction that admits
// peer on proto/port (the datapath reports the lowest too), or 0 when the
// direction is not isolated or no rule matches.
func ruleAllowing(p policy.EndpointPolicy, peerID uint32, peer netip.Addr, proto corev1.Protocol, port uint16) uint32 {
	var best uint32
	for _, en := range p.Entries {
		if best != 0 && en.Rule >= best {
			continue
		}
		if en.Protocol != "" && (en.Protocol != proto || port < en.PortMin || port > en.PortMax) {
			continue
		}
		if en.CIDR.IsValid() {
			if !en.CIDR.Contains(peer) || inAny(en.Except, peer) {
				continue
			}
		} else if en.Identity != policy.IdentityAny && en.Identity != peerID {
			continue
		}
		best = en.Rule
	}
	return best
}

func inAny(pfx []netip.Prefix, ip netip.Addr) bool {
	for _, p := range pfx {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// flowEnds publishes a summary for each connection end the datapath judged,
// until the listener's queue is closed.
//
// An end whose start is not recorded may be one whose new-flow event the
// ring-buffer reader has not read yet (it polls every ReadPoll): a
// connection flushed or revoked right after it began. Such an end is parked
// until 2 polls + 50 ms after it was received and looked up again; others
// go on meanwhile, and a full parking lot publishes at once.
func (a *Agent) flowEnds(l *flowEndListener) {
	var x endpointIndex
	settle := 2*a.cfg.ReadPoll + 50*time.Millisecond
	var parked []flowEnd // oldest first
	timer := time.NewTimer(settle)
	defer timer.Stop()
	for {
		var wake <-chan time.Time
		if len(parked) > 0 {
			timer.Reset(time.Until(parked[0].at.Add(settle)))
			wake = timer.C
		}
		select {
		case ev, ok := <-l.events:
			if !ok {
				for _, p := range parked {
					a.publishEnd(&x, p, a.newFlows.take(keyOfConntrack(p.ct)))
				}
				return
			}
			rec := a.newFlows.take(keyOfConntrack(ev.ct))
			if rec == nil && time.Since(ev.at) < settle && len(parked) < flowEndQueue {
				parked = append(parked, ev)
				continue
			}
			a.publishEnd(&x, ev, rec)
		case <-wake:
			for len(parked) > 0 && time.Since(parked[0].at) >= settle {
				a.publishEnd(&x, parked[0], a.newFlows.take(keyOfConntrack(parked[0].ct)))
				parked = parked[1:]
			}
		}
	}
}

// publishEnd publishes the summary of ev when the datapath judged it.
func (a *Agent) publishEnd(x *endpointIndex, ev flowEnd, rec *flowv1.Flow) {
	dp := a.probe.Applied()
	if dp == nil {
		return
	}
	x.use(dp)
	if f := a.enrich.endFlow(x, ev.ct, rec, time.Now()); f != nil {
		a.metrics.FlowEnds.Inc()
		a.hub.Publish(f)
	}
}

// startFlowEnds starts the flow-end summaries in the network namespace
// netnsFD (0: the agent's own); the returned stop ends them.
func (a *Agent) startFlowEnds(netnsFD int) (stop func(), err error) {
	l, err := listenFlowEnds(netnsFD, flowEndQueue, flowEndSocketBuffer, a.metrics.FlowEndsLost)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() { defer close(done); a.flowEnds(l) }()
	return func() { _ = l.Close(); <-done }, nil
}

// runFlowEnds runs the summaries until ctx ends; a failure to subscribe is
// logged, not fatal (enforcement does not depend on it).
func (a *Agent) runFlowEnds(ctx context.Context) {
	stop, err := a.startFlowEnds(0)
	if err != nil {
		klog.ErrorS(err, "Flow-end summaries are off", "node", a.cfg.NodeName)
		return
	}
	<-ctx.Done()
	stop()
}
