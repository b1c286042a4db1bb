//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"

	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
	"github.com/kubectl-netpol/kubectl-netpol/probe"
	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

// TestUninstallLeavesNothing runs last (file order): uninstall removes every
// labelled object and, on the node, every BPF pin, link and program the
// agent made, and a policy that was enforced no longer is.
func TestUninstallLeavesNothing(t *testing.T) {
	framework.RequireRoot(t) // reads bpffs and the kernel's BPF objects
	c := framework.Connect(t)
	installAgent(t, c)
	s := newShop(t, c)
	s.applyPolicy(t, c)
	expect(t, c, s.other, false, s.podDB)
	if len(ourBPF(t)) == 0 {
		t.Fatalf("the installed agent has no BPF program, link or pin on the node")
	}

	out, err := netpol(t, c, "", "uninstall", "--timeout", "2m")
	if err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	left, err := install.FindInstalled(framework.Context(t, 30*time.Second), dyn, install.DefaultNamespace)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("labelled objects left after uninstall: %v", left)
	}
	if rest := ourBPF(t); len(rest) != 0 {
		t.Errorf("BPF objects left on the node after uninstall: %s", strings.Join(rest, "; "))
	}
	// Nothing enforces db-policy any more.
	expect(t, c, s.other, true, s.podDB)
}

// ourBPF lists the agent's pins, programs and links on this node.
func ourBPF(t *testing.T) []string {
	t.Helper()
	var found []string
	if _, err := os.Stat(probe.DefaultPinRoot); err == nil {
		found = append(found, "pin directory "+probe.DefaultPinRoot)
	}
	progs := bpftool(t, "prog", "show")
	ours := map[float64]bool{}
	for _, p := range progs {
		if name, _ := p["name"].(string); strings.HasPrefix(name, "netpol_") {
			ours[p["id"].(float64)] = true
			found = append(found, "program "+name)
		}
	}
	for _, l := range bpftool(t, "link", "show") {
		if id, ok := l["prog_id"].(float64); ok && ours[id] {
			found = append(found, "link of program "+strings.TrimSpace(l["type"].(string)))
		}
	}
	return found
}

func bpftool(t *testing.T, args ...string) []map[string]any {
	t.Helper()
	out, err := exec.Command("bpftool", append([]string{"-j"}, args...)...).Output()
	if err != nil {
		t.Fatalf("bpftool %v: %v", args, err)
	}
	var v []map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("bpftool %v output: %v", args, err)
	}
	return v
}
