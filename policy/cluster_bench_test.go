package policy_test

import (
	"fmt"
	"testing"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	"github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

// ClusterNetworkPolicy cost at 10k pods and 1,000 NetworkPolicies, with
// 1,000 ClusterNetworkPolicies or none (docs/perf.md "ClusterNetworkPolicy").
func cnpWorld(b *testing.B, cnps int) (*policy.Snapshot, *policy.Engine) {
	s := policytest.Synthetic(10000, 1000, 1)
	policytest.SyntheticCluster(s, cnps, 2)
	e, err := policy.NewEngine(s)
	if err != nil {
		b.Fatal(err)
	}
	return s, e
}

func BenchmarkClusterAllowed(b *testing.B) {
	for _, n := range []int{0, 1000} {
		b.Run(fmt.Sprintf("cnps=%d", n), func(b *testing.B) {
			s, e := cnpWorld(b, n)
			ts := traffics(s, 4096)
			allowed := 0
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if e.Allowed(ts[i%len(ts)]) {
					allowed++
				}
			}
			b.ReportMetric(float64(allowed)/float64(b.N), "allowed-ratio")
		})
	}
}

func BenchmarkClusterEvaluate(b *testing.B) {
	for _, n := range []int{0, 1000} {
		b.Run(fmt.Sprintf("cnps=%d", n), func(b *testing.B) {
			s, e := cnpWorld(b, n)
			ts := traffics(s, 4096)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				_ = e.Evaluate(ts[i%len(ts)])
			}
		})
	}
}

func BenchmarkClusterNewEngine(b *testing.B) {
	for _, n := range []int{0, 1000} {
		b.Run(fmt.Sprintf("cnps=%d", n), func(b *testing.B) {
			s := policytest.Synthetic(10000, 1000, 1)
			policytest.SyntheticCluster(s, n, 2)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := policy.NewEngine(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkClusterNewEngineCached is the agent's rebuild after a change
// elsewhere: every object kept (same pointer and ResourceVersion) in a
// policy.Cache, so compiled policies and selections are reused.
func BenchmarkClusterNewEngineCached(b *testing.B) {
	for _, n := range []int{0, 1000} {
		b.Run(fmt.Sprintf("cnps=%d", n), func(b *testing.B) {
			s := policytest.Synthetic(10000, 1000, 1)
			policytest.SyntheticCluster(s, n, 2)
			for _, p := range s.Pods {
				p.ResourceVersion = "1"
			}
			for _, p := range s.Policies {
				p.ResourceVersion = "1"
			}
			for _, p := range s.ClusterPolicies {
				p.ResourceVersion = "1"
			}
			c := policy.NewCache()
			if _, err := policy.NewEngineCached(s, c); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := policy.NewEngineCached(s, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkClusterCompile compiles one node's datapath (100 of the 10k pods)
// with and without 1,000 ClusterNetworkPolicies: the cost of resolving the
// tiers per peer class, and the entries it yields.
func BenchmarkClusterCompile(b *testing.B) {
	for _, n := range []int{0, 1000} {
		b.Run(fmt.Sprintf("cnps=%d", n), func(b *testing.B) {
			s, _ := cnpWorld(b, n)
			for i, p := range s.Pods {
				p.Spec.NodeName = fmt.Sprintf("node-%03d", i%100)
			}
			e, err := policy.NewEngine(s)
			if err != nil {
				b.Fatal(err)
			}
			var dp *policy.Datapath
			b.ReportAllocs()
			for b.Loop() {
				if dp, err = e.Compile("node-007"); err != nil {
					b.Fatal(err)
				}
			}
			entries, resolved := 0, 0
			for _, ep := range dp.Endpoints {
				entries += len(ep.Ingress.Entries) + len(ep.Egress.Entries)
				for _, d := range []policy.EndpointPolicy{ep.Ingress, ep.Egress} {
					if d.Resolved {
						resolved++
					}
				}
			}
			b.ReportMetric(float64(entries), "entries")
			b.ReportMetric(float64(resolved), "resolved-directions")
			b.ReportMetric(float64(len(dp.Endpoints)), "endpoints")
		})
	}
}
