// Package stats keeps the TUI's counters: allowed/denied flows per time step
// over each chart Range (1 m by the second, 5 m by 5 s, 1 h by the minute),
// overall and per namespace, pod, pod pair, namespace pair, workload pair and
// policy (and policy rule). Time is the flows' own time, not the wall clock,
// so a replayed capture shows the rates it was captured with.
//
// Memory is bounded: a key with nothing in the longest range is pruned when
// time moves on, and every keyed counter holds at most MaxKeys keys (past
// that the key idle longest is dropped), so a cluster where pods come and go
// at any rate costs at most MaxKeys series per counter.
//
// Ranges longer than Horizon (LongRanges: 24 h, 7 d) are not kept here:
// they come from a flow history store, which a chart reads through the same
// Range and Count types (History).
package stats

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/internal/flowmap"
)

// Window is the seconds the "last minute" sums (the matrix, the top panel) cover.
const Window = 60

// Points is how many steps every Range keeps.
const Points = 60

// Range is a span a chart shows: Points steps of Step each.
type Range struct {
	Name string
	Step time.Duration
}

// Span is the time the range covers.
func (r Range) Span() time.Duration { return r.Step * Points }

// Ranges are the spans kept live, shortest first; Ranges[0] is the 1-minute window.
var Ranges = [numRanges]Range{{"1m", time.Second}, {"5m", 5 * time.Second}, {"1h", time.Minute}}

const numRanges = 3

// Horizon is how far back the live counters reach (the longest Range).
var Horizon = int64(Ranges[numRanges-1].Span() / time.Second)

// LongRanges are the spans past Horizon a chart reads from a flow history
// store (History), at the same Points steps.
var LongRanges = []Range{{"24h", 24 * time.Minute}, {"7d", 7 * 24 * time.Hour / Points}}

// Scope is what a chart counts: Name labels it ("cluster", "namespace
// shop") and tells scopes apart; Match selects the flows (nil: all).
type Scope struct {
	Name  string
	Match func(*flowv1.Flow) bool
}

// History serves the LongRanges from a store of past flows (the agents'
// connection history). It may block on I/O: a chart calls it from a
// command, never while drawing.
type History interface {
	// Buckets returns Points counts of r's steps, oldest first, the last
	// one holding end, of the flows s selects.
	Buckets(s Scope, r Range, end time.Time) ([]Count, error)
}

// MaxKeys bounds every keyed counter.
const MaxKeys = 20000

// Count is allowed and denied flows.
type Count struct{ Allowed, Denied uint64 }

// Total is Allowed+Denied.
func (c Count) Total() uint64 { return c.Allowed + c.Denied }

// Add adds o to c.
func (c *Count) Add(o Count) { c.Allowed += o.Allowed; c.Denied += o.Denied }

// ring counts Points steps; head is the newest step's index (time/step).
// Steps between head and a newer flow are cleared as it arrives, so a slot
// needs no tag: 8 bytes a step.
type ring struct {
	slots [Points][2]uint32 // allowed, denied
	head  int64
}

func (r *ring) add(step int64, denied bool, n uint32) {
	switch {
	case step > r.head:
		for s := max(r.head+1, step-Points+1); s <= step; s++ {
			r.slots[s%Points] = [2]uint32{}
		}
		r.head = step
	case step <= r.head-Points:
		return // older than the ring
	}
	i := 0
	if denied {
		i = 1
	}
	r.slots[step%Points][i] += n
}

func (r *ring) at(step int64) Count {
	if step > r.head || step <= r.head-Points || step < 0 {
		return Count{}
	}
	sl := r.slots[step%Points]
	return Count{Allowed: uint64(sl[0]), Denied: uint64(sl[1])}
}

// Series is one scope's counts over every Range.
type Series struct {
	rings [numRanges]ring
	last  int64 // newest second added
}

func (s *Series) add(sec int64, denied bool, n uint32) {
	for i, r := range Ranges {
		s.rings[i].add(sec/int64(r.Step/time.Second), denied, n)
	}
	s.last = max(s.last, sec)
}

// At returns the count of second sec (zero when outside the last minute).
func (s *Series) At(sec int64) Count {
	if s == nil {
		return Count{}
	}
	return s.rings[0].at(sec)
}

// Sum is the total over the Window seconds ending at now.
func (s *Series) Sum(now int64) Count {
	var c Count
	for sec := now - Window + 1; sec <= now; sec++ {
		c.Add(s.At(sec))
	}
	return c
}

// Last returns the counts of the n seconds ending at now, oldest first.
func (s *Series) Last(now int64, n int) []Count {
	out := make([]Count, n)
	for i := range n {
		out[i] = s.At(now - int64(n-1-i))
	}
	return out
}

// Buckets returns the Points steps of Ranges[r] ending with the step that
// holds now, oldest first (zeros for a nil series).
func (s *Series) Buckets(r int, now int64) []Count {
	out := make([]Count, Points)
	if s == nil {
		return out
	}
	end := now / int64(Ranges[r].Step/time.Second)
	for i := range out {
		out[i] = s.rings[r].at(end - int64(Points-1-i))
	}
	return out
}

// keyed is one counter per key, bounded by MaxKeys. Pairs and rules are
// keyed by structs of the strings the flow already has, so counting a flow
// builds no key strings.
type keyed[K comparable] map[K]*Series

func (k keyed[K]) add(key K, sec int64, denied bool, n uint32) {
	s := k[key]
	if s == nil {
		if len(k) >= MaxKeys {
			k.evictIdlest()
		}
		s = &Series{}
		k[key] = s
	}
	s.add(sec, denied, n)
}

// evictIdlest drops the tenth of the keys idle longest (amortised: one
// sort per MaxKeys/10 new keys).
func (k keyed[K]) evictIdlest() {
	type kl struct {
		key  K
		last int64
	}
	all := make([]kl, 0, len(k))
	for key, s := range k {
		all = append(all, kl{key, s.last})
	}
	slices.SortFunc(all, func(a, b kl) int { return cmp.Compare(a.last, b.last) })
	for _, e := range all[:max(len(all)/10, 1)] {
		delete(k, e.key)
	}
}

func (k keyed[K]) prune(now int64) {
	for key, s := range k {
		if s.last <= now-Horizon {
			delete(k, key)
		}
	}
}

// sums returns every key's count over the last Window seconds (non-zero only).
func (k keyed[K]) sums(now int64) map[K]Count {
	out := make(map[K]Count, len(k))
	for key, s := range k {
		if s.last <= now-Window {
			continue
		}
		if c := s.Sum(now); c.Total() > 0 {
			out[key] = c
		}
	}
	return out
}

// Pair is a source and a destination (endpoints, namespaces or workloads).
type Pair struct{ Src, Dst string }

// Rule is a policy rule that decided flows: its policy ("ns/name") and the
// rule as flow.PolicyRefString words it.
type Rule struct{ Policy, Name string }

// ruleRef is what identifies a PolicyRef, to find its Rule without
// formatting it for every flow.
type ruleRef struct {
	kind, ns, name string
	dir            flowv1.TrafficDirection
	index          int64 // -1: no rule (isolation)
}

// Stats holds every counter the TUI draws.
type Stats struct {
	Overall Series
	ns      keyed[string] // flows with either end in the namespace
	pod     keyed[string] // "ns/pod" or an IP: flows with either end there
	pair    keyed[Pair]   // endpoints
	nsPair  keyed[Pair]   // namespaces
	wlPair  keyed[Pair]   // workloads
	wlAudit keyed[Pair]   // workloads: flows audited policies would decide otherwise (AUDIT)
	policy  keyed[string] // "ns/name": flows the policy decided
	rule    keyed[Rule]   // flows the rule (or isolation) decided
	// rules names the policy references seen (bounded with rule).
	rules map[ruleRef]Rule
	// lastFlow is the newest flow of each workload pair (the map explains an
	// edge with it); its keys follow wlPair's.
	lastFlow map[Pair]*flowv1.Flow
	now      int64
	pruned   int64
	Lost     uint64
	// WhatIfJudged and WhatIfChanged count flows re-judged under proposed
	// policies (watch --whatif) and those whose verdict would change.
	WhatIfJudged, WhatIfChanged uint64
}

// New returns empty counters.
func New() *Stats {
	return &Stats{ns: keyed[string]{}, pod: keyed[string]{}, pair: keyed[Pair]{}, nsPair: keyed[Pair]{},
		wlPair: keyed[Pair]{}, wlAudit: keyed[Pair]{}, policy: keyed[string]{}, rule: keyed[Rule]{},
		rules: map[ruleRef]Rule{}, lastFlow: map[Pair]*flowv1.Flow{}}
}

// Outside and Nodes are the namespaces shown for addresses outside the
// cluster and for the cluster's nodes.
const (
	Outside = flowmap.Outside
	Nodes   = flowmap.Nodes
)

// EndpointKey names an endpoint for the per-pod counters: "ns/pod",
// "node/NAME" or its IP.
func EndpointKey(ep *flowv1.Endpoint, ip string) string { return flow.EndpointName(ep, ip) }

// WorkloadKey names an endpoint's workload (flowmap.WorkloadKey).
func WorkloadKey(ep *flowv1.Endpoint, ip string) string { return flowmap.WorkloadKey(ep, ip) }

// NamespaceOf is the endpoint's namespace, Nodes, or Outside.
func NamespaceOf(ep *flowv1.Endpoint) string { return flowmap.NamespaceOf(ep) }

// PolicyKey names a policy for the per-policy counters as the policy
// filter takes it: "ns/name", or "cnp/name" for a ClusterNetworkPolicy (a
// name alone for a reference without kind or namespace).
func PolicyKey(r *flowv1.PolicyRef) string {
	if r.GetKind() == flow.KindClusterNetworkPolicy {
		return flow.ClusterPolicyPrefix + r.GetName()
	}
	if r.GetNamespace() == "" {
		return r.GetName()
	}
	return r.GetNamespace() + "/" + r.GetName()
}

// Deciders are the policy references that decided f: the allowing rules of
// an allowed flow, the denying rules or isolating policies of a drop; both
// observation points' for a flow seen at two nodes.
func Deciders(f *flowv1.Flow) []*flowv1.PolicyRef {
	var refs []*flowv1.PolicyRef
	collect := func(allowed, denied, isolated []*flowv1.PolicyRef) {
		if flow.Dropped(f) {
			refs = append(refs, denied...)
			refs = append(refs, isolated...)
		} else {
			refs = append(refs, allowed...)
		}
	}
	if obs := f.GetObservations(); len(obs) > 0 {
		for _, o := range obs {
			collect(o.GetAllowedBy(), o.GetDeniedBy(), o.GetIsolatedBy())
		}
		return refs
	}
	collect(f.GetAllowedBy(), f.GetDeniedBy(), f.GetIsolatedBy())
	return refs
}

// Add counts one flow. Flow-end summaries are not counted: their connection
// was counted when it started.
func (s *Stats) Add(f *flowv1.Flow) {
	if f.GetType() == flowv1.EventType_EVENT_TYPE_END {
		return
	}
	if w := f.GetWhatif(); w != nil {
		s.WhatIfJudged += flow.Connections(f)
		if w.GetChanged() {
			s.WhatIfChanged += flow.Connections(f)
		}
	}
	sec := f.GetTime().GetSeconds()
	if sec > s.now {
		s.now = sec
	}
	if sec <= s.now-Horizon {
		return // too old for every range
	}
	// An AUDIT flow counts as what was enforced: the chart shows what
	// happened to the packets.
	denied := flow.Dropped(f)
	// A kernel aggregate stands for its connections (flow.Connections).
	n := uint32(min(flow.Connections(f), math.MaxUint32))
	s.Overall.add(sec, denied, n)
	srcNS, dstNS := NamespaceOf(f.GetSource()), NamespaceOf(f.GetDestination())
	s.ns.add(srcNS, sec, denied, n)
	if dstNS != srcNS {
		s.ns.add(dstNS, sec, denied, n)
	}
	sip, dip := f.GetIp().GetSource(), f.GetIp().GetDestination()
	src, dst := EndpointKey(f.GetSource(), sip), EndpointKey(f.GetDestination(), dip)
	s.pod.add(src, sec, denied, n)
	if dst != src {
		s.pod.add(dst, sec, denied, n)
	}
	s.pair.add(Pair{src, dst}, sec, denied, n)
	s.nsPair.add(Pair{srcNS, dstNS}, sec, denied, n)
	wl := Pair{WorkloadKey(f.GetSource(), sip), WorkloadKey(f.GetDestination(), dip)}
	s.wlPair.add(wl, sec, denied, n)
	if f.GetVerdict() == flowv1.Verdict_VERDICT_AUDIT {
		s.wlAudit.add(wl, sec, denied, n)
	}
	s.lastFlow[wl] = f
	var seen [4]string // the policies counted for this flow (a flow names one or two)
	counted := 0
	for _, r := range Deciders(f) {
		rule := s.ruleOf(r)
		if !slices.Contains(seen[:counted], rule.Policy) {
			s.policy.add(rule.Policy, sec, denied, n)
			if counted < len(seen) {
				seen[counted] = rule.Policy
				counted++
			}
		}
		s.rule.add(rule, sec, denied, n)
	}
	if s.now-s.pruned >= 5 {
		s.pruned = s.now
		for _, k := range []keyed[string]{s.ns, s.pod, s.policy} {
			k.prune(s.now)
		}
		for _, k := range []keyed[Pair]{s.pair, s.nsPair, s.wlPair, s.wlAudit} {
			k.prune(s.now)
		}
		s.rule.prune(s.now)
		if len(s.rules) > MaxKeys {
			clear(s.rules) // names only: rebuilt as flows come
		}
		for k := range s.lastFlow {
			if s.wlPair[k] == nil {
				delete(s.lastFlow, k)
			}
		}
	}
}

// Now is the newest second seen (Unix seconds).
func (s *Stats) Now() int64 { return s.now }

// NowTime is Now as a time.
func (s *Stats) NowTime() time.Time { return time.Unix(s.now, 0) }

// Namespace, Pod, Pair, NSPair, WorkloadPair and Policy return the series
// for one scope (nil: none in the horizon).
func (s *Stats) Namespace(ns string) *Series          { return s.ns[ns] }
func (s *Stats) Pod(key string) *Series               { return s.pod[key] }
func (s *Stats) Pair(src, dst string) *Series         { return s.pair[Pair{src, dst}] }
func (s *Stats) NSPair(src, dst string) *Series       { return s.nsPair[Pair{src, dst}] }
func (s *Stats) WorkloadPair(src, dst string) *Series { return s.wlPair[Pair{src, dst}] }
func (s *Stats) Policy(key string) *Series            { return s.policy[key] }

// Namespaces lists the namespaces with flows in the window.
func (s *Stats) Namespaces() []string {
	out := make([]string, 0, len(s.ns))
	for k := range s.ns.sums(s.now) {
		out = append(out, k)
	}
	return out
}

// NSPairs returns the counts of every namespace pair with flows in the window.
func (s *Stats) NSPairs() map[Pair]Count { return s.nsPair.sums(s.now) }

// WorkloadPairs returns the counts of every workload pair with flows in the window.
func (s *Stats) WorkloadPairs() map[Pair]Count { return s.wlPair.sums(s.now) }

// Policies returns the count of every policy that decided flows in the window.
func (s *Stats) Policies() map[string]Count { return s.policy.sums(s.now) }

// Rules returns the count of every policy rule that decided flows in the window.
func (s *Stats) Rules() map[Rule]Count { return s.rule.sums(s.now) }

// LastFlow is the newest flow between two workloads (nil: none in the horizon).
func (s *Stats) LastFlow(src, dst string) *flowv1.Flow { return s.lastFlow[Pair{src, dst}] }

// ruleOf names r, formatting it once per distinct reference.
func (s *Stats) ruleOf(r *flowv1.PolicyRef) Rule {
	k := ruleRef{kind: r.GetKind(), ns: r.GetNamespace(), name: r.GetName(), dir: r.GetDirection(), index: -1}
	if r.RuleIndex != nil {
		k.index = int64(r.GetRuleIndex())
	}
	rule, ok := s.rules[k]
	if !ok {
		rule = Rule{Policy: PolicyKey(r), Name: flow.PolicyRefString(r)}
		s.rules[k] = rule
	}
	return rule
}

// Keys reports how many keys the counters hold (for tests of the bound).
func (s *Stats) Keys() int {
	return len(s.ns) + len(s.pod) + len(s.policy) + len(s.pair) + len(s.nsPair) + len(s.wlPair) + len(s.wlAudit) + len(s.rule)
}

// Rate is flows per second over the last complete second.
func (s *Stats) Rate() uint64 { return s.Overall.At(s.now - 1).Total() }

// Map returns the workload map of the last Window seconds, each edge with
// its newest flow.
func (s *Stats) Map() *flowmap.Graph {
	g := flowmap.New()
	audits := s.wlAudit.sums(s.now)
	for k, c := range s.wlPair.sums(s.now) {
		f := s.lastFlow[k]
		g.AddEdge(k.Src, k.Dst, NamespaceOf(f.GetSource()), NamespaceOf(f.GetDestination()),
			flowmap.Count{Allowed: c.Allowed, Denied: c.Denied, Audit: audits[k].Total()}, f)
	}
	return g
}
