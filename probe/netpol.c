//go:build ignore
// SPDX-License-Identifier: GPL-2.0-only (see LICENSE.GPL-2.0)

// NetworkPolicy enforcement in BPF netfilter programs (BPF_PROG_TYPE_NETFILTER)
// attached at FORWARD, LOCAL_IN and LOCAL_OUT for IPv4 and IPv6. The kernel's
// conntrack decides what is established or a reply; only NEW, unconfirmed
// connections are evaluated, and they are dropped before conntrack confirms
// them, so a denied flow leaves no conntrack entry behind.
//
// Layout (see maps below): hosts (address -> identity) and ipcache (LPM prefix
// -> identity), endpoints (pod IP
// -> endpoint), policy_slots (array of per-endpoint-direction hash maps: exact
// identity/protocol/port -> rule ID, and one summary per identity for its
// every-port and every-protocol rules and its first port ranges, and chunks of
// further ranges, and single-address CIDRs), policy_tries (array of LPM tries
// for what a hash cannot match: CIDR -> pseudo identity, and port ranges
// beyond the chunks), config,
// rate-limit state, counters, revoked-flow tombstones and the event ring
// buffer. A verdict costs a constant number of hash lookups whatever the
// number of peers; the trie is only walked for CIDRs shorter than a single
// address (whose cost depends on the prefixes around the address, not on
// their number) and for a peer with more than NETPOL_INLINE_RANGES + 2 *
// NETPOL_RANGE_CHUNKS ranges.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char __license[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_ARP 0x0806
#define ARPHRD_ETHER 1
#define ICMPV6_NEIGHBOR_ADVERT 136
#define NETPOL_IPPROTO_ICMPV6 58

#define NF_DROP 0
#define NF_ACCEPT 1

#define NETPOL_EVENT_VERSION 1

// Reserved identities. Pod identities and CIDR pseudo identities are assigned
// by user space; pseudo identities have the top bit set and are local to one
// endpoint direction.
#define NETPOL_ID_ANY 0
#define NETPOL_ID_WORLD 1

// Kinds of entries in an endpoint-direction policy trie.
#define NETPOL_KIND_CIDR 1
#define NETPOL_KIND_RULE 2

// Kinds of entries in an endpoint-direction policy hash.
#define NETPOL_RKIND_PORT 1    // one protocol and port
#define NETPOL_RKIND_SUMMARY 2 // everything else about one identity
#define NETPOL_RKIND_RANGES 3  // further port ranges of one identity and protocol; port = chunk index
#define NETPOL_RKIND_HOST 4    // a single-address CIDR (/32, /128); identity = host_fold(address)

// Summary flags.
#define NETPOL_SUM_RANGE_TCP 1 // the trie has more port ranges of this identity (<< protocol index)
#define NETPOL_SUM_RANGE_UDP 2
#define NETPOL_SUM_RANGE_SCTP 4
#define NETPOL_SUM_CIDR 8 // (identity "any" only) the trie has CIDR entries
#define NETPOL_SUM_CHUNKS_TCP 16 // the hash has range chunks of this identity (<< protocol index)
#define NETPOL_CHUNK_MORE 128    // (in a chunk) the next chunk exists
#define NETPOL_SUM_HOSTS 256     // (identity "any" only) the hash has RKIND_HOST entries

// Range chunks of one identity and protocol (each holds NETPOL_INLINE_RANGES).
#define NETPOL_RANGE_CHUNKS 8

// Endpoint flags.
#define NETPOL_EP_ISOLATED_INGRESS 1
#define NETPOL_EP_ISOLATED_EGRESS 2

// Event types, verdicts, reasons and flags.
#define NETPOL_EVENT_NEW_FLOW 1
#define NETPOL_EVENT_DROP 2
#define NETPOL_EVENT_END 3 // struct netpol_flow_end, in netpol_flow_ends

#define NETPOL_VERDICT_ALLOW 1
#define NETPOL_VERDICT_DROP 2

#define NETPOL_DIR_EGRESS 1
#define NETPOL_DIR_INGRESS 2

#define NETPOL_REASON_NOT_ISOLATED 1
#define NETPOL_REASON_ALLOWED_BY_RULE 2
#define NETPOL_REASON_NO_RULE_MATCHED 3
#define NETPOL_REASON_NOT_APPLICABLE 4
#define NETPOL_REASON_DENIED_BY_RULE 5 // a resolved direction's entry denies (RULE_DENY)

#define NETPOL_FLAG_DNAT 1
#define NETPOL_FLAG_SNAT 2
#define NETPOL_FLAG_UNTRACKED 4
#define NETPOL_FLAG_IPV6 8
#define NETPOL_FLAG_PICKUP 16 // TCP without SYN started the conntrack entry
#define NETPOL_FLAG_REVOKED 32 // UDP/SCTP answering a revoked flow: judged in its orientation
#define NETPOL_FLAG_AUDIT 64   // a side's rule has RULE_AUDIT: enforcing audited policies flips it

// Flags in the top bits of a rule ID (policy.RuleDeny, policy.RuleAudit).
// Only resolved directions (ClusterNetworkPolicy, audited policies) have
// them; the entries of the others only allow.
#define NETPOL_RULE_DENY (1U << 31)
#define NETPOL_RULE_AUDIT (1U << 30)
#define NETPOL_RULE_ID_MASK (NETPOL_RULE_AUDIT - 1)
// Reserved rule IDs of resolved directions (policy.RuleNotIsolated,
// policy.RuleIsolated): the events keep today's reasons for them.
// policy.FirstPodIdentity: below are the world (1) and the host (2).
#define NETPOL_FIRST_POD_IDENTITY 256
#define NETPOL_RULE_NOT_ISOLATED 2
#define NETPOL_RULE_ISOLATED 3

// Counters (per CPU).
enum netpol_counter {
	NETPOL_CNT_PACKETS = 0,
	NETPOL_CNT_ESTABLISHED,
	NETPOL_CNT_NEW_ALLOWED,
	NETPOL_CNT_NEW_DENIED,
	NETPOL_CNT_UNTRACKED,
	NETPOL_CNT_EVENTS,
	NETPOL_CNT_RING_FULL,
	NETPOL_CNT_RATE_LIMITED,
	NETPOL_CNT_NOT_PARSED,
	NETPOL_CNT_SPOOF_DROPPED,
	NETPOL_CNT_REVOKED_HIT,
	NETPOL_CNT_ENDS,           // flow-end records written
	NETPOL_CNT_ENDS_RING_FULL, // flow-end records lost: their ring was full
	NETPOL_CNT_AUDIT,          // new flows whose verdict audited policies would flip
	NETPOL_CNT_AGGREGATED,      // allowed new flows counted in netpol_agg_new, not recorded
	NETPOL_CNT_ENDS_AGGREGATED, // TCP ends counted in netpol_agg_end, not recorded
	NETPOL_CNT_MAX,
};

struct netpol_ipcache_key {
	__u32 prefixlen;
	__u8 addr[16]; // IPv4 as ::ffff:a.b.c.d
};

struct netpol_endpoint_key {
	__u8 addr[16];
};

struct netpol_endpoint {
	__u32 id;
	__u32 identity;
	__u32 flags;
	__u32 slot_ingress;
	__u32 slot_egress;
};

// One key type for both kinds of entries of a policy trie, so a whole endpoint
// direction (its CIDR flattening and its rules) is swapped as one map.
// KIND_CIDR: data = 16-byte address. KIND_RULE: data = identity (BE32),
// protocol (0 = any), port (BE16); the prefix length covers kind(8) +
// identity(32) [+ protocol(8) [+ port prefix(<=16)]].
struct netpol_policy_key {
	__u32 prefixlen;
	__u8 kind;
	__u8 data[19];
};

struct netpol_policy_value {
	__u32 value; // KIND_CIDR: pseudo identity; KIND_RULE: rule ID
};

// Key of an endpoint-direction policy hash. RKIND_PORT: protocol and port
// (host byte order) of a rule for exactly that port; RKIND_SUMMARY: protocol
// and port 0.
struct netpol_rule_key {
	__u32 identity;
	__u8 protocol;
	__u8 kind;
	__u16 port;
};

// A port range kept in an identity's summary (the first ones of that
// identity; more go to the trie).
struct netpol_port_range {
	__u16 low;
	__u16 high; // inclusive
	__u8 protocol;
	__u8 pad[3];
	__u32 rule; // 0: slot unused
};

#define NETPOL_INLINE_RANGES 2

struct netpol_rule_value {
	__u32 rule;         // RKIND_PORT: rule ID; RKIND_SUMMARY: rule for every protocol (0: none)
	__u32 all_ports[3]; // RKIND_SUMMARY: rule for every port of TCP, UDP, SCTP (0: none)
	__u32 trie_slot;    // RKIND_SUMMARY: this direction's netpol_policy_tries index
	__u32 flags;        // RKIND_SUMMARY: NETPOL_SUM_*; RKIND_RANGES: NETPOL_CHUNK_MORE
	struct netpol_port_range ranges[NETPOL_INLINE_RANGES]; // RKIND_SUMMARY, RKIND_RANGES
};

// The value of an RKIND_HOST entry, in a hash whose values are rule values:
// the pseudo identity of one single-address CIDR and the address itself,
// which the key only folds. Dense ipBlocks are mostly lists of single
// addresses; an exact match is their longest prefix, so one hash lookup
// replaces a trie walk whose depth grows with their number. User space
// keeps an address whose fold another one took in the trie.
struct netpol_host_value {
	__u64 addr[2];  // the 16 address bytes as two native-endian words
	__u32 identity; // pseudo identity; 0: an except (no block)
	__u8 pad[sizeof(struct netpol_rule_value) - 20];
};
_Static_assert(sizeof(struct netpol_host_value) == sizeof(struct netpol_rule_value),
	       "an RKIND_HOST value is read from the rule hash");

// A revoked flow as the datapath judged it (after DNAT), kept so that the
// other side's next packet cannot start it again as a new flow.
struct netpol_flow_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u8 protocol;
	__u8 pad[3];
};

struct netpol_config {
	__u64 drop_events_per_sec; // token refill per CPU; 0 = no drop events
	__u64 drop_events_burst;
	__u64 wakeup_watermark; // bytes of unread ring data that force a wake-up
	__u32 flow_events;      // 1 = one event per allowed new flow
	// The network namespace (inode number) whose conntrack entries of local
	// endpoints get a flow-end record when destroyed; 0 = none.
	__u32 flow_end_netns;
	// Repeated flows within this interval are counted, not recorded
	// (netpol_agg_new, netpol_agg_end); 0 = a record per flow.
	__u64 agg_interval_ns;
};

struct netpol_bucket {
	__u64 tokens_nano; // tokens scaled by 1e9
	__u64 last_ns;
};

struct netpol_tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport; // host byte order
	__u16 dport;
};

// The event record, version NETPOL_EVENT_VERSION. Field order keeps it free of
// implicit padding; append only, bump the version on any change.
struct netpol_event {
	__u8 version;
	__u8 type;
	__u8 verdict;
	__u8 direction; // the side that decided a drop (0 for allowed flows)
	__u8 egress_reason;
	__u8 ingress_reason;
	__u8 protocol;
	__u8 tcp_flags;
	__u8 hook;
	__u8 family; // 4 or 6
	__u16 flags;
	__u32 len;
	__u64 timestamp_ns;
	__u32 src_endpoint;
	__u32 dst_endpoint;
	__u32 src_identity;
	__u32 dst_identity;
	__u32 egress_rule;
	__u32 ingress_rule;
	struct netpol_tuple tuple;      // as seen at the hook (after DNAT, before SNAT)
	struct netpol_tuple orig_tuple; // conntrack's original direction (pre-NAT)
};

// A flow-end record (version NETPOL_EVENT_VERSION, type NETPOL_EVENT_END),
// from one of two sources:
//   - conntrack (netpol_ct_destroy): a confirmed entry with a local endpoint
//     at either end, as it is destroyed. Tuples are conntrack's (orig: before
//     NAT; reply: the answer, so its source is the DNAT backend); counters
//     need nf_conntrack_acct=1, start nf_conntrack_timestamp=1 (0 otherwise).
//   - a TCP socket (netpol_tcp_state, status has NETPOL_END_SOCKET): an
//     established socket of a local endpoint, as it closes. Tuples as the
//     socket knows them (a client's: before DNAT; the reply is the orig
//     reversed), counters the socket's (segments, payload bytes), start the
//     monotonic time it was established.
struct netpol_flow_end {
	__u8 version;
	__u8 type;
	__u8 protocol;
	__u8 family; // 4 or 6
	__u32 status; // conntrack's IPS_* bits (low 32), or NETPOL_END_SOCKET [| NETPOL_END_CLIENT]
	__u64 timestamp_ns; // bpf_ktime_get_ns() at destruction
	__u64 start_real_ns; // CLOCK_REALTIME of the entry's creation, or 0; bpf_ktime_get_ns() for a socket's
	__u64 packets_orig;
	__u64 bytes_orig;
	__u64 packets_reply;
	__u64 bytes_reply;
	struct netpol_tuple orig;
	struct netpol_tuple reply;
};

// Status bits of a socket's flow-end record (conntrack's IPS_* stay below).
#define NETPOL_END_SOCKET (1U << 31) // written by netpol_tcp_state
#define NETPOL_END_CLIENT (1U << 30) // the socket connected: orig is local -> remote

// Force BTF for types bpf2go -type generates but no map key/value names.
const struct netpol_event *unused_netpol_event __attribute__((unused));
const struct netpol_policy_key *unused_netpol_policy_key __attribute__((unused));
const struct netpol_policy_value *unused_netpol_policy_value __attribute__((unused));
const struct netpol_rule_key *unused_netpol_rule_key __attribute__((unused));
const struct netpol_rule_value *unused_netpol_rule_value __attribute__((unused));
const struct netpol_host_value *unused_netpol_host_value __attribute__((unused));
const struct netpol_flow_key *unused_netpol_flow_key __attribute__((unused));
const struct netpol_flow_end *unused_netpol_flow_end __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1 << 20);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct netpol_ipcache_key);
	__type(value, __u32);
} netpol_ipcache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct netpol_endpoint_key);
	__type(value, struct netpol_endpoint);
} netpol_endpoints SEC(".maps");

// When each local endpoint last had a new flow judged (bpf_ktime_get_ns), by
// its slot pair (slot_ingress / 2, dense below 65536): how the bypass
// self-check knows a pod's traffic reaches the hooks without flow events or
// a dump of the conntrack table. Written at most once a second per endpoint.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u64);
} netpol_endpoint_seen SEC(".maps");

#define NETPOL_SEEN_EVERY_NS 1000000000ULL

// Identities of single addresses (every pod and node address): a hash, so
// the lookup costs the same for 10 or 100k pods; netpol_ipcache keeps what
// is not a single address, and the addresses that overflow this map.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 19);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct netpol_endpoint_key);
	__type(value, __u32);
} netpol_hosts SEC(".maps");

struct netpol_policy_trie {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1 << 20);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(key_size, sizeof(struct netpol_policy_key));
	__uint(value_size, sizeof(struct netpol_policy_value));
};

// The hash's size is chosen per map by user space (hash maps of a map-in-map
// may differ in max_entries).
struct netpol_policy_hash {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(struct netpol_rule_key));
	__uint(value_size, sizeof(struct netpol_rule_value));
};

// Slot = one endpoint direction. An empty slot of an isolated direction
// denies. Replacing a slot's hash is the atomic swap of that direction's
// policy: the hash's summaries name the trie it goes with, and each
// direction has two trie slots (2 * slot + generation) used in turn.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 65536 * 2);
	__uint(key_size, sizeof(__u32));
	__array(values, struct netpol_policy_hash);
} netpol_policy_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 65536 * 4);
	__uint(key_size, sizeof(__u32));
	__array(values, struct netpol_policy_trie);
} netpol_policy_tries SEC(".maps");

// Revoked UDP and SCTP flows (see netpol_flow_key); value: last time seen.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct netpol_flow_key);
	__type(value, __u64);
} netpol_revoked SEC(".maps");

// A tombstone outlives a revoked flow's conntrack entry (UDP stream timeout
// 120 s) while the other side keeps sending; silence this long ends it.
#define NETPOL_REVOKED_TTL_NS (300ULL * 1000000000ULL)

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct netpol_config);
} netpol_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct netpol_bucket);
} netpol_buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NETPOL_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} netpol_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24);
} netpol_events SEC(".maps");

// Flow-end records, apart from the verdict events: their reader runs only
// when summaries are on, and a burst of ends (a flush) cannot crowd out
// verdicts. 2 MiB: ~15k records of 136 bytes; the reader is woken at the
// watermark (64 KiB by default) long before it fills, and a node whose
// kernel refuses the program (netlink fallback) pins little for nothing.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 21);
} netpol_flow_ends SEC(".maps");

// Repeated flows (netpol_config.agg_interval_ns): an allowed new flow, or a
// TCP socket's end, is keyed without the client's port. The first of a key
// in each interval gets its ring-buffer record; the others only add to the
// key's counters here, which the agent reads every interval and reports as
// one record standing for them all. A pass through user space per
// connection is what made visibility cost more than enforcement
// (docs/perf.md, "seventh pass"). The counters only grow: the reader
// reports the difference to its last reading, so a flow counted while it
// reads is reported next time, never lost or counted twice. LRU: a key
// evicted between two readings loses what it counted since the first.
struct netpol_agg_counts {
	__u64 window_start; // bpf_ktime_get_ns() of the interval's recorded flow
	__u64 count;        // flows counted, not recorded
	// Ends only: their counters and lifetimes, summed.
	__u64 packets_orig;
	__u64 bytes_orig;
	__u64 packets_reply;
	__u64 bytes_reply;
	__u64 duration_ns;
};

struct netpol_agg_new_key {
	struct netpol_tuple tuple;      // as struct netpol_event's, sport 0
	struct netpol_tuple orig_tuple; // sport 0
	__u32 egress_rule;
	__u32 ingress_rule;
	__u8 protocol;
	__u8 family;
	__u8 hook;
	__u8 pad;
};

struct netpol_agg_new_value {
	struct netpol_agg_counts c;
	struct netpol_event sample; // the interval's recorded flow: endpoints, identities, reasons
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct netpol_agg_new_key);
	__type(value, struct netpol_agg_new_value);
} netpol_agg_new SEC(".maps");

struct netpol_agg_end_key {
	struct netpol_tuple orig; // the connection's original direction, sport 0
	__u32 status;             // NETPOL_END_SOCKET [| NETPOL_END_CLIENT]
	__u8 family;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct netpol_agg_end_key);
	__type(value, struct netpol_agg_counts);
} netpol_agg_end SEC(".maps");

static const struct netpol_agg_new_value agg_new_zero = {};

// A new flow's aggregation key is built here, per CPU, before the ring is
// touched: a repeat costs a hash look-up, no ring reservation (its lock,
// fresh ring memory, a record the reader must skip). Off the stack, which
// netpol_evaluate's frame shares.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct netpol_agg_new_key);
} netpol_agg_scratch SEC(".maps");

// TCP connections a local client established, by their original direction
// as the client's socket knows it (before DNAT, without the client's
// port) -> when last (bpf_ktime_get_ns), written by netpol_tcp_state while
// aggregation is on. Egress towards a pod on another node is judged again
// there, and a drop there has only this node's record of the connection to
// pair with (the Service, the egress rule): so such flows are aggregated
// only while the key's connections are being answered. A flow that fails
// anywhere stays a record per connection on every node.
struct netpol_answered_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 dport;
	__u8 family;
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct netpol_answered_key);
	__type(value, __u64);
} netpol_answered SEC(".maps");

// answered_key is the netpol_answered key of a connection from saddr to
// daddr:dport as its client's socket knows it.
static __always_inline void answered_key(struct netpol_answered_key *k, const __u8 *saddr, const __u8 *daddr,
					 __u16 dport, __u8 family)
{
	__builtin_memset(k, 0, sizeof(*k));
	__builtin_memcpy(k->saddr, saddr, 16);
	__builtin_memcpy(k->daddr, daddr, 16);
	k->dport = dport;
	k->family = family;
}

// answered says whether TCP connections of flow's key (its original
// direction without the client's port) were established within the last two
// intervals (netpol_answered).
static __always_inline int answered(const struct netpol_agg_new_key *flow, __u64 now, __u64 interval)
{
	if (flow->protocol != IPPROTO_TCP)
		return 0;
	struct netpol_answered_key k;
	answered_key(&k, flow->orig_tuple.saddr, flow->orig_tuple.daddr, flow->orig_tuple.dport, flow->family);
	__u64 *at = bpf_map_lookup_elem(&netpol_answered, &k);
	return at && now - *at < 2 * interval;
}

// agg_counted says whether a flow of the key whose counters are v falls in
// the interval of a recorded one (and counts it); otherwise it opens a new
// interval and the flow gets its record. Two CPUs racing at an interval's
// edge may both record: a record too many, nothing lost.
static __always_inline int agg_counted(struct netpol_agg_counts *v, __u64 now, __u64 interval)
{
	if (now - v->window_start < interval) {
		__sync_fetch_and_add(&v->count, 1);
		return 1;
	}
	v->window_start = now;
	return 0;
}

// A TCP connection of a local endpoint, kept with its socket from
// ESTABLISHED to CLOSE (netpol_tcp_state): which side it is and since when.
// Pinned, so a restarted agent still ends the connections of the previous.
struct netpol_sock_start {
	__u64 start_ns; // bpf_ktime_get_ns() when established
	__u32 client;   // 1: the socket connected; 0: it was accepted
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct netpol_sock_start);
} netpol_sock_starts SEC(".maps");

// Anti-spoofing: (host-side pod interface, source address) pairs allowed.
struct netpol_spoof_key {
	__u32 ifindex;
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct netpol_spoof_key);
	__type(value, __u8);
} netpol_spoof_guard SEC(".maps");

extern int bpf_dynptr_from_skb(struct __sk_buff *skb, __u64 flags, struct bpf_dynptr *ptr__uninit) __ksym;
extern void *bpf_dynptr_slice(const struct bpf_dynptr *ptr, __u32 offset, void *buffer__opt,
			      __u32 buffer__szk) __ksym;

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&netpol_counters, &idx);
	if (v)
		*v += 1;
}

static __always_inline void mark_seen(struct netpol_endpoint *ep, __u64 now)
{
	if (!ep)
		return;
	__u32 pair = ep->slot_ingress >> 1;
	__u64 *seen = bpf_map_lookup_elem(&netpol_endpoint_seen, &pair);
	if (seen && now - *seen >= NETPOL_SEEN_EVERY_NS)
		*seen = now;
}

static __always_inline void set_v4(__u8 *dst, __be32 a)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &a, 4);
}

struct netpol_pkt {
	struct netpol_tuple t;
	__u8 protocol;
	__u8 tcp_flags;
	__u8 family;
	__u32 len;
};

// parse fills pkt from the network header at offset 0 of the skb.
static __always_inline int parse(struct bpf_nf_ctx *ctx, struct netpol_pkt *pkt)
{
	struct bpf_dynptr ptr;
	__u32 l4off;
	__u8 proto;

	if (bpf_dynptr_from_skb((struct __sk_buff *)ctx->skb, 0, &ptr))
		return -1;
	pkt->len = ctx->skb->len;

	if (ctx->state->pf == NFPROTO_IPV4) {
		struct iphdr buf, *ip;
		ip = bpf_dynptr_slice(&ptr, 0, &buf, sizeof(buf));
		if (!ip)
			return -1;
		pkt->family = 4;
		set_v4(pkt->t.saddr, ip->saddr);
		set_v4(pkt->t.daddr, ip->daddr);
		proto = ip->protocol;
		l4off = ip->ihl * 4;
		// Non-first fragments carry no ports (defragmentation is requested
		// at attach time, so this is rare).
		if (ip->frag_off & bpf_htons(0x1fff)) {
			pkt->protocol = proto;
			return 0;
		}
	} else {
		struct ipv6hdr buf, *ip6;
		ip6 = bpf_dynptr_slice(&ptr, 0, &buf, sizeof(buf));
		if (!ip6)
			return -1;
		pkt->family = 6;
		__builtin_memcpy(pkt->t.saddr, &ip6->saddr, 16);
		__builtin_memcpy(pkt->t.daddr, &ip6->daddr, 16);
		proto = ip6->nexthdr;
		l4off = sizeof(struct ipv6hdr);
		// Skip up to four extension headers.
#pragma unroll
		for (int i = 0; i < 4; i++) {
			if (proto != 0 && proto != 43 && proto != 60 && proto != 44)
				break;
			struct ipv6_opt_hdr obuf, *opt;
			opt = bpf_dynptr_slice(&ptr, l4off, &obuf, sizeof(obuf));
			if (!opt)
				return -1;
			if (proto == 44) { // fragment header: 8 bytes
				struct frag_hdr fbuf, *fh;
				fh = bpf_dynptr_slice(&ptr, l4off, &fbuf, sizeof(fbuf));
				if (!fh)
					return -1;
				proto = fh->nexthdr;
				l4off += 8;
				if (fh->frag_off & bpf_htons(0xfff8)) {
					pkt->protocol = proto;
					return 0;
				}
				continue;
			}
			proto = opt->nexthdr;
			l4off += (opt->hdrlen + 1) * 8;
		}
	}
	pkt->protocol = proto;

	if (proto == IPPROTO_TCP) {
		__u8 tbuf[14], *th;
		th = bpf_dynptr_slice(&ptr, l4off, tbuf, sizeof(tbuf));
		if (!th)
			return -1;
		pkt->t.sport = ((__u16)th[0] << 8) | th[1];
		pkt->t.dport = ((__u16)th[2] << 8) | th[3];
		pkt->tcp_flags = th[13];
	} else if (proto == IPPROTO_UDP || proto == IPPROTO_SCTP) {
		__u8 pbuf[4], *p;
		p = bpf_dynptr_slice(&ptr, l4off, pbuf, sizeof(pbuf));
		if (!p)
			return -1;
		pkt->t.sport = ((__u16)p[0] << 8) | p[1];
		pkt->t.dport = ((__u16)p[2] << 8) | p[3];
	}
	return 0;
}

static __always_inline __u32 identity_of(__u8 *addr, struct netpol_endpoint *ep)
{
	if (ep)
		return ep->identity;
	__u32 *host = bpf_map_lookup_elem(&netpol_hosts, addr);
	if (host)
		return *host;
	struct netpol_ipcache_key k = {.prefixlen = 128};
	__builtin_memcpy(k.addr, addr, 16);
	__u32 *id = bpf_map_lookup_elem(&netpol_ipcache, &k);
	return id ? *id : NETPOL_ID_WORLD;
}

// lookup_range finds identity's port-range rule for (proto, port) in trie:
// the longest port block that holds port.
static __always_inline __u32 lookup_range(void *trie, __u32 identity, __u8 proto, __u16 port)
{
	struct netpol_policy_key k = {
		.prefixlen = 8 + 32 + 8 + 16,
		.kind = NETPOL_KIND_RULE,
	};
	__be32 id = bpf_htonl(identity);
	__builtin_memcpy(k.data, &id, 4);
	k.data[4] = proto;
	k.data[5] = port >> 8;
	k.data[6] = port & 0xff;
	struct netpol_policy_value *v = bpf_map_lookup_elem(trie, &k);
	return v ? v->value : 0;
}

static __always_inline int proto_index(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return 0;
	case IPPROTO_UDP:
		return 1;
	case IPPROTO_SCTP:
		return 2;
	}
	return -1;
}

// match_identity returns the rule allowing identity on (proto, port), most
// specific first: exactly this port, a port range (the summary's, the
// chunks', then the trie's), every port of proto, every protocol. *summary is set to identity's summary when looked up.
static __always_inline __u32 match_identity(void *hash, __u32 identity, __u8 proto, __u16 port,
					    struct netpol_rule_value **summary)
{
	struct netpol_rule_key k = {
		.identity = identity,
		.protocol = proto,
		.kind = NETPOL_RKIND_PORT,
		.port = port,
	};
	struct netpol_rule_value *v = bpf_map_lookup_elem(hash, &k);
	if (v)
		return v->rule;
	k.protocol = 0;
	k.kind = NETPOL_RKIND_SUMMARY;
	k.port = 0;
	struct netpol_rule_value *s = bpf_map_lookup_elem(hash, &k);
	*summary = s;
	if (!s)
		return 0;
	int pi = proto_index(proto);
	if (pi < 0)
		return s->rule;
#pragma unroll
	for (int i = 0; i < NETPOL_INLINE_RANGES; i++) {
		struct netpol_port_range *r = &s->ranges[i];
		if (r->rule && r->protocol == proto && port >= r->low && port <= r->high)
			return r->rule;
	}
	if (s->flags & (NETPOL_SUM_CHUNKS_TCP << pi)) {
		struct netpol_rule_key ck = {
			.identity = identity,
			.protocol = proto,
			.kind = NETPOL_RKIND_RANGES,
		};
#pragma nounroll
		for (int c = 0; c < NETPOL_RANGE_CHUNKS; c++) {
			ck.port = c;
			struct netpol_rule_value *chunk = bpf_map_lookup_elem(hash, &ck);
			if (!chunk)
				break;
#pragma unroll
			for (int i = 0; i < NETPOL_INLINE_RANGES; i++) {
				struct netpol_port_range *r = &chunk->ranges[i];
				if (r->rule && r->protocol == proto && port >= r->low && port <= r->high)
					return r->rule;
			}
			if (!(chunk->flags & NETPOL_CHUNK_MORE))
				break;
		}
	}
	if (s->flags & (NETPOL_SUM_RANGE_TCP << pi)) {
		__u32 slot = s->trie_slot;
		void *trie = bpf_map_lookup_elem(&netpol_policy_tries, &slot);
		if (trie) {
			__u32 rule = lookup_range(trie, identity, proto, port);
			if (rule)
				return rule;
		}
	}
	if (s->all_ports[pi & 3])
		return s->all_ports[pi & 3];
	return s->rule;
}

// host_fold is the RKIND_HOST key of an address (its four 32-bit words,
// little-endian as loaded): the words are multiplied by distinct odd
// constants so that structured IPv6 lists rarely collide; for IPv4 (the
// other words fixed) it is one-to-one. probe.hostFold is the same in Go.
static __always_inline __u32 host_fold(__u64 hi, __u64 lo)
{
	return (__u32)(lo >> 32) ^ ((__u32)lo * 0x9e3779b1U) ^ ((__u32)(hi >> 32) * 0x85ebca77U) ^
	       ((__u32)hi * 0xc2b2ae3dU);
}

// evaluate returns the deciding rule ID, or 0 when no rule matches: the
// peer's identity, then any peer, then the CIDR blocks holding the peer (in
// a resolved direction: the entries of exactly the longest prefix): the
// peer's own single-address block from the hash, else the trie's longest
// prefix. The rule allows unless it has NETPOL_RULE_DENY (see rule_allows).
//
// It is a global function: the verifier checks it once, not at each of its
// four call sites (whose paths multiplied past the verifier's limit once the
// verdict read deny bits), and the call costs a few instructions. Its
// arguments are scalars (the peer address as two halves, protocol and port
// packed), the only kind a global function takes without argument tags.
__attribute__((noinline)) __u32 netpol_evaluate(__u32 slot, __u32 peer_identity, __u32 proto_port, __u64 peer_hi,
						__u64 peer_lo)
{
	__u8 proto = proto_port >> 16;
	__u16 port = proto_port & 0xffff;
	void *hash = bpf_map_lookup_elem(&netpol_policy_slots, &slot);
	if (!hash)
		return 0; // isolated, but no policy installed yet: fail closed
	struct netpol_rule_value *summary = NULL;
	__u32 rule = match_identity(hash, peer_identity, proto, port, &summary);
	if (rule)
		return rule;
	summary = NULL;
	rule = match_identity(hash, NETPOL_ID_ANY, proto, port, &summary);
	if (rule)
		return rule;
	if (!summary)
		return 0;
	__u32 flags = summary->flags;
	__u32 pseudo = 0;
	if (flags & NETPOL_SUM_HOSTS) {
		struct netpol_rule_key hk = {
			.identity = host_fold(peer_hi, peer_lo),
			.kind = NETPOL_RKIND_HOST,
		};
		struct netpol_host_value *h = bpf_map_lookup_elem(hash, &hk);
		if (h && h->addr[0] == peer_hi && h->addr[1] == peer_lo) {
			pseudo = h->identity;
			goto region;
		}
	}
	if (!(flags & NETPOL_SUM_CIDR))
		return 0;
	__u32 tslot = summary->trie_slot;
	void *trie = bpf_map_lookup_elem(&netpol_policy_tries, &tslot);
	if (!trie)
		return 0;
	struct netpol_policy_key k = {
		.prefixlen = 8 + 128,
		.kind = NETPOL_KIND_CIDR,
	};
	__builtin_memcpy(k.data, &peer_hi, 8);
	__builtin_memcpy(k.data + 8, &peer_lo, 8);
	struct netpol_policy_value *cidr = bpf_map_lookup_elem(trie, &k);
	if (!cidr)
		return 0;
	pseudo = cidr->value;
region:
	if (!pseudo)
		return 0; // no block, or an except that shadows a wider block
	return match_identity(hash, pseudo, proto, port, &summary);
}

static __always_inline __u32 evaluate(__u32 slot, __u8 *peer, __u32 peer_identity, __u8 proto, __u16 port)
{
	__u64 hi, lo;
	__builtin_memcpy(&hi, peer, 8);
	__builtin_memcpy(&lo, peer + 8, 8);
	return netpol_evaluate(slot, peer_identity, ((__u32)proto << 16) | port, hi, lo);
}

// rule_allows is a side's verdict from its deciding rule.
static __always_inline int rule_allows(__u32 rule)
{
	return rule && !(rule & NETPOL_RULE_DENY);
}

// side_reason is the event's reason for an evaluated side. A resolved
// direction's reserved rules keep the reasons NetworkPolicy alone gives:
// its default deny is "no rule matched", its "nothing decided" on a pod no
// NetworkPolicy isolates is "not isolated".
static __always_inline __u8 side_reason(__u32 rule)
{
	if (!rule)
		return NETPOL_REASON_NO_RULE_MATCHED;
	if (rule & NETPOL_RULE_DENY)
		return (rule & NETPOL_RULE_ID_MASK) == NETPOL_RULE_ISOLATED ? NETPOL_REASON_NO_RULE_MATCHED
									 : NETPOL_REASON_DENIED_BY_RULE;
	return (rule & NETPOL_RULE_ID_MASK) == NETPOL_RULE_NOT_ISOLATED ? NETPOL_REASON_NOT_ISOLATED
									: NETPOL_REASON_ALLOWED_BY_RULE;
}

// drop_event_allowed takes a token from this CPU's bucket.
static __always_inline int drop_event_allowed(struct netpol_config *cfg)
{
	__u32 zero = 0;
	struct netpol_bucket *b = bpf_map_lookup_elem(&netpol_buckets, &zero);
	if (!b || !cfg || cfg->drop_events_per_sec == 0)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 elapsed = now - b->last_ns;
	__u64 cap = cfg->drop_events_burst * 1000000000ULL;
	if (elapsed > 1000000000ULL)
		elapsed = 1000000000ULL;
	b->last_ns = now;
	b->tokens_nano += elapsed * cfg->drop_events_per_sec;
	if (b->tokens_nano > cap)
		b->tokens_nano = cap;
	if (b->tokens_nano < 1000000000ULL)
		return 0;
	b->tokens_nano -= 1000000000ULL;
	return 1;
}

static __always_inline void read_tuple(struct nf_conn *ct, struct netpol_tuple *t, __u8 family)
{
	struct nf_conntrack_tuple tup;
	if (bpf_core_read(&tup, sizeof(tup), &ct->tuplehash[0].tuple))
		return;
	if (family == 4) {
		set_v4(t->saddr, tup.src.u3.ip);
		set_v4(t->daddr, tup.dst.u3.ip);
	} else {
		__builtin_memcpy(t->saddr, &tup.src.u3.ip6, 16);
		__builtin_memcpy(t->daddr, &tup.dst.u3.ip6, 16);
	}
	t->sport = bpf_ntohs(tup.src.u.all);
	t->dport = bpf_ntohs(tup.dst.u.all);
}

// answers_revoked reports whether pkt goes the other way of a revoked flow
// seen within the TTL, and refreshes that flow's tombstone.
static __always_inline int answers_revoked(struct netpol_pkt *pkt)
{
	struct netpol_flow_key k = {
		.sport = pkt->t.dport,
		.dport = pkt->t.sport,
		.protocol = pkt->protocol,
	};
	__builtin_memcpy(k.saddr, pkt->t.daddr, 16);
	__builtin_memcpy(k.daddr, pkt->t.saddr, 16);
	__u64 *seen = bpf_map_lookup_elem(&netpol_revoked, &k);
	if (!seen)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	if (now - *seen > NETPOL_REVOKED_TTL_NS)
		return 0;
	*seen = now;
	count(NETPOL_CNT_REVOKED_HIT);
	return 1;
}

SEC("netfilter")
int netpol_nf(struct bpf_nf_ctx *ctx)
{
	struct sk_buff *skb = ctx->skb;
	unsigned long nfct = skb->_nfct;
	struct nf_conn *ct = (struct nf_conn *)(nfct & ~7UL);
	__u32 ctinfo = nfct & 7;
	__u16 flags = 0;
	unsigned long status = 0;

	count(NETPOL_CNT_PACKETS);
	if (ct) {
		if (ctinfo != IP_CT_NEW) {
			count(NETPOL_CNT_ESTABLISHED);
			return NF_ACCEPT;
		}
		status = BPF_CORE_READ(ct, status);
		// Confirmed while still NEW (e.g. a one-way UDP stream): this
		// program allowed it before, and revocation deletes entries a new
		// policy denies.
		if (status & IPS_CONFIRMED) {
			count(NETPOL_CNT_ESTABLISHED);
			return NF_ACCEPT;
		}
		if (status & IPS_DST_NAT)
			flags |= NETPOL_FLAG_DNAT;
		if (status & IPS_SRC_NAT)
			flags |= NETPOL_FLAG_SNAT;
	} else {
		flags |= NETPOL_FLAG_UNTRACKED;
		count(NETPOL_CNT_UNTRACKED);
	}

	struct netpol_pkt pkt = {};
	if (parse(ctx, &pkt)) {
		count(NETPOL_CNT_NOT_PARSED);
		return NF_ACCEPT;
	}
	if (pkt.family == 6)
		flags |= NETPOL_FLAG_IPV6;

	struct netpol_endpoint *src = bpf_map_lookup_elem(&netpol_endpoints, pkt.t.saddr);
	struct netpol_endpoint *dst = bpf_map_lookup_elem(&netpol_endpoints, pkt.t.daddr);
	barrier_var(src); // keeps clang from OR-ing the two pointers
	if (!src && !dst)
		return NF_ACCEPT; // no local endpoint involved
	__u64 now = bpf_ktime_get_ns();
	mark_seen(src, now);
	mark_seen(dst, now);

	__u32 src_id = identity_of(pkt.t.saddr, src);
	__u32 dst_id = identity_of(pkt.t.daddr, dst);
	__u32 egress_rule = 0, ingress_rule = 0;
	__u8 egress_reason = NETPOL_REASON_NOT_APPLICABLE, ingress_reason = NETPOL_REASON_NOT_APPLICABLE;
	__u8 direction = 0;
	int allowed = 1;

	if (src) {
		egress_reason = NETPOL_REASON_NOT_ISOLATED;
		if (src->flags & NETPOL_EP_ISOLATED_EGRESS) {
			egress_rule = evaluate(src->slot_egress, pkt.t.daddr, dst_id, pkt.protocol, pkt.t.dport);
			egress_reason = side_reason(egress_rule);
			if (!rule_allows(egress_rule)) {
				allowed = 0;
				direction = NETPOL_DIR_EGRESS;
			}
		}
	}
	if (dst) {
		ingress_reason = NETPOL_REASON_NOT_ISOLATED;
		if (dst->flags & NETPOL_EP_ISOLATED_INGRESS) {
			ingress_rule = evaluate(dst->slot_ingress, pkt.t.saddr, src_id, pkt.protocol, pkt.t.dport);
			ingress_reason = side_reason(ingress_rule);
			if (!rule_allows(ingress_rule) && allowed) {
				allowed = 0;
				direction = NETPOL_DIR_INGRESS;
			}
		}
	}

	// A TCP packet without SYN that creates a conntrack entry is a
	// mid-stream pickup (e.g. after revocation deleted the entry): its
	// orientation is unknown, so the reverse orientation must be allowed
	// too, or the server's next packet would resurrect a revoked connection
	// as the "original" direction and the client's as its reply.
	//
	// UDP and SCTP cannot tell a first packet from an answer, so only the
	// flows revocation deleted are remembered (netpol_revoked): a packet
	// answering one is judged in the revoked flow's orientation too, or the
	// server side's next datagram would start it again as a new flow.
	int reverse = 0;
	if (allowed && ct && pkt.protocol == IPPROTO_TCP && !(pkt.tcp_flags & 0x02)) {
		flags |= NETPOL_FLAG_PICKUP;
		reverse = 1;
	} else if (allowed && ct && (pkt.protocol == IPPROTO_UDP || pkt.protocol == IPPROTO_SCTP) &&
		   answers_revoked(&pkt)) {
		flags |= NETPOL_FLAG_REVOKED;
		reverse = 1;
	}
	// A reverse drop reports the reverse evaluation's rule and reason in
	// the deciding side's fields (the forward ones all allowed).
	if (reverse) {
		__u32 rule = 0;
		if (dst && (dst->flags & NETPOL_EP_ISOLATED_EGRESS) &&
		    !rule_allows(rule = evaluate(dst->slot_egress, pkt.t.saddr, src_id, pkt.protocol, pkt.t.sport))) {
			allowed = 0;
			direction = NETPOL_DIR_EGRESS;
			egress_rule = rule;
			egress_reason = side_reason(rule);
		} else if (src && (src->flags & NETPOL_EP_ISOLATED_INGRESS) &&
			   !rule_allows(rule = evaluate(src->slot_ingress, pkt.t.daddr, dst_id, pkt.protocol, pkt.t.sport))) {
			allowed = 0;
			direction = NETPOL_DIR_INGRESS;
			ingress_rule = rule;
			ingress_reason = side_reason(rule);
		}
	}

	// An audited verdict is reported even when flow events are off: it is
	// what a rollout watches (drops still take a token).
	if ((egress_rule | ingress_rule) & NETPOL_RULE_AUDIT) {
		flags |= NETPOL_FLAG_AUDIT;
		count(NETPOL_CNT_AUDIT);
	}
	__u32 zero = 0;
	struct netpol_config *cfg = bpf_map_lookup_elem(&netpol_config, &zero);
	if (allowed) {
		count(NETPOL_CNT_NEW_ALLOWED);
		if ((!cfg || !cfg->flow_events) && !(flags & NETPOL_FLAG_AUDIT))
			return NF_ACCEPT;
	} else {
		count(NETPOL_CNT_NEW_DENIED);
		if (!drop_event_allowed(cfg)) {
			count(NETPOL_CNT_RATE_LIMITED);
			return NF_DROP;
		}
	}

	// A repeat of an allowed flow recorded this interval is only counted,
	// before anything is reserved in the ring.
	struct netpol_agg_new_key *k = 0;
	struct netpol_agg_new_value *agg = 0;
	__u16 orig_sport = pkt.t.sport;
	int remote_pod = !dst && dst_id >= NETPOL_FIRST_POD_IDENTITY;
	if (allowed && cfg && cfg->agg_interval_ns &&
	    !(flags & (NETPOL_FLAG_PICKUP | NETPOL_FLAG_REVOKED | NETPOL_FLAG_AUDIT | NETPOL_FLAG_UNTRACKED)))
		k = bpf_map_lookup_elem(&netpol_agg_scratch, &zero);
	if (k) {
		k->tuple = pkt.t;
		k->tuple.sport = 0;
		if (ct)
			read_tuple(ct, &k->orig_tuple, pkt.family);
		else
			k->orig_tuple = pkt.t;
		orig_sport = k->orig_tuple.sport;
		k->orig_tuple.sport = 0;
		k->egress_rule = egress_rule;
		k->ingress_rule = ingress_rule;
		k->protocol = pkt.protocol;
		k->family = pkt.family;
		k->hook = ctx->state->hook;
		k->pad = 0;
		if (remote_pod && !answered(k, now, cfg->agg_interval_ns)) {
			k = 0;
		} else {
			agg = bpf_map_lookup_elem(&netpol_agg_new, k);
			if (agg && agg_counted(&agg->c, now, cfg->agg_interval_ns)) {
				count(NETPOL_CNT_AGGREGATED);
				return NF_ACCEPT;
			}
		}
	}

	struct netpol_event *e = bpf_ringbuf_reserve(&netpol_events, sizeof(*e), 0);
	if (!e) {
		count(NETPOL_CNT_RING_FULL);
		return allowed ? NF_ACCEPT : NF_DROP;
	}
	e->version = NETPOL_EVENT_VERSION;
	e->type = allowed ? NETPOL_EVENT_NEW_FLOW : NETPOL_EVENT_DROP;
	e->verdict = allowed ? NETPOL_VERDICT_ALLOW : NETPOL_VERDICT_DROP;
	e->direction = direction;
	e->egress_reason = egress_reason;
	e->ingress_reason = ingress_reason;
	e->protocol = pkt.protocol;
	e->tcp_flags = pkt.tcp_flags;
	e->hook = ctx->state->hook;
	e->family = pkt.family;
	e->flags = flags;
	e->len = pkt.len;
	e->timestamp_ns = now;
	e->src_endpoint = src ? src->id : 0;
	e->dst_endpoint = dst ? dst->id : 0;
	e->src_identity = src_id;
	e->dst_identity = dst_id;
	e->egress_rule = egress_rule;
	e->ingress_rule = ingress_rule;
	e->tuple = pkt.t;
	if (k) {
		e->orig_tuple = k->orig_tuple;
		e->orig_tuple.sport = orig_sport;
	} else if (ct) {
		read_tuple(ct, &e->orig_tuple, pkt.family);
	} else {
		e->orig_tuple = pkt.t;
	}

	// The interval's recorded flow of its key: the sample the agent's
	// aggregate record is built from.
	if (k) {
		if (!agg) {
			// From a zeroed value off the stack (netpol_evaluate's frame
			// counts against the same 512 bytes).
			bpf_map_update_elem(&netpol_agg_new, k, &agg_new_zero, BPF_NOEXIST);
			agg = bpf_map_lookup_elem(&netpol_agg_new, k);
		}
		if (agg) {
			agg->c.window_start = now;
			agg->sample = *e;
		}
	}

	__u64 wake = BPF_RB_NO_WAKEUP;
	if (cfg && bpf_ringbuf_query(&netpol_events, BPF_RB_AVAIL_DATA) >= cfg->wakeup_watermark)
		wake = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, wake);
	count(NETPOL_CNT_EVENTS);
	return allowed ? NF_ACCEPT : NF_DROP;
}

// netpol_spoof runs at TCX ingress of the host side of a pod interface and
// drops IP packets whose source address was not assigned to that pod.
SEC("tcx/ingress")
int netpol_spoof(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct netpol_spoof_key k = {.ifindex = skb->ifindex};

	if ((void *)(eth + 1) > end)
		return TCX_NEXT;
	if (eth->h_proto == bpf_htons(ETH_P_ARP)) {
		// An ARP sender address is a claim on that address: a pod could
		// point the node's or other pods' neighbour entries at itself.
		// Only its own addresses (and 0.0.0.0, address probes) may be claimed.
		struct arphdr *arp = (void *)(eth + 1);
		__u8 *sha = (__u8 *)(arp + 1);
		if ((void *)(sha + 6 + 4) > end)
			return TCX_DROP;
		if (arp->ar_hrd != bpf_htons(ARPHRD_ETHER) || arp->ar_pro != bpf_htons(ETH_P_IP) ||
		    arp->ar_hln != 6 || arp->ar_pln != 4)
			return TCX_NEXT;
		__be32 spa;
		__builtin_memcpy(&spa, sha + 6, 4);
		if (!spa)
			return TCX_NEXT;
		set_v4(k.addr, spa);
	} else if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end)
			return TCX_DROP;
		set_v4(k.addr, ip->saddr);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return TCX_DROP;
		__u8 *s = (__u8 *)&ip6->saddr;
		if (ip6->nexthdr == NETPOL_IPPROTO_ICMPV6) {
			// A neighbour advertisement claims its target address (ARP's
			// sender address in IPv6), whatever its source.
			__u8 *icmp = (__u8 *)(ip6 + 1);
			if ((void *)(icmp + 8 + 16) <= end && icmp[0] == ICMPV6_NEIGHBOR_ADVERT) {
				__u8 *target = icmp + 8;
				if (target[0] == 0xfe && (target[1] & 0xc0) == 0x80)
					return TCX_NEXT;
				__builtin_memcpy(k.addr, target, 16);
				if (bpf_map_lookup_elem(&netpol_spoof_guard, &k))
					return TCX_NEXT;
				count(NETPOL_CNT_SPOOF_DROPPED);
				return TCX_DROP;
			}
		}
		// Link-local and unspecified sources (neighbour discovery, DAD).
		if ((s[0] == 0xfe && (s[1] & 0xc0) == 0x80))
			return TCX_NEXT;
		__builtin_memcpy(k.addr, s, 16);
		__u8 unspecified = 1;
#pragma unroll
		for (int i = 0; i < 16; i++)
			if (s[i])
				unspecified = 0;
		if (unspecified)
			return TCX_NEXT;
	} else {
		return TCX_NEXT;
	}
	if (bpf_map_lookup_elem(&netpol_spoof_guard, &k))
		return TCX_NEXT;
	count(NETPOL_CNT_SPOOF_DROPPED);
	return TCX_DROP;
}


static __always_inline void ct_tuple(struct nf_conntrack_tuple *tup, struct netpol_tuple *t, __u8 family)
{
	if (family == 4) {
		set_v4(t->saddr, tup->src.u3.ip);
		set_v4(t->daddr, tup->dst.u3.ip);
	} else {
		__builtin_memcpy(t->saddr, &tup->src.u3.ip6, 16);
		__builtin_memcpy(t->daddr, &tup->dst.u3.ip6, 16);
	}
	t->sport = bpf_ntohs(tup->src.u.all);
	t->dport = bpf_ntohs(tup->dst.u.all);
}

// netpol_ct_destroy runs when the kernel frees a conntrack entry (the last
// reference to it is put; nf_ct_destroy is reached through a function
// pointer, so no caller inlines it). It writes a flow-end record for a
// confirmed entry of the configured network namespace whose original source
// or reply source (the DNAT backend) is a local endpoint: the connections the
// netfilter programs judged. One record per connection, no netlink message,
// no wake-up below the watermark: the reader polls.
SEC("fentry/nf_ct_destroy")
int BPF_PROG(netpol_ct_destroy, struct nf_conntrack *nfct)
{
	struct nf_conn *ct = (struct nf_conn *)nfct;
	__u32 zero = 0;
	struct netpol_config *cfg = bpf_map_lookup_elem(&netpol_config, &zero);
	if (!cfg || !cfg->flow_end_netns)
		return 0;
	unsigned long status = BPF_CORE_READ(ct, status);
	if (!(status & IPS_CONFIRMED) || (status & IPS_TEMPLATE))
		return 0;
	if (BPF_CORE_READ(ct, ct_net.net, ns.inum) != cfg->flow_end_netns)
		return 0;
	struct nf_conntrack_tuple orig, reply;
	if (bpf_core_read(&orig, sizeof(orig), &ct->tuplehash[0].tuple) ||
	    bpf_core_read(&reply, sizeof(reply), &ct->tuplehash[1].tuple))
		return 0;
	__u8 family;
	if (orig.src.l3num == 2 /* AF_INET */)
		family = 4;
	else if (orig.src.l3num == 10 /* AF_INET6 */)
		family = 6;
	else
		return 0;
	struct netpol_tuple o = {}, r = {};
	ct_tuple(&orig, &o, family);
	ct_tuple(&reply, &r, family);
	if (!bpf_map_lookup_elem(&netpol_endpoints, o.saddr) && !bpf_map_lookup_elem(&netpol_endpoints, r.saddr))
		return 0;

	struct netpol_flow_end *e = bpf_ringbuf_reserve(&netpol_flow_ends, sizeof(*e), 0);
	if (!e) {
		count(NETPOL_CNT_ENDS_RING_FULL);
		return 0;
	}
	e->version = NETPOL_EVENT_VERSION;
	e->type = NETPOL_EVENT_END;
	e->protocol = orig.dst.protonum;
	e->family = family;
	e->status = status;
	e->timestamp_ns = bpf_ktime_get_ns();
	e->start_real_ns = 0;
	e->packets_orig = e->bytes_orig = e->packets_reply = e->bytes_reply = 0;
	e->orig = o;
	e->reply = r;
	struct nf_ct_ext *ext = BPF_CORE_READ(ct, ext);
	if (ext) {
		__u8 off = 0;
		bpf_core_read(&off, 1, &ext->offset[bpf_core_enum_value(enum nf_ct_ext_id, NF_CT_EXT_ACCT)]);
		if (off) {
			struct nf_conn_acct *acct = (void *)ext + off;
			e->packets_orig = BPF_CORE_READ(acct, counter[0].packets.counter);
			e->bytes_orig = BPF_CORE_READ(acct, counter[0].bytes.counter);
			e->packets_reply = BPF_CORE_READ(acct, counter[1].packets.counter);
			e->bytes_reply = BPF_CORE_READ(acct, counter[1].bytes.counter);
		}
		off = 0;
		bpf_core_read(&off, 1, &ext->offset[bpf_core_enum_value(enum nf_ct_ext_id, NF_CT_EXT_TSTAMP)]);
		if (off) {
			struct nf_conn_tstamp *ts = (void *)ext + off;
			e->start_real_ns = BPF_CORE_READ(ts, start);
		}
	}
	__u64 wake = BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_query(&netpol_flow_ends, BPF_RB_AVAIL_DATA) >= cfg->wakeup_watermark)
		wake = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, wake);
	count(NETPOL_CNT_ENDS);
	return 0;
}

static __always_inline void end_tuple(struct netpol_tuple *t, const __u8 *saddr, __u16 sport, const __u8 *daddr,
				      __u16 dport)
{
	__builtin_memcpy(t->saddr, saddr, 16);
	__builtin_memcpy(t->daddr, daddr, 16);
	t->sport = sport;
	t->dport = dport;
}

// netpol_tcp_state writes a flow-end record when an established TCP socket
// of a local endpoint closes: the TCP source of flow-end summaries where
// fentry programs are refused (tp_btf programs load), without a conntrack
// netlink message per connection. It runs on every TCP state change of every
// socket of the kernel, so it returns at once unless the socket becomes
// ESTABLISHED (remember its side and start, for local endpoints only) or
// CLOSE (report it when remembered). The endpoint map, not the network
// namespace, scopes a node: pods live in their own namespaces.
//
// One record per connection: a server socket whose client is a local
// endpoint too remembers nothing (the client reports). A client whose SYN
// went unanswered (dropped by policy) never becomes ESTABLISHED: no record,
// as conntrack never confirmed its entry.
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(netpol_tcp_state, struct sock *sk, int oldstate, int newstate)
{
	if (newstate != TCP_ESTABLISHED && newstate != TCP_CLOSE)
		return 0;
	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u32 zero = 0;
	struct netpol_config *cfg = bpf_map_lookup_elem(&netpol_config, &zero);
	if (!cfg || !cfg->flow_end_netns)
		return 0;
	struct netpol_endpoint_key local, remote;
	__u8 family = 4;
	if (sk->__sk_common.skc_family == 2 /* AF_INET */) {
		set_v4(local.addr, sk->__sk_common.skc_rcv_saddr);
		set_v4(remote.addr, sk->__sk_common.skc_daddr);
	} else if (sk->__sk_common.skc_family == 10 /* AF_INET6 */) {
		__builtin_memcpy(local.addr, &sk->__sk_common.skc_v6_rcv_saddr, 16);
		__builtin_memcpy(remote.addr, &sk->__sk_common.skc_v6_daddr, 16);
		// A dual-stack socket's IPv4 peer is IPv4 to conntrack.
		__u32 *w = (__u32 *)local.addr;
		if (w[0] || w[1] || w[2] != bpf_htonl(0xffff))
			family = 6;
	} else {
		return 0;
	}

	if (newstate == TCP_ESTABLISHED) {
		__u32 client = oldstate == TCP_SYN_SENT;
		if (!client && oldstate != TCP_SYN_RECV)
			return 0;
		if (!bpf_map_lookup_elem(&netpol_endpoints, &local))
			return 0;
		if (!client && bpf_map_lookup_elem(&netpol_endpoints, &remote))
			return 0; // the local client reports
		if (client && cfg->agg_interval_ns) {
			struct netpol_answered_key k;
			answered_key(&k, local.addr, remote.addr, bpf_ntohs(sk->__sk_common.skc_dport), family);
			__u64 now = bpf_ktime_get_ns();
			// Refreshed in place: an update replaces the LRU element
			// (its lock, a free-list round trip) on every connection.
			__u64 *at = bpf_map_lookup_elem(&netpol_answered, &k);
			if (at)
				*at = now;
			else
				bpf_map_update_elem(&netpol_answered, &k, &now, BPF_ANY);
		}
		struct netpol_sock_start *st =
			bpf_sk_storage_get(&netpol_sock_starts, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (st) {
			st->start_ns = bpf_ktime_get_ns();
			st->client = client;
		}
		return 0;
	}

	// A local client's connect that failed (refused, or dropped and timed
	// out): its key is no longer answered, its next connections keep their
	// records until one is established again.
	if (oldstate == TCP_SYN_SENT && cfg->agg_interval_ns) {
		struct netpol_answered_key k;
		answered_key(&k, local.addr, remote.addr, bpf_ntohs(sk->__sk_common.skc_dport), family);
		bpf_map_delete_elem(&netpol_answered, &k);
		return 0;
	}
	struct netpol_sock_start *st = bpf_sk_storage_get(&netpol_sock_starts, sk, 0, 0);
	if (!st || !st->start_ns)
		return 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	// The local port: inet_num is cleared when the port is released, which
	// precedes this state change; inet_sport is not.
	__u16 lport = bpf_ntohs(tp->inet_conn.icsk_inet.inet_sport);
	__u16 rport = bpf_ntohs(sk->__sk_common.skc_dport);
	// Payload bytes: bytes_sent counts data only (with retransmissions, as
	// conntrack would); bytes_received counts a received FIN's sequence
	// number too (tcp_fin sets SOCK_DONE).
	__u64 out_segs = tp->segs_out, out_bytes = tp->bytes_sent;
	__u64 in_segs = tp->segs_in, in_bytes = tp->bytes_received;
	if (in_bytes && (sk->__sk_common.skc_flags & (1UL << SOCK_DONE)))
		in_bytes--;
	__u64 now = bpf_ktime_get_ns();
	__u32 status = NETPOL_END_SOCKET | (st->client ? NETPOL_END_CLIENT : 0);
	struct netpol_tuple orig, reply;
	__u64 po, bo, pr, br;
	if (st->client) {
		end_tuple(&orig, local.addr, lport, remote.addr, rport);
		end_tuple(&reply, remote.addr, rport, local.addr, lport);
		po = out_segs, bo = out_bytes, pr = in_segs, br = in_bytes;
	} else {
		end_tuple(&orig, remote.addr, rport, local.addr, lport);
		end_tuple(&reply, local.addr, lport, remote.addr, rport);
		po = in_segs, bo = in_bytes, pr = out_segs, br = out_bytes;
	}

	// A repeat of an end recorded this interval is only counted.
	if (cfg->agg_interval_ns) {
		struct netpol_agg_end_key k = {};
		k.orig = orig;
		k.orig.sport = 0;
		k.status = status;
		k.family = family;
		struct netpol_agg_counts *v = bpf_map_lookup_elem(&netpol_agg_end, &k);
		if (v) {
			if (agg_counted(v, now, cfg->agg_interval_ns)) {
				__sync_fetch_and_add(&v->packets_orig, po);
				__sync_fetch_and_add(&v->bytes_orig, bo);
				__sync_fetch_and_add(&v->packets_reply, pr);
				__sync_fetch_and_add(&v->bytes_reply, br);
				__sync_fetch_and_add(&v->duration_ns, now - st->start_ns);
				st->start_ns = 0;
				count(NETPOL_CNT_ENDS_AGGREGATED);
				return 0;
			}
		} else {
			struct netpol_agg_counts fresh = {.window_start = now};
			bpf_map_update_elem(&netpol_agg_end, &k, &fresh, BPF_NOEXIST);
		}
	}

	struct netpol_flow_end *e = bpf_ringbuf_reserve(&netpol_flow_ends, sizeof(*e), 0);
	if (!e) {
		count(NETPOL_CNT_ENDS_RING_FULL);
		return 0;
	}
	e->version = NETPOL_EVENT_VERSION;
	e->type = NETPOL_EVENT_END;
	e->protocol = IPPROTO_TCP;
	e->family = family;
	e->status = status;
	e->timestamp_ns = now;
	e->start_real_ns = st->start_ns;
	e->orig = orig;
	e->reply = reply;
	e->packets_orig = po;
	e->bytes_orig = bo;
	e->packets_reply = pr;
	e->bytes_reply = br;
	st->start_ns = 0; // reported: a disconnected socket reused reports its next connection only
	__u64 wake = BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_query(&netpol_flow_ends, BPF_RB_AVAIL_DATA) >= cfg->wakeup_watermark)
		wake = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, wake);
	count(NETPOL_CNT_ENDS);
	return 0;
}
