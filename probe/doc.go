// Package probe is the node's eBPF datapath: it loads the NetworkPolicy
// programs (netpol.c, compiled by bpf2go and committed), pins them and their
// maps under bpffs, attaches them to the netfilter FORWARD, LOCAL_IN and
// LOCAL_OUT hooks (IPv4 and IPv6) of a network namespace, writes a
// policy.Datapath into the maps with per-endpoint atomic swaps, revokes
// established connections that a new policy denies, and reads verdict events
// from the ring buffer.
//
// # Verdicts
//
// The kernel's conntrack decides what is established: the program reads
// skb->_nfct first and accepts established, reply and related packets, and
// NEW entries already confirmed, without parsing. A NEW, unconfirmed
// connection is judged after DNAT and before SNAT: the source's egress (if
// it is a local endpoint) and the destination's ingress (likewise); a drop
// happens before conntrack confirms the entry, so nothing is left behind. A
// TCP packet without SYN that creates an entry (a mid-stream pickup, e.g.
// after revocation) must be allowed in both orientations. UDP and SCTP have
// no such mark, so revocation leaves a tombstone for each flow it deletes: a
// packet going the other way of a revoked flow is judged in the revoked
// orientation too, and the server side cannot start the flow again.
// Revocation reads only the entries of the addresses a change concerns (the
// pods whose identity or policy got stricter, on the side that changed; the
// kernel filters the dump by address, CTA_FILTER), and the whole table after
// a failure or past revokeWalkLimit kernel walks (conntrack.go, readEntries).
//
// A side's lookup yields the deciding rule ID; the side allows when it is
// not 0 and has no policy.RuleDeny bit. Directions NetworkPolicy alone
// governs hold only allowances (their union decides, as before). A resolved
// direction (policy.EndpointPolicy.Resolved: a ClusterNetworkPolicy or an
// audited policy applies; its map is consulted even when NetworkPolicy does
// not isolate the pod) holds decisions: the peer identity's entries, then
// identity "any", then the entries of exactly the longest CIDR prefix
// holding the peer (each prefix its own pseudo identity, no union with
// wider ones); within one peer the narrowest port match decides (the
// ranges are made disjoint before they are laid out, so the hash, summary
// slots, chunks and trie blocks cannot disagree). A deny gives the reason
// DENIED_BY_RULE (policy.RuleIsolated keeps NO_RULE_MATCHED,
// policy.RuleNotIsolated NOT_ISOLATED). A side whose rule has
// policy.RuleAudit flags the event FlagAudit and counts it (Stats.Audited);
// such flows are reported even when flow events are off. The lookup is one
// global BPF function, verified once rather than at each of its four call
// sites.
//
// # Maps (pinned under PinRoot/LayoutVersion)
//
//   - netpol_hosts: hash, address -> identity for every pod and node
//     address (constant cost whatever the number of pods);
//     netpol_ipcache: LPM trie, IPv4-mapped-IPv6 prefix -> identity for the
//     rest (looked up after the hash; a miss is the world identity; node
//     addresses have the host identity).
//   - netpol_endpoints: hash, pod IP -> {endpoint ID, identity, isolation
//     flags per direction, ingress slot, egress slot}.
//   - netpol_policy_slots: array of maps, one hash per endpoint direction,
//     replaced whole on change (the atomic swap). Exact entries (identity,
//     protocol, port -> rule ID; ranges of up to 16 ports are expanded) and
//     one summary per identity (its every-protocol rule, every-port rule per
//     protocol, its first two port ranges, whether it has more, and the
//     direction's trie slot), then per identity and protocol up to 8 range
//     chunks of two further ranges each (identity, protocol, chunk number),
//     and the direction's single-address CIDR entries (/32, /128: a fold of
//     the address -> the address and its pseudo identity; of addresses with
//     one fold, all but the lowest stay in the trie). Lookups per peer:
//     exact port, then the summary, then its chunks in order; a verdict
//     costs a constant number of hash lookups however many peers a policy
//     names, and an ipBlock of the peer's exact address one more.
//   - netpol_policy_tries: array of LPM tries, two per endpoint direction
//     (2*slot + generation, used in turn; the hash names the one it goes
//     with, so one slot update still swaps everything). A trie holds what
//     a hash cannot match: port-range blocks beyond the chunks (identity |
//     protocol | port prefix -> rule ID) and CIDR entries (address prefix -> pseudo identity
//     for the set of ipBlocks, excepts flattened so the most specific prefix
//     carries the matching set; in a resolved direction, for that prefix's
//     own entries; IPv6 blocks never hold IPv4 addresses).
//     Lookup order: the peer's identity, any peer, the peer's CIDR pseudo
//     identity (its exact address in the hash, else the trie's longest
//     prefix).
//   - netpol_endpoint_seen: array by slot pair of each local endpoint's
//     last new flow (bpf_ktime_get_ns, written at most once a second; reset
//     when a pair changes hands): LastNewFlow, for the agent's bypass
//     self-check without flow events or a conntrack dump.
//   - netpol_revoked: LRU hash of UDP/SCTP flows revocation deleted, so the
//     other side's next packet is judged in the revoked orientation instead
//     of starting the flow again.
//   - netpol_config (drop-event rate and burst, wake-up watermark, flow
//     events on/off), netpol_buckets (per-CPU token buckets),
//     netpol_counters (per-CPU), netpol_events (ring buffer),
//     netpol_spoof_guard (interface, address) pairs for the TCX check
//     netpol_spoof on the host side of pod interfaces: SetGuards makes the
//     guarded interfaces (pinned TCX links under links/<name>/spoof_<ifindex>)
//     and their addresses exactly what it is given, reading the state back
//     from the pins and the map, so it is restart-safe and never lets a
//     reused interface index inherit an old pod's addresses. The check covers
//     IP sources and the addresses ARP and IPv6 neighbour advertisements
//     claim.
//
// # Events
//
// Event (struct netpol_event, version EventVersion) is one per new allowed
// flow and per drop (drops rate-limited per CPU): type, verdict, deciding
// direction, per-direction reason and rule ID, protocol, TCP flags, hook,
// family, flags (DNAT, SNAT, untracked, pickup, revoked, audit), length, timestamp,
// endpoints, identities, the tuple at the hook and conntrack's original
// (pre-NAT) tuple. Attribute maps it back to policies with the Datapath.
//
// FlowEnd (struct netpol_flow_end, same version, in its own ring
// netpol_flow_ends) is one per ended connection of a local endpoint, from
// one of two programs loaded apart (a kernel without their hooks still
// enforces): OpenFlowEnds traces conntrack's destructor (fentry, every
// protocol); OpenTCPFlowEnds traces the TCP socket states (tp_btf, for
// kernels that refuse fentry programs), keeping each established socket's
// side and start in netpol_sock_starts (socket-local storage, pinned) until
// it closes.
//
// Aggregation (Config.AggregateInterval): the first allowed new flow of a
// flow key (the event's tuples without the client's port, the rules of
// both sides, the hook) in each interval gets its event; the others are
// counted in netpol_agg_new (LRU hash: ever-growing count, the interval's
// start, the last recorded event as a sample) before anything is reserved
// in the ring (the key is built in netpol_agg_scratch, per CPU). The TCP socket ends do the same in netpol_agg_end (the original
// tuple without the client's port -> count, summed packets, bytes and
// lifetimes). ReadNewFlowAggregates and ReadEndAggregates read them; a
// reader reports the counters' growth since its last reading. Towards a pod
// of another node (judged again there) a repeat is counted only while the
// key is answered: netpol_answered (LRU hash, the original direction
// without the client's port -> when a local client's socket last became
// ESTABLISHED; deleted when one's connect fails), written by the TCP
// socket-state program.
//
// Enforcement outlives the process: links and maps are pinned, so Close leaves
// the programs running and a new process (or a new version) re-opens the pins;
// Uninstall removes everything. A new LayoutVersion gets fresh maps in its own
// directory and attaches beside the old layout's links (at the alternate
// hook priority); RetireOtherLayouts then removes the old layout.
package probe
