//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
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
	before, progs := ourBPF(t)
	if len(before) == 0 || len(progs) == 0 {
		t.Fatalf("the installed agent has no BPF pin, or no program attached, on the nodes: %v", before)
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
	if rest, _ := ourBPF(t); len(rest) != 0 {
		t.Errorf("BPF objects left on the nodes after uninstall: %s", strings.Join(rest, "; "))
	}
	for _, p := range bpftool(t, "prog", "show") {
		if id := p["id"].(float64); progs[id] {
			t.Errorf("the agent's program %v (id %v) is still loaded after uninstall", p["name"], id)
		}
	}
	// Nothing enforces db-policy any more.
	expect(t, c, s.other, true, s.podDB)
}

// ourBPF lists the agent's pin directory on every node and the links in the
// nodes' network namespaces that run a netpol program, and returns the IDs
// of those programs. (Programs alone are not listed: other tests on a
// developer's machine may load their own copies.)
func ourBPF(t *testing.T) ([]string, map[float64]bool) {
	t.Helper()
	var found []string
	nodeNetns := map[uint64]string{}
	for _, n := range framework.Nodes {
		if _, err := os.Stat(n.Path(t, probe.DefaultPinRoot)); err == nil {
			found = append(found, "pin directory "+probe.DefaultPinRoot+" on "+n.Name)
		}
		nodeNetns[n.NetnsInode(t)] = n.Name
	}
	names := map[float64]string{}
	for _, p := range bpftool(t, "prog", "show") {
		if name, _ := p["name"].(string); strings.HasPrefix(name, "netpol_") {
			names[p["id"].(float64)] = name
		}
	}
	progs := map[float64]bool{}
	for _, l := range bpftool(t, "link", "show") {
		id, _ := l["prog_id"].(float64)
		// Links without a namespace in bpftool's report count too.
		ino, hasNetns := l["netns_ino"].(float64)
		where := nodeNetns[uint64(ino)]
		if !hasNetns {
			where = "a node"
		}
		if name, ok := names[id]; ok && where != "" {
			found = append(found, fmt.Sprintf("link %v (%v) of program %s on %s", l["id"], l["type"], name, where))
			progs[id] = true
		}
	}
	return found, progs
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
