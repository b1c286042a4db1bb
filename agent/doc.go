// Package agent is the node agent behind `kubectl netpol install`: it watches
// the cluster (pods, namespaces, NetworkPolicies, ClusterNetworkPolicies,
// services, nodes) with
// client-go informers (pods kept as compact CachedPod records from the
// informers' transform on), compiles the node's datapath with policy.Compile and
// writes it into the eBPF maps with probe.Apply through a rate-limited
// workqueue that coalesces bursts; it turns kernel verdict events into
// enriched flows (pods, workloads, Service, deciding policies) served by a
// flow.Hub over gRPC on 127.0.0.1; and it exports health and Prometheus
// metrics on 127.0.0.1.
//
// ClusterNetworkPolicies are followed through their CRD, which may be
// installed after the agent or removed (clusterpolicies.go). Their status
// carries one condition, netpol.kubectl.io/Enforced, saying whether each
// policy is enforced on every node, with no write amplification: each agent
// reports what its node enforces in a Lease of its own, only when that
// changes, and a single agent elected through a Lease writes the condition,
// only when it changes (cnpconditions.go). Every agent writing its own
// condition on every policy would cost nodes x policies writes per change
// and grow each object with the node count.
//
// The datapath is pinned: when the agent stops (crash, restart, upgrade)
// enforcement goes on. Only when its own DaemonSet is being deleted (that is,
// `kubectl netpol uninstall`) does it remove its programs, links and pins
// before exiting.
package agent
