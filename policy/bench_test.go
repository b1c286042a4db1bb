package policy_test

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	"github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

// Benchmarks at the scale of the project's targets: 10k pods / 2k policies
// (explain ≤ 50 ms after load, 10k checks), and a 1k × 1k × 2 ports matrix
// (≤ 2 s). Figures are recorded in docs/perf.md.

var (
	bigOnce sync.Once
	bigSnap *policy.Snapshot
	bigEng  *policy.Engine
)

func big(b *testing.B) (*policy.Snapshot, *policy.Engine) {
	bigOnce.Do(func() {
		bigSnap = policytest.Synthetic(10000, 2000, 1)
		var err error
		if bigEng, err = policy.NewEngine(bigSnap); err != nil {
			panic(err)
		}
	})
	return bigSnap, bigEng
}

// traffics is a deterministic spread of pod pairs and ports.
func traffics(s *policy.Snapshot, n int) []policy.Traffic {
	ports := []struct {
		proto corev1.Protocol
		port  int32
	}{{corev1.ProtocolTCP, 8080}, {corev1.ProtocolTCP, 9090}, {corev1.ProtocolUDP, 53}, {corev1.ProtocolTCP, 8050}}
	out := make([]policy.Traffic, n)
	for i := range out {
		src := s.Pods[(i*7919)%len(s.Pods)]
		dst := s.Pods[(i*104729+13)%len(s.Pods)]
		pp := ports[i%len(ports)]
		out[i] = policy.Traffic{Src: policy.Peer{Pod: src}, Dst: policy.Peer{Pod: dst}, Protocol: pp.proto, Port: pp.port}
	}
	return out
}

func BenchmarkNewEngine10kPods2kPolicies(b *testing.B) {
	s := policytest.Synthetic(10000, 2000, 1)
	b.ReportAllocs()
	var before, after runtime.MemStats
	var keep *policy.Engine
	start := cpuTime()
	for i := 0; b.Loop(); i++ {
		if i == 0 {
			runtime.GC()
			runtime.ReadMemStats(&before)
		}
		e, err := policy.NewEngine(s)
		if err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			keep = e
			runtime.GC()
			runtime.ReadMemStats(&after)
		}
	}
	reportCPU(b, start)
	runtime.KeepAlive(keep)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "retained-MiB")
}

func BenchmarkEvaluate10kPods2kPolicies(b *testing.B) {
	s, e := big(b)
	ts := traffics(s, 1024)
	b.ReportAllocs()
	start := cpuTime()
	for i := 0; b.Loop(); i++ {
		_ = e.Evaluate(ts[i%len(ts)])
	}
	reportCPU(b, start)
}

func BenchmarkAllowed10kPods2kPolicies(b *testing.B) {
	s, e := big(b)
	ts := traffics(s, 1024)
	b.ReportAllocs()
	start := cpuTime()
	for i := 0; b.Loop(); i++ {
		_ = e.Allowed(ts[i%len(ts)])
	}
	reportCPU(b, start)
}

// BenchmarkCheck10k is 10k Allowed calls per op, the core of `check` with 10k items.
func BenchmarkCheck10k(b *testing.B) {
	s, e := big(b)
	ts := traffics(s, 10000)
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		for _, t := range ts {
			_ = e.Allowed(t)
		}
	}
	reportCPU(b, start)
}

// BenchmarkMatrix1kx1kx2 is one full reachability matrix: 1k pods × 1k pods ×
// 2 ports (2M verdicts), over synthetic snapshots with 1k pods and 200 or 2000
// policies (2000 on 10 namespaces selects each pod with dozens of policies).
func BenchmarkMatrix1kx1kx2(b *testing.B) {
	matrixSnapshots(b, func(b *testing.B, s *policy.Snapshot, e *policy.Engine) {
		b.ReportAllocs()
		start := cpuTime()
		for b.Loop() {
			allowed := 0
			for _, src := range s.Pods {
				for _, dst := range s.Pods {
					for _, port := range []int32{8080, 9090} {
						if e.Allowed(policy.Traffic{Src: policy.Peer{Pod: src}, Dst: policy.Peer{Pod: dst}, Port: port}) {
							allowed++
						}
					}
				}
			}
			if allowed == 0 {
				b.Fatal("nothing allowed: the snapshot is degenerate")
			}
		}
		reportCPU(b, start)
	})
}

// reportCPU adds the CPU time per op since start (see cpuTime).
func reportCPU(b *testing.B, start time.Duration) {
	if now := cpuTime(); now > 0 && b.N > 0 {
		b.ReportMetric(float64(now-start)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkReachability1kx1kx2 is the same matrix through Engine.Reachability
// (one verdict per pair of pod classes, GOMAXPROCS goroutines), the call the
// matrix command makes.
func BenchmarkReachability1kx1kx2(b *testing.B) {
	matrixSnapshots(b, func(b *testing.B, s *policy.Snapshot, e *policy.Engine) {
		probes := []policy.Probe{{Protocol: corev1.ProtocolTCP, Port: 8080}, {Protocol: corev1.ProtocolTCP, Port: 9090}}
		b.ReportAllocs()
		start := cpuTime()
		for b.Loop() {
			m := e.Reachability(s.Pods, s.Pods, probes)
			allowed := 0
			for _, row := range m[0] {
				for _, ok := range row {
					if ok {
						allowed++
					}
				}
			}
			if allowed == 0 {
				b.Fatal("nothing allowed: the snapshot is degenerate")
			}
		}
		reportCPU(b, start)
	})
}

// matrixSnapshots runs bench on the 1k-pod synthetic snapshots with 200 and
// 2000 policies.
func matrixSnapshots(b *testing.B, bench func(b *testing.B, s *policy.Snapshot, e *policy.Engine)) {
	for _, policies := range []int{200, 2000} {
		b.Run(fmt.Sprintf("policies=%d", policies), func(b *testing.B) {
			s := policytest.Synthetic(1000, policies, 1)
			e, err := policy.NewEngine(s)
			if err != nil {
				b.Fatal(err)
			}
			bench(b, s, e)
		})
	}
}
