//go:build linux

package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/internal/ctnetlink"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
	"github.com/kubectl-netpol/kubectl-netpol/probe"
)

// Flow-end summaries: one EVENT_TYPE_END flow per ended connection of a
// local pod, with both directions' packets and bytes and the duration.
// Sources, by preference (shown in status and in the
// kubectl_netpol_flow_end_source metric with the protocols each serves):
//
//   - kernel, every protocol: a BPF program on conntrack's destructor
//     writes a fixed record per ended entry of a local endpoint into its own
//     ring buffer, without waking the reader (probe.OpenFlowEnds). Kernels
//     that refuse fentry programs (this project's 6.18 test machines answer
//     EPERM) use instead
//   - kernel-tcp for TCP: a tp_btf program on the TCP socket states writes
//     the same record when an established socket of a local endpoint closes
//     (probe.OpenTCPFlowEnds; the socket's counters, no conntrack
//     accounting needed), with netlink for UDP, SCTP and ICMP, its TCP
//     events dropped in the kernel by a socket filter (flowEndFilter). TCP
//     is nearly every connection a node ends, so this takes the netlink
//     message, its copy and its decode out of nearly every summary.
//   - netlink, every protocol (no kernel program loads, or
//     --flow-end-source=netlink): conntrack DESTROY events
//     (NFNLGRP_CONNTRACK_DESTROY) on a bare socket the Go runtime's poller
//     does not watch, drained every poll interval with recvmmsg and decoded
//     without allocating. Before issue 19 each event woke the poller, cost a
//     recvmsg and a ti-mo/conntrack decode: ~30-40 µs of agent CPU per
//     connection, now ~5.
//
// Either way the kernel never waits on the agent: a full ring or socket
// drops records, counted (flow_end_events_lost_total, flow_ends_lost).

const (
	// flowEndQueue is how many decoded DESTROY events wait for enrichment;
	// past it they are dropped and counted.
	flowEndQueue = 16384
	// flowEndSocketBuffer is the netlink socket's receive buffer, forced
	// past net.core.rmem_max (the agent has NET_ADMIN) so bursts of
	// connection ends (a pod deleted, a conntrack flush) fit: 8 MiB lost
	// events in a burst of 50k, 32 MiB none (BenchmarkFlowEndEvents). The
	// kernel charges it only while events wait.
	flowEndSocketBuffer = 32 << 20
	// newFlowRecords bounds the new-flow events kept to attribute the end
	// of their connection (older ones are forgotten first).
	newFlowRecords = 65536
)

// Reasons a flow-end event was lost (kubectl_netpol_flow_end_events_lost_total).
const (
	lostQueueFull     = "queue_full"     // the enrichment fell behind: one event each
	lostSocketOverrun = "socket_overrun" // the kernel reported ENOBUFS: one or more events each
)

// ctEnd is the end of one conntrack entry, from either source (netlink
// DESTROY events or the kernel's flow-end records), and when it was
// received.
type ctEnd struct {
	proto uint8
	// The original tuple (before NAT) and the reply's source (the DNAT
	// backend, or the original destination).
	src, dst, rsrc      netip.Addr
	sport, dport, rsprt uint16
	packets, bytes      uint64    // both directions (0 without nf_conntrack_acct)
	start, stop         time.Time // conntrack's timestamps, zero without nf_conntrack_timestamp
	at                  time.Time
	// conns is, for a kernel aggregate of repeated ends, how many it stands
	// for (packets and bytes are their sums, start-stop their mean
	// lifetime); 0 for one connection's end.
	conns uint64
}

// flowEnd is kept as the queue's element name.
type flowEnd = ctEnd

// flowEndListener receives DESTROY events into a bounded queue.
type flowEndListener struct {
	fd      int // a netlink socket the Go runtime's poller does not watch
	events  chan flowEnd
	lost    *prometheus.CounterVec
	poll    time.Duration
	closing chan struct{}
	done    chan struct{}

	// recvmmsg state, reused: flowEndBatch messages per call.
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	slots []byte
	// pending are the decoded ends not handed over yet: they go to events
	// together (hand), so the summarizing goroutine wakes once per drain of
	// the socket rather than whenever it catches up with the decoder.
	pending []flowEnd

	// The socket filter (flowEndFilter): skipTCP, and the node's tunnel
	// ports as last read from its links through nl (nil: not read).
	skipTCP     bool
	nl          *netlink.Handle
	tunnelPorts []uint16
}

// tunnelRefresh is how often the listener reads the node's tunnel ports
// again (an overlay's link may come up after the agent).
const tunnelRefresh = 30 * time.Second

// flowEndHandOver bounds pending: past it a drain hands over early.
const flowEndHandOver = 4096

// flowEndBatch is how many messages one recvmmsg takes, each in a slot of
// flowEndSlot bytes (a DESTROY message is ~300 bytes).
const (
	flowEndBatch = 64
	flowEndSlot  = 8 << 10
)

// mmsghdr is struct mmsghdr (x/sys/unix has no recvmmsg).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// listenFlowEnds subscribes to conntrack DESTROY events in the network
// namespace netnsFD (0: the caller's, the node's for the hostNetwork agent),
// with a socket buffer of rcvbuf bytes and a queue of queue events.
func listenFlowEnds(netnsFD, queue, rcvbuf int, lost *prometheus.CounterVec) (*flowEndListener, error) {
	return listenFlowEndsPoll(netnsFD, queue, rcvbuf, 20*time.Millisecond, false, lost)
}

// listenFlowEndsPoll is listenFlowEnds draining the socket every poll;
// the kernel drops the events of the node's tunnels, and with skipTCP
// those of TCP entries, before they reach the socket (flowEndFilter).
func listenFlowEndsPoll(netnsFD, queue, rcvbuf int, poll time.Duration, skipTCP bool, lost *prometheus.CounterVec) (*flowEndListener, error) {
	fd, err := netfilterSocket(netnsFD)
	if err != nil {
		return nil, fmt.Errorf("opening a netfilter netlink socket for conntrack events: %w (needs NET_ADMIN)", err)
	}
	l := &flowEndListener{fd: fd, events: make(chan flowEnd, queue), lost: lost, poll: poll,
		closing: make(chan struct{}), done: make(chan struct{}), skipTCP: skipTCP,
		hdrs: make([]mmsghdr, flowEndBatch), iovs: make([]unix.Iovec, flowEndBatch), slots: make([]byte, flowEndBatch*flowEndSlot)}
	if netnsFD > 0 {
		l.nl, err = netlink.NewHandleAt(netns.NsHandle(netnsFD))
	} else {
		l.nl, err = netlink.NewHandle()
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("opening netlink to read the node's tunnel links: %w", err)
	}
	// Before subscribing: no event the filter drops is queued unfiltered.
	if err := l.refreshFilter(); err != nil {
		l.nl.Close()
		unix.Close(fd)
		return nil, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, int(netfilter.GroupCTDestroy)); err != nil {
		l.nl.Close()
		unix.Close(fd)
		return nil, fmt.Errorf("subscribing to conntrack destroy events: %w (needs NET_ADMIN and nf_conntrack_netlink)", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf); err != nil {
		// Not fatal: a smaller buffer works, it overruns sooner.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf); err != nil {
			klog.InfoS("Keeping the default receive buffer for conntrack events", "err", err)
		}
	}
	for i := range l.hdrs {
		l.iovs[i].Base = &l.slots[i*flowEndSlot]
		l.iovs[i].SetLen(flowEndSlot)
		l.hdrs[i].hdr.Iov = &l.iovs[i]
		l.hdrs[i].hdr.SetIovlen(1)
	}
	go l.receive()
	return l, nil
}

// flowEndFilter is the classic BPF socket filter for conntrack event
// sockets: it drops in the kernel the DESTROY events the agent would only
// decode to throw away, so it never receives, wakes for or decodes them:
//   - with skipTCP, TCP entries', when their ends come from the TCP socket
//     states (probe.OpenTCPFlowEnds);
//   - UDP entries' to one of tunnelPorts, the node's overlay links (vxlan,
//     geneve): node to node, never a pod's, and several for each pod
//     connection across nodes, since the outer source port is a hash of the
//     inner flow (Flannel's vxlan: ~4 per connection over the two nodes).
//
// It walks the message's attributes CTA_TUPLE_ORIG > CTA_TUPLE_PROTO >
// CTA_PROTO_NUM (and CTA_PROTO_DST_PORT) with the kernel's netlink
// attribute extensions; a message of another shape is kept (user space
// decodes or ignores it as before). nil when it would keep everything.
func flowEndFilter(skipTCP bool, tunnelPorts []uint16) *unix.SockFprog {
	if !skipTCP && len(tunnelPorts) == 0 {
		return nil
	}
	const keep, drop = -1, -2 // jump targets, resolved below
	type jump struct {
		at     int
		target int // keep or drop
	}
	var insns []bpf.Instruction
	var jumps []jump
	jumpIf := func(cond bpf.JumpTest, val uint32, target int) {
		jumps = append(jumps, jump{len(insns), target})
		insns = append(insns, bpf.JumpIf{Cond: cond, Val: val})
	}
	// find: A becomes the offset of attribute typ inside the one at A
	// (nested) or among the message's (top level); absent: keep.
	find := func(typ uint32, nested bool) {
		ext := bpf.ExtNetlinkAttr
		if nested {
			ext = bpf.ExtNetlinkAttrNested
		}
		insns = append(insns, bpf.LoadConstant{Dst: bpf.RegX, Val: typ}, bpf.LoadExtension{Num: ext})
		jumpIf(bpf.JumpEqual, 0, keep)
	}
	// value: A becomes the size-byte value of the attribute at A (network
	// order, as classic BPF loads are).
	value := func(size int) {
		insns = append(insns, bpf.TAX{}, bpf.LoadIndirect{Off: unix.SizeofNlAttr, Size: size})
	}
	insns = append(insns, bpf.LoadConstant{Dst: bpf.RegA, Val: unix.NLMSG_HDRLEN + 4}) // after nfgenmsg
	find(ctnetlink.TupleOrig, false)
	find(ctnetlink.TupleProto, true)
	insns = append(insns, bpf.StoreScratch{Src: bpf.RegA, N: 0})
	find(ctnetlink.ProtoNum, true)
	value(1)
	if skipTCP {
		jumpIf(bpf.JumpEqual, unix.IPPROTO_TCP, drop)
	}
	if len(tunnelPorts) > 0 {
		jumpIf(bpf.JumpNotEqual, unix.IPPROTO_UDP, keep)
		insns = append(insns, bpf.LoadScratch{Dst: bpf.RegA, N: 0})
		find(ctnetlink.ProtoDstPort, true)
		value(2)
		for _, p := range tunnelPorts {
			jumpIf(bpf.JumpEqual, uint32(p), drop)
		}
	}
	keepAt := len(insns)
	insns = append(insns, bpf.RetConstant{Val: 0xffff_ffff}) // keep the whole message
	dropAt := len(insns)
	insns = append(insns, bpf.RetConstant{Val: 0})
	for _, j := range jumps {
		to := keepAt
		if j.target == drop {
			to = dropAt
		}
		in := insns[j.at].(bpf.JumpIf)
		in.SkipTrue = uint8(to - j.at - 1)
		insns[j.at] = in
	}
	return mustAssemble(insns)
}

// nodeTunnelPorts are the UDP ports of the overlay links (vxlan, geneve)
// nl sees, sorted.
func nodeTunnelPorts(nl *netlink.Handle) ([]uint16, error) {
	links, err := nl.LinkList()
	if err != nil {
		return nil, err
	}
	var ports []uint16
	for _, l := range links {
		switch l := l.(type) {
		case *netlink.Vxlan:
			ports = append(ports, uint16(l.Port))
		case *netlink.Geneve:
			ports = append(ports, l.Dport)
		}
	}
	slices.Sort(ports)
	return slices.Compact(slices.DeleteFunc(ports, func(p uint16) bool { return p == 0 })), nil
}

// refreshFilter reads the node's tunnel ports and, when they changed,
// attaches the filter for them (the kernel swaps filters atomically).
func (l *flowEndListener) refreshFilter() error {
	ports, err := nodeTunnelPorts(l.nl)
	if err != nil {
		if l.tunnelPorts != nil {
			return nil // keep the filter in place; read again next time
		}
		klog.InfoS("Reading the node's tunnel links; their conntrack events reach the agent", "err", err)
		ports = []uint16{}
	}
	if l.tunnelPorts != nil && slices.Equal(ports, l.tunnelPorts) {
		return nil
	}
	if f := flowEndFilter(l.skipTCP, ports); f != nil {
		if err := unix.SetsockoptSockFprog(l.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, f); err != nil {
			return fmt.Errorf("attaching the socket filter for conntrack events: %w", err)
		}
	} else if len(l.tunnelPorts) > 0 {
		// The last tunnel went away: nothing left to drop.
		if err := unix.SetsockoptInt(l.fd, unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0); err != nil {
			return fmt.Errorf("detaching the socket filter for conntrack events: %w", err)
		}
	}
	if len(ports) > 0 {
		klog.V(2).InfoS("Conntrack events of the node's tunnels dropped in the kernel", "udpPorts", ports)
	}
	l.tunnelPorts = ports
	return nil
}

// mustAssemble assembles a fixed classic BPF program into its socket
// filter form.
func mustAssemble(insns []bpf.Instruction) *unix.SockFprog {
	raw, err := bpf.Assemble(insns)
	if err != nil {
		panic(err) // a fixed program: a bug, caught by any test
	}
	f := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		f[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return &unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]}
}

// netfilterSocket opens a NETLINK_NETFILTER socket in the network namespace
// netnsFD (0: the caller's). It is a bare descriptor, not registered with
// the Go runtime's poller: each queued event would otherwise wake the
// poller (edge-triggered epoll), a cost per connection on a busy node.
func netfilterSocket(netnsFD int) (int, error) {
	open := func() (int, error) {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return -1, err
		}
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			unix.Close(fd)
			return -1, err
		}
		return fd, nil
	}
	if netnsFD == 0 {
		return open()
	}
	type res struct {
		fd  int
		err error
	}
	c := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // not unlocked if the namespace cannot be restored: the thread is discarded
		orig, err := netns.Get()
		if err != nil {
			c <- res{-1, err}
			return
		}
		defer orig.Close()
		if err := netns.Set(netns.NsHandle(netnsFD)); err != nil {
			c <- res{-1, err}
			return
		}
		fd, err := open()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		c <- res{fd, err}
	}()
	r := <-c
	return r.fd, r.err
}

// receive decodes events until Close. It drains the socket every poll
// interval (recvmmsg, flowEndBatch messages per call) rather than waking
// per event: a connection-heavy node ends thousands of connections a
// second, and a wake-up each cost more than the rest of the path. It never
// blocks on the queue: a full queue drops the event and counts it.
func (l *flowEndListener) receive() {
	defer close(l.done)
	defer close(l.events)
	tick := time.NewTicker(l.poll)
	defer tick.Stop()
	refreshed := time.Now()
	for {
		if time.Since(refreshed) >= tunnelRefresh {
			refreshed = time.Now()
			if err := l.refreshFilter(); err != nil {
				klog.ErrorS(err, "Updating the conntrack event filter for the node's tunnels")
			}
		}
		for {
			// A raw system call: MSG_DONTWAIT never blocks, and telling the
			// scheduler about a call of tens of µs lets its monitor hand
			// the goroutine's processor to another thread each time (a
			// thread wake-up and context switch per batch).
			n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(l.fd), uintptr(unsafe.Pointer(&l.hdrs[0])),
				uintptr(len(l.hdrs)), unix.MSG_DONTWAIT, 0, 0)
			if errno == unix.EAGAIN || errno == unix.EWOULDBLOCK {
				break
			}
			if errno == unix.ENOBUFS {
				// The kernel dropped events it could not queue; the socket
				// stays usable.
				l.lost.WithLabelValues(lostSocketOverrun).Inc()
				continue
			}
			if errno == unix.EINTR {
				continue
			}
			if errno != 0 {
				klog.ErrorS(errno, "Receiving conntrack events; flow-end summaries stop")
				return
			}
			now := time.Now()
			for i := range int(n) {
				m := l.slots[i*flowEndSlot:]
				l.decodeAll(m[:min(int(l.hdrs[i].len), flowEndSlot)], now)
			}
			if len(l.pending) >= flowEndHandOver {
				l.hand()
			}
			if int(n) < len(l.hdrs) {
				break
			}
		}
		l.hand()
		select {
		case <-l.closing:
			return
		case <-tick.C:
		}
	}
}

// hand queues the pending ends; it never blocks: a full queue drops the
// end and counts it.
func (l *flowEndListener) hand() {
	for i := range l.pending {
		select {
		case l.events <- l.pending[i]:
		default:
			l.lost.WithLabelValues(lostQueueFull).Inc()
		}
	}
	l.pending = l.pending[:0]
}

// decodeAll adds the DESTROY events among the netlink messages in b to
// pending.
func (l *flowEndListener) decodeAll(b []byte, now time.Time) {
	for len(b) >= unix.NLMSG_HDRLEN {
		mlen := int(binary.NativeEndian.Uint32(b[0:4]))
		if mlen < unix.NLMSG_HDRLEN || mlen > len(b) {
			return
		}
		typ := binary.NativeEndian.Uint16(b[4:6])
		if typ == ctnetlink.MsgDelete {
			var e ctEnd
			if decodeCTEnd(b[unix.NLMSG_HDRLEN:mlen], &e) {
				e.at = now
				l.pending = append(l.pending, e)
			}
		}
		b = b[min(len(b), (mlen+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1)):]
	}
}

// decodeCTEnd decodes a ctnetlink DESTROY message's payload (after the
// netlink header: nfgenmsg, then attributes) into e.
func decodeCTEnd(b []byte, e *ctEnd) bool {
	if len(b) < 4 {
		return false
	}
	var orig, reply ctnetlink.Tuple
	ctnetlink.Attrs(b[4:], func(typ uint16, v []byte) {
		switch typ {
		case ctnetlink.TupleOrig:
			ctnetlink.DecodeTuple(v, &orig)
		case ctnetlink.TupleReply:
			ctnetlink.DecodeTuple(v, &reply)
		case ctnetlink.CountersOrig, ctnetlink.CountersReply:
			ctnetlink.Attrs(v, func(typ uint16, v []byte) {
				if len(v) < 8 {
					return
				}
				switch typ {
				case ctnetlink.CountersPackets:
					e.packets += binary.BigEndian.Uint64(v)
				case ctnetlink.CountersBytes:
					e.bytes += binary.BigEndian.Uint64(v)
				}
			})
		case ctnetlink.Timestamp:
			ctnetlink.Attrs(v, func(typ uint16, v []byte) {
				if len(v) < 8 {
					return
				}
				ts := time.Unix(0, int64(binary.BigEndian.Uint64(v)))
				switch typ {
				case ctnetlink.TimestampStart:
					e.start = ts
				case ctnetlink.TimestampStop:
					e.stop = ts
				}
			})
		}
	})
	if !orig.Src.IsValid() || !reply.Src.IsValid() {
		return false
	}
	e.proto, e.src, e.dst, e.sport, e.dport = orig.Proto, orig.Src, orig.Dst, orig.Sport, orig.Dport
	e.rsrc, e.rsprt = reply.Src, reply.Sport
	return true
}

// endOfConntrack is the end of a ti-mo/conntrack flow (tests build them).
func endOfConntrack(f *conntrack.Flow) ctEnd {
	o, r := f.TupleOrig, f.TupleReply
	return ctEnd{proto: o.Proto.Protocol, src: o.IP.SourceAddress.Unmap(), dst: o.IP.DestinationAddress.Unmap(),
		sport: o.Proto.SourcePort, dport: o.Proto.DestinationPort,
		rsrc: r.IP.SourceAddress.Unmap(), rsprt: r.Proto.SourcePort,
		packets: f.CountersOrig.Packets + f.CountersReply.Packets, bytes: f.CountersOrig.Bytes + f.CountersReply.Bytes,
		start: f.Timestamp.Start, stop: f.Timestamp.Stop}
}

// Close stops receiving and waits for the receive loop to end.
func (l *flowEndListener) Close() error {
	close(l.closing)
	<-l.done
	l.nl.Close()
	return unix.Close(l.fd)
}

// ctKey is a connection by its original-direction 5-tuple (before any NAT):
// what both the new-flow event (its pre-NAT tuple) and conntrack know.
// Addresses in their 16-byte form (IPv4 mapped), so the key holds no
// pointer and hashes as plain memory.
type ctKey struct {
	src, dst   [16]byte
	sport, dpt uint16
	proto      uint8
}

// keyOfEvent is the conntrack original tuple of a new-flow event: the
// datapath runs after DNAT, so a Service's address is in OrigTuple.
func keyOfEvent(ev *probe.Event) ctKey {
	k := ctKey{proto: ev.Protocol, src: ev.Tuple.Saddr, dst: ev.Tuple.Daddr, sport: ev.Tuple.Sport, dpt: ev.Tuple.Dport}
	if ev.Flags&probe.FlagDNAT != 0 {
		k.dst, k.dpt = ev.OrigTuple.Daddr, ev.OrigTuple.Dport
	}
	return k
}

func keyOfConntrack(f *conntrack.Flow) ctKey {
	e := endOfConntrack(f)
	return keyOfEnd(&e)
}

func keyOfEnd(e *ctEnd) ctKey {
	return ctKey{proto: e.proto, src: e.src.As16(), dst: e.dst.As16(), sport: e.sport, dpt: e.dport}
}

// newFlowTable remembers the flows published for new connections, so a
// connection's end carries the attribution (and pod identities) of its
// start. Bounded: the oldest record is forgotten first.
//
// A tuple can be reused while its previous connection's entry still waits
// in TIME_WAIT (a client cycling through its ports: the new SYN ends the old
// entry). The new start may be read before the old end (two sources, each
// read in batches), so a key keeps two records and an end takes the older:
// each end gets its own start, and never needs the costlier look-up of an
// unknown start (endFlow's judged: every rule of the endpoint).
//
// The records live in a ring of slots (record n in slot (n-1)%max), the map
// holds only a key's newest slot: a record costs two map operations to
// remember and one or two to take, and the map holds no pointer for the
// garbage collector to follow.
//
// The map is keyed by a seeded 64-bit hash of the key, not the 40-byte key:
// a start is taken a second or more after it was remembered, so each map
// probe is a cache miss, and 16-byte slots make the index a third of the
// size (~1 MiB at 65,536 records) and the probe a fast 64-bit one. The
// record keeps the full key: a look-up whose record holds another key (two
// keys of one hash, once in 2^64) finds nothing, and a start whose hash
// another key takes is forgotten; either end is then attributed by the
// costlier look-up of an unknown start, with the same result.
type newFlowTable struct {
	mu    sync.Mutex
	max   int
	n     uint64            // records remembered so far
	seed  maphash.Seed      // for hash
	m     map[uint64]uint32 // a key's hash to its newest record's slot
	slots []newFlowRecord   // the ring (grown as used)
}

type newFlowRecord struct {
	key  ctKey
	hash uint64       // of key, its entry in m
	flow *flowv1.Flow // nil: taken or forgotten
	n    uint64       // insertion number; 0: never used
	// older is the slot of the key's previous record while it waits for
	// its end, valid while that slot still holds record olderN.
	older  uint32
	olderN uint64
	newest bool // m[key] is this slot
}

func newNewFlowTable(max int) *newFlowTable {
	// Sized for its bound at once: a busy node fills it within seconds,
	// and growing a map rehashes every entry.
	return &newFlowTable{max: max, seed: maphash.MakeSeed(), m: make(map[uint64]uint32, max), slots: make([]newFlowRecord, 0, max)}
}

// ctKeyLen is the bytes of a ctKey's fields (no padding between them).
const ctKeyLen = unsafe.Offsetof(ctKey{}.proto) + 1

// hash is k's entry in m: its field bytes only (the trailing padding's
// content is not defined). maphash.Comparable would move k to the heap.
func (t *newFlowTable) hash(k *ctKey) uint64 {
	return maphash.Bytes(t.seed, unsafe.Slice((*byte)(unsafe.Pointer(k)), ctKeyLen))
}

// remember records the published flow f of a new connection.
func (t *newFlowTable) remember(k ctKey, f *flowv1.Flow) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n++
	if len(t.slots) < t.max {
		t.slots = append(t.slots, newFlowRecord{})
	}
	i := uint32((t.n - 1) % uint64(t.max))
	s := &t.slots[i]
	if s.newest {
		// The oldest record goes; its key's older record, if any, went
		// before it.
		delete(t.m, s.hash)
	}
	h := t.hash(&k)
	*s = newFlowRecord{key: k, hash: h, flow: f, n: t.n, newest: true}
	if j, ok := t.m[h]; ok {
		prev := &t.slots[j]
		prev.newest = false
		// A third start before the first's end forgets the first.
		t.forgetOlder(prev)
		if prev.key == k {
			s.older, s.olderN = j, prev.n
		} else {
			prev.flow = nil // another key of the same hash: forgotten
		}
	}
	t.m[h] = i
}

// forgetOlder drops r's older record, if still held.
func (t *newFlowTable) forgetOlder(r *newFlowRecord) {
	if r.olderN != 0 {
		if o := &t.slots[r.older]; o.n == r.olderN {
			o.flow = nil
		}
		r.olderN = 0
	}
}

// take returns and forgets the oldest record of k (nil when none).
func (t *newFlowTable) take(k ctKey) *flowv1.Flow {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.takeLocked(k, t.hash(&k))
}

// takeLocked is take of k, whose hash is h, with t.mu held.
func (t *newFlowTable) takeLocked(k ctKey, h uint64) *flowv1.Flow {
	i, ok := t.m[h]
	if !ok {
		return nil
	}
	r := &t.slots[i]
	if r.key != k {
		return nil
	}
	if r.olderN != 0 {
		if o := &t.slots[r.older]; o.n == r.olderN && o.flow != nil {
			f := o.flow
			o.flow = nil
			r.olderN = 0
			return f
		}
		r.olderN = 0
	}
	f := r.flow
	r.flow, r.newest = nil, false
	delete(t.m, h)
	return f
}

// takeAll appends the oldest record of each end's key to recs (nil when
// none), as take would one by one, under one lock. A pass before the
// takes loads what they will read (each key's index entry and record) in a
// tight loop, so the CPU fetches many at once instead of waiting for each;
// a pass after them does the same for the starts' flows, which endFlow
// reads.
func (t *newFlowTable) takeAll(ends []flowEnd, recs []*flowv1.Flow) []*flowv1.Flow {
	t.mu.Lock()
	defer t.mu.Unlock()
	var sink uint64
	var hs [endBatch]uint64
	hashes := hs[:0]
	for i := range ends {
		k := keyOfEnd(&ends[i])
		h := t.hash(&k)
		hashes = append(hashes, h)
		if j, ok := t.m[h]; ok {
			sink += t.slots[j].olderN
		}
	}
	for i := range ends {
		recs = append(recs, t.takeLocked(keyOfEnd(&ends[i]), hashes[i]))
	}
	for _, f := range recs {
		if f != nil {
			sink += uint64(f.Verdict) + uint64(uintptr(unsafe.Pointer(f.Time))) + uint64(uintptr(unsafe.Pointer(f.L4)))
		}
	}
	touched.Store(sink)
	return recs
}

// touched keeps takeAll's loads from being optimised away.
var touched atomic.Uint64

// len is the number of records kept.
func (t *newFlowTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for i := range t.slots {
		if t.slots[i].flow != nil {
			n++
		}
	}
	return n
}

// endpointIndex is the applied datapath by address: its local endpoints
// and, built on first need, every address's identity and the rules that
// admitted each peer. Only an end whose start is unknown needs the last two,
// so a policy change at 100k pods does not rebuild an index of every
// address for ends that never ask; one that keeps the identity list (a
// policy change) keeps the address map once built.
type endpointIndex struct {
	dp       *policy.Datapath
	local    map[netip.Addr]*policy.Endpoint
	identity map[netip.Addr]uint32 // nil until identityOf first runs for dp
	allowing map[allowKey]uint32   // ruleAllowing's answers under dp
}

// allowKey is one question to ruleAllowing under a datapath (the peer's
// identity follows from its address).
type allowKey struct {
	dir   *policy.EndpointPolicy
	peer  netip.Addr
	proto corev1.Protocol
	port  uint16
}

// maxAllowing bounds the remembered answers: past it they start over.
const maxAllowing = 1 << 16

func (x *endpointIndex) use(dp *policy.Datapath) {
	if x.dp == dp {
		return
	}
	if x.identity != nil && !policy.SameIdentities(x.dp, dp) {
		x.identity = nil
	}
	x.dp, x.allowing = dp, nil
	x.local = map[netip.Addr]*policy.Endpoint{}
	for i := range dp.Endpoints {
		for _, ip := range dp.Endpoints[i].IPs {
			x.local[ip] = &dp.Endpoints[i]
		}
	}
}

func (x *endpointIndex) identityOf(ip netip.Addr) uint32 {
	if x.identity == nil {
		x.identity = map[netip.Addr]uint32{}
		for _, id := range x.dp.Identities {
			for _, ip := range id.IPs {
				x.identity[ip] = id.ID
			}
		}
		for _, ip := range x.dp.HostIPs {
			x.identity[ip] = policy.IdentityHost
		}
	}
	if id, ok := x.identity[ip]; ok {
		return id
	}
	return policy.IdentityWorld
}

// ruleAllowing is ruleAllowing for dir under the applied datapath,
// remembered: repeated connections between the same pods ask the same.
func (x *endpointIndex) ruleAllowing(dir *policy.EndpointPolicy, peer netip.Addr, proto corev1.Protocol, port uint16) uint32 {
	k := allowKey{dir, peer, proto, port}
	if rule, ok := x.allowing[k]; ok {
		return rule
	}
	if x.allowing == nil || len(x.allowing) >= maxAllowing {
		x.allowing = map[allowKey]uint32{}
	}
	rule := ruleAllowing(*dir, x.identityOf(peer), peer, proto, port)
	x.allowing[k] = rule
	return rule
}

// endFlow is the flow-end summary of conntrack entry ct, or nil when the
// datapath did not judge it (no local endpoint at either end). rec is the
// flow published when the connection started, when still known.
func (e *enricher) endFlow(x *endpointIndex, ct *ctEnd, rec *flowv1.Flow, now time.Time) *flowv1.Flow {
	src := ct.src
	// After DNAT the destination is the reply's source (the backend).
	dst, dport := ct.rsrc, ct.rsprt
	srcEP, dstEP := x.local[src], x.local[dst]
	if srcEP == nil && dstEP == nil {
		return nil
	}
	p := &endParts{}
	f := &p.flow
	if rec != nil {
		// The start's enrichment: pods as they were then, and the rules
		// that admitted the connection (shared, not copied: see enricher).
		f.Verdict, f.Reason, f.Direction = rec.GetVerdict(), rec.GetReason(), rec.GetDirection()
		f.Ip, f.Source, f.Destination, f.Service = rec.GetIp(), rec.GetSource(), rec.GetDestination(), rec.GetService()
		f.AllowedBy, f.RuleId = rec.GetAllowedBy(), rec.GetRuleId()
		// An audited connection's summary says what would have decided it,
		// as its start did.
		f.IsolatedBy, f.DeniedBy, f.Audit = rec.GetIsolatedBy(), rec.GetDeniedBy(), rec.GetAudit()
		p.l4.Protocol, p.l4.SourcePort, p.l4.DestinationPort = rec.GetL4().GetProtocol(), rec.GetL4().GetSourcePort(), rec.GetL4().GetDestinationPort()
		f.L4 = &p.l4
		if t := rec.GetTime(); t != nil {
			if started := t.AsTime(); !started.IsZero() {
				f.Duration = setDuration(&p.duration, now.Sub(started))
			}
		}
	} else {
		f = e.flow(x.dp, e.judged(x, ct, src, dst, dport, srcEP, dstEP))
		f.L4.TcpFlags = nil // its own Layer4 (flowParts)
	}
	f.Type = flowv1.EventType_EVENT_TYPE_END
	f.Node = e.node
	end := now
	f.Packets = ct.packets
	f.Bytes = ct.bytes
	if !ct.start.IsZero() {
		end = ct.stop
		if end.IsZero() {
			end = now
		}
		f.Duration = setDuration(&p.duration, end.Sub(ct.start))
	}
	p.time.Seconds, p.time.Nanos = end.Unix(), int32(end.Nanosecond())
	f.Time = &p.time
	return f
}

// endParts are the messages a flow-end summary owns, allocated at once.
type endParts struct {
	flow     flowv1.Flow
	l4       flowv1.Layer4
	time     timestamppb.Timestamp
	duration durationpb.Duration
}

// setDuration sets pd to d as durationpb.New would and returns it.
func setDuration(pd *durationpb.Duration, d time.Duration) *durationpb.Duration {
	nanos := d.Nanoseconds()
	pd.Seconds, pd.Nanos = nanos/1e9, int32(nanos%1e9)
	return pd
}

// judged rebuilds the new-flow event the datapath would have emitted for
// ct under the applied datapath (when the connection's own event is no
// longer known), so the end is enriched by the same path as a start.
func (e *enricher) judged(x *endpointIndex, ct *ctEnd, src, dst netip.Addr, dport uint16, srcEP, dstEP *policy.Endpoint) *probe.Event {
	ev := &probe.Event{Version: probe.EventVersion, Type: probe.EventNewFlow, Verdict: probe.VerdictAllow,
		Protocol: ct.proto, SrcIdentity: x.identityOf(src), DstIdentity: x.identityOf(dst)}
	ev.TimestampNs = monotonicNow()
	ev.Tuple.Saddr, ev.Tuple.Daddr = src.As16(), dst.As16()
	ev.Tuple.Sport, ev.Tuple.Dport = ct.sport, dport
	if vip := ct.dst; vip != dst || ct.dport != dport {
		ev.Flags |= probe.FlagDNAT
		ev.OrigTuple = ev.Tuple
		ev.OrigTuple.Daddr, ev.OrigTuple.Dport = vip.As16(), ct.dport
	}
	if src.Is6() {
		ev.Flags |= probe.FlagIPv6
	}
	proto := protocolName(ct.proto)
	if srcEP != nil {
		ev.SrcEndpoint = srcEP.ID
		ev.EgressRule = x.ruleAllowing(&srcEP.Egress, dst, proto, dport)
	}
	if dstEP != nil {
		ev.DstEndpoint = dstEP.ID
		ev.IngressRule = x.ruleAllowing(&dstEP.Ingress, src, proto, dport)
	}
	return ev
}

func protocolName(p uint8) corev1.Protocol {
	switch p {
	case unix.IPPROTO_TCP:
		return corev1.ProtocolTCP
	case unix.IPPROTO_UDP:
		return corev1.ProtocolUDP
	case unix.IPPROTO_SCTP:
		return corev1.ProtocolSCTP
	}
	return ""
}

// ruleAllowing is the lowest rule ID of one endpoint direction that admits
// peer on proto/port (the datapath reports the lowest too), or 0 when the
// direction is not isolated or no rule matches.
func ruleAllowing(p policy.EndpointPolicy, peerID uint32, peer netip.Addr, proto corev1.Protocol, port uint16) uint32 {
	var best uint32
	for _, en := range p.Entries {
		if best != 0 && en.Rule >= best {
			continue
		}
		if en.Protocol != "" && (en.Protocol != proto || port < en.PortMin || port > en.PortMax) {
			continue
		}
		if en.CIDR.IsValid() {
			if !en.CIDR.Contains(peer) || inAny(en.Except, peer) {
				continue
			}
		} else if en.Identity != policy.IdentityAny && en.Identity != peerID {
			continue
		}
		best = en.Rule
	}
	return best
}

func inAny(pfx []netip.Prefix, ip netip.Addr) bool {
	for _, p := range pfx {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// flowEnds publishes a summary for each connection end the datapath judged,
// until the listener's queue is closed.
//
// An end whose start is not recorded may be one whose new-flow event the
// ring-buffer reader has not read yet (it polls every ReadPoll): a
// connection flushed or revoked right after it began. Such an end is parked
// until 2 polls + 50 ms after it was received and looked up again; others
// go on meanwhile, and a full parking lot publishes at once.
//
// Ends come in bursts (a drain of the socket or ring each poll): the ends
// already queued are taken together (endBatch at most), so their starts'
// look-ups (each a cache miss: a start is read back a second or more after
// it was written) overlap instead of stalling one by one.
func (a *Agent) flowEnds(events <-chan flowEnd) {
	var x endpointIndex
	settle := 2*a.cfg.ReadPoll + 50*time.Millisecond
	var parked []flowEnd // oldest first
	batch := make([]flowEnd, 0, endBatch)
	recs := make([]*flowv1.Flow, 0, endBatch)
	timer := time.NewTimer(settle)
	defer timer.Stop()
	// The queue closed: the parked ends' starts are looked up once more.
	drainParked := func() {
		for _, p := range parked {
			a.publishEnd(&x, p, a.newFlows.take(keyOfEnd(&p)))
		}
	}
	for {
		var wake <-chan time.Time
		if len(parked) > 0 {
			timer.Reset(time.Until(parked[0].at.Add(settle)))
			wake = timer.C
		}
		select {
		case ev, ok := <-events:
			if !ok {
				drainParked()
				return
			}
			batch = append(batch[:0], ev)
			closed := false
		more:
			for len(batch) < endBatch {
				select {
				case ev, ok := <-events:
					if !ok {
						closed = true
						break more
					}
					batch = append(batch, ev)
				default:
					break more
				}
			}
			recs = a.newFlows.takeAll(batch, recs[:0])
			for i := range batch {
				rec := recs[i]
				if rec == nil && batch[i].conns == 0 && time.Since(batch[i].at) < settle && len(parked) < flowEndQueue && !closed && a.startMayCome(&x, &batch[i]) {
					parked = append(parked, batch[i])
					continue
				}
				a.publishEnd(&x, batch[i], rec)
			}
			clear(recs) // no stale starts kept alive
			if closed {
				drainParked()
				return
			}
		case <-wake:
			for len(parked) > 0 && time.Since(parked[0].at) >= settle {
				a.publishEnd(&x, parked[0], a.newFlows.take(keyOfEnd(&parked[0])))
				parked = parked[1:]
			}
		}
	}
}

// startMayCome says whether the new-flow record of ev, not found, may
// still be read (see mayHaveStart).
func (a *Agent) startMayCome(x *endpointIndex, ev *flowEnd) bool {
	if a.cfg.Datapath.FlowEvents {
		return true
	}
	dp := a.probe.Applied()
	if dp == nil {
		return false
	}
	x.use(dp)
	return mayHaveStart(false, x, ev)
}

// mayHaveStart says whether ev's connection can have had a new-flow record
// under x's datapath: always with flow events on; with them off only an
// audited flow has one (an audit is reported regardless), and only a
// resolved direction audits. Parking an end whose start never comes costs
// it a wait and a second look-up.
func mayHaveStart(flowEvents bool, x *endpointIndex, ev *flowEnd) bool {
	if flowEvents {
		return true
	}
	src, dst := x.local[ev.src], x.local[ev.rsrc]
	return src != nil && src.Egress.Resolved || dst != nil && dst.Ingress.Resolved
}

// endBatch bounds the ends flowEnds takes at once.
const endBatch = 256

// publishEnd publishes the summary of ev when the datapath judged it.
func (a *Agent) publishEnd(x *endpointIndex, ev flowEnd, rec *flowv1.Flow) {
	dp := a.probe.Applied()
	if dp == nil {
		return
	}
	x.use(dp)
	if f := a.enrich.endFlow(x, &ev, rec, time.Now()); f != nil {
		f.Connections = ev.conns
		a.metrics.FlowEnds.Add(float64(max(ev.conns, 1)))
		a.hub.Publish(f)
		a.record(f)
	}
}

// Where flow-end summaries come from (Config.FlowEndSource).
const (
	// FlowEndSourceAuto: the kernel's records when one of its programs
	// loads, else netlink events.
	FlowEndSourceAuto = ""
	// FlowEndSourceKernel: BPF programs write records into a ring buffer
	// (no netlink message per connection): on conntrack's destructor for
	// every protocol (probe.OpenFlowEnds), or where the kernel refuses
	// that, on TCP socket states for TCP (probe.OpenTCPFlowEnds) with
	// netlink events, TCP ones filtered out in the kernel, for the rest.
	FlowEndSourceKernel = "kernel"
	// FlowEndSourceNetlink: conntrack DESTROY events over ctnetlink.
	FlowEndSourceNetlink = "netlink"
	// FlowEndSourceKernelTCP: TCP summaries only, from the TCP socket
	// states (probe.OpenTCPFlowEnds), and no conntrack listener at all:
	// the kernel builds no netlink message per ended connection of any
	// protocol, and UDP, SCTP and ICMP flows get no summary. Also the name
	// of the socket states' records in status and metrics.
	FlowEndSourceKernelTCP = "kernel-tcp"
)

// flowEndUse is one source of summaries and the protocols it serves.
type flowEndUse struct{ source, protocols string }

// Protocols a source serves (the metric's protocols label).
const (
	protocolsAll    = "all"
	protocolsTCP    = "tcp"
	protocolsNonTCP = "udp,sctp,icmp"
)

// startFlowEnds starts the flow-end summaries in the network namespace
// netnsFD (0: the agent's own); the returned stop ends them. The sources
// feed one queue and one summarizing goroutine.
func (a *Agent) startFlowEnds(netnsFD int) (stop func(), err error) {
	src := a.cfg.FlowEndSource
	why := "chosen by --flow-end-source"
	if src == FlowEndSourceKernelTCP {
		rd, err := a.probe.OpenTCPFlowEnds(a.cfg.ReadPoll)
		if err != nil {
			return nil, err
		}
		a.setFlowEndSources(why+": no summaries of UDP, SCTP and ICMP flows", flowEndUse{FlowEndSourceKernelTCP, protocolsTCP})
		events := make(chan flowEnd, flowEndQueue)
		stopRead := a.startReadFlowEnds(rd, events)
		done := a.startSummaries(events)
		return func() { stopRead(); close(events); <-done }, nil
	}
	if src == FlowEndSourceAuto || src == FlowEndSourceKernel {
		fd := netnsFD
		if fd == 0 {
			fd = -1
		}
		rd, errCT := a.probe.OpenFlowEnds(fd, a.cfg.ReadPoll)
		if errCT == nil {
			a.setFlowEndSources("", flowEndUse{FlowEndSourceKernel, protocolsAll})
			events := make(chan flowEnd, flowEndQueue)
			stopRead := a.startReadFlowEnds(rd, events)
			done := a.startSummaries(events)
			return func() { stopRead(); close(events); <-done }, nil
		}
		rd, errTCP := a.probe.OpenTCPFlowEnds(a.cfg.ReadPoll)
		if errTCP == nil {
			l, err := listenFlowEndsPoll(netnsFD, flowEndQueue, flowEndSocketBuffer, a.cfg.ReadPoll, true, a.metrics.FlowEndsLost)
			if err != nil {
				rd.Close()
				return nil, err
			}
			klog.InfoS("Flow-end summaries: TCP from the socket states, other protocols from conntrack netlink events", "reason", errCT)
			a.setFlowEndSources("no program on "+probe.FlowEndHook+": "+errCT.Error(), flowEndUse{FlowEndSourceKernelTCP, protocolsTCP}, flowEndUse{FlowEndSourceNetlink, protocolsNonTCP})
			// The listener closes the queue: the reader stops first.
			stopRead := a.startReadFlowEnds(rd, l.events)
			done := a.startSummaries(l.events)
			return func() { stopRead(); _ = l.Close(); <-done }, nil
		}
		err := errors.Join(errCT, errTCP)
		if src == FlowEndSourceKernel {
			return nil, err
		}
		klog.InfoS("Flow-end summaries fall back to conntrack netlink events", "reason", err)
		why = err.Error()
	}
	l, err := listenFlowEndsPoll(netnsFD, flowEndQueue, flowEndSocketBuffer, a.cfg.ReadPoll, false, a.metrics.FlowEndsLost)
	if err != nil {
		return nil, err
	}
	a.setFlowEndSources(why, flowEndUse{FlowEndSourceNetlink, protocolsAll})
	done := a.startSummaries(l.events)
	return func() { _ = l.Close(); <-done }, nil
}

// startReadFlowEnds reads rd's records into events until the returned stop.
func (a *Agent) startReadFlowEnds(rd *probe.FlowEndReader, events chan<- flowEnd) (stop func()) {
	done := make(chan struct{})
	go func() { defer close(done); a.readFlowEnds(rd, events) }()
	return func() { _ = rd.Close(); <-done }
}

// startSummaries summarizes the ends of events until it is closed (done).
func (a *Agent) startSummaries(events <-chan flowEnd) (done <-chan struct{}) {
	c := make(chan struct{})
	go func() { defer close(c); a.flowEnds(events) }()
	return c
}

// setFlowEndSources records where summaries come from (status, metrics);
// why says why not all from the kernel's conntrack records.
func (a *Agent) setFlowEndSources(why string, uses ...flowEndUse) {
	a.mu.Lock()
	a.flowEndSources, a.flowEndWhy = uses, why
	a.mu.Unlock()
	a.metrics.FlowEndSource.Reset()
	for _, u := range uses {
		a.metrics.FlowEndSource.WithLabelValues(u.source, u.protocols).Set(1)
	}
}

// tcpEndsFromSockets reports whether TCP summaries come from the sockets.
func (a *Agent) tcpEndsFromSockets() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, u := range a.flowEndSources {
		if u.source == FlowEndSourceKernelTCP {
			return true
		}
	}
	return false
}

// flowEndSourceCheck is the status line naming the summaries' sources.
func (a *Agent) flowEndSourceCheck() *flowv1.NodeCheck {
	a.mu.Lock()
	uses, why := a.flowEndSources, a.flowEndWhy
	a.mu.Unlock()
	c := &flowv1.NodeCheck{Name: "flow-end-source", Ok: true}
	if len(uses) == 0 {
		c.Ok, c.Detail = false, "not started"
		return c
	}
	var parts []string
	for _, u := range uses {
		var d string
		switch u.source {
		case FlowEndSourceKernel:
			d = "kernel: a BPF program on " + probe.FlowEndHook + " writes one record per ended connection into a ring buffer read in batches"
		case FlowEndSourceKernelTCP:
			d = "kernel-tcp: a BPF program on the TCP socket states (" + probe.TCPFlowEndHook + ") writes one record per closed connection into a ring buffer read in batches"
		case FlowEndSourceNetlink:
			d = "netlink: conntrack DESTROY events (one message per ended connection, costlier)"
			if u.protocols != protocolsAll {
				d = "netlink: conntrack DESTROY events, TCP ones dropped in the kernel by a socket filter"
			}
		}
		parts = append(parts, u.protocols+" from "+d)
	}
	c.Detail = strings.Join(parts, "; ")
	if why != "" {
		c.Detail += "; " + why
	}
	return c
}

// readFlowEnds turns the kernel's flow-end records into ends until rd is
// closed. Never blocks: a full queue drops and counts.
//
// A record is handed over once every new-flow event written before it was
// read (startsReadTo): a socket's end comes milliseconds after its start,
// often before the start's ring is next read, and would otherwise be parked
// and looked up twice (flowEnds). Held records wait two polls at most.
func (a *Agent) readFlowEnds(rd *probe.FlowEndReader, out chan<- flowEnd) {
	var rec probe.FlowEnd
	var held []flowEnd
	var heldAt []uint64 // the records' kernel times
	send := func(e flowEnd) {
		select {
		case out <- e:
		default:
			a.metrics.FlowEndsLost.WithLabelValues(lostQueueFull).Inc()
		}
	}
	// Past maxHold (no event reader moving the mark, or a full hold) a
	// record goes on: flowEnds parks it if its start is still unknown.
	maxHold := 2 * a.cfg.ReadPoll
	release := func() {
		readTo, n := a.startsReadTo.Load(), 0
		for ; n < len(held) && (heldAt[n] <= readTo || len(held)-n > flowEndQueue || time.Since(held[n].at) > maxHold); n++ {
			send(held[n])
		}
		held, heldAt = append(held[:0], held[n:]...), append(heldAt[:0], heldAt[n:]...)
	}
	defer func() {
		for _, e := range held {
			send(e)
		}
	}()
	var aggs *aggregateReader
	if every := a.cfg.Datapath.AggregateInterval; every > 0 && rd.Socket() {
		aggs = newAggregateReader(every)
	}
	for {
		if aggs.due(time.Now()) {
			a.readEndAggregates(aggs, send)
		}
		err := rd.Read(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			release()
			continue
		}
		if errors.Is(err, probe.ErrUnknownVersion) {
			a.metrics.DecodeErrors.Inc()
			continue
		}
		if err != nil {
			return // closed
		}
		now := time.Now()
		mono := monotonicNow()
		e := flowEnd{proto: rec.Protocol, sport: rec.Orig.Sport, dport: rec.Orig.Dport, rsprt: rec.Reply.Sport,
			packets: rec.PacketsOrig + rec.PacketsReply, bytes: rec.BytesOrig + rec.BytesReply, at: now}
		e.src, e.dst = probe.TupleAddrs(rec.Orig)
		e.rsrc, _ = probe.TupleAddrs(rec.Reply)
		if rec.StartRealNs != 0 {
			e.stop = now.Add(-time.Duration(mono - rec.TimestampNs))
			if probe.IsSocketEnd(&rec) { // a monotonic start
				e.start = e.stop.Add(-time.Duration(rec.TimestampNs - rec.StartRealNs))
			} else {
				e.start = time.Unix(0, int64(rec.StartRealNs))
			}
		}
		held, heldAt = append(held, e), append(heldAt, rec.TimestampNs)
		if rd.Pending() == 0 {
			release()
		}
	}
}

// monotonicNow is CLOCK_MONOTONIC in ns, bpf_ktime_get_ns's clock. It is
// read once per record: unix.ClockGettime is a real system call (x/sys does
// not use the vDSO), so the clock is read once at start and then advanced by
// Go's monotonic clock, which is CLOCK_MONOTONIC read through the vDSO.
func monotonicNow() uint64 {
	return monoBase.ns + uint64(time.Since(monoBase.at))
}

// monoBase pairs a CLOCK_MONOTONIC reading with Go's clock at that moment.
// Go's reading is bracketed by two kernel readings and paired with their
// midpoint; of several tries the narrowest bracket wins, so a preemption
// between the readings (a busy node at start-up) does not skew every stamp.
var monoBase = func() (b struct {
	ns uint64
	at time.Time
}) {
	read := func() uint64 {
		var ts unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		return uint64(ts.Nano())
	}
	best := uint64(math.MaxUint64)
	for range 16 {
		before := read()
		at := time.Now()
		after := read()
		if after-before < best {
			best = after - before
			b.at, b.ns = at, before+(after-before)/2
		}
	}
	return b
}()

// runFlowEnds runs the summaries until ctx ends; a failure to subscribe is
// logged, not fatal (enforcement does not depend on it).
func (a *Agent) runFlowEnds(ctx context.Context) {
	stop, err := a.startFlowEnds(0)
	if err != nil {
		klog.ErrorS(err, "Flow-end summaries are off", "node", a.cfg.NodeName)
		return
	}
	<-ctx.Done()
	stop()
}
