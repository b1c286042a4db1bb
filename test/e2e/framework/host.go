package framework

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RequireRoot skips (fails in CI) unless the test runs as root, as host-side network checks need.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "this test changes the node's network namespaces and needs root")
	}
}

// Run runs a host command and returns its combined output, failing the test on error.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// PodNetns returns the name of the CNI network namespace (under /run/netns) holding the IP, on
// the node that runs it (which it also returns): use it as node.Run(t, "ip", "-n", name, ...).
func PodNetns(t testing.TB, ip string) (string, Node) {
	t.Helper()
	for _, n := range Nodes {
		out, err := n.Command("ls", "/run/netns").Output()
		if err != nil {
			continue
		}
		for _, name := range strings.Fields(string(out)) {
			if !strings.HasPrefix(name, "cni-") {
				continue
			}
			out, err := n.Command("ip", "-n", name, "-o", "-4", "addr", "show").Output()
			if err == nil && strings.Contains(string(out), fmt.Sprintf(" %s/", ip)) {
				return name, n
			}
		}
	}
	t.Fatalf("no CNI network namespace on any node holds %s", ip)
	return "", Node{}
}
