// Package flowmap is the workload map: workloads, grouped by namespace, as
// nodes and the connections observed between them as edges with their
// allowed and denied counts. The TUI's map view builds one from its
// last-minute counters; `watch --map -o dot|svg|png` from every flow of a
// capture or a live stream.
package flowmap

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// Outside is the namespace of an address outside the cluster, and Nodes the
// one of the cluster's nodes (their addresses, hostNetwork pods).
const (
	Outside = "(world)"
	Nodes   = "(nodes)"
)

// WorkloadKey names an endpoint's workload: "ns/name" of its Deployment,
// StatefulSet… (a bare pod is its own workload), "node/NAME", or its IP.
func WorkloadKey(ep *flowv1.Endpoint, ip string) string {
	if w := ep.GetWorkload().GetName(); w != "" && ep.GetPod() != "" {
		return ep.GetNamespace() + "/" + w
	}
	return flow.EndpointName(ep, ip)
}

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

// Count is allowed and denied connections (as enforced), and how many of
// them audited policies would decide otherwise (verdict AUDIT).
type Count struct{ Allowed, Denied, Audit uint64 }

// Total is Allowed+Denied.
func (c Count) Total() uint64 { return c.Allowed + c.Denied }

// Verdict names what the edge saw: ALLOWED, DENIED, or MIXED (both).
func (c Count) Verdict() string {
	switch {
	case c.Denied == 0:
		return "ALLOWED"
	case c.Allowed == 0:
		return "DENIED"
	}
	return "MIXED"
}

// Label is the edge's label: the verdict in words and the counts, e.g.
// "DENIED 31" or "MIXED 12 allowed / 3 denied", led by "AUDIT 3 · " when
// audited policies would decide some of them otherwise, or "AUDIT 12
// (allowed)" all of them (what was enforced in brackets).
func (c Count) Label() string {
	audit := ""
	switch {
	case c.Audit > 0 && c.Audit == c.Total():
		return fmt.Sprintf("AUDIT %d (%s)", c.Audit, strings.ToLower(c.Verdict()))
	case c.Audit > 0:
		audit = fmt.Sprintf("AUDIT %d · ", c.Audit)
	}
	switch c.Verdict() {
	case "ALLOWED":
		return fmt.Sprintf("%sALLOWED %d", audit, c.Allowed)
	case "DENIED":
		return fmt.Sprintf("%sDENIED %d", audit, c.Denied)
	}
	return fmt.Sprintf("%sMIXED %d allowed / %d denied", audit, c.Allowed, c.Denied)
}

// Edge is the connections from one workload to another.
type Edge struct {
	From, To string
	Count    Count
	// Last is the newest flow of the edge (what the TUI explains).
	Last *flowv1.Flow
}

// Graph is workloads and edges.
type Graph struct {
	ns    map[string]string // workload → namespace
	edges map[[2]string]*Edge
}

// New returns an empty graph.
func New() *Graph { return &Graph{ns: map[string]string{}, edges: map[[2]string]*Edge{}} }

// Add counts one flow (flow-end summaries are not new connections).
func (g *Graph) Add(f *flowv1.Flow) {
	if f.GetType() == flowv1.EventType_EVENT_TYPE_END {
		return
	}
	var c Count
	if flow.Dropped(f) {
		c.Denied = 1
	} else {
		c.Allowed = 1
	}
	if f.GetVerdict() == flowv1.Verdict_VERDICT_AUDIT {
		c.Audit = 1
	}
	g.AddEdge(WorkloadKey(f.GetSource(), f.GetIp().GetSource()), WorkloadKey(f.GetDestination(), f.GetIp().GetDestination()),
		NamespaceOf(f.GetSource()), NamespaceOf(f.GetDestination()), c, f)
}

// AddEdge adds c to the edge from → to; last, when newer, becomes its Last.
func (g *Graph) AddEdge(from, to, fromNS, toNS string, c Count, last *flowv1.Flow) {
	g.ns[from], g.ns[to] = fromNS, toNS
	k := [2]string{from, to}
	e := g.edges[k]
	if e == nil {
		e = &Edge{From: from, To: to}
		g.edges[k] = e
	}
	e.Count.Allowed += c.Allowed
	e.Count.Denied += c.Denied
	e.Count.Audit += c.Audit
	if last != nil && (e.Last == nil || !last.GetTime().AsTime().Before(e.Last.GetTime().AsTime())) {
		e.Last = last
	}
}

// Len is the number of workloads, and NumEdges of edges.
func (g *Graph) Len() int      { return len(g.ns) }
func (g *Graph) NumEdges() int { return len(g.edges) }

// Namespace is the workload's namespace.
func (g *Graph) Namespace(w string) string { return g.ns[w] }

// Namespaces lists the namespaces, sorted.
func (g *Graph) Namespaces() []string {
	seen := map[string]bool{}
	var out []string
	for _, ns := range g.ns {
		if !seen[ns] {
			seen[ns] = true
			out = append(out, ns)
		}
	}
	slices.Sort(out)
	return out
}

// Workloads lists the workloads of namespace ns, sorted.
func (g *Graph) Workloads(ns string) []string {
	var out []string
	for w, n := range g.ns {
		if n == ns {
			out = append(out, w)
		}
	}
	slices.Sort(out)
	return out
}

// Edges lists every edge, sorted by source then destination.
func (g *Graph) Edges() []*Edge {
	out := make([]*Edge, 0, len(g.edges))
	for _, e := range g.edges {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *Edge) int {
		return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To))
	})
	return out
}

// Neighbours returns the edges into w and out of w, busiest first (a
// self-edge is in both).
func (g *Graph) Neighbours(w string) (in, out []*Edge) {
	for _, e := range g.edges {
		if e.To == w {
			in = append(in, e)
		}
		if e.From == w {
			out = append(out, e)
		}
	}
	busiest := func(a, b *Edge) int {
		return cmp.Or(cmp.Compare(b.Count.Total(), a.Count.Total()), cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To))
	}
	slices.SortFunc(in, busiest)
	slices.SortFunc(out, busiest)
	return in, out
}

// Busiest is the workload with the most connections (in and out), "" when empty.
func (g *Graph) Busiest() string {
	tot := map[string]uint64{}
	for _, e := range g.edges {
		tot[e.From] += e.Count.Total()
		tot[e.To] += e.Count.Total()
	}
	best := ""
	for w, t := range tot {
		if best == "" || t > tot[best] || (t == tot[best] && w < best) {
			best = w
		}
	}
	return best
}

// Collapse returns the namespace-level graph: one node per namespace (in
// its own namespace), edges summed.
func (g *Graph) Collapse() *Graph {
	out := New()
	for _, e := range g.edges {
		a, b := g.ns[e.From], g.ns[e.To]
		out.AddEdge(a, b, a, b, e.Count, e.Last)
	}
	return out
}
