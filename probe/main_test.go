//go:build linux

package probe

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netns"
)

// TestMain fails the run when the tests leak file descriptors (maps,
// programs, links, ring buffer readers, sockets, namespace handles).
//
// It first removes what earlier runs that died (a panic, SIGKILL) left
// behind: network namespaces and pin directories named after a PID that no
// longer exists. Only names this package's tests create are touched.
func TestMain(m *testing.M) {
	removeStale()
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

var staleName = regexp.MustCompile(`^(?:np|netpol-test-)(\d+)-`)

func removeStale() {
	dead := func(name string) bool {
		m := staleName.FindStringSubmatch(name)
		if m == nil {
			return false
		}
		pid, _ := strconv.Atoi(m[1])
		return pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH
	}
	if ents, err := os.ReadDir("/sys/fs/bpf"); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "netpol-test-") && dead(e.Name()) {
				// Removing the pins detaches the links nobody holds.
				os.RemoveAll(filepath.Join("/sys/fs/bpf", e.Name()))
			}
		}
	}
	if ents, err := os.ReadDir("/var/run/netns"); err == nil {
		for _, e := range ents {
			if dead(e.Name()) {
				netns.DeleteNamed(e.Name())
			}
		}
	}
}
