//go:build linux

package agent

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
	"github.com/kubectl-netpol/kubectl-netpol/probe"
)

// enricher turns a kernel event into a Flow. Pods are looked up when the
// event is received, so a later reuse of the address cannot relabel it.
type enricher struct {
	cluster *Cluster
	node    string
	// boot is the wall-clock time of monotonic zero: the kernel stamps
	// events with bpf_ktime_get_ns (CLOCK_MONOTONIC).
	boot time.Time
	refs refCache
}

// refCache holds the policy references of one applied Datapath, shared by
// every flow that Datapath judged. A drop names every policy isolating its
// endpoint: a thousand policies selecting one pod made each denied flow
// carry a thousand fresh PolicyRefs (~50 KB), and the hub's ring of 65,536
// recent flows outgrew the agent's memory limit under a flood of denied
// connections. Shared, a drop costs one slice header. Flows are never
// mutated after they are built (the hub, the gRPC server and the flow-end
// summaries only read them), so sharing is safe; the slices are clipped so
// an append elsewhere copies instead of writing into them.
type refCache struct {
	mu       sync.Mutex
	dp       *policy.Datapath
	rules    map[uint32]*flowv1.PolicyRef
	isolated map[isolationKey][]*flowv1.PolicyRef
}

// isolationKey names one endpoint's isolating policies in one direction by
// the Datapath's own slice (stable while that Datapath is applied).
type isolationKey struct {
	first *policy.PolicyRef
	n     int
	dir   policy.Direction
}

// forDatapath empties the cache when dp is not the Datapath it holds; the
// caller holds c.mu.
func (c *refCache) forDatapath(dp *policy.Datapath) {
	if c.dp != dp {
		c.dp = dp
		c.rules = map[uint32]*flowv1.PolicyRef{}
		c.isolated = map[isolationKey][]*flowv1.PolicyRef{}
	}
}

func (c *refCache) rule(r policy.CompiledRule) *flowv1.PolicyRef {
	ref, ok := c.rules[r.ID]
	if !ok {
		ref = policyRef(r.Rule.Policy, r.Rule.Direction, r.Rule.Index)
		c.rules[r.ID] = ref
	}
	return ref
}

func (c *refCache) isolating(refs []policy.PolicyRef, dir policy.Direction) []*flowv1.PolicyRef {
	if len(refs) == 0 {
		return nil
	}
	k := isolationKey{&refs[0], len(refs), dir}
	out, ok := c.isolated[k]
	if !ok {
		out = make([]*flowv1.PolicyRef, len(refs))
		for i, p := range refs {
			out[i] = policyRef(p, dir, -1)
		}
		c.isolated[k] = out
	}
	return out
}

func newEnricher(c *Cluster, node string) *enricher {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return &enricher{cluster: c, node: node, boot: time.Now().Add(-time.Duration(ts.Nano()))}
}

var protocols = map[uint8]flowv1.Protocol{
	unix.IPPROTO_TCP: flowv1.Protocol_PROTOCOL_TCP, unix.IPPROTO_UDP: flowv1.Protocol_PROTOCOL_UDP,
	unix.IPPROTO_SCTP: flowv1.Protocol_PROTOCOL_SCTP, unix.IPPROTO_ICMP: flowv1.Protocol_PROTOCOL_ICMP,
	unix.IPPROTO_ICMPV6: flowv1.Protocol_PROTOCOL_ICMPV6,
}

func direction(d policy.Direction) flowv1.TrafficDirection {
	switch d {
	case policy.Ingress:
		return flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS
	case policy.Egress:
		return flowv1.TrafficDirection_TRAFFIC_DIRECTION_EGRESS
	}
	return flowv1.TrafficDirection_TRAFFIC_DIRECTION_UNSPECIFIED
}

func policyRef(p policy.PolicyRef, d policy.Direction, rule int) *flowv1.PolicyRef {
	r := &flowv1.PolicyRef{Kind: p.Kind, Namespace: p.Namespace, Name: p.Name, Direction: direction(d)}
	if r.Kind == "" {
		r.Kind = "NetworkPolicy"
	}
	if rule >= 0 {
		idx := uint32(rule)
		r.RuleIndex = &idx
	}
	return r
}

// flow enriches ev, attributed with dp (the datapath enforced when it was seen).
func (e *enricher) flow(dp *policy.Datapath, ev *probe.Event) *flowv1.Flow {
	src, dst := probe.TupleAddrs(ev.Tuple)
	f := &flowv1.Flow{
		Time:    timestamppb.New(e.boot.Add(time.Duration(ev.TimestampNs))),
		Node:    e.node,
		Type:    flowv1.EventType_EVENT_TYPE_NEW,
		Verdict: flowv1.Verdict_VERDICT_ALLOWED,
		Ip:      &flowv1.IP{Source: src.String(), Destination: dst.String(), Version: flowv1.IPVersion_IP_VERSION_IPV4},
		L4: &flowv1.Layer4{Protocol: protocols[ev.Protocol],
			SourcePort: uint32(ev.Tuple.Sport), DestinationPort: uint32(ev.Tuple.Dport)},
		Source:      e.endpoint(src, ev.SrcIdentity),
		Destination: e.endpoint(dst, ev.DstIdentity),
		RuleId:      max(ev.EgressRule, ev.IngressRule),
	}
	if ev.Flags&probe.FlagIPv6 != 0 {
		f.Ip.Version = flowv1.IPVersion_IP_VERSION_IPV6
	}
	if ev.Protocol == unix.IPPROTO_TCP {
		t := ev.TcpFlags
		f.L4.TcpFlags = &flowv1.TCPFlags{Fin: t&0x01 != 0, Syn: t&0x02 != 0, Rst: t&0x04 != 0, Psh: t&0x08 != 0,
			Ack: t&0x10 != 0, Urg: t&0x20 != 0, Ece: t&0x40 != 0, Cwr: t&0x80 != 0}
	}
	if ev.Flags&probe.FlagDNAT != 0 {
		_, vip := probe.TupleAddrs(ev.OrigTuple)
		if svc := e.cluster.ServiceByIP(vip); svc != nil {
			f.Service = &flowv1.Service{Namespace: svc.Namespace, Name: svc.Name, Ip: vip.String(), Port: uint32(ev.OrigTuple.Dport)}
		} else {
			f.Service = &flowv1.Service{Ip: vip.String(), Port: uint32(ev.OrigTuple.Dport)}
		}
	}

	a := probe.Attribute(dp, ev)
	e.refs.mu.Lock()
	defer e.refs.mu.Unlock()
	e.refs.forDatapath(dp)
	if len(a.AllowedBy) > 0 {
		f.AllowedBy = make([]*flowv1.PolicyRef, len(a.AllowedBy))
		for i, r := range a.AllowedBy {
			f.AllowedBy[i] = e.refs.rule(r)
		}
	}
	if ev.Verdict == probe.VerdictDrop {
		f.Type = flowv1.EventType_EVENT_TYPE_DROP
		f.Verdict = flowv1.Verdict_VERDICT_DENIED
		f.Reason = flowv1.Reason_REASON_NO_RULE_MATCHED
		f.Direction = direction(a.Direction)
		// NetworkPolicy has no deny rules: a drop is the isolating policies
		// of the deciding side, none of whose rules matched.
		f.IsolatedBy = e.refs.isolating(a.DeniedBy, a.Direction)
		return f
	}
	switch {
	case len(f.AllowedBy) > 0:
		f.Reason = flowv1.Reason_REASON_ALLOWED_BY_RULE
		f.Direction = f.AllowedBy[len(f.AllowedBy)-1].Direction
	case a.NodeTraffic:
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
	return f
}

// endpoint describes one end: a pod by its address, else the node or the world.
func (e *enricher) endpoint(ip netip.Addr, identity uint32) *flowv1.Endpoint {
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

func fillPod(ep *flowv1.Endpoint, p *corev1.Pod) {
	ep.Namespace, ep.Pod, ep.Labels, ep.NodeName = p.Namespace, p.Name, p.Labels, p.Spec.NodeName
	if kind, name := Workload(p); kind != "" {
		ep.Workload = &flowv1.Workload{Kind: kind, Name: name}
	}
}
