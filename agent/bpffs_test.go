//go:build linux

package agent

import "testing"

// TestUnderBPFFS: the agent checks the node's bpffs only for pin roots in
// /sys/fs/bpf (tests and --pin-root elsewhere bring their own).
func TestUnderBPFFS(t *testing.T) {
	for dir, want := range map[string]bool{
		"/sys/fs/bpf/netpol":    true,
		"/sys/fs/bpf":           true,
		"/sys/fs/bpf/a/../b":    true,
		"/sys/fs/bpfx/netpol":   false,
		"/sys/fs/bpf/../cgroup": false,
		"/run/netpol-test/pins": false,
	} {
		if got := underBPFFS(dir); got != want {
			t.Errorf("underBPFFS(%q) = %v, want %v", dir, got, want)
		}
	}
}
