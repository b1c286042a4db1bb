// Package stats keeps the TUI's windowed counters: allowed/denied flows per
// second over the last Window seconds, overall and per namespace, pod, pod
// pair and namespace pair. Time is the flows' own time, not the wall clock,
// so a replayed capture shows the rates it was captured with. Memory is
// bounded: a key with nothing in the window is pruned when time moves on.
package stats

import (
	"strings"
	"time"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// Window is how many seconds the counters cover.
const Window = 60

// Count is allowed and denied flows.
type Count struct{ Allowed, Denied uint64 }

// Total is Allowed+Denied.
func (c Count) Total() uint64 { return c.Allowed + c.Denied }

// Series is a per-second ring of counts over Window seconds: 12 bytes a
// second, since there is one per active pod and pod pair.
type Series struct {
	slots [Window]slot
	last  int64 // newest second added
}

type slot struct {
	sec             uint32 // the Unix second the slot holds (until 2106)
	allowed, denied uint32
}

func (s *Series) add(sec int64, f *flowv1.Flow) {
	sl := &s.slots[sec%Window]
	if sl.sec != uint32(sec) {
		*sl = slot{sec: uint32(sec)}
	}
	if f.GetVerdict() == flowv1.Verdict_VERDICT_DENIED {
		sl.denied++
	} else {
		sl.allowed++
	}
	if sec > s.last {
		s.last = sec
	}
}

// At returns the count of second sec (zero when outside the ring).
func (s *Series) At(sec int64) Count {
	if s == nil || sec < 0 {
		return Count{}
	}
	sl := s.slots[sec%Window]
	if sl.sec != uint32(sec) {
		return Count{}
	}
	return Count{Allowed: uint64(sl.allowed), Denied: uint64(sl.denied)}
}

// Sum is the total over the Window seconds ending at now.
func (s *Series) Sum(now int64) Count {
	var c Count
	if s == nil {
		return c
	}
	for _, sl := range s.slots {
		if sec := int64(sl.sec); sec > now-Window && sec <= now {
			c.Allowed += uint64(sl.allowed)
			c.Denied += uint64(sl.denied)
		}
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

// Keyed counters.
type keyed map[string]*Series

func (k keyed) add(key string, sec int64, f *flowv1.Flow) {
	s := k[key]
	if s == nil {
		s = &Series{}
		k[key] = s
	}
	s.add(sec, f)
}

func (k keyed) prune(now int64) {
	for key, s := range k {
		if s.last <= now-Window {
			delete(k, key)
		}
	}
}

// Stats holds every counter the TUI draws.
type Stats struct {
	Overall Series
	ns      keyed // "ns": flows with either end in ns
	pod     keyed // "ns/pod" or an IP: flows with either end there
	pair    keyed // "src|dst" endpoints
	nsPair  keyed // "srcns|dstns"
	now     int64
	pruned  int64
	Lost    uint64
	// WhatIfJudged and WhatIfChanged count flows re-judged under proposed
	// policies (watch --whatif) and those whose verdict would change.
	WhatIfJudged, WhatIfChanged uint64
}

// New returns empty counters.
func New() *Stats {
	return &Stats{ns: keyed{}, pod: keyed{}, pair: keyed{}, nsPair: keyed{}}
}

// Outside is the namespace shown for an address outside the cluster, and
// Nodes the one for the cluster's nodes (their addresses, hostNetwork pods).
const (
	Outside = "(world)"
	Nodes   = "(nodes)"
)

// EndpointKey names an endpoint for the per-pod counters: "ns/pod",
// "node/NAME" or its IP.
func EndpointKey(ep *flowv1.Endpoint, ip string) string { return flow.EndpointName(ep, ip) }

// NamespaceOf is the endpoint's namespace, Nodes, or Outside.
func NamespaceOf(ep *flowv1.Endpoint) string {
	switch {
	case ep.GetNamespace() != "":
		return ep.GetNamespace()
	case ep.GetNodeName() != "":
		return Nodes
	}
	return Outside
}

// PairKey names a source/destination pair.
func PairKey(src, dst string) string { return src + "|" + dst }

// Add counts one flow. Flow-end summaries are not counted: their connection
// was counted when it started.
func (s *Stats) Add(f *flowv1.Flow) {
	if f.GetType() == flowv1.EventType_EVENT_TYPE_END {
		return
	}
	if w := f.GetWhatif(); w != nil {
		s.WhatIfJudged++
		if w.GetChanged() {
			s.WhatIfChanged++
		}
	}
	sec := f.GetTime().GetSeconds()
	if sec > s.now {
		s.now = sec
	}
	if sec <= s.now-Window {
		return // too old for the window
	}
	s.Overall.add(sec, f)
	srcNS, dstNS := NamespaceOf(f.GetSource()), NamespaceOf(f.GetDestination())
	s.ns.add(srcNS, sec, f)
	if dstNS != srcNS {
		s.ns.add(dstNS, sec, f)
	}
	src := EndpointKey(f.GetSource(), f.GetIp().GetSource())
	dst := EndpointKey(f.GetDestination(), f.GetIp().GetDestination())
	s.pod.add(src, sec, f)
	if dst != src {
		s.pod.add(dst, sec, f)
	}
	s.pair.add(PairKey(src, dst), sec, f)
	s.nsPair.add(PairKey(srcNS, dstNS), sec, f)
	if s.now-s.pruned >= 5 {
		s.pruned = s.now
		for _, k := range []keyed{s.ns, s.pod, s.pair, s.nsPair} {
			k.prune(s.now)
		}
	}
}

// Now is the newest second seen (Unix seconds).
func (s *Stats) Now() int64 { return s.now }

// NowTime is Now as a time.
func (s *Stats) NowTime() time.Time { return time.Unix(s.now, 0) }

// Namespace, Pod and Pair return the series for one scope (nil: none in the window).
func (s *Stats) Namespace(ns string) *Series    { return s.ns[ns] }
func (s *Stats) Pod(key string) *Series         { return s.pod[key] }
func (s *Stats) Pair(src, dst string) *Series   { return s.pair[PairKey(src, dst)] }
func (s *Stats) NSPair(src, dst string) *Series { return s.nsPair[PairKey(src, dst)] }

// Namespaces lists the namespaces with flows in the window.
func (s *Stats) Namespaces() []string {
	out := make([]string, 0, len(s.ns))
	for k, v := range s.ns {
		if v.Sum(s.now).Total() > 0 {
			out = append(out, k)
		}
	}
	return out
}

// NSPairs returns the counts of every namespace pair with flows in the window.
func (s *Stats) NSPairs() map[[2]string]Count {
	out := make(map[[2]string]Count, len(s.nsPair))
	for k, v := range s.nsPair {
		if c := v.Sum(s.now); c.Total() > 0 {
			src, dst, _ := strings.Cut(k, "|")
			out[[2]string{src, dst}] = c
		}
	}
	return out
}

// Keys reports how many keys each counter holds (for tests of the bound).
func (s *Stats) Keys() int { return len(s.ns) + len(s.pod) + len(s.pair) + len(s.nsPair) }

// Rate is flows per second over the last complete second.
func (s *Stats) Rate() uint64 { return s.Overall.At(s.now - 1).Total() }
