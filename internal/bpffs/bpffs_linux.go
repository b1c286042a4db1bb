//go:build linux

package bpffs

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Check returns nil when path is the root of a bpffs, a *NotMountedError
// naming node when it is another file system or missing, and another error
// when it cannot tell. It needs no privilege: statfs(2) only.
func Check(node, path string) error {
	var st unix.Statfs_t
	err := unix.Statfs(path, &st)
	switch {
	case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR):
		return &NotMountedError{Node: node, Path: path, Found: "no such directory"}
	case err != nil:
		return fmt.Errorf("checking for bpffs at %s: %w", path, err)
	case st.Type != unix.BPF_FS_MAGIC:
		return &NotMountedError{Node: node, Path: path, Found: fsName(st.Type)}
	}
	// A directory inside a bpffs (e.g. a hostPath of /sys/fs/bpf/x) has the
	// magic too; pins there still work, so it counts as mounted.
	return nil
}

// Mount mounts bpffs at path unless it is already there, and reports whether
// it mounted. It needs CAP_SYS_ADMIN; for the node to see the mount, path
// must propagate to the node's mount namespace (in a pod: a hostPath with
// mountPropagation Bidirectional). The mode is systemd's (0700).
func Mount(path string) (bool, error) {
	err := Check("", path)
	if !errors.Is(err, ErrNotMounted) {
		return false, err
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return false, fmt.Errorf("creating %s: %w", path, err)
	}
	if err := unix.Mount("bpffs", path, "bpf", 0, "mode=0700"); err != nil {
		return false, fmt.Errorf("mounting bpffs at %s: %w", path, err)
	}
	if err := Check("", path); err != nil {
		return true, fmt.Errorf("after mounting: %w", err)
	}
	return true, nil
}

// fsName names the usual file systems found at /sys/fs/bpf instead of bpffs.
func fsName(magic int64) string {
	switch magic {
	case unix.SYSFS_MAGIC:
		return "sysfs (the bare /sys directory)"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs (the container's own root)"
	}
	return fmt.Sprintf("file system type %#x", magic)
}
