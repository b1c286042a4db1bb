package conformance

import (
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

func TestAssignPodIPs(t *testing.T) {
	ips, err := AssignPodIPs(netip.MustParsePrefix("10.77.0.0/16"))
	if err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[PodRef]string{"x/a": "10.77.1.1", "y/b": "10.77.2.2", "z/c": "10.77.3.3"} {
		if got := ips[ref].String(); got != want {
			t.Errorf("%s: got %s, want %s", ref, got, want)
		}
	}
	if len(ips) != 9 {
		t.Errorf("got %d pod IPs, want 9", len(ips))
	}
	v6, err := AssignPodIPs(netip.MustParsePrefix("fd00:77::/64"))
	if err != nil {
		t.Fatal(err)
	}
	if got := v6["x/a"].String(); got != "fd00:77::101" {
		t.Errorf("IPv6 x/a: got %s, want fd00:77::101", got)
	}
	if _, err := AssignPodIPs(netip.MustParsePrefix("10.77.0.0/24")); err == nil || !strings.Contains(err.Error(), "too small") {
		t.Errorf("a /24 must be refused as too small, got %v", err)
	}
}

func TestTruthTableString(t *testing.T) {
	pods := []PodRef{"x/a", "x/b", "y/a"}
	tt := NewTruthTable(pods, true)
	tt.ExpectAllIngress("x/a", false)
	tt.Set("x/b", "x/a", true)
	want := "" +
		"-   x/a x/b y/a\n" +
		"x/a X   .   .\n" +
		"x/b .   .   .\n" +
		"y/a X   .   .\n"
	if got := tt.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestTruthTableDiffIgnoresLoopback(t *testing.T) {
	pods := []PodRef{"x/a", "y/a"}
	want := NewTruthTable(pods, true)
	want.ExpectAllIngress("x/a", false)
	got := EmptyTruthTable(pods)
	got.Set("x/a", "x/a", true) // loopback disagrees: ignored
	got.Set("y/a", "x/a", false)
	got.Set("x/a", "y/a", true)
	if d := want.Diff(got); d != "" {
		t.Errorf("only loopback cells differ or are unset; want no diff, got\n%s", d)
	}
	got.Set("y/a", "x/a", true)
	d := want.Diff(got)
	if !strings.Contains(d, "1 wrong cells") || !strings.Contains(d, "comparison") {
		t.Errorf("want a one-cell diff with grids, got\n%s", d)
	}
	if m := want.Mismatches(got); len(m) != 1 || m[0] != (Cell{"y/a", "x/a"}) {
		t.Errorf("mismatches = %v, want [{y/a x/a}]", m)
	}
	// An unknown non-loopback cell is a mismatch: a probe that never ran must not pass.
	if m := want.Mismatches(EmptyTruthTable(pods)); len(m) != 2 {
		t.Errorf("unknown cells: got %d mismatches, want 2", len(m))
	}
}

func TestCasesAreWellFormed(t *testing.T) {
	env := DefaultEnv()
	cases, err := Cases(env)
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) != 49 {
		t.Errorf("got %d cases, want the 49 connectivity tests of %s", len(cases), UpstreamSource)
	}
	names := map[string]bool{}
	upstream := map[string]bool{}
	for _, c := range cases {
		if names[c.Name] || upstream[c.Upstream] {
			t.Errorf("duplicate case %q / %q", c.Name, c.Upstream)
		}
		names[c.Name], upstream[c.Upstream] = true, true
		if len(c.Steps) < 2 {
			t.Errorf("%s: want a baseline step and at least one policy step, got %d", c.Name, len(c.Steps))
		}
		if len(c.Steps[0].Policies) != 0 {
			t.Errorf("%s: baseline step has policies", c.Name)
		}
		for i, s := range c.Steps {
			if len(s.Probes) == 0 || s.Description == "" {
				t.Errorf("%s step %d: no probes or no description", c.Name, i)
			}
			for _, p := range s.Probes {
				if !slices.Contains(c.Model.Ports, p.Port) || !slices.Contains(c.Model.Protocols, p.Protocol) {
					t.Errorf("%s step %d probes %s, which the model does not serve", c.Name, i, p)
				}
				if !slices.Equal(p.Expected.Pods, c.Model.Pods) {
					t.Errorf("%s step %d: truth table pods %v, model pods %v", c.Name, i, p.Expected.Pods, c.Model.Pods)
				}
				for _, f := range c.Model.Pods {
					for _, to := range c.Model.Pods {
						if _, ok := p.Expected.Get(f, to); !ok {
							t.Errorf("%s step %d: cell %s->%s unset", c.Name, i, f, to)
						}
					}
				}
			}
			snap, err := c.Snapshot(i, env)
			if err != nil {
				t.Fatal(err)
			}
			if len(snap.Namespaces) != 3 || len(snap.Pods) != len(c.Model.Pods) || len(snap.Policies) != len(s.Policies) {
				t.Errorf("%s step %d: snapshot has %d namespaces, %d pods, %d policies", c.Name, i, len(snap.Namespaces), len(snap.Pods), len(snap.Policies))
			}
			for _, p := range snap.Policies {
				if p.Namespace == "" || p.Name == "" || len(p.Spec.PolicyTypes) == 0 {
					t.Errorf("%s step %d: policy %s/%s lacks a namespace, name or policyTypes", c.Name, i, p.Namespace, p.Name)
				}
			}
		}
	}
}

func TestStepsAreStates(t *testing.T) {
	env := DefaultEnv()
	c, err := CaseNamed("updated-pod", env)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Steps) != 3 {
		t.Fatalf("updated-pod: got %d steps, want baseline, policy, relabel", len(c.Steps))
	}
	before, after := c.Pods(1, env), c.Pods(2, env)
	if _, ok := before[1].Labels["pod2"]; ok {
		t.Errorf("x/b has pod2 before the relabel step: %v", before[1].Labels)
	}
	if after[1].Labels["pod2"] != "updated" || after[1].Labels["pod"] != "b" {
		t.Errorf("x/b after relabel: %v", after[1].Labels)
	}
	if len(c.Steps[2].Policies) != 1 {
		t.Errorf("the relabel step must keep the policy created before it")
	}
	ports := before[0].Spec.Containers[0].Ports
	if len(ports) != 1 || ports[0].Name != "serve-80-tcp" || ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("container ports: %+v", ports)
	}

	c, err = CaseNamed("egress-cidr-except-overlap", env)
	if err != nil {
		t.Fatal(err)
	}
	last := c.Steps[len(c.Steps)-1]
	if len(last.Policies) != 1 || last.Policies[0].Spec.Egress[0].To[0].IPBlock.CIDR != "10.77.1.2/32" {
		t.Errorf("the update must replace the except policy with x/b's /32, got %+v", last.Policies)
	}
	first := c.Steps[1].Policies[0].Spec.Egress[0].To[0].IPBlock
	if first.CIDR != "0.0.0.0/4" || !slices.Equal(first.Except, []string{"10.77.1.2/32"}) {
		t.Errorf("step 1 ipBlock: %+v", first)
	}
}

func TestEnvRenamesNamespaces(t *testing.T) {
	env := DefaultEnv()
	env.NamespaceNames = map[string]string{"x": "netpol-x-1", "y": "netpol-y-1"}
	c, err := CaseNamed("allow-from-namespace-selector", env)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := c.Snapshot(1, env)
	if err != nil {
		t.Fatal(err)
	}
	p := snap.Policies[0]
	if p.Namespace != "netpol-x-1" || p.Spec.Ingress[0].From[0].NamespaceSelector.MatchLabels[corev1.LabelMetadataName] != "netpol-y-1" {
		t.Errorf("policy not renamed: %s %+v", p.Namespace, p.Spec.Ingress[0].From[0].NamespaceSelector)
	}
	if snap.Namespaces[2].Name != "z" || snap.Namespaces[0].Labels[corev1.LabelMetadataName] != "netpol-x-1" {
		t.Errorf("namespaces: %+v", snap.Namespaces)
	}
}

func TestMissingIPsAreErrors(t *testing.T) {
	env := Env{PodIPs: PodIPs{}}
	if _, err := Cases(env); err == nil || !strings.Contains(err.Error(), "pod y/b") {
		t.Errorf("want an error naming the pod without IP, got %v", err)
	}
	c, err := CaseNamed("default-deny-ingress", env)
	if err != nil {
		t.Fatalf("a case without ipBlocks needs no IPs to build: %v", err)
	}
	if _, err := c.Snapshot(1, env); err == nil || !strings.Contains(err.Error(), "no IP for pod x/a") {
		t.Errorf("Snapshot without IPs: got %v", err)
	}
	if _, err := CaseNamed("no-such-case", DefaultEnv()); err == nil {
		t.Error("unknown case name must be an error")
	}
}

// TestUpstreamNames cross-checks the cases against the upstream source when
// it is in the module cache (go mod download -json k8s.io/kubernetes@v1.37.2
// from any module puts it there): every upstream connectivity test is ported
// and every Upstream text names one.
func TestUpstreamNames(t *testing.T) {
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Skipf("go env GOMODCACHE: %v", err)
	}
	file := filepath.Join(strings.TrimSpace(string(out)), "k8s.io/kubernetes@v1.37.2/test/e2e/network/netpol/network_policy.go")
	src, err := os.ReadFile(file)
	if err != nil {
		t.Skipf("upstream source not in the module cache (%v); run: cd $(mktemp -d) && go mod init x && go mod download k8s.io/kubernetes@v1.37.2", err)
	}
	var its []string
	for _, m := range regexp.MustCompile(`f\.It\("([^"]+)"`).FindAllStringSubmatch(string(src), -1) {
		its = append(its, m[1])
	}
	cases, err := Cases(DefaultEnv())
	if err != nil {
		t.Fatal(err)
	}
	if len(its) != len(cases) {
		t.Errorf("upstream has %d f.It connectivity tests, %d are ported", len(its), len(cases))
	}
	for i, c := range cases {
		if i < len(its) && !strings.HasSuffix(c.Upstream, " "+its[i]) {
			t.Errorf("case %d %s: upstream text %q, upstream test in that position is %q", i, c.Name, c.Upstream, its[i])
		}
	}
}

// TestChangesReplayToSteps replays each step's Changes the way a runner on a
// live cluster would, and checks that it reaches the step's state.
func TestChangesReplayToSteps(t *testing.T) {
	env := DefaultEnv()
	cases, err := Cases(env)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		var pols []*networkingv1.NetworkPolicy
		nsLabels := map[string]map[string]string{}
		podLabels := map[PodRef]map[string]string{}
		if len(c.Steps[0].Changes) != 0 {
			t.Errorf("%s: baseline step has changes", c.Name)
		}
		for i, s := range c.Steps[1:] {
			if len(s.Changes) == 0 {
				t.Errorf("%s step %d: no changes since the previous step", c.Name, i+1)
			}
			for _, ch := range s.Changes {
				switch ch.Kind {
				case CreatePolicy:
					pols = append(pols, ch.Policy)
				case UpdatePolicy:
					for j, p := range pols {
						if p.Namespace == ch.Policy.Namespace && p.Name == ch.Policy.Name {
							pols[j] = ch.Policy
						}
					}
				case DeleteAllPolicies:
					pols = nil
				case LabelNamespace:
					nsLabels[ch.Namespace] = withLabels(nsLabels[ch.Namespace], ch.Labels)
				case LabelPod:
					podLabels[ch.Pod] = withLabels(podLabels[ch.Pod], ch.Labels)
				default:
					t.Fatalf("%s: unknown change %q", c.Name, ch.Kind)
				}
			}
			if !equality.Semantic.DeepEqual(pols, s.Policies) {
				t.Errorf("%s step %d: replayed policies differ from the step's", c.Name, i+1)
			}
			for ns, l := range s.NamespaceLabels {
				if !maps.Equal(l, nsLabels[ns]) {
					t.Errorf("%s step %d: namespace %s labels %v, replayed %v", c.Name, i+1, ns, l, nsLabels[ns])
				}
			}
			for p, l := range s.PodLabels {
				if !maps.Equal(l, podLabels[p]) {
					t.Errorf("%s step %d: pod %s labels %v, replayed %v", c.Name, i+1, p, l, podLabels[p])
				}
			}
			if len(s.NamespaceLabels) != len(nsLabels) || len(s.PodLabels) != len(podLabels) {
				t.Errorf("%s step %d: label changes differ", c.Name, i+1)
			}
		}
	}
}

func withLabels(m, add map[string]string) map[string]string {
	out := maps.Clone(m)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, add)
	return out
}
