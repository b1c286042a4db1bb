package flow_test

import (
	"io"
	"testing"
	"time"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
)

// BenchmarkFilterMatch: one flow through a compiled allowlist of two
// either-side filters (namespace + label selector + verdict) and a denylist.
func BenchmarkFilterMatch(b *testing.B) {
	var fb flow.FilterBuilder
	for _, a := range []struct {
		k flow.FilterKind
		v string
	}{{flow.Namespace, "shop"}, {flow.Label, "app in (db,api)"}, {flow.Verdict, "denied"}} {
		if err := fb.Add(a.k, a.v); err != nil {
			b.Fatal(err)
		}
	}
	fb.Not()
	_ = fb.Add(flow.FromNamespace, "kube-system")
	f, err := flow.CompileFilter(fb.Allowlist(), fb.Denylist())
	if err != nil {
		b.Fatal(err)
	}
	flows := sampleFlows()
	i := 0
	for b.Loop() {
		f.Match(flows[i%len(flows)])
		i++
	}
}

// BenchmarkPrinters: flows/s through -o compact and -o json.
func BenchmarkPrinters(b *testing.B) {
	flows := sampleFlows()
	for _, format := range []string{flow.OutputCompact, flow.OutputJSON} {
		b.Run(format, func(b *testing.B) {
			p, _ := flow.NewPrinter(format, io.Discard, time.UTC)
			i := 0
			for b.Loop() {
				_ = p.Print(flows[i%len(flows)])
				i++
			}
			_ = p.Flush()
		})
	}
}

// BenchmarkReadJSONLines: flows/s read back by --input-file.
func BenchmarkReadJSONLines(b *testing.B) {
	for b.Loop() {
		n := len(readAll(b, samplePath))
		if n == 0 {
			b.Fatal("no flows")
		}
	}
	b.ReportMetric(float64(len(sampleFlows())), "flows/op")
}
