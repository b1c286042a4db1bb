//go:build linux

package probe

import (
	"fmt"
	"os"
	"testing"
)

// TestMain fails the run when the tests leak file descriptors (maps,
// programs, links, ring buffer readers, sockets, namespace handles).
func TestMain(m *testing.M) {
	// The runtime's poller opens its own descriptors on first use.
	r, w, _ := os.Pipe()
	r.Close()
	w.Close()
	before := openFDs()
	code := m.Run()
	if code == 0 && os.Getenv("NETPOL_TEST_AGENT") == "" {
		if after := openFDs(); after > before {
			fmt.Fprintf(os.Stderr, "leaked %d file descriptors (%d before the tests, %d after)\n", after-before, before, after)
			code = 1
		}
	}
	os.Exit(code)
}

func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}
