package cli

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-netpol/kubectl-netpol/internal/snapshot"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
	"github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

// writeSynthetic writes the engine's synthetic snapshot as one multi-document
// YAML file, so benchmarks include reading and decoding as users pay for it.
func writeSynthetic(b *testing.B, pods, policies int) (string, *policy.Snapshot) {
	b.Helper()
	snap := policytest.Synthetic(pods, policies, 1)
	var buf bytes.Buffer
	put := func(gvk schema.GroupVersionKind, obj interface {
		GetObjectKind() schema.ObjectKind
	}) {
		obj.GetObjectKind().SetGroupVersionKind(gvk)
		data, err := yaml.Marshal(obj)
		if err != nil {
			b.Fatal(err)
		}
		buf.WriteString("---\n")
		buf.Write(data)
	}
	for _, n := range snap.Namespaces {
		put(schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, n)
	}
	for _, p := range snap.Pods {
		put(schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, p)
	}
	for _, p := range snap.Policies {
		put(schema.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"}, p)
	}
	path := filepath.Join(b.TempDir(), "snapshot.yaml")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	return path, snap
}

// reportCPU adds cpu-ms/op (process user+system time per iteration) next to
// the wall-clock ns/op.
func reportCPU(b *testing.B, start int64) {
	if d := processCPU() - start; d > 0 {
		b.ReportMetric(float64(d)/1e6/float64(b.N), "cpu-ms/op")
	}
}

// runDiscard runs a command with its output discarded.
func runDiscard(b *testing.B, f *Factory, stdin []byte, args ...string) error {
	streams := genericiooptions.IOStreams{In: bytes.NewReader(stdin), Out: io.Discard, ErrOut: io.Discard}
	root := testRoot(f, streams)
	root.SetArgs(args)
	return root.Execute()
}

// BenchmarkCheck10k: `check -f` of 10k items on 10k pods / 2k policies,
// including reading and decoding the 10k-pod YAML and building the engine.
func BenchmarkCheck10k(b *testing.B) {
	path, snap := writeSynthetic(b, 10000, 2000)
	r := rand.New(rand.NewPCG(7, 7))
	var items bytes.Buffer
	for i := range 10000 {
		s, d := snap.Pods[r.IntN(len(snap.Pods))], snap.Pods[r.IntN(len(snap.Pods))]
		port := `8080`
		if i%4 == 0 {
			port = `"metrics"`
		}
		fmt.Fprintf(&items, `{"id":"i%d","src":"%s/%s","dst":"%s/%s","port":%s}`+"\n", i, s.Namespace, s.Name, d.Namespace, d.Name, port)
	}
	f := NewFactory(newConfigFlags())
	cpu := processCPU()
	for b.Loop() {
		if err := runDiscard(b, f, items.Bytes(), "check", "-f", path, "-o", "json"); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
}

// BenchmarkLoad10k isolates reading and decoding the 10k-pod file.
func BenchmarkLoad10k(b *testing.B) {
	path, _ := writeSynthetic(b, 10000, 2000)
	cpu := processCPU()
	for b.Loop() {
		if _, err := snapshot.LoadFiles([]string{path}, false, "default"); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
}

// BenchmarkMatrix1k: `matrix -A -f` on 1k pods / 200 policies, 2 ports
// (2M cells), text grid written, load included.
func BenchmarkMatrix1k(b *testing.B) {
	path, _ := writeSynthetic(b, 1000, 200)
	f := NewFactory(newConfigFlags())
	cpu := processCPU()
	for b.Loop() {
		if err := runDiscard(b, f, nil, "matrix", "-A", "-f", path, "--ports", "8080/TCP,53/UDP"); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
}

// BenchmarkMatrix1kCells is the 2M Engine.Allowed calls alone.
func BenchmarkMatrix1kCells(b *testing.B) {
	snap := policytest.Synthetic(1000, 200, 1)
	e, err := policy.NewEngine(snap)
	if err != nil {
		b.Fatal(err)
	}
	ports := []portSpec{{Port: 8080, Protocol: "TCP"}, {Port: 53, Protocol: "UDP"}}
	cpu := processCPU()
	for b.Loop() {
		computeMatrix(e, snap.Pods, ports)
	}
	reportCPU(b, cpu)
}
