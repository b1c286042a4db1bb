//go:build linux

package probe

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// FlowEnd is one flow-end record, generated from struct netpol_flow_end in
// netpol.c (version EventVersion, type EventEnd).
type FlowEnd = netpolNetpolFlowEnd

// EventEnd is the type of a flow-end record.
const EventEnd = 3

// FlowEndHook is the kernel function whose entry the flow-end program
// traces: the destructor of a conntrack entry, reached through a function
// pointer when its last reference is put (so no caller inlines it).
const FlowEndHook = "nf_ct_destroy"

// ErrFlowEndsUnsupported wraps the reason the kernel cannot run the
// flow-end program (no BTF for FlowEndHook, no fentry trampolines): the
// caller falls back to conntrack netlink events.
var ErrFlowEndsUnsupported = errors.New("kernel flow-end summaries unsupported")

// FlowEndReader reads flow-end records: one per confirmed conntrack entry of
// the chosen network namespace that had a local endpoint at either end,
// written by a BPF program on FlowEndHook when the entry is destroyed,
// without a wake-up until the unread data passes the configured watermark
// (the reader polls). The program runs while the reader is open; its link is
// not pinned, so connections that end while no agent runs get no summary
// (as with netlink events).
type FlowEndReader struct {
	p    *Probe
	prog *ebpf.Program
	link link.Link
	rd   *ringbuf.Reader
	hook string
	poll time.Duration
	rec  ringbuf.Record
}

// Socket says whether the records come from the TCP socket states
// (OpenTCPFlowEnds): the ones Config.AggregateInterval aggregates
// (ReadEndAggregates).
func (r *FlowEndReader) Socket() bool { return r.prog != nil && r.hook == TCPFlowEndHook }

// OpenFlowEnds starts flow-end records for the network namespace netnsFD
// (an open /proc/.../ns/net or netns handle; -1: the calling thread's) and
// returns their reader; poll bounds the latency of a record below the
// watermark. One reader at a time per Probe.
func (p *Probe) OpenFlowEnds(netnsFD int, poll time.Duration) (*FlowEndReader, error) {
	var st unix.Stat_t
	var err error
	if netnsFD < 0 {
		err = unix.Stat("/proc/thread-self/ns/net", &st)
	} else {
		err = unix.Fstat(netnsFD, &st)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the network namespace's inode: %w", err)
	}
	return p.openFlowEnds("netpol_ct_destroy", FlowEndHook, uint32(st.Ino), poll,
		func(prog *ebpf.Program) (link.Link, error) {
			return link.AttachTracing(link.TracingOptions{Program: prog})
		})
}

// TCPFlowEndHook is the tracepoint whose BTF program writes the TCP flow-end
// records (OpenTCPFlowEnds).
const TCPFlowEndHook = "inet_sock_set_state"

// OpenTCPFlowEnds starts flow-end records of TCP connections from the
// kernel's socket states: one per established TCP socket of a local endpoint
// (this Probe's endpoint map, whatever its network namespace) as it closes,
// written by a tp_btf program on TCPFlowEndHook (kernels that refuse fentry
// programs load it). A connection between two local endpoints gets one
// record, from its client. Records carry NETPOL_END_SOCKET in Status
// (IsSocketEnd): tuples as the socket knows them (a client's before DNAT),
// the socket's segment and payload-byte counters, the monotonic start.
// One reader at a time per Probe.
func (p *Probe) OpenTCPFlowEnds(poll time.Duration) (*FlowEndReader, error) {
	// The program reads flow_end_netns only as "records on": any non-zero.
	return p.openFlowEnds("netpol_tcp_state", TCPFlowEndHook, 1, poll, func(prog *ebpf.Program) (link.Link, error) {
		return link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
	})
}

// openFlowEnds loads the program progName (netpol_ct_destroy or
// netpol_tcp_state; the maps are the Probe's) and starts it.
func (p *Probe) openFlowEnds(progName, hook string, netns uint32, poll time.Duration, attach func(*ebpf.Program) (link.Link, error)) (*FlowEndReader, error) {
	// LoadAndAssign loads only what the assigned program needs.
	var ct struct {
		Prog *ebpf.Program `ebpf:"netpol_ct_destroy"`
	}
	var tcp struct {
		Prog *ebpf.Program `ebpf:"netpol_tcp_state"`
	}
	to, prog := any(&ct), &ct.Prog
	if progName == "netpol_tcp_state" {
		to, prog = &tcp, &tcp.Prog
	}
	err := p.spec.LoadAndAssign(to, &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		"netpol_config": p.objs.NetpolConfig, "netpol_endpoints": p.objs.NetpolEndpoints,
		"netpol_flow_ends": p.objs.NetpolFlowEnds, "netpol_counters": p.objs.NetpolCounters,
		"netpol_sock_starts": p.objs.NetpolSockStarts, "netpol_agg_end": p.objs.NetpolAggEnd,
		"netpol_answered": p.objs.NetpolAnswered,
	}})
	if err != nil {
		return nil, fmt.Errorf("%w: loading the program on %s: %w", ErrFlowEndsUnsupported, hook, err)
	}
	return p.startFlowEnds(*prog, hook, netns, poll, attach)
}

// startFlowEnds attaches prog, opens the ring's reader and turns the
// records on (netns is the config's flow_end_netns).
func (p *Probe) startFlowEnds(prog *ebpf.Program, hook string, netns uint32, poll time.Duration, attach func(*ebpf.Program) (link.Link, error)) (*FlowEndReader, error) {
	l, err := attach(prog)
	if err != nil {
		prog.Close()
		return nil, fmt.Errorf("%w: attaching to %s: %w", ErrFlowEndsUnsupported, hook, err)
	}
	rd, err := ringbuf.NewReader(p.objs.NetpolFlowEnds)
	if err != nil {
		l.Close()
		prog.Close()
		return nil, fmt.Errorf("opening the flow-end ring buffer: %w", err)
	}
	p.mu.Lock()
	p.flowEndNetns = netns
	err = p.writeConfigLocked()
	p.mu.Unlock()
	if err != nil {
		rd.Close()
		l.Close()
		prog.Close()
		return nil, err
	}
	return &FlowEndReader{p: p, prog: prog, link: l, rd: rd, hook: hook, poll: poll}, nil
}

// Read returns the next record. It waits at most one polling interval and
// then returns os.ErrDeadlineExceeded when there is none.
func (r *FlowEndReader) Read(e *FlowEnd) error {
	r.rd.SetDeadline(time.Now().Add(r.poll))
	if err := r.rd.ReadInto(&r.rec); err != nil {
		return err
	}
	return DecodeFlowEnd(r.rec.RawSample, e)
}

// Pending is the number of unread bytes in the ring.
func (r *FlowEndReader) Pending() int { return r.rd.AvailableBytes() }

// Close stops the records (the program is detached) and the reader; a
// blocked Read returns ringbuf.ErrClosed.
func (r *FlowEndReader) Close() error {
	r.p.mu.Lock()
	r.p.flowEndNetns = 0
	var err error
	if !r.p.closed {
		err = r.p.writeConfigLocked()
	}
	r.p.mu.Unlock()
	return errors.Join(err, r.link.Close(), r.prog.Close(), r.rd.Close())
}

// Status bits of a TCP socket's record (NETPOL_END_SOCKET, NETPOL_END_CLIENT).
const (
	EndSocket = 1 << 31
	EndClient = 1 << 30
)

// IsSocketEnd reports whether e comes from a TCP socket (OpenTCPFlowEnds):
// its StartRealNs is then the monotonic (bpf_ktime_get_ns) start.
func IsSocketEnd(e *FlowEnd) bool { return e.Status&EndSocket != 0 }

// DecodeFlowEnd decodes one raw flow-end record.
func DecodeFlowEnd(raw []byte, e *FlowEnd) error {
	if len(raw) == 0 {
		return errors.New("empty flow-end record")
	}
	if raw[0] != EventVersion {
		return fmt.Errorf("%w %d", ErrUnknownVersion, raw[0])
	}
	if len(raw) < int(unsafe.Sizeof(*e)) {
		return fmt.Errorf("flow-end record of %d bytes, want %d", len(raw), unsafe.Sizeof(*e))
	}
	*e = *(*FlowEnd)(unsafe.Pointer(&raw[0]))
	return nil
}
