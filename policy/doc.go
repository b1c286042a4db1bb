// Package policy is THE NetworkPolicy engine of kubectl-netpol: pure Go, no
// clients, no I/O. The CLI (explain, check, matrix, watch) and the node agent's
// datapath compiler both use it, so what the CLI says and what the kernel does
// cannot disagree.
//
// A Snapshot (pods, namespaces, networking.k8s.io/v1 NetworkPolicies) is
// validated and indexed once by NewEngine; Engine.Evaluate then answers one
// Traffic at a time with a Decision that explains itself: which policies
// isolate each side, which policy / rule / peer / port allowed the traffic,
// and, when nothing did, why each rule of each selecting policy did not match.
// Engine.Allowed gives the same verdict without the explanation, for bulk use
// (check, matrix); both run the same matching code. An Engine is immutable and
// safe for concurrent use.
//
// A caller that rebuilds the Engine on every cluster change (the node agent)
// keeps a Cache and calls NewEngineCached: what each unchanged object (same
// pointer, same resourceVersion, as informers hand out) determines on its
// own is derived once, not per build; the Engine is the one NewEngine builds.
// Such a caller gives its pods as Pod records (Snapshot.PodRecords, made by
// NewPod: a few hundred bytes where a *corev1.Pod takes kilobytes); the CLI
// gives objects, which the Engine turns into the same records, so both are
// judged by the same code.
//
// # Semantics
//
// A side (the source's egress, the destination's ingress) is isolated when a
// policy of the pod's namespace selects the pod for that direction; policyTypes
// defaults to Ingress, plus Egress when the policy has egress rules. Rules of
// a direction a policy does not isolate are ignored. An isolated side allows
// the traffic if any rule of any selecting policy matches: some from/to entry
// (none = all peers) AND some ports entry (none = all ports and protocols).
// Traffic is allowed when both sides allow it.
//
// Peers: podSelector alone means the policy's namespace; namespaceSelector
// alone means every pod of the matching namespaces (which carry
// kubernetes.io/metadata.name); both in one entry are ANDed. Selectors match
// only pods that do not use the host network. ipBlock (with except) matches
// any address, pod IPs included. An IP owned by a Snapshot pod is that pod.
//
// Ports: protocol defaults to TCP; a protocol-only entry is every port of that
// protocol; endPort is inclusive; a named port matches a destination pod that
// declares that name for that protocol with that number, and never matches
// traffic to an IP: a name that resolves nowhere matches nothing.
//
// Exempt (allowed, Reason NotApplicable, with a Warning): loopback (a pod to
// itself, 127.0.0.0/8, ::1); the pod's side of traffic with a Snapshot.NodeIPs
// address; the side of a hostNetwork pod or an external IP.
//
// # Rendering a Decision
//
// Print the verdict, then per side: NotApplicable and NotIsolated need one
// line; otherwise print each PolicyEvaluation's Summary, then for each rule
// whose Matched is false its Mismatches (peer entries first, then port
// entries; each Message is a full sentence). A PolicyEvaluation with no Rules
// is a policy that selects the pod but has no rules in that direction: its
// Summary reads "... has no ingress rules: denies all ingress". AllowedBy names
// each allowing rule with the peer and port index that matched (-1 = the rule
// has no peers / no ports). Warnings belong to the whole Decision.
//
// # Building blocks
//
// For the datapath compiler and other bulk users: SelectingPolicies,
// Isolates, RuleCount, RuleShape, PeerMatches, PeerIPBlock, PeerPods,
// PortRanges (a ports entry resolved for one destination pod), Exempt and
// SideExempt, PolicyTypes, ResolvePort (a named port on a pod, for --port NAME)
// and ValidatePolicy. Package policytest has object builders and Synthetic, a
// deterministic snapshot generator for benchmarks.
package policy
