package bpffs

import (
	"errors"
	"fmt"
)

// Path is where the node's bpffs is expected: systemd's sys-fs-bpf.mount and
// every eBPF agent (Cilium, Calico, the kernel's own tools) use it.
const Path = "/sys/fs/bpf"

// ErrNotMounted is matched (errors.Is) by every NotMountedError.
var ErrNotMounted = errors.New("bpffs is not mounted")

// NotMountedError says that Path is not bpffs on Node, and how to fix it.
type NotMountedError struct {
	// Node names the node ("" when unknown: the message then says "this node").
	Node string
	// Path is the directory that is not bpffs (Path when empty).
	Path string
	// Found describes what is there instead ("sysfs", "no such directory"),
	// for the log; it is not part of the message.
	Found string
}

func (e *NotMountedError) Error() string {
	node := "this node"
	if e.Node != "" {
		node = "node " + e.Node
	}
	path := e.Path
	if path == "" {
		path = Path
	}
	return fmt.Sprintf("bpffs is not mounted at %s on %s: mount it on the node (`mount -t bpf bpffs %s`, or enable systemd's sys-fs-bpf.mount), "+
		"or reinstall with `kubectl netpol install --mount-bpffs`", path, node, path)
}

// Is makes errors.Is(err, ErrNotMounted) true.
func (e *NotMountedError) Is(target error) bool { return target == ErrNotMounted }
