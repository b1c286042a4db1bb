// Package cni tells which CNI (and which of its modes) runs beside the agent,
// and what that means for enforcement: the agent's programs sit on the
// netfilter hooks, so a CNI whose datapath redirects pod traffic between
// interfaces with tc programs (Cilium, Calico's eBPF dataplane) takes that
// traffic past them.
//
// Classification is pure: Classify reads Facts, which the agent gathers on
// its node (internal/cni/nodefacts: CNI configuration files, links and their
// kinds, tc and tcx programs on pod interfaces, pins of other datapaths under
// bpffs, nftables chains) and `kubectl netpol install` gathers through the
// API (FactsFromCluster: the CNIs' DaemonSets and ConfigMaps). The table of
// CNIs and modes is docs/install.md's.
package cni
