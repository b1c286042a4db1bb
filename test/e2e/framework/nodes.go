package framework

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// Node is one node of the test cluster. On one node (make cluster-up) it is the host; on several
// (make cluster-up NODES=N) each node is a network + mount + UTS namespace whose files
// hack/cluster/node.sh lists in .cluster/nodes.
type Node struct {
	Name, IP string
	// NetNS, MntNS, UTSNS are the namespace files; empty for the host node.
	NetNS, MntNS, UTSNS string
}

// Nodes is the cluster's nodes, read once from .cluster/nodes (absent: the single host node).
var Nodes = loadNodes()

// NodeName and NodeIP name the first node, where tests place pods unless they choose.
var (
	NodeName = Nodes[0].Name
	NodeIP   = Nodes[0].IP
)

// MultiNode reports whether the cluster has several (namespace) nodes.
func MultiNode() bool { return len(Nodes) > 1 }

func loadNodes() []Node {
	host := []Node{{Name: "netpol-node", IP: ControlPlaneIP}}
	f, err := os.Open(filepath.Join(RepoRoot(), ".cluster", "nodes"))
	if err != nil {
		return host
	}
	defer f.Close()
	var nodes []Node
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 5 || strings.HasPrefix(fs[0], "#") {
			continue
		}
		nodes = append(nodes, Node{Name: fs[0], IP: fs[1], NetNS: fs[2], MntNS: fs[3], UTSNS: fs[4]})
	}
	if len(nodes) == 0 {
		return host
	}
	return nodes
}

// NodeByName returns the node called name, failing the test when there is none.
func NodeByName(t testing.TB, name string) Node {
	t.Helper()
	for _, n := range Nodes {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("no node %q in the test cluster (%d nodes)", name, len(Nodes))
	return Node{}
}

// Command returns a command that runs on the node: in its namespaces (nsenter, not `ip netns
// exec`, which would remount /sys and hide the node's bpffs), or on the host for the host node.
func (n Node) Command(name string, args ...string) *exec.Cmd {
	if n.NetNS == "" {
		return exec.Command(name, args...)
	}
	return exec.Command("nsenter", append([]string{"--net=" + n.NetNS, "--mount=" + n.MntNS, "--uts=" + n.UTSNS, "--", name}, args...)...)
}

// Run runs a command on the node and returns its combined output, failing the test on error.
func (n Node) Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := n.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("on node %s: %s %s: %v\n%s", n.Name, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Path returns how the host reaches path inside the node's mount namespace (its bpffs pins,
// say): through /proc/PID/root of the node's containerd. The host node's path is path itself.
func (n Node) Path(t testing.TB, path string) string {
	t.Helper()
	if n.MntNS == "" {
		return path
	}
	b, err := os.ReadFile("/run/netpol-cluster/pids/containerd@" + n.Name + ".pid")
	if err != nil {
		t.Fatalf("node %s: no containerd pid record to reach its mount namespace: %v", n.Name, err)
	}
	return filepath.Join("/proc", strings.Fields(string(b))[0], "root", path)
}

// NetnsInode is the inode of the node's network namespace (as bpftool reports netns_ino).
func (n Node) NetnsInode(t testing.TB) uint64 {
	t.Helper()
	f := n.NetNS
	if f == "" {
		f = "/proc/1/ns/net"
	}
	var st syscall.Stat_t
	if err := syscall.Stat(f, &st); err != nil {
		t.Fatalf("stat %s: %v", f, err)
	}
	return st.Ino
}

// NodeOf returns the node a pod runs on.
func NodeOf(t testing.TB, pod *corev1.Pod) Node {
	t.Helper()
	return NodeByName(t, pod.Spec.NodeName)
}
