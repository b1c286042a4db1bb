//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-netpol/kubectl-netpol/internal/bpffs"
	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
	"github.com/kubectl-netpol/kubectl-netpol/probe"
	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

// TestInstallOnNodeWithoutBPFFS needs the multi-node cluster: NETPOL_MULTINODE
// set, or .cluster/nodes listing several nodes (framework.MultiNode). It
// takes a node's mount namespace file from NETPOL_NODE_MNTNS_<NODE> (the node
// name upper-cased, every character other than a letter or digit as '_':
// node netpol-node-2 is NETPOL_NODE_MNTNS_NETPOL_NODE_2), else from
// .cluster/nodes, and uses the last node (by name) that has one. On that node
// it unmounts bpffs (in the node's mount namespace only, after proving the
// unmount cannot reach the host's), then:
//   - install without --mount-bpffs: install --wait shows that node's
//     preflight message ("bpffs is not mounted at /sys/fs/bpf on node X: ...")
//     and stops waiting once that check failed twice, while the agent
//     container never starts there, and status shows the message too;
//   - install --mount-bpffs: every node ready, bpffs mounted on that node by
//     the mount-bpffs init container, the agent's pins in it;
//   - uninstall: the pins are gone.
//
// On a single-node cluster it skips; in multi-node mode, anything it needs
// that is missing is a failure.
func TestInstallOnNodeWithoutBPFFS(t *testing.T) {
	if os.Getenv("NETPOL_MULTINODE") == "" && !framework.MultiNode() {
		t.Skip("not a multi-node cluster (NETPOL_MULTINODE unset, .cluster/nodes lists one node): this test unmounts bpffs on one node of several")
	}
	if os.Geteuid() != 0 {
		t.Fatal("multi-node mode but the test is not root (it enters a node's mount namespace)")
	}
	image := os.Getenv("NETPOL_AGENT_IMAGE")
	if image == "" {
		t.Fatal("multi-node mode but NETPOL_AGENT_IMAGE is not set")
	}
	var c *framework.Cluster
	t.Run("connect", func(t *testing.T) { c = framework.Connect(t) })
	if c == nil {
		t.Fatal("multi-node mode but the test cluster is not reachable (see the connect subtest)")
	}
	ctx := framework.Context(t, 15*time.Minute)

	node, mntns := bpffsTestNode(t, c)
	t.Logf("node %s, mount namespace %s", node, mntns)
	onNode := func(args ...string) (string, error) {
		out, err := exec.Command("nsenter", append([]string{"--mount=" + mntns, "--"}, args...)...).CombinedOutput()
		return string(out), err
	}
	mounted := func() bool {
		out, err := onNode("stat", "-f", "-c", "%T", bpffs.Path)
		if err != nil {
			t.Fatalf("stat -f %s on node %s: %v\n%s", bpffs.Path, node, err, out)
		}
		return strings.TrimSpace(out) == "bpf_fs"
	}
	refuseHostBPFFS(t, mntns)

	// Start from nothing, and leave the node as it was: bpffs mounted (by
	// us, as the cluster did) and no agent (the next test installs its own).
	if out, err := netpol(t, c, "", "uninstall", "--timeout", "3m"); err != nil {
		t.Fatalf("uninstall before the test: %v\n%s", err, out)
	}
	wasMounted := mounted()
	t.Cleanup(func() {
		if out, err := netpol(t, c, "", "uninstall", "--timeout", "3m"); err != nil {
			t.Errorf("cleanup: uninstall: %v\n%s", err, out)
		}
		if wasMounted && !mounted() {
			if out, err := onNode("mount", "-t", "bpf", "-o", "mode=0700", "bpffs", bpffs.Path); err != nil {
				t.Errorf("cleanup: mounting bpffs again on node %s: %v\n%s", node, err, out)
			}
		}
	})
	for i := 0; i < 5 && mounted(); i++ {
		if out, err := onNode("umount", bpffs.Path); err != nil {
			t.Fatalf("umount %s on node %s: %v\n%s", bpffs.Path, node, err, out)
		}
	}
	if mounted() {
		t.Fatalf("bpffs is still mounted on node %s after 5 unmounts", node)
	}

	// Default install: the node's preflight says what is wrong, up front.
	want := (&bpffs.NotMountedError{Node: node}).Error()
	out, err := netpol(t, c, "", "install", "--image", image, "--timeout", "90s")
	t.Logf("install without --mount-bpffs:\n%s", out)
	if err == nil || !strings.Contains(err.Error(), "is not ready on 1 of ") {
		t.Fatalf("install on a node without bpffs: err = %v, want not ready on 1 node", err)
	}
	if !strings.Contains(out, "Stopped waiting: ") {
		t.Errorf("install --wait waited out its timeout for a node whose check failed twice")
	}
	progress := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(node) + `: pending \(Init:(Error|CrashLoopBackOff): ` + regexp.QuoteMeta(want) + `\)$`)
	if !progress.MatchString(out) {
		t.Errorf("install --wait did not show node %s's progress line\n  %s: pending (Init:...: %s)", node, node, want)
	}
	if !strings.Contains(out, "init container "+install.PreflightContainer+": ") || !strings.Contains(out, want) {
		t.Errorf("the timeout report lacks the preflight's state and message")
	}
	for _, other := range otherNodes(t, c, node) {
		if !strings.Contains(out, "  "+other+": ready") {
			t.Errorf("node %s (with bpffs) never showed ready", other)
		}
	}
	pod := agentPodOn(ctx, t, c, node)
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == "agent" && (cs.RestartCount != 0 || cs.State.Running != nil || cs.LastTerminationState.Terminated != nil) {
			t.Errorf("the agent container ran on node %s without bpffs (restarts %d): the preflight must stop it first", node, cs.RestartCount)
		}
	}
	out, err = netpol(t, c, "", "status")
	t.Logf("status:\n%s", out)
	if !strings.Contains(out, want) {
		t.Errorf("status does not show node %s's message (err %v)", node, err)
	}

	// --mount-bpffs: the init container mounts it, every node is ready.
	out, err = netpol(t, c, "", "install", "--image", image, "--mount-bpffs", "--timeout", "3m")
	t.Logf("install --mount-bpffs:\n%s", out)
	if err != nil {
		t.Fatalf("install --mount-bpffs: %v", err)
	}
	if !mounted() {
		t.Fatalf("after install --mount-bpffs bpffs is not mounted on node %s", node)
	}
	pod = agentPodOn(ctx, t, c, node)
	logs, err := c.Client.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: install.MountBPFFSContainer}).DoRaw(ctx)
	if err != nil || !strings.Contains(string(logs), "node "+node+": mounted bpffs at "+bpffs.Path) {
		t.Errorf("the mount-bpffs init container on node %s did not say it mounted bpffs (err %v):\n%s", node, err, logs)
	}
	pins := filepath.Join(probe.DefaultPinRoot, probe.LayoutVersion)
	if out, err := onNode("ls", pins); err != nil || strings.TrimSpace(out) == "" {
		t.Errorf("no pins in %s on node %s: %v\n%s", pins, node, err, out)
	} else {
		t.Logf("pins on node %s: %s", node, strings.Join(strings.Fields(out), " "))
	}

	out, err = netpol(t, c, "", "uninstall", "--timeout", "3m")
	if err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	if out, err := onNode("ls", pins); err == nil && strings.TrimSpace(out) != "" {
		t.Errorf("pins left in %s on node %s after uninstall: %s", pins, node, out)
	}
}

// bpffsTestNode returns the last node (by name) whose mount namespace file
// is given in NETPOL_NODE_MNTNS_<NODE> or .cluster/nodes, failing when none
// is.
func bpffsTestNode(t *testing.T, c *framework.Cluster) (name, mntns string) {
	t.Helper()
	nodes, err := c.Client.CoreV1().Nodes().List(framework.Context(t, 30*time.Second), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nodes.Items {
		names = append(names, n.Name)
	}
	sort.Strings(names)
	var tried []string
	for _, n := range names {
		env := mntnsEnv(n)
		tried = append(tried, env)
		f := os.Getenv(env)
		if f == "" {
			for _, fn := range framework.Nodes {
				if fn.Name == n {
					f = fn.MntNS
				}
			}
		}
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("mount namespace of node %s: %v", n, err)
		}
		name, mntns = n, f
	}
	if name == "" {
		t.Fatalf("multi-node mode but no node's mount namespace file is known: set one of %s, or list the nodes in .cluster/nodes", strings.Join(tried, ", "))
	}
	return name, mntns
}

// mntnsEnv is the variable holding node's mount namespace file.
func mntnsEnv(node string) string {
	return "NETPOL_NODE_MNTNS_" + strings.ToUpper(regexp.MustCompile(`[^A-Za-z0-9]`).ReplaceAllString(node, "_"))
}

// refuseHostBPFFS fails the test unless unmounting /sys/fs/bpf in mntns
// leaves the host's alone: mntns is another mount namespace, and its
// /sys/fs/bpf mount is in no peer group the host's mounts belong to (an
// unmount in a peer would propagate to the host).
func refuseHostBPFFS(t *testing.T, mntns string) {
	t.Helper()
	var node, self syscall.Stat_t
	if err := syscall.Stat(mntns, &node); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat("/proc/self/ns/mnt", &self); err != nil {
		t.Fatal(err)
	}
	if node.Ino == self.Ino && node.Dev == self.Dev {
		t.Fatalf("%s is the test's own (the host's) mount namespace: refusing to unmount its bpffs", mntns)
	}
	out, err := exec.Command("nsenter", "--mount="+mntns, "--", "cat", "/proc/self/mountinfo").Output()
	if err != nil {
		t.Fatalf("reading the node's mountinfo: %v", err)
	}
	host, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	hostGroups := peerGroups(string(host), "")
	for g := range peerGroups(string(out), bpffs.Path) {
		if hostGroups[g] {
			t.Fatalf("the node's %s is in peer group %s with a mount of the host: unmounting it would unmount the host's", bpffs.Path, g)
		}
	}
}

// peerGroups returns the shared peer groups ("shared:N") of the mounts in
// mountinfo, of those at dir only when dir is not "".
func peerGroups(mountinfo, dir string) map[string]bool {
	groups := map[string]bool{}
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) < 7 || (dir != "" && f[4] != dir) {
			continue
		}
		for _, opt := range f[6:] {
			if opt == "-" {
				break
			}
			if strings.HasPrefix(opt, "shared:") {
				groups[opt] = true
			}
		}
	}
	return groups
}

func otherNodes(t *testing.T, c *framework.Cluster, except string) []string {
	t.Helper()
	nodes, err := c.Client.CoreV1().Nodes().List(framework.Context(t, 30*time.Second), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range nodes.Items {
		if n.Name != except {
			out = append(out, n.Name)
		}
	}
	return out
}

// agentPodOn returns the current agent pod on node.
func agentPodOn(ctx context.Context, t *testing.T, c *framework.Cluster, node string) *corev1.Pod {
	t.Helper()
	pods, err := install.AgentPods(ctx, c.Client, install.DefaultNamespace)
	if err != nil {
		t.Fatal(err)
	}
	for i := range pods {
		if pods[i].Spec.NodeName == node && pods[i].DeletionTimestamp == nil {
			return &pods[i]
		}
	}
	t.Fatalf("no agent pod on node %s", node)
	return nil
}
