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

// PodNetns returns the name of the CNI network namespace (under /run/netns) holding the IP.
func PodNetns(t testing.TB, ip string) string {
	t.Helper()
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		t.Fatalf("listing /run/netns: %v", err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "cni-") {
			continue
		}
		out, err := exec.Command("ip", "-n", e.Name(), "-o", "-4", "addr", "show").Output()
		if err == nil && strings.Contains(string(out), fmt.Sprintf(" %s/", ip)) {
			return e.Name()
		}
	}
	t.Fatalf("no CNI network namespace holds %s", ip)
	return ""
}
