package cli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubectl-netpol/kubectl-netpol/internal/snapshot"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// example is the bundled example the README runs.
const example = "../../examples/db-policy"

// offlineFactory is a Factory for -f tests: touching the cluster fails the test.
func offlineFactory(t *testing.T) *Factory {
	f := NewFactory(genericclioptions.NewConfigFlags(false))
	f.NewClient = func() (kubernetes.Interface, snapshot.Cluster, error) {
		t.Helper()
		t.Fatal("offline command tried to reach a cluster")
		return nil, snapshot.Cluster{}, nil
	}
	return f
}

// fakeFactory serves live-mode commands from a fake clientset.
func fakeFactory(client *fake.Clientset) *Factory {
	f := NewFactory(genericclioptions.NewConfigFlags(false))
	f.NewClient = func() (kubernetes.Interface, snapshot.Cluster, error) {
		return client, snapshot.Cluster{Context: "fake", Server: "https://fake.invalid"}, nil
	}
	f.NewCNPClient = nil // a cluster without ClusterNetworkPolicies
	return f
}

// run drives the command tree in-process, as `kubectl netpol ARGS`, with stdin.
func run(t *testing.T, f *Factory, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	streams, in, out, errOut := genericiooptions.NewTestIOStreams()
	in.WriteString(stdin)
	root := testRoot(f, streams)
	root.SetArgs(args)
	root.SetOut(out)
	root.SetErr(errOut)
	err = root.Execute()
	return out.String(), errOut.String(), err
}

// testRoot mirrors NewCmdNetpol with an injected Factory.
func testRoot(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	root := &cobra.Command{Use: "netpol", SilenceUsage: true, SilenceErrors: true,
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl netpol"}}
	f.ConfigFlags.AddFlags(root.PersistentFlags())
	root.AddCommand(NewCmdExplain(f, streams), NewCmdCheck(f, streams), NewCmdMatrix(f, streams), NewCmdWhatif(f, streams), NewCmdCoverage(f, streams), NewCmdAdvise(f, streams), NewCmdPromote(f, streams))
	registerFlagCompletion(root, f)
	return root
}

// golden compares got with testdata/NAME.golden (rewritten with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/cli -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (rerun with -update if the change is intended)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func mustContain(t *testing.T, s string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(s, p) {
			t.Errorf("missing %q in:\n%s", p, s)
		}
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func noStackTrace(t *testing.T, s string) {
	t.Helper()
	if strings.Contains(s, "goroutine ") || strings.Contains(s, "panic") {
		t.Errorf("output looks like a crash:\n%s", s)
	}
}

var _ = bytes.NewBuffer
