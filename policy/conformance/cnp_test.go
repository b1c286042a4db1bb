package conformance_test

import (
	corev1 "k8s.io/api/core/v1"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/kubectl-netpol/kubectl-netpol/internal/cnpcrd"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
	"github.com/kubectl-netpol/kubectl-netpol/policy/conformance"
)

// TestCNPCasesOnEngine runs every ported upstream ClusterNetworkPolicy
// conformance case on the engine, IPv4 and IPv6: each probe's verdict must
// be upstream's expectation.
func TestCNPCasesOnEngine(t *testing.T) {
	dir, version, err := cnpcrd.ModuleDir()
	if err != nil {
		t.Fatal(err)
	}
	if version != "v0.3.0" {
		t.Fatalf("the cases are v0.3.0's; the module is %s", version)
	}
	probes := 0
	for _, cidr := range []string{"10.128.0.0/24", "fd00:128::/64"} {
		for _, c := range conformance.CNPCases() {
			t.Run(cidr+"/"+c.Name, func(t *testing.T) {
				w, err := conformance.NewCNPWorld(dir, &c, netip.MustParsePrefix(cidr))
				if err != nil {
					t.Fatal(err)
				}
				var e *policy.Engine
				err = w.Run(&c, func(a conformance.CNPAction, src, dst *corev1.Pod, changed bool) error {
					if changed {
						if e, err = policy.NewEngine(w.Snapshot()); err != nil {
							return err
						}
					}
					tr := policy.Traffic{Src: policy.Peer{Pod: src}, Dst: policy.Peer{IP: netip.MustParseAddr(dst.Status.PodIP)}, Protocol: a.Protocol, Port: a.Port}
					probes++
					if got := e.Allowed(tr); got != a.Allowed {
						d := e.Evaluate(tr)
						t.Errorf("%s -> %s %d/%s: allowed=%v, upstream expects %v\n  egress: %s\n  ingress: %s",
							a.From, a.To, a.Port, a.Protocol, got, a.Allowed, d.Egress.Summary, d.Ingress.Summary)
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			})
		}
	}
	t.Logf("%d probes over %d ported cases (not ported: %v)", probes, len(conformance.CNPCases()), conformance.NotPortedCNP)
}

// TestCNPCasesCoverUpstream checks that every upstream test is either
// ported or listed as not ported, by the module's own sources.
func TestCNPCasesCoverUpstream(t *testing.T) {
	dir, _, err := cnpcrd.ModuleDir()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "conformance", "tests", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	upstream := map[string]bool{}
	short := regexp.MustCompile(`ShortName:\s*"(\w+)"`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range short.FindAllSubmatch(b, -1) {
			upstream[string(m[1])] = true
		}
	}
	seen := map[string]bool{}
	for _, c := range conformance.CNPCases() {
		seen[c.Name] = true
	}
	for _, n := range conformance.NotPortedCNP {
		seen[n] = true
	}
	if len(upstream) != 30 || len(seen) != len(upstream) {
		t.Fatalf("upstream has %d tests, ported+not ported name %d", len(upstream), len(seen))
	}
	for n := range upstream {
		if !seen[n] {
			t.Errorf("upstream test %s is neither ported nor listed", n)
		}
	}
}
