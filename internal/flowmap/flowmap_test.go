package flowmap_test

import (
	"testing"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/internal/flowmap"
)

func fl(srcNS, src, dstNS, dst string, denied bool) *flowv1.Flow {
	v := flowv1.Verdict_VERDICT_ALLOWED
	if denied {
		v = flowv1.Verdict_VERDICT_DENIED
	}
	return &flowv1.Flow{Type: flowv1.EventType_EVENT_TYPE_NEW, Verdict: v,
		Source:      &flowv1.Endpoint{Namespace: srcNS, Pod: src + "-abc", Workload: &flowv1.Workload{Kind: "Deployment", Name: src}},
		Destination: &flowv1.Endpoint{Namespace: dstNS, Pod: dst + "-abc", Workload: &flowv1.Workload{Kind: "Deployment", Name: dst}}}
}

// TestGraph: workloads by their Deployment, edges counted by verdict and
// labelled in words, neighbourhoods, the busiest workload, and the
// namespace-level graph.
func TestGraph(t *testing.T) {
	g := flowmap.New()
	for range 3 {
		g.Add(fl("shop", "web", "shop", "api", false))
	}
	g.Add(fl("shop", "api", "shop", "db", false))
	g.Add(fl("shop", "api", "shop", "db", true))
	g.Add(fl("mon", "prom", "shop", "api", true))
	end := fl("shop", "web", "shop", "api", false)
	end.Type = flowv1.EventType_EVENT_TYPE_END
	g.Add(end) // a flow-end summary is not a new connection
	world := &flowv1.Flow{Type: flowv1.EventType_EVENT_TYPE_NEW, Source: fl("shop", "api", "", "", false).Source,
		Destination: &flowv1.Endpoint{}, Ip: &flowv1.IP{Destination: "203.0.113.1"}}
	g.Add(world)

	if g.Len() != 5 || g.NumEdges() != 4 {
		t.Fatalf("%d workloads, %d edges", g.Len(), g.NumEdges())
	}
	if got := g.Namespace("203.0.113.1"); got != flowmap.Outside {
		t.Fatalf("an outside address is in %q", got)
	}
	in, out := g.Neighbours("shop/api")
	if len(in) != 2 || in[0].From != "shop/web" || in[0].Count.Allowed != 3 || len(out) != 2 {
		t.Fatalf("neighbours of api: in %+v out %+v", in, out)
	}
	for _, e := range out {
		if e.To == "shop/db" && (e.Count.Verdict() != "MIXED" || e.Count.Label() != "MIXED 1 allowed / 1 denied") {
			t.Fatalf("api→db: %s", e.Count.Label())
		}
	}
	if in[1].Count.Label() != "DENIED 1" {
		t.Fatalf("prom→api: %s", in[1].Count.Label())
	}
	if b := g.Busiest(); b != "shop/api" {
		t.Fatalf("busiest %q", b)
	}
	ns := g.Collapse()
	if ns.Len() != 3 || ns.NumEdges() != 3 {
		t.Fatalf("namespace graph: %d nodes, %d edges", ns.Len(), ns.NumEdges())
	}
	in, _ = ns.Neighbours("shop")
	for _, e := range in {
		if e.From == "shop" && e.Count != (flowmap.Count{Allowed: 4, Denied: 1}) {
			t.Fatalf("shop→shop: %+v", e.Count)
		}
	}
}

// TestAuditEdges: an AUDIT flow counts as what was enforced (the opposite
// of what the audited policies would decide) and as audited; the label
// leads with AUDIT.
func TestAuditEdges(t *testing.T) {
	g := flowmap.New()
	src, dst := &flowv1.Endpoint{Namespace: "shop", Pod: "web"}, &flowv1.Endpoint{Namespace: "shop", Pod: "db"}
	add := func(v, wouldBe flowv1.Verdict) {
		f := &flowv1.Flow{Verdict: v, Source: src, Destination: dst}
		if v == flowv1.Verdict_VERDICT_AUDIT {
			f.Audit = &flowv1.Audit{WouldBe: wouldBe}
		}
		g.Add(f)
	}
	add(flowv1.Verdict_VERDICT_AUDIT, flowv1.Verdict_VERDICT_DENIED)
	add(flowv1.Verdict_VERDICT_AUDIT, flowv1.Verdict_VERDICT_DENIED)
	if e := g.Edges()[0]; e.Count != (flowmap.Count{Allowed: 2, Audit: 2}) || e.Count.Label() != "AUDIT 2 (allowed)" {
		t.Errorf("all audited: %+v %q", e.Count, e.Count.Label())
	}
	add(flowv1.Verdict_VERDICT_ALLOWED, 0)
	add(flowv1.Verdict_VERDICT_AUDIT, flowv1.Verdict_VERDICT_ALLOWED) // dropped; enforcing the audit would allow it
	if e := g.Edges()[0]; e.Count != (flowmap.Count{Allowed: 3, Denied: 1, Audit: 3}) || e.Count.Label() != "AUDIT 3 · MIXED 3 allowed / 1 denied" {
		t.Errorf("some audited: %+v %q", e.Count, e.Count.Label())
	}
}
