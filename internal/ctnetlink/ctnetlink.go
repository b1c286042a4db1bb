// Package ctnetlink decodes conntrack's netlink messages (ctnetlink): the
// attributes of include/uapi/linux/netfilter/nfnetlink_conntrack.h, read in
// place without allocating. The agent reads DESTROY events with it (flow-end
// summaries), the probe its dumps (revocation).
package ctnetlink

import (
	"encoding/binary"
	"net/netip"
)

// Message types: NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_*.
const (
	MsgGet    = 1<<8 | 1
	MsgDelete = 1<<8 | 2 // also a DESTROY event's type
)

// Attributes of a conntrack entry (CTA_*).
const (
	TupleOrig     = 1
	TupleReply    = 2
	CountersOrig  = 9
	CountersReply = 10
	ID            = 12
	Zone          = 18
	Timestamp     = 20
	Filter        = 25
)

// Attributes inside a tuple (CTA_TUPLE_*), its address (CTA_IP_*) and its
// protocol (CTA_PROTO_*); inside counters (CTA_COUNTERS_*), the timestamp
// (CTA_TIMESTAMP_*) and a dump filter (CTA_FILTER_*).
const (
	TupleIP    = 1
	TupleProto = 2

	IPv4Src = 1
	IPv4Dst = 2
	IPv6Src = 3
	IPv6Dst = 4

	ProtoNum     = 1
	ProtoSrcPort = 2
	ProtoDstPort = 3

	CountersPackets = 1
	CountersBytes   = 2

	TimestampStart = 1
	TimestampStop  = 2

	FilterOrigFlags  = 1
	FilterReplyFlags = 2
	// FilterFlagIPSrc (CTA_FILTER_F_CTA_IP_SRC): the filter tuple's source
	// address must match.
	FilterFlagIPSrc = 1 << 0
)

// Attrs calls fn for each netlink attribute in b, its type without the
// NLA_F_NESTED and NLA_F_NET_BYTEORDER flags; it stops at a malformed one.
func Attrs(b []byte, fn func(typ uint16, v []byte)) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		if l < 4 || l > len(b) {
			return
		}
		fn(binary.NativeEndian.Uint16(b[2:4])&0x3fff, b[4:l])
		b = b[min(len(b), (l+3)&^3):]
	}
}

// Tuple is one direction of a conntrack entry.
type Tuple struct {
	Proto        uint8
	Src, Dst     netip.Addr
	Sport, Dport uint16
}

// DecodeTuple reads a CTA_TUPLE_ORIG or CTA_TUPLE_REPLY attribute's value
// into t (IPv4-mapped IPv6 addresses unmapped).
func DecodeTuple(b []byte, t *Tuple) {
	Attrs(b, func(typ uint16, v []byte) {
		switch typ {
		case TupleIP:
			Attrs(v, func(typ uint16, v []byte) {
				switch {
				case (typ == IPv4Src || typ == IPv4Dst) && len(v) == 4:
					a := netip.AddrFrom4([4]byte(v))
					if typ == IPv4Src {
						t.Src = a
					} else {
						t.Dst = a
					}
				case (typ == IPv6Src || typ == IPv6Dst) && len(v) == 16:
					a := netip.AddrFrom16([16]byte(v)).Unmap()
					if typ == IPv6Src {
						t.Src = a
					} else {
						t.Dst = a
					}
				}
			})
		case TupleProto:
			Attrs(v, func(typ uint16, v []byte) {
				switch {
				case typ == ProtoNum && len(v) >= 1:
					t.Proto = v[0]
				case typ == ProtoSrcPort && len(v) >= 2:
					t.Sport = binary.BigEndian.Uint16(v)
				case typ == ProtoDstPort && len(v) >= 2:
					t.Dport = binary.BigEndian.Uint16(v)
				}
			})
		}
	})
}
