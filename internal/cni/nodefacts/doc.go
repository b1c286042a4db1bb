// Package nodefacts gathers, on a Linux node, the facts internal/cni
// classifies: the CNI configuration files, the links with their kinds and
// the tc/tcx programs on them, the pins other datapaths keep under bpffs,
// and the nftables chains. It reads only (netlink dumps, bpf queries,
// directory listings) and needs NET_ADMIN and BPF, which the agent has.
package nodefacts
