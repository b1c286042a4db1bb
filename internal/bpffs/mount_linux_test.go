//go:build linux

package bpffs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kubectl-netpol/kubectl-netpol/internal/privileged"
)

// childEnv marks the re-executed test binary that runs in its own mount
// namespace (see TestCheckAndMountInMountNamespace).
const childEnv = "NETPOL_TEST_BPFFS_CHILD"

// TestCheckAndMountInMountNamespace proves, as root, that Check detects a
// node without bpffs and that Mount, run where the agent's init container
// runs (a mount namespace whose /sys/fs/bpf propagates to the node's, as
// mountPropagation Bidirectional makes it), mounts it for the node.
//
// The node is a child process in a new mount namespace with private
// propagation (Go's exec makes / rprivate after CLONE_NEWNS), where
// /sys/fs/bpf is unmounted first: the host's bpffs is never touched.
func TestCheckAndMountInMountNamespace(t *testing.T) {
	privileged.Require(t, "bpffs mount")
	before := hostState(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestMountNamespaceChild$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+nsID(t))
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil {
		t.Fatalf("child in its own mount namespace: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: TestMountNamespaceChild") {
		t.Fatal("the child did not run TestMountNamespaceChild")
	}
	if after := hostState(t); after != before {
		t.Errorf("the host's /sys/fs/bpf changed: %s before, %s after", before, after)
	}
}

// TestMountNamespaceChild is the node of TestCheckAndMountInMountNamespace;
// it runs only in the child.
func TestMountNamespaceChild(t *testing.T) {
	parentNS := os.Getenv(childEnv)
	if parentNS == "" {
		t.Skip("runs only as the child of TestCheckAndMountInMountNamespace")
	}
	if nsID(t) == parentNS {
		t.Fatal("not in a mount namespace of its own: refusing to unmount anything")
	}
	if propagation(t, "/") != "private" {
		t.Fatalf("/ is not private in the child's mount namespace (%s): refusing to unmount anything", propagation(t, "/"))
	}
	// The node without bpffs: unmount every bpffs stacked at Path, here only.
	for Check("", Path) == nil {
		if err := unix.Unmount(Path, unix.MNT_DETACH); err != nil {
			t.Fatalf("unmounting %s in the child's namespace: %v", Path, err)
		}
	}

	err := Check("node-x", Path)
	var nm *NotMountedError
	if !errors.As(err, &nm) || nm.Node != "node-x" || nm.Path != Path {
		t.Fatalf("Check on a node without bpffs = %v, want a NotMountedError for node-x at %s", err, Path)
	}
	t.Logf("Check: %v (found %s)", err, nm.Found)
	if !strings.Contains(err.Error(), "bpffs is not mounted at /sys/fs/bpf on node node-x") {
		t.Errorf("message %q does not say it", err)
	}

	// An agent container created before the mount: a private bind of the
	// node's /sys/fs/bpf (mountPropagation None).
	early := bindOf(t, Path)

	// The init container: its own mount namespace, where the node's
	// /sys/fs/bpf is a shared bind (Bidirectional: rshared).
	if err := unix.Mount(Path, Path, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("binding %s onto itself: %v", Path, err)
	}
	if err := unix.Mount("", Path, "", unix.MS_SHARED, ""); err != nil {
		t.Fatalf("making %s shared: %v", Path, err)
	}
	var mounted bool
	err = onThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			return err
		}
		var err error
		mounted, err = Mount(Path)
		return err
	})
	if err != nil || !mounted {
		t.Fatalf("Mount in the init container's namespace = %v, %v; want true, nil", mounted, err)
	}
	// The init container's namespace is gone; the mount stays on the node.
	if err := Check("node-x", Path); err != nil {
		t.Fatalf("after Mount, on the node: %v", err)
	}
	// The agent container is created after the init container: a plain
	// bind sees bpffs, no propagation needed.
	if err := Check("", bindOf(t, Path)); err != nil {
		t.Errorf("an agent container created after the mount: %v", err)
	}
	// One created before sees it only with HostToContainer; with None it
	// keeps the old directory (why the mount is an init container).
	if err := Check("", early); !errors.Is(err, ErrNotMounted) {
		t.Errorf("a private bind made before the mount: Check = %v, want ErrNotMounted", err)
	}
	// Nothing to do the second time.
	if mounted, err := Mount(Path); mounted || err != nil {
		t.Errorf("Mount where bpffs is mounted = %v, %v; want false, nil", mounted, err)
	}
}

// bindOf bind-mounts dir on a new directory, as a container runtime mounts
// a hostPath with mountPropagation None (a private bind), and returns it.
func bindOf(t *testing.T, dir string) string {
	t.Helper()
	target := t.TempDir()
	if err := unix.Mount(dir, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		t.Fatalf("binding %s on %s: %v", dir, target, err)
	}
	if err := unix.Mount("", target, "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		t.Fatalf("making %s private: %v", target, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(target, unix.MNT_DETACH) })
	return target
}

// onThread runs fn on a locked OS thread that is thrown away after, so fn
// may move the thread to another mount namespace.
func onThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the runtime discards the thread
		errc <- fn()
	}()
	return <-errc
}

func nsID(t *testing.T) string {
	t.Helper()
	id, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// propagation is the propagation of the visible mount at dir, from
// mountinfo: "shared", "slave" or "private".
func propagation(t *testing.T, dir string) string {
	t.Helper()
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	prop := ""
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 7 || f[4] != dir {
			continue
		}
		prop = "private" // the last mount at dir is the visible one
		for _, opt := range f[6:] {
			if opt == "-" {
				break
			}
			if strings.HasPrefix(opt, "shared:") {
				prop = "shared"
			} else if strings.HasPrefix(opt, "master:") {
				prop = "slave"
			}
		}
	}
	return prop
}

// hostState describes the host's /sys/fs/bpf (device and whether it is
// bpffs), to prove the test left it alone.
func hostState(t *testing.T) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(Path, &st); err != nil {
		return err.Error()
	}
	return fmt.Sprintf("device %d, bpffs mounted: %v", st.Dev, Check("", Path) == nil)
}
