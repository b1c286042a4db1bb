package privileged

import (
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// NewNamedNS creates the named network namespace name (removed at the
// test's cleanup) with its loopback up and IPv6 duplicate address
// detection off, so addresses are usable at once, and returns its handle.
func NewNamedNS(t testing.TB, name string) netns.NsHandle {
	t.Helper()
	var h netns.NsHandle
	err := OnThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		if h, err = netns.NewNamed(name); err != nil {
			return err
		}
		return netns.Set(orig)
	})
	if err != nil {
		t.Fatalf("creating netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		h.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("deleting netns %s: %v", name, err)
		}
	})
	RunIn(t, name, "ip", "link", "set", "lo", "up")
	RunIn(t, name, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	return h
}

// OnThread runs fn on a fresh locked OS thread that is thrown away after,
// so fn may change the thread's network namespace.
func OnThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the runtime discards the thread
		errc <- fn()
	}()
	return <-errc
}

// In runs fn inside the network namespace h (see OnThread); sockets fn
// makes stay in it.
func In(h netns.NsHandle, fn func() error) error {
	return OnThread(func() error {
		if err := netns.Set(h); err != nil {
			return err
		}
		return fn()
	})
}

// TryIn runs a command inside the named namespace and returns its output.
func TryIn(name string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", name}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// RunIn is TryIn that fails the test on error.
func RunIn(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := TryIn(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
