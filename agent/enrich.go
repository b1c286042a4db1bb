//go:build linux

package agent

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
	"github.com/kubectl-netpol/kubectl-netpol/probe"
)

// enricher turns a kernel event into a Flow. Pods are looked up when the
// event is received, so a later reuse of the address cannot relabel it.
//
// What the look-ups yield is cached and shared between flows: endpoints,
// Services and policy references are immutable once built, and every
// consumer of a published Flow only reads it (the hub, its gRPC streams,
// the flow-end summaries that reuse a start's parts; TestSharedFlowParts).
// The caches are dropped when the cluster's Generation moves (any pod or
// Service change, a node address change) or a new datapath is applied, so
// a flow shows what an uncached look-up would have shown.
type enricher struct {
	cluster *Cluster
	node    string
	// boot is the wall-clock time of monotonic zero: the kernel stamps
	// events with bpf_ktime_get_ns (CLOCK_MONOTONIC).
	boot time.Time

	// The event reader and the flow-end summaries both enrich.
	mu        sync.Mutex
	gen       uint64 // the cluster generation endpoints and services were filled under
	endpoints map[endpointKey]endpointInfo
	services  map[serviceKey]*flowv1.Service
	attrDP    *policy.Datapath // the datapath attrs were computed for
	attrs     map[attrKey]*attribution
}

// enrichCacheMax bounds each cache: past it the cache starts over (a node
// talking to many world addresses must not grow it without limit).
const enrichCacheMax = 16384

type endpointKey struct {
	ip       netip.Addr
	identity uint32
}

type endpointInfo struct {
	ep *flowv1.Endpoint
	ip string // the address as text, for Flow.ip
}

type serviceKey struct {
	vip  netip.Addr
	port uint16
}

// attrKey is what probe.Attribute reads of an event; the drop fields are
// zero for allowed flows.
type attrKey struct {
	egressRule, ingressRule  uint32
	drop                     bool
	direction                uint8
	reversed                 bool // FlagPickup or FlagRevoked
	srcEndpoint, dstEndpoint uint32
}

// attribution is an event's attribution as Flow parts (shared: capacity
// equal to length, so an append by anyone copies).
type attribution struct {
	allowedBy, deniedBy, isolatedBy []*flowv1.PolicyRef
	direction                       flowv1.TrafficDirection // the deciding side of a drop
	nodeTraffic                     bool
	// audit is the would-be outcome when a side's entry carries RuleAudit.
	audit *flowv1.Audit
}

func newEnricher(c *Cluster, node string) *enricher {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return &enricher{cluster: c, node: node, boot: time.Now().Add(-time.Duration(ts.Nano())),
		endpoints: map[endpointKey]endpointInfo{}, services: map[serviceKey]*flowv1.Service{}, attrs: map[attrKey]*attribution{}}
}

// tcpFlagSets are the TCPFlags messages of every flag byte, shared by
// the flows that carry them.
var tcpFlagSets = func() (sets [256]*flowv1.TCPFlags) {
	for i := range sets {
		t := uint8(i)
		sets[i] = &flowv1.TCPFlags{Fin: t&0x01 != 0, Syn: t&0x02 != 0, Rst: t&0x04 != 0, Psh: t&0x08 != 0,
			Ack: t&0x10 != 0, Urg: t&0x20 != 0, Ece: t&0x40 != 0, Cwr: t&0x80 != 0}
	}
	return sets
}()

// flowParts are the messages a new flow owns, allocated at once; the rest
// of it (endpoints, Service, policy references) is shared.
type flowParts struct {
	flow flowv1.Flow
	ip   flowv1.IP
	l4   flowv1.Layer4
	time timestamppb.Timestamp
}

// flow enriches ev, attributed with dp (the datapath enforced when it was
// seen). The Flow and everything it points to must not be modified, but
// for the messages of flowParts by the caller that just got it.
func (e *enricher) flow(dp *policy.Datapath, ev *probe.Event) *flowv1.Flow {
	src, dst := probe.TupleAddrs(ev.Tuple)
	e.mu.Lock()
	e.refresh(dp)
	srcEP, dstEP := e.endpoint(src, ev.SrcIdentity), e.endpoint(dst, ev.DstIdentity)
	var svc *flowv1.Service
	if ev.Flags&probe.FlagDNAT != 0 {
		_, vip := probe.TupleAddrs(ev.OrigTuple)
		svc = e.service(vip, ev.OrigTuple.Dport)
	}
	at := e.attribute(dp, ev)
	e.mu.Unlock()

	p := &flowParts{}
	t := e.boot.Add(time.Duration(ev.TimestampNs))
	p.time.Seconds, p.time.Nanos = t.Unix(), int32(t.Nanosecond())
	p.ip.Source, p.ip.Destination, p.ip.Version = srcEP.ip, dstEP.ip, flowv1.IPVersion_IP_VERSION_IPV4
	if ev.Flags&probe.FlagIPv6 != 0 {
		p.ip.Version = flowv1.IPVersion_IP_VERSION_IPV6
	}
	p.l4.Protocol, p.l4.SourcePort, p.l4.DestinationPort = protocol(ev.Protocol), uint32(ev.Tuple.Sport), uint32(ev.Tuple.Dport)
	if ev.Protocol == unix.IPPROTO_TCP {
		p.l4.TcpFlags = tcpFlagSets[ev.TcpFlags]
	}
	f := &p.flow
	f.Time, f.Node, f.Ip, f.L4 = &p.time, e.node, &p.ip, &p.l4
	f.Source, f.Destination, f.Service = srcEP.ep, dstEP.ep, svc
	f.RuleId = max(ev.EgressRule, ev.IngressRule)
	judge(f, ev, at)
	return f
}

// judge sets the flow's type, verdict, reason, direction and deciding
// policies from the event and its attribution.
func judge(f *flowv1.Flow, ev *probe.Event, at *attribution) {
	f.Type, f.Verdict = flowv1.EventType_EVENT_TYPE_NEW, flowv1.Verdict_VERDICT_ALLOWED
	f.AllowedBy = at.allowedBy
	if at.audit != nil {
		// The packets followed the enforced verdict (Type says which).
		f.Verdict, f.Audit = flowv1.Verdict_VERDICT_AUDIT, at.audit
	}
	if ev.Verdict == probe.VerdictDrop {
		f.Type = flowv1.EventType_EVENT_TYPE_DROP
		if f.Audit == nil {
			f.Verdict = flowv1.Verdict_VERDICT_DENIED
		}
		f.Direction = at.direction
		// A ClusterNetworkPolicy Deny rule, or else the isolating policies
		// of the deciding side, none of whose rules matched.
		f.Reason = flowv1.Reason_REASON_NO_RULE_MATCHED
		f.DeniedBy, f.IsolatedBy = at.deniedBy, at.isolatedBy
		if len(f.DeniedBy) > 0 {
			f.Reason = flowv1.Reason_REASON_DENIED_BY_RULE
		}
		return
	}
	switch {
	case len(f.AllowedBy) > 0:
		f.Reason = flowv1.Reason_REASON_ALLOWED_BY_RULE
		f.Direction = f.AllowedBy[len(f.AllowedBy)-1].Direction
	case at.nodeTraffic:
		f.Reason = flowv1.Reason_REASON_NOT_SUBJECT
	default:
		f.Reason = flowv1.Reason_REASON_NOT_ISOLATED
	}
	if f.Direction == flowv1.TrafficDirection_TRAFFIC_DIRECTION_UNSPECIFIED {
		f.Direction = flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS
		if ev.DstEndpoint == 0 {
			f.Direction = flowv1.TrafficDirection_TRAFFIC_DIRECTION_EGRESS
		}
	}
}

func protocol(p uint8) flowv1.Protocol {
	switch p {
	case unix.IPPROTO_TCP:
		return flowv1.Protocol_PROTOCOL_TCP
	case unix.IPPROTO_UDP:
		return flowv1.Protocol_PROTOCOL_UDP
	case unix.IPPROTO_SCTP:
		return flowv1.Protocol_PROTOCOL_SCTP
	case unix.IPPROTO_ICMP:
		return flowv1.Protocol_PROTOCOL_ICMP
	case unix.IPPROTO_ICMPV6:
		return flowv1.Protocol_PROTOCOL_ICMPV6
	}
	return flowv1.Protocol_PROTOCOL_UNSPECIFIED
}

// refresh drops what the caches hold from an older cluster state or
// datapath (under e.mu). The generation is read before any look-up it
// covers: a change during the look-up leaves e.gen behind, so the next
// call starts over.
func (e *enricher) refresh(dp *policy.Datapath) {
	if g := e.cluster.Generation(); g != e.gen {
		clear(e.endpoints)
		clear(e.services)
		e.gen = g
	}
	if dp != e.attrDP {
		clear(e.attrs)
		e.attrDP = dp
	}
}

// endpoint is the cached description of one end (under e.mu).
func (e *enricher) endpoint(ip netip.Addr, identity uint32) endpointInfo {
	k := endpointKey{ip: ip, identity: identity}
	if info, ok := e.endpoints[k]; ok {
		return info
	}
	info := endpointInfo{ep: e.lookupEndpoint(ip, identity), ip: ip.String()}
	if len(e.endpoints) >= enrichCacheMax {
		clear(e.endpoints)
	}
	e.endpoints[k] = info
	return info
}

// service is the cached Service of a pre-DNAT destination (under e.mu).
func (e *enricher) service(vip netip.Addr, port uint16) *flowv1.Service {
	k := serviceKey{vip: vip, port: port}
	if s, ok := e.services[k]; ok {
		return s
	}
	s := &flowv1.Service{Ip: vip.String(), Port: uint32(port)}
	if svc := e.cluster.ServiceByIP(vip); svc != nil {
		s.Namespace, s.Name = svc.Namespace, svc.Name
	}
	if len(e.services) >= enrichCacheMax {
		clear(e.services)
	}
	e.services[k] = s
	return s
}

// attribute is the cached attribution of ev under dp (under e.mu, after
// refresh(dp)).
func (e *enricher) attribute(dp *policy.Datapath, ev *probe.Event) *attribution {
	k := attrKey{egressRule: ev.EgressRule, ingressRule: ev.IngressRule}
	drop := ev.Verdict == probe.VerdictDrop
	if drop {
		k.drop, k.direction, k.reversed = true, uint8(ev.Direction), ev.Flags&(probe.FlagPickup|probe.FlagRevoked) != 0
		k.srcEndpoint, k.dstEndpoint = ev.SrcEndpoint, ev.DstEndpoint
	}
	if at, ok := e.attrs[k]; ok {
		return at
	}
	at := attribute(dp, ev)
	if len(e.attrs) >= enrichCacheMax {
		clear(e.attrs)
	}
	e.attrs[k] = at
	return at
}

// attribute is probe.Attribute as Flow parts: the allowing rules, a drop's
// denying rule (a ClusterNetworkPolicy Deny) or else its isolating
// policies (NetworkPolicy's default deny), and the would-be outcome of an
// audited side (the deciding side's first).
func attribute(dp *policy.Datapath, ev *probe.Event) *attribution {
	a := probe.Attribute(dp, ev)
	at := &attribution{nodeTraffic: a.NodeTraffic, direction: flow.DirectionOf(a.Direction)}
	for _, r := range a.AllowedBy {
		at.allowedBy = append(at.allowedBy, flow.CompiledRuleRef(r))
	}
	if ev.Verdict == probe.VerdictDrop {
		if a.DeniedByRule != nil {
			at.deniedBy = append(at.deniedBy, flow.CompiledRuleRef(*a.DeniedByRule))
		} else {
			for _, p := range a.DeniedBy {
				at.isolatedBy = append(at.isolatedBy, flow.PolicyRefOf(p, a.Direction, -1))
			}
		}
	}
	for _, s := range a.Audited {
		if s.Rule.Audit != nil && (at.audit == nil || s.Direction == a.Direction) {
			at.audit = flow.AuditOf(s.Rule.Audit, s.Direction)
		}
	}
	at.allowedBy, at.deniedBy, at.isolatedBy = slices.Clip(at.allowedBy), slices.Clip(at.deniedBy), slices.Clip(at.isolatedBy)
	return at
}

// lookupEndpoint describes one end: a pod by its address, else the node
// or the world.
func (e *enricher) lookupEndpoint(ip netip.Addr, identity uint32) *flowv1.Endpoint {
	ep := &flowv1.Endpoint{Identity: identity}
	if p := e.cluster.PodByIP(ip); p != nil {
		fillPod(ep, p)
		return ep
	}
	// A node's address (hostNetwork pods use it too) is that node.
	if name, ok := e.cluster.NodeByIP(ip); ok {
		ep.HostNetwork = true
		ep.NodeName = name
		if name == "" {
			ep.NodeName = e.node // a local address no Node object lists
		}
		return ep
	}
	ep.HostNetwork = identity == policy.IdentityHost
	if ep.HostNetwork {
		ep.NodeName = e.node
	}
	return ep
}

func fillPod(ep *flowv1.Endpoint, p *CachedPod) {
	ep.Namespace, ep.Pod, ep.Labels, ep.NodeName = p.Namespace, p.Name, p.Labels, p.NodeName
	if p.WorkloadKind != "" {
		ep.Workload = &flowv1.Workload{Kind: p.WorkloadKind, Name: p.WorkloadName}
	}
}
