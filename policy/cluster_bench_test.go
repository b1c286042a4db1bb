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
