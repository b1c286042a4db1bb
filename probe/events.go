//go:build linux

package probe

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// Event is one record of the ring buffer, generated from struct
// netpol_event in netpol.c (version EventVersion).
type Event = netpolNetpolEvent

// EventVersion is the record version this package decodes.
const EventVersion = 1

// Event types, verdicts, directions and flags (netpol.c).
const (
	EventNewFlow = 1
	EventDrop    = 2

	VerdictAllow = 1
	VerdictDrop  = 2

	DirEgress  = 1
	DirIngress = 2

	FlagDNAT      = 1
	FlagSNAT      = 2
	FlagUntracked = 4
	FlagIPv6      = 8
	// FlagPickup: a TCP packet without SYN created the conntrack entry;
	// for a drop, Direction (and the rule and reason of that side) refers to
	// the reverse orientation.
	FlagPickup = 16
	// FlagRevoked: a UDP or SCTP packet going the other way of a flow that
	// revocation deleted was judged in that flow's orientation; for a drop,
	// Direction (and the rule and reason of that side) refers to the reverse
	// orientation.
	FlagRevoked = 32
	// FlagAudit: a side's rule has policy.RuleAudit: enforcing the audited
	// policies would flip that side's verdict. Such flows are reported even
	// when flow events are off (drops still within the drop-event rate).
	FlagAudit = 64
)

// Reasons of one side of an event (EgressReason, IngressReason). A
// resolved direction's reserved rules keep NetworkPolicy's reasons:
// policy.RuleIsolated is ReasonNoRuleMatched, policy.RuleNotIsolated
// ReasonNotIsolated.
const (
	ReasonNotIsolated   = 1
	ReasonAllowedByRule = 2
	ReasonNoRuleMatched = 3
	ReasonNotApplicable = 4 // that side is not a local endpoint
	// ReasonDeniedByRule: a resolved direction's entry denies
	// (policy.RuleDeny), e.g. a ClusterNetworkPolicy Deny rule.
	ReasonDeniedByRule = 5
)

// ErrUnknownVersion is returned for a record of another layout version.
var ErrUnknownVersion = errors.New("unknown event version")

// Reader reads events from the pinned ring buffer. The datapath submits
// without waking the reader until the unread data passes the configured
// watermark, so Read also returns after the polling interval.
type Reader struct {
	rd   *ringbuf.Reader
	poll time.Duration
	rec  ringbuf.Record // reused: no allocation per event
}

// NewReader opens a reader; poll bounds the latency of an event below the
// watermark (e.g. 100ms).
func (p *Probe) NewReader(poll time.Duration) (*Reader, error) {
	rd, err := ringbuf.NewReader(p.objs.NetpolEvents)
	if err != nil {
		return nil, fmt.Errorf("opening ring buffer: %w", err)
	}
	return &Reader{rd: rd, poll: poll}, nil
}

// Read returns the next event. It waits at most one polling interval and
// then returns os.ErrDeadlineExceeded when there is none.
func (r *Reader) Read(ev *Event) error {
	r.rd.SetDeadline(time.Now().Add(r.poll))
	if err := r.rd.ReadInto(&r.rec); err != nil {
		return err
	}
	return DecodeEvent(r.rec.RawSample, ev)
}

// Close stops the reader; a blocked Read returns ringbuf.ErrClosed.
func (r *Reader) Close() error { return r.rd.Close() }

// Pending is the number of unread bytes in the ring.
func (r *Reader) Pending() int { return r.rd.AvailableBytes() }

// DecodeEvent decodes one raw record.
func DecodeEvent(raw []byte, ev *Event) error {
	if len(raw) == 0 {
		return errors.New("empty event record")
	}
	if raw[0] != EventVersion {
		return fmt.Errorf("%w %d", ErrUnknownVersion, raw[0])
	}
	if len(raw) < int(unsafe.Sizeof(*ev)) {
		return fmt.Errorf("event record of %d bytes, want %d", len(raw), unsafe.Sizeof(*ev))
	}
	// The generated type has the C layout (structs.HostLayout) and the
	// record was written by this host's kernel: copy it as is.
	*ev = *(*Event)(unsafe.Pointer(&raw[0]))
	return nil
}

// TupleAddrs returns the tuple's addresses, IPv4 unmapped.
func TupleAddrs(t netpolNetpolTuple) (src, dst netip.Addr) {
	return netip.AddrFrom16(t.Saddr).Unmap(), netip.AddrFrom16(t.Daddr).Unmap()
}

// Attribution is the policy meaning of an event under a compiled Datapath.
type Attribution struct {
	// AllowedBy are the rules that allowed (egress, ingress side; absent
	// when that side was not isolated, or nothing decided it:
	// policy.RuleNotIsolated). Denying rules are never here.
	AllowedBy []policy.CompiledRule
	// DeniedBy are, for a drop by NetworkPolicy's default deny, the
	// policies isolating the deciding side of the deciding endpoint (no rule
	// of theirs matched; in a resolved direction, policy.RuleIsolated).
	DeniedBy []policy.PolicyRef
	// DeniedByRule is, for a drop by a deny entry (policy.RuleDeny), the
	// rule that denied, e.g. a ClusterNetworkPolicy rule (Cluster).
	DeniedByRule *policy.CompiledRule
	Direction    policy.Direction
	// NodeTraffic is set when the implicit pod<->node allowance applied.
	NodeTraffic bool
	// Audited are the sides whose rule has policy.RuleAudit (FlagAudit):
	// Rule.Audit says what would decide were the audited policies enforced
	// (and Rule.Base, when set, which reserved decision holds now: the
	// fields above already read it).
	Audited []AuditedSide
}

// AuditedSide is one side of an audited verdict.
type AuditedSide struct {
	Direction policy.Direction
	Rule      policy.CompiledRule
}

// enforcedID is the ID of what decided a side: the rule's own, or for an
// audited decision whose enforced part is a reserved ID, that ID.
func enforcedID(dp *policy.Datapath, id uint32) uint32 {
	if id&policy.RuleAudit != 0 {
		if r, ok := dp.RuleByID(id); ok && r.Base != 0 {
			return r.Base
		}
	}
	return id & policy.RuleIDMask
}

// Attribute explains ev with dp (the Datapath applied when it was seen).
func Attribute(dp *policy.Datapath, ev *Event) Attribution {
	var a Attribution
	for i, id := range []uint32{ev.EgressRule, ev.IngressRule} {
		if id&policy.RuleAudit != 0 {
			if r, ok := dp.RuleByID(id); ok {
				a.Audited = append(a.Audited, AuditedSide{Direction: [2]policy.Direction{policy.Egress, policy.Ingress}[i], Rule: r})
			}
		}
		if id&policy.RuleDeny != 0 {
			continue // it allowed nothing; a drop's rule is read below
		}
		switch enforcedID(dp, id) {
		case 0, policy.RuleNotIsolated:
		case policy.RuleNodeTraffic:
			a.NodeTraffic = true
		default:
			if r, ok := dp.RuleByID(id); ok {
				a.AllowedBy = append(a.AllowedBy, r)
			}
		}
	}
	if ev.Verdict != VerdictDrop {
		return a
	}
	egressEP, ingressEP := ev.SrcEndpoint, ev.DstEndpoint
	if ev.Flags&(FlagPickup|FlagRevoked) != 0 {
		egressEP, ingressEP = ingressEP, egressEP
	}
	var epID, rule uint32
	switch ev.Direction {
	case DirEgress:
		a.Direction, epID, rule = policy.Egress, egressEP, ev.EgressRule
	case DirIngress:
		a.Direction, epID, rule = policy.Ingress, ingressEP, ev.IngressRule
	default:
		return a
	}
	if rule&policy.RuleDeny != 0 && enforcedID(dp, rule) != policy.RuleIsolated {
		if r, ok := dp.RuleByID(rule); ok {
			a.DeniedByRule = &r
		}
		return a
	}
	if ep, ok := dp.EndpointByID(epID); ok {
		a.DeniedBy = ep.Ingress.IsolatedBy
		if a.Direction == policy.Egress {
			a.DeniedBy = ep.Egress.IsolatedBy
		}
	}
	return a
}

// Applied returns the Datapath last applied by this process (nil before
// the first Apply).
func (p *Probe) Applied() *policy.Datapath {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.dp
}
