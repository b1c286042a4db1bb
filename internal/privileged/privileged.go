// Package privileged is a helper of the tests that need root: network
// namespaces, BPF programs, real packets. Such a test must run in CI, so a
// missing privilege or tool fails it there (CI set) and skips it, with the
// reason, elsewhere.
package privileged

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Require fails (CI) or skips the test unless it runs as root with every
// one of tools on PATH. what names the kind of test in the CI failure.
func Require(t testing.TB, what string, tools ...string) {
	t.Helper()
	reason := ""
	if os.Geteuid() != 0 {
		reason = "needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN)"
	} else {
		for _, tool := range tools {
			if _, err := exec.LookPath(tool); err != nil {
				reason = fmt.Sprintf("needs %s on PATH: run hack/install-deps.sh", tool)
				break
			}
		}
	}
	if reason == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("privileged %s test cannot run in CI: %s", what, reason)
	}
	t.Skip(reason)
}
