// Package bpffs checks, and on request mounts, the BPF filesystem at
// /sys/fs/bpf, where the agent pins its maps and links so that enforcement
// outlives the agent's pod.
//
// The agent never mounts bpffs itself: it runs without CAP_SYS_ADMIN, and a
// mount made inside its container would not reach the node anyway. Check
// (statfs, no privilege needed) turns a missing bpffs into NotMountedError,
// whose message says what to do; Mount is what the opt-in init container of
// `kubectl netpol install --mount-bpffs` runs.
package bpffs
