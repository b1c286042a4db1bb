// Package probe is the node's eBPF datapath: it loads the NetworkPolicy
// programs (netpol.c, compiled by bpf2go and committed), pins them and their
// maps under bpffs, attaches them to the netfilter FORWARD, LOCAL_IN and
// LOCAL_OUT hooks of a network namespace, writes a policy.Datapath into the
// maps with per-endpoint atomic swaps, revokes established connections that a
// new policy denies, and reads verdict events from the ring buffer.
//
// Enforcement outlives the process: links and maps are pinned, so Close leaves
// the programs running and a new process (or a new version) re-opens the pins;
// Uninstall removes everything.
package probe
