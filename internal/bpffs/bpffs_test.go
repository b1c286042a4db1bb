package bpffs

import (
	"errors"
	"fmt"
	"testing"
)

func TestNotMountedMessage(t *testing.T) {
	for _, tc := range []struct {
		err  NotMountedError
		want string
	}{
		{NotMountedError{Node: "node-b"}, "bpffs is not mounted at /sys/fs/bpf on node node-b: mount it on the node " +
			"(`mount -t bpf bpffs /sys/fs/bpf`, or enable systemd's sys-fs-bpf.mount), or reinstall with `kubectl netpol install --mount-bpffs`"},
		{NotMountedError{Path: "/host/bpf", Found: "tmpfs"}, "bpffs is not mounted at /host/bpf on this node: mount it on the node " +
			"(`mount -t bpf bpffs /host/bpf`, or enable systemd's sys-fs-bpf.mount), or reinstall with `kubectl netpol install --mount-bpffs`"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() =\n  %s\nwant\n  %s", got, tc.want)
		}
	}
	wrapped := fmt.Errorf("starting: %w", &NotMountedError{Node: "n"})
	if !errors.Is(wrapped, ErrNotMounted) {
		t.Error("errors.Is(wrapped NotMountedError, ErrNotMounted) = false")
	}
	var nm *NotMountedError
	if !errors.As(wrapped, &nm) || nm.Node != "n" {
		t.Errorf("errors.As = %v, %+v", nm != nil, nm)
	}
}
