// Package whatif re-judges recorded connection history under two policy
// states, today's and a proposed one, with the policy engine the agent
// compiles from (package policy), and reports the connections whose verdict
// changes: what a change would break and what it would open. It builds on
// every OS; the CLI's whatif verb is wiring and rendering around it.
package whatif

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// Change is one workload pair, protocol and port whose verdict changes.
type Change struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
	Service     string `json:"service,omitempty"`
	Protocol    string `json:"protocol"`
	Port        uint32 `json:"port"`
	// Connections observed in the window (a connection judged on two nodes
	// counts once), and how many of them were allowed and denied then.
	Connections     uint64    `json:"connections"`
	ObservedAllowed uint64    `json:"observedAllowed"`
	ObservedDenied  uint64    `json:"observedDenied"`
	LastSeen        time.Time `json:"lastSeen"`
	Nodes           []string  `json:"nodes"`
	// Decision is the proposal's verdict for this traffic: the side that
	// decides and the policies and rules that do.
	Direction string   `json:"direction"`
	DecidedBy []string `json:"decidedBy"`
	// Why is one plain sentence.
	Why string `json:"why"`
}

// Coverage is how much history backed the answer.
type Coverage struct {
	Since   time.Time `json:"since,omitempty"`
	Oldest  time.Time `json:"oldest,omitempty"`
	Newest  time.Time `json:"newest,omitempty"`
	Nodes   []string  `json:"nodes"`
	Records int       `json:"records"`
	// Pairs is the number of distinct (source, destination, protocol, port) judged.
	Pairs int `json:"pairs"`
	// Gaps are periods a node's agent did not record, in the window.
	Gaps []string `json:"gaps,omitempty"`
	// Lost is what the agents' budgets dropped (records, connections).
	DroppedRecords     uint64 `json:"droppedRecords,omitempty"`
	DroppedConnections uint64 `json:"droppedConnections,omitempty"`
	// Unreachable nodes: the answer does not cover their connections.
	Unreachable map[string]string `json:"unreachable,omitempty"`
	Errors      []string          `json:"errors,omitempty"`
}

// Report is the answer.
type Report struct {
	NewlyDenied  []Change `json:"newlyDenied"`
	NewlyAllowed []Change `json:"newlyAllowed"`
	Coverage     Coverage `json:"coverage"`
	// Drifted counts pairs whose observed verdict differs from what today's
	// policies decide: policies changed during the window.
	Drifted int `json:"drifted,omitempty"`
	// Breaks is true when an observed, allowed connection would be denied.
	Breaks bool `json:"breaks"`
}

// Input is what Run judges.
type Input struct {
	Current, Proposed *policy.Engine
	History           *history.Set
	// Since is the window's start (zero: all history).
	Since time.Time
	// Namespaces limits the answer to connections from or to these (empty: all).
	Namespaces []string
}

// pairKey groups records: the two ends, the protocol and the port.
type pairKey struct {
	src, dst string
	proto    flowv1.Protocol
	port     uint32
}

type pair struct {
	key     *flowv1.Flow // one of the pair's keys: the ends to judge
	nodes   history.NodeCounts[nodeCount]
	last    int64
	service string
}

// nodeCount is one judging node's connections of a pair.
type nodeCount struct {
	all, allowed, denied uint64
}

// Run judges every pair in the history under both policy states.
func Run(in Input) (*Report, error) {
	r := &Report{Coverage: coverage(in), NewlyDenied: []Change{}, NewlyAllowed: []Change{}}
	nodes := map[string]bool{}
	for _, n := range r.Coverage.Nodes {
		nodes[n] = true
	}
	pairs := map[pairKey]*pair{}
	keyOf := map[*flowv1.Flow]pairKey{} // records of one stream share their key's Flow
	since := in.Since.UnixNano()
	for i := range in.History.Records {
		rec := &in.History.Records[i]
		if !in.Since.IsZero() && rec.Start.Add(rec.Width).UnixNano() <= since {
			continue
		}
		k := rec.Key
		if len(in.Namespaces) > 0 && !slices.Contains(in.Namespaces, k.GetSource().GetNamespace()) &&
			!slices.Contains(in.Namespaces, k.GetDestination().GetNamespace()) {
			continue
		}
		if rec.Connections == 0 {
			continue // an end without its start: counted where the start is
		}
		r.Coverage.Records++
		pk, ok := keyOf[k]
		if !ok {
			pk = pairKey{history.EndKey(k.GetSource(), k.GetIp().GetSource()), history.EndKey(k.GetDestination(), k.GetIp().GetDestination()),
				k.GetL4().GetProtocol(), k.GetL4().GetDestinationPort()}
			keyOf[k] = pk
		}
		p := pairs[pk]
		if p == nil {
			p = &pair{key: k}
			pairs[pk] = p
		}
		node := k.GetNode()
		if !nodes[node] {
			nodes[node] = true
			r.Coverage.Nodes = append(r.Coverage.Nodes, node)
		}
		nc := p.nodes.Of(node)
		nc.all += rec.Connections
		if flow.Dropped(k) {
			nc.denied += rec.Connections
		} else {
			nc.allowed += rec.Connections
		}
		p.last = max(p.last, rec.Last)
		if s := k.GetService(); s != nil && s.GetName() != "" {
			p.service = s.GetNamespace() + "/" + s.GetName()
		}
	}
	r.Coverage.Pairs = len(pairs)
	slices.Sort(r.Coverage.Nodes)
	j := judge{pods: map[string]*corev1.Pod{}}
	for _, p := range pairs {
		t, err := j.traffic(p.key, in.Current)
		if err != nil {
			r.Coverage.Errors = append(r.Coverage.Errors, err.Error())
			continue
		}
		now := in.Current.Allowed(t)
		next := in.Proposed.Allowed(t)
		observedAllowed := p.nodes.Max(func(n *nodeCount) uint64 { return n.allowed })
		observedDenied := p.nodes.Max(func(n *nodeCount) uint64 { return n.denied })
		if (now && observedAllowed == 0) || (!now && observedDenied == 0) {
			r.Drifted++
		}
		if now == next {
			continue
		}
		c := Change{Source: history.EndName(p.key.GetSource(), p.key.GetIp().GetSource()),
			Destination: history.EndName(p.key.GetDestination(), p.key.GetIp().GetDestination()),
			Service:     p.service, Protocol: protocolName(p.key.GetL4().GetProtocol()), Port: p.key.GetL4().GetDestinationPort(),
			Connections: p.nodes.Max(func(n *nodeCount) uint64 { return n.all }), ObservedAllowed: observedAllowed, ObservedDenied: observedDenied,
			LastSeen: time.Unix(0, p.last).UTC()}
		c.Nodes = append(c.Nodes, p.nodes.Nodes()...)
		slices.Sort(c.Nodes)
		explain(&c, in.Proposed.Evaluate(t))
		if now {
			r.NewlyDenied = append(r.NewlyDenied, c)
			if observedAllowed > 0 {
				r.Breaks = true
			}
		} else {
			r.NewlyAllowed = append(r.NewlyAllowed, c)
		}
	}
	for _, cs := range [][]Change{r.NewlyDenied, r.NewlyAllowed} {
		slices.SortFunc(cs, func(a, b Change) int {
			if a.Connections != b.Connections {
				return cmp.Compare(b.Connections, a.Connections)
			}
			return strings.Compare(a.Source+" "+a.Destination+fmt.Sprint(a.Port), b.Source+" "+b.Destination+fmt.Sprint(b.Port))
		})
	}
	return r, nil
}

// explain fills the proposal's deciding side and policies.
func explain(c *Change, d policy.Decision) {
	sides := []policy.DirectionDecision{d.Egress, d.Ingress}
	if d.Allowed {
		var why []string
		for _, s := range sides {
			if s.ClusterRule != nil {
				c.DecidedBy = append(c.DecidedBy, clusterRuleName(s.ClusterRule.Rule))
			}
			for _, m := range s.AllowedBy {
				c.DecidedBy = append(c.DecidedBy, ruleName(m.Rule))
			}
			if s.Isolated {
				why = append(why, strings.ToLower(string(s.Direction)))
			}
		}
		c.Direction = strings.Join(why, "+")
		c.Why = "allowed by " + strings.Join(c.DecidedBy, ", ")
		if len(c.DecidedBy) == 0 {
			c.Why = "no policy isolates either end any more"
		}
		return
	}
	for _, s := range sides {
		if s.Allowed {
			continue
		}
		c.Direction = strings.ToLower(string(s.Direction))
		if s.ClusterRule != nil {
			// A ClusterNetworkPolicy's Deny decided, whatever isolates.
			c.DecidedBy = append(c.DecidedBy, clusterRuleName(s.ClusterRule.Rule))
			c.Why = s.Summary
			return
		}
		for _, p := range s.IsolatedBy {
			c.DecidedBy = append(c.DecidedBy, p.Namespace+"/"+p.Name)
		}
		who := "the destination's ingress"
		if s.Direction == policy.Egress {
			who = "the source's egress"
		}
		c.Why = fmt.Sprintf("%s is isolated by %s and no rule allows %s/%d", who, strings.Join(c.DecidedBy, ", "), c.Protocol, c.Port)
		return
	}
}

// clusterRuleName is "clusternetworkpolicy/NAME ingress[0]".
func clusterRuleName(r policy.ClusterRuleRef) string {
	return fmt.Sprintf("clusternetworkpolicy/%s %s[%d]", r.Policy.Name, strings.ToLower(string(r.Direction)), r.Index)
}

func ruleName(r policy.RuleRef) string {
	return fmt.Sprintf("%s/%s %s[%d]", r.Policy.Namespace, r.Policy.Name, strings.ToLower(string(r.Direction)), r.Index)
}

func protocolName(p flowv1.Protocol) string {
	return strings.TrimPrefix(p.String(), "PROTOCOL_")
}

// judge turns history keys into the engine's Traffic.
type judge struct {
	pods map[string]*corev1.Pod // synthesized per end
}

func (j *judge) traffic(k *flowv1.Flow, e *policy.Engine) (policy.Traffic, error) {
	t := policy.Traffic{Port: int32(k.GetL4().GetDestinationPort())}
	switch k.GetL4().GetProtocol() {
	case flowv1.Protocol_PROTOCOL_TCP:
		t.Protocol = corev1.ProtocolTCP
	case flowv1.Protocol_PROTOCOL_UDP:
		t.Protocol = corev1.ProtocolUDP
	case flowv1.Protocol_PROTOCOL_SCTP:
		t.Protocol = corev1.ProtocolSCTP
	default:
		return t, fmt.Errorf("%s -> %s over %s: NetworkPolicy judges TCP, UDP and SCTP only; not judged",
			history.EndName(k.GetSource(), k.GetIp().GetSource()), history.EndName(k.GetDestination(), k.GetIp().GetDestination()), protocolName(k.GetL4().GetProtocol()))
	}
	var err error
	if t.Src, err = j.peer(k.GetSource(), k.GetIp().GetSource(), e); err != nil {
		return t, err
	}
	t.Dst, err = j.peer(k.GetDestination(), k.GetIp().GetDestination(), e)
	return t, err
}

// peer is the engine's view of one end: for a workload, a pod with the
// recorded labels (the spec of one of its current pods when there is one,
// for named ports); else the address.
func (j *judge) peer(ep *flowv1.Endpoint, ip string, e *policy.Engine) (policy.Peer, error) {
	addr, _ := netip.ParseAddr(ip)
	if ep.GetNamespace() == "" {
		if !addr.IsValid() {
			return policy.Peer{}, fmt.Errorf("an end of a recorded connection has neither a pod nor an address (%v): not judged", ep)
		}
		return policy.Peer{IP: addr}, nil
	}
	if ep.GetPod() != "" {
		// A pod the cluster still has is judged as it is (its address, ports).
		if live := e.Pod(ep.GetNamespace(), ep.GetPod()); live != nil {
			return policy.Peer{Pod: live, IP: addr}, nil
		}
	}
	key := history.EndKey(ep, "")
	p := j.pods[key]
	if p == nil {
		p = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ep.GetNamespace(), Name: history.EndName(ep, ip),
			Labels: ep.GetLabels(), UID: types.UID("history:" + key)}}
		p.Name = strings.ReplaceAll(strings.TrimPrefix(p.Name, ep.GetNamespace()+"/"), "/", "-")
		p.Spec.HostNetwork = ep.GetHostNetwork()
		if live := current(e, ep); live != nil {
			p.Spec = *live.Spec.DeepCopy()
		}
		j.pods[key] = p
	}
	return policy.Peer{Pod: p, IP: addr}, nil
}

// current is a pod of the end's workload (or the pod itself) in the engine's
// snapshot, or nil.
func current(e *policy.Engine, ep *flowv1.Endpoint) *corev1.Pod {
	if ep.GetWorkload() == nil {
		return e.Pod(ep.GetNamespace(), ep.GetPod())
	}
	for _, p := range e.PodsInNamespace(ep.GetNamespace()) {
		if kind, name := history.Workload(p); kind == ep.GetWorkload().GetKind() && name == ep.GetWorkload().GetName() {
			return p
		}
	}
	return nil
}

func coverage(in Input) Coverage {
	c := Coverage{Since: in.Since, Unreachable: in.History.Unreachable, Nodes: []string{}}
	for _, cov := range in.History.Coverage {
		if cov.GetNode() != history.CaptureNode {
			c.Nodes = append(c.Nodes, cov.GetNode())
		}
		if o := cov.GetOldest(); o != nil && (c.Oldest.IsZero() || o.AsTime().Before(c.Oldest)) {
			c.Oldest = o.AsTime()
		}
		if n := cov.GetNewest(); n != nil && n.AsTime().After(c.Newest) {
			c.Newest = n.AsTime()
		}
		c.DroppedRecords += cov.GetDroppedRecords()
		c.DroppedConnections += cov.GetDroppedConnections()
		for _, g := range cov.GetGaps() {
			if !in.Since.IsZero() && g.GetEnd().AsTime().Before(in.Since) {
				continue
			}
			c.Gaps = append(c.Gaps, fmt.Sprintf("%s: %s to %s (%s)", cov.GetNode(), g.GetStart().AsTime().UTC().Format(time.RFC3339),
				g.GetEnd().AsTime().UTC().Format(time.RFC3339), g.GetEnd().AsTime().Sub(g.GetStart().AsTime()).Round(time.Second)))
		}
		if e := cov.GetError(); e != "" {
			c.Errors = append(c.Errors, cov.GetNode()+": "+e)
		}
	}
	slices.Sort(c.Nodes)
	return c
}

// Annotator re-judges live flows under proposed policies (watch --whatif).
// Not safe for concurrent use.
type Annotator struct {
	Proposed *policy.Engine
	j        judge
}

// NewAnnotator returns an annotator judging with proposed.
func NewAnnotator(proposed *policy.Engine) *Annotator {
	return &Annotator{Proposed: proposed, j: judge{pods: map[string]*corev1.Pod{}}}
}

// Annotate sets f.Whatif for a new connection or a drop between ends the
// engine can judge (TCP, UDP, SCTP); replies, established packets and flow
// ends are left alone. It reports whether the verdict would change.
func (a *Annotator) Annotate(f *flowv1.Flow) bool {
	switch f.GetType() {
	case flowv1.EventType_EVENT_TYPE_NEW, flowv1.EventType_EVENT_TYPE_DROP:
	default:
		return false
	}
	if f.GetIsReply() || f.GetReason() == flowv1.Reason_REASON_ESTABLISHED {
		return false
	}
	t, err := a.j.traffic(f, a.Proposed)
	if err != nil {
		return false
	}
	d := a.Proposed.Evaluate(t)
	w := &flowv1.WhatIf{Verdict: flowv1.Verdict_VERDICT_ALLOWED}
	if !d.Allowed {
		w.Verdict = flowv1.Verdict_VERDICT_DENIED
	}
	w.Changed = w.Verdict != flow.Enforced(f) // an AUDIT flow: what was enforced
	for _, s := range []policy.DirectionDecision{d.Egress, d.Ingress} {
		if s.ClusterRule != nil && (d.Allowed || !s.Allowed) {
			w.DecidedBy = append(w.DecidedBy, flow.ClusterRuleRefOf(s.ClusterRule.Rule))
			if !d.Allowed {
				continue
			}
		}
		if d.Allowed {
			for _, m := range s.AllowedBy {
				w.DecidedBy = append(w.DecidedBy, flow.PolicyRefOf(m.Rule.Policy, s.Direction, m.Rule.Index))
			}
		} else if !s.Allowed {
			for _, p := range s.IsolatedBy {
				w.DecidedBy = append(w.DecidedBy, flow.PolicyRefOf(p, s.Direction, -1))
			}
		}
	}
	f.Whatif = w
	return w.Changed
}
