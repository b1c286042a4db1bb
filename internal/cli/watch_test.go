package cli

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
	"github.com/kubectl-netpol/kubectl-netpol/tui"
)

const sampleCapture = "../../testdata/flows/sample.jsonl"

// runWatch runs `watch args...` with captured streams; terminal says whether
// stdout counts as a terminal; runTUI (optional) replaces the TUI.
func runWatch(t *testing.T, terminal bool, runTUI func(context.Context, tui.Options) error, args ...string) (string, error) {
	t.Helper()
	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	o := NewWatchOptions(genericclioptions.NewConfigFlags(true), streams)
	o.IsTerminal = func(any) bool { return terminal }
	// A cluster without the agent (the live path has its own tests).
	o.KubeClient = func() (kubernetes.Interface, *rest.Config, error) { return fake.NewClientset(), &rest.Config{}, nil }
	if runTUI != nil {
		o.RunTUI = runTUI
	}
	o.Now = func() time.Time { return time.Date(2026, 11, 25, 14, 1, 0, 0, time.UTC) }
	cmd := newCmdWatch(o)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	cmd.SetArgs(args)
	cmd.SetOut(io.Discard)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func sampleFlows(t *testing.T) []*flowv1.Flow {
	t.Helper()
	var all []*flowv1.Flow
	err := (&flow.FileSource{Path: sampleCapture}).Observe(context.Background(), &flowv1.ObserveRequest{}, func(b flow.Batch) error {
		all = append(all, b.Flows...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func lines(s string) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestWatchCompactFilters(t *testing.T) {
	all := sampleFlows(t)
	count := func(pred func(*flowv1.Flow) bool) int {
		n := 0
		for _, f := range all {
			if pred(f) {
				n++
			}
		}
		return n
	}
	denied := func(f *flowv1.Flow) bool { return f.GetVerdict() == flowv1.Verdict_VERDICT_DENIED }
	tests := []struct {
		name    string
		args    []string
		want    int
		perLine func(string) bool
	}{
		{"piped output defaults to compact, whole replay", nil, len(all), func(l string) bool { return strings.Contains(l, " -> ") }},
		{"to-namespace and verdict", []string{"--to-namespace", "shop", "--verdict", "denied"},
			count(func(f *flowv1.Flow) bool { return denied(f) && f.GetDestination().GetNamespace() == "shop" }),
			func(l string) bool { return strings.Contains(l, "-> shop/") && strings.Contains(l, " DENIED ") }},
		{"--not negates only the next filter", []string{"--verdict", "denied", "--not", "--to-namespace", "shop"},
			count(func(f *flowv1.Flow) bool { return denied(f) && f.GetDestination().GetNamespace() != "shop" }),
			func(l string) bool { return strings.Contains(l, "payments/worker") && !strings.Contains(l, "-> shop/") }},
		{"namespace matches either end", []string{"-n", "kube-system"},
			count(func(f *flowv1.Flow) bool { return f.GetDestination().GetNamespace() == "kube-system" }),
			func(l string) bool { return strings.Contains(l, "kube-system/coredns") }},
		{"policy and last", []string{"--policy", "shop/db-allow-api", "--last", "3"}, 3,
			func(l string) bool { return strings.Contains(l, "db-allow-api") }},
		{"label selector and port", []string{"--to-label", "app=db", "--port", "5432", "--from-pod", "default/curl"},
			count(func(f *flowv1.Flow) bool {
				return f.GetSource().GetPod() == "curl" && f.GetDestination().GetPod() == "db-0"
			}),
			func(l string) bool {
				return strings.Contains(l, "default/curl") && strings.Contains(l, "(svc shop/db)")
			}},
		{"since a time", []string{"--since", "2026-11-25T14:00:50Z"},
			count(func(f *flowv1.Flow) bool {
				return !f.GetTime().AsTime().Before(time.Date(2026, 11, 25, 14, 0, 50, 0, time.UTC))
			}),
			func(l string) bool { return strings.HasPrefix(l, "Nov 25 ") }},
		{"since a duration ago (clock at 14:01:00)", []string{"--since", "5s"},
			count(func(f *flowv1.Flow) bool {
				return !f.GetTime().AsTime().Before(time.Date(2026, 11, 25, 14, 0, 55, 0, time.UTC))
			}),
			func(string) bool { return true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.want == 0 {
				t.Fatal("expected count is 0: the case proves nothing")
			}
			out, err := runWatch(t, false, nil, append([]string{"--input-file", sampleCapture}, tt.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			got := lines(out)
			if len(got) != tt.want {
				t.Fatalf("%d lines, want %d; first: %q", len(got), tt.want, first(got))
			}
			for _, l := range got {
				if !tt.perLine(l) {
					t.Fatalf("unexpected line %q", l)
				}
			}
		})
	}
}

func first(l []string) string {
	if len(l) == 0 {
		return ""
	}
	return l[0]
}

func TestWatchJSONRoundTrip(t *testing.T) {
	out, err := runWatch(t, false, nil, "--input-file", sampleCapture, "-o", "json", "--verdict", "denied")
	if err != nil {
		t.Fatal(err)
	}
	r := flow.NewReader(strings.NewReader(out), "stdout")
	n := 0
	for {
		f, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if f.GetVerdict() != flowv1.Verdict_VERDICT_DENIED || f.GetSource().GetPod() == "" {
			t.Fatalf("unexpected flow %v", f)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no flows read back")
	}
}

func TestWatchTUIIsChosenOnATerminal(t *testing.T) {
	var got tui.Options
	_, err := runWatch(t, true, func(_ context.Context, o tui.Options) error { got = o; return nil },
		"--input-file", sampleCapture, "--verdict", "denied")
	if err != nil {
		t.Fatal(err)
	}
	if got.Source == nil || got.SourceName != "replay sample.jsonl" {
		t.Fatalf("TUI options = %+v", got)
	}
	if len(got.Request.GetAllowlist()) != 1 || got.Request.GetFollow() {
		t.Fatalf("request = %v", got.Request)
	}
}

func TestWatchErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		terminal bool
		args     []string
		want     string
	}{
		{"no agent and no file", false, nil, "kubectl netpol install"},
		{"no agent and no file, TUI", true, nil, "--input-file FILE"},
		{"missing file", false, []string{"--input-file", "nope.jsonl"}, "opening capture: open nope.jsonl"},
		{"not a capture", false, []string{"--input-file", "watch.go"}, "watch.go:1: not a flow"},
		{"bad verdict", false, []string{"--verdict", "maybe"}, `unknown verdict "maybe": use one of allowed, audit, denied`},
		{"bad selector", false, []string{"--from-label", "app in ("}, `label selector "app in ("`},
		{"trailing --not", false, []string{"--input-file", sampleCapture, "--not"}, "--not must be followed by the filter it negates"},
		{"-A with -n", false, []string{"--input-file", sampleCapture, "-A", "-n", "x"}, "--all-namespaces and --namespace conflict"},
		{"tui when piped", false, []string{"--input-file", sampleCapture, "-o", "tui"}, "-o tui needs a terminal"},
		{"unknown output", false, []string{"--input-file", sampleCapture, "-o", "yaml"}, `unknown output format "yaml"`},
		{"bad since", false, []string{"--input-file", sampleCapture, "--since", "yesterday"}, `invalid --since "yesterday"`},
		{"until before since", false, []string{"--input-file", sampleCapture, "--since", "1m", "--until", "2m"}, "must be after since"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runWatch(t, tc.terminal, func(context.Context, tui.Options) error { return nil }, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// watch prints ClusterNetworkPolicy verdicts with their tier, priority and
// rule, and --policy cnp/NAME selects them.
func TestWatchClusterPolicyVerdicts(t *testing.T) {
	deny := flow.ClusterRuleRefOf(policy.ClusterRuleRef{Policy: policy.PolicyRef{Kind: policy.KindClusterNetworkPolicy, Name: "deny-monitoring"},
		Tier: policy.TierAdmin, Priority: 10, Direction: policy.Ingress, Index: 0, Name: "deny-all", Action: policy.ActionDeny})
	np := flow.PolicyRefOf(policy.PolicyRef{Namespace: "monitoring", Name: "deny-monitoring"}, policy.Ingress, 0)
	l4 := &flowv1.Layer4{Protocol: flowv1.Protocol_PROTOCOL_TCP, SourcePort: 40000, DestinationPort: 9090}
	src, dst := &flowv1.Endpoint{Namespace: "shop", Pod: "web"}, &flowv1.Endpoint{Namespace: "monitoring", Pod: "prometheus-0"}
	capture := filepath.Join(t.TempDir(), "cnp.jsonl")
	file, err := os.Create(capture)
	if err != nil {
		t.Fatal(err)
	}
	p, err := flow.NewPrinter("json", file, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []*flowv1.Flow{
		{Time: timestamppb.Now(), Node: "n1", Type: flowv1.EventType_EVENT_TYPE_DROP, Verdict: flowv1.Verdict_VERDICT_DENIED,
			Reason: flowv1.Reason_REASON_DENIED_BY_RULE, Source: src, Destination: dst, L4: l4, DeniedBy: []*flowv1.PolicyRef{deny}},
		{Time: timestamppb.Now(), Node: "n1", Type: flowv1.EventType_EVENT_TYPE_NEW, Verdict: flowv1.Verdict_VERDICT_ALLOWED,
			Reason: flowv1.Reason_REASON_ALLOWED_BY_RULE, Source: src, Destination: dst, L4: l4, AllowedBy: []*flowv1.PolicyRef{np}},
	} {
		if err := p.Print(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(p.Flush(), file.Close()); err != nil {
		t.Fatal(err)
	}
	out, err := runWatch(t, false, nil, "--input-file", capture, "--policy", "cnp/deny-monitoring")
	if err != nil {
		t.Fatal(err)
	}
	if got := lines(out); len(got) != 1 || !strings.HasSuffix(got[0], "DENIED DENIED_BY_RULE denied-by Admin cnp deny-monitoring (prio 10) ingress rule 0 deny-all") {
		t.Errorf("--policy cnp/deny-monitoring printed %q", got)
	}
	if out, err := runWatch(t, false, nil, "--input-file", capture, "--policy", "deny-monitoring"); err != nil || len(lines(out)) != 2 {
		t.Errorf("--policy deny-monitoring (either kind): %v, %q", err, out)
	}
}
