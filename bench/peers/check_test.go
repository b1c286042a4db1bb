package peers

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/np-guard/netpol-analyzer/pkg/logger"
	"github.com/np-guard/netpol-analyzer/pkg/manifests/fsscanner"
	"github.com/np-guard/netpol-analyzer/pkg/manifests/parser"
	"github.com/np-guard/netpol-analyzer/pkg/netpol/eval"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-netpol/kubectl-netpol/internal/cli"
)

// The end-to-end `check` workload: both tools read the same YAML file
// (namespaces, pods placed on nodes, policies of Synthetic(10000, 2000, 1))
// and answer the same 10k items. Ours is `kubectl netpol check -f FILE -o
// json` run in-process through cobra with the items on stdin; theirs is what
// its `eval` command does per query (fsscanner + parser, then
// CheckIfAllowed), for the 10k items, writing one JSON verdict per line.
// Neither side reuses anything across runs.

// checkInput writes the snapshot as multi-document YAML and the items as
// JSON lines into dir.
func checkInput(tb testing.TB, dir string) (manifests string, items []byte, qs []query) {
	s := scheduled(snapshot())
	var buf bytes.Buffer
	put := func(gvk schema.GroupVersionKind, obj interface {
		GetObjectKind() schema.ObjectKind
	}) {
		obj.GetObjectKind().SetGroupVersionKind(gvk)
		data, err := yaml.Marshal(obj)
		if err != nil {
			tb.Fatal(err)
		}
		buf.WriteString("---\n")
		buf.Write(data)
	}
	for _, n := range s.Namespaces {
		put(schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, n)
	}
	for _, p := range s.Pods {
		put(schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, p)
	}
	for _, p := range s.Policies {
		put(schema.GroupVersionKind{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"}, p)
	}
	manifests = filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(manifests, buf.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
	qs = queries(s, 10000)
	var ib bytes.Buffer
	for i, q := range qs {
		fmt.Fprintf(&ib, `{"id":"i%d","src":%q,"dst":%q,"port":%d,"protocol":%q}`+"\n", i, q.src, q.dst, q.port, q.proto)
	}
	return manifests, ib.Bytes(), qs
}

// checkOurs runs `check -f manifests -o json` with items on stdin.
func checkOurs(tb testing.TB, manifests string, items []byte, out io.Writer) {
	streams := genericiooptions.IOStreams{In: bytes.NewReader(items), Out: out, ErrOut: io.Discard}
	cmd := cli.NewCmdNetpol(streams)
	cmd.SetArgs([]string{"check", "-f", manifests, "-o", "json"})
	if err := cmd.Execute(); err != nil {
		tb.Fatalf("ours: %v", err)
	}
}

// theirItem is the part of an item netpol-analyzer needs.
type theirItem struct {
	ID       string `json:"id"`
	Src      string `json:"src"`
	Dst      string `json:"dst"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
}

// checkTheirs loads manifests as netpol-analyzer's `eval --dirpath` does and
// answers every item, one JSON line each.
func checkTheirs(tb testing.TB, manifests string, items []byte, out io.Writer) {
	infos, errs := fsscanner.GetResourceInfosFromDirPath([]string{manifests}, true, false)
	if len(errs) > 0 {
		tb.Fatalf("netpol-analyzer: reading %s: %v", manifests, errs)
	}
	l := logger.NewDefaultLoggerWithVerbosity(logger.LowVerbosity)
	objs, perrs := parser.ResourceInfoListToK8sObjectsList(infos, l, true)
	for _, e := range perrs {
		if e.IsFatal() {
			tb.Fatalf("netpol-analyzer: parsing %s: %v", manifests, e.Error())
		}
	}
	pe, err := eval.NewPolicyEngineWithOptionsList(eval.WithLogger(l), eval.WithObjectsList(objs))
	if err != nil {
		tb.Fatalf("netpol-analyzer: %v", err)
	}
	w := bufio.NewWriterSize(out, 64<<10)
	enc := json.NewEncoder(w)
	dec := json.NewDecoder(bytes.NewReader(items))
	for {
		var it theirItem
		if err := dec.Decode(&it); err == io.EOF {
			break
		} else if err != nil {
			tb.Fatal(err)
		}
		ok, err := pe.CheckIfAllowed(it.Src, it.Dst, it.Protocol, fmt.Sprint(it.Port))
		if err != nil {
			tb.Fatalf("netpol-analyzer: %s: %v", it.ID, err)
		}
		if err := enc.Encode(struct {
			ID      string `json:"id"`
			Allowed bool   `json:"allowed"`
		}{it.ID, ok}); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
}

// verdicts reads "allowed" per id from JSON lines.
func verdicts(tb testing.TB, out []byte) map[string]bool {
	m := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r struct {
			ID      string `json:"id"`
			Allowed bool   `json:"allowed"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			tb.Fatalf("%q: %v", line, err)
		}
		m[r.ID] = r.Allowed
	}
	return m
}

// BenchmarkCheckFiles is `check -f` end to end, both tools on the same
// files and items in the same run (ratio: ours ÷ theirs).
func BenchmarkCheckFiles(b *testing.B) {
	manifests, items, _ := checkInput(b, b.TempDir())
	for _, side := range []struct {
		name string
		run  func(testing.TB, string, []byte, io.Writer)
	}{{"engine=ours", checkOurs}, {"engine=netpol-analyzer", checkTheirs}} {
		b.Run(side.name, func(b *testing.B) {
			b.ReportAllocs()
			start := cpuTime()
			for b.Loop() {
				side.run(b, manifests, items, io.Discard)
			}
			reportCPU(b, start)
		})
	}
}

// TestCheckFilesAgree: both tools give the same verdict on every item of the
// end-to-end workload, and ours the same as our engine in memory.
func TestCheckFilesAgree(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 10k pods / 2k policies from YAML into both tools")
	}
	manifests, items, qs := checkInput(t, t.TempDir())
	var ours, theirs bytes.Buffer
	checkOurs(t, manifests, items, &ours)
	checkTheirs(t, manifests, items, &theirs)
	a, b := verdicts(t, ours.Bytes()), verdicts(t, theirs.Bytes())
	if len(a) != len(qs) || len(b) != len(qs) {
		t.Fatalf("answers: ours %d, netpol-analyzer %d, items %d", len(a), len(b), len(qs))
	}
	e := loadOurs(t, scheduled(snapshot()))
	var differ, allowed int
	for i := range qs {
		id := fmt.Sprintf("i%d", i)
		if a[id] != oursAllowed(e, &qs[i]) {
			t.Errorf("%s: check says %v, the engine in memory %v", id, a[id], !a[id])
		}
		if a[id] {
			allowed++
		}
		if a[id] != b[id] {
			differ++
			if differ <= 5 {
				t.Errorf("%s %s -> %s %d/%s: ours %v, netpol-analyzer %v", id, qs[i].src, qs[i].dst, qs[i].port, qs[i].proto, a[id], b[id])
			}
		}
	}
	t.Logf("%d of %d items allowed; %d differ", allowed, len(qs), differ)
	if allowed == 0 || allowed == len(qs) {
		t.Fatalf("degenerate input: %d of %d allowed", allowed, len(qs))
	}
}
