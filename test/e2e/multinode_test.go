//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubectl-netpol/kubectl-netpol/internal/agentclient"
	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

// requireMultiNode skips on the single-node cluster, and fails in CI, which runs the multi-node one.
func requireMultiNode(t *testing.T) {
	t.Helper()
	if !framework.MultiNode() {
		framework.Unavailable(t, "this test needs the multi-node cluster (make cluster-up NODES=3)")
	}
}

// TestNodeCrashKeepsEnforcement kills the kubelet, containerd and the agent of the node that
// enforces db-policy (db's node, where ingress is judged) with SIGKILL while clients on another
// node keep connecting across the vxlan, then restarts them. The pinned datapath must give no
// wrong verdict throughout, and a connection established before the crash must survive it.
func TestNodeCrashKeepsEnforcement(t *testing.T) {
	requireMultiNode(t)
	framework.RequireRoot(t)
	c := framework.Connect(t)
	installAgent(t, c)
	s := newShop(t, c)
	s.applyPolicy(t, c)
	node := framework.NodeByName(t, s.db.Spec.NodeName)
	if s.web.Spec.NodeName == node.Name {
		t.Fatalf("web and db share node %s: the test needs them apart", node.Name)
	}

	ctx := framework.Context(t, 4*time.Minute)
	traffic := s.startTraffic(ctx, t, c, 120)

	time.Sleep(3 * time.Second)
	agentPIDs := processesInNetns(t, "netpol-agent", node.NetNS)
	if len(agentPIDs) != 1 {
		t.Fatalf("want one netpol-agent process in %s's network namespace, found %v", node.Name, agentPIDs)
	}
	for _, comp := range []string{"kubelet", "containerd"} {
		killRecorded(t, comp+"@"+node.Name)
	}
	if err := syscall.Kill(agentPIDs[0], syscall.SIGKILL); err != nil {
		t.Fatalf("killing the agent (pid %d): %v", agentPIDs[0], err)
	}
	t.Logf("killed the kubelet, containerd and agent (pid %d) of %s", agentPIDs[0], node.Name)
	time.Sleep(10 * time.Second) // the node's datapath alone, from its pins
	out, err := exec.Command(filepath.Join(framework.RepoRoot(), "hack", "cluster", "restart-node.sh"), node.Name).CombinedOutput()
	if err != nil {
		t.Fatalf("restarting %s: %v\n%s", node.Name, err, out)
	}
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		as, err := agentclient.Discover(ctx, c.Client, install.DefaultNamespace)
		if err != nil {
			return false, nil
		}
		for _, a := range as {
			if a.Node == node.Name && a.Ready && len(processesInNetns(t, "netpol-agent", node.NetNS)) == 1 {
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		t.Fatalf("the agent on %s did not come back: %v", node.Name, err)
	}
	time.Sleep(3 * time.Second) // traffic after the new agent took over
	traffic.stop(t, "across the crash and restart of "+node.Name)
}

// killRecorded SIGKILLs a cluster component by the PID hack/cluster recorded for it.
func killRecorded(t *testing.T, name string) {
	t.Helper()
	b, err := os.ReadFile("/run/netpol-cluster/pids/" + name + ".pid")
	if err != nil {
		t.Fatalf("no pid record of %s: %v", name, err)
	}
	pid, err := strconv.Atoi(strings.Fields(string(b))[0])
	if err != nil {
		t.Fatalf("pid record of %s: %q", name, b)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing %s (pid %d): %v", name, pid, err)
	}
}

// processesInNetns returns the PIDs of processes named comm in the network namespace of the file.
func processesInNetns(t *testing.T, comm, netnsFile string) []int {
	t.Helper()
	var want syscall.Stat_t
	if err := syscall.Stat(netnsFile, &want); err != nil {
		t.Fatalf("stat %s: %v", netnsFile, err)
	}
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		name, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(name)) != comm {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) == nil && st.Ino == want.Ino && st.Dev == want.Dev {
			pids = append(pids, pid)
		}
	}
	return pids
}
