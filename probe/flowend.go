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
	poll time.Duration
	rec  ringbuf.Record
}

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
	var objs struct {
		Prog *ebpf.Program `ebpf:"netpol_ct_destroy"`
	}
	err = p.spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		"netpol_config": p.objs.NetpolConfig, "netpol_endpoints": p.objs.NetpolEndpoints,
		"netpol_flow_ends": p.objs.NetpolFlowEnds, "netpol_counters": p.objs.NetpolCounters,
	}})
	if err != nil {
		return nil, fmt.Errorf("%w: loading the program on %s: %w", ErrFlowEndsUnsupported, FlowEndHook, err)
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: objs.Prog})
	if err != nil {
		objs.Prog.Close()
		return nil, fmt.Errorf("%w: attaching to %s: %w", ErrFlowEndsUnsupported, FlowEndHook, err)
	}
	rd, err := ringbuf.NewReader(p.objs.NetpolFlowEnds)
	if err != nil {
		l.Close()
		objs.Prog.Close()
		return nil, fmt.Errorf("opening the flow-end ring buffer: %w", err)
	}
	p.mu.Lock()
	p.flowEndNetns = uint32(st.Ino)
	err = p.writeConfigLocked()
	p.mu.Unlock()
	if err != nil {
		rd.Close()
		l.Close()
		objs.Prog.Close()
		return nil, err
	}
	return &FlowEndReader{p: p, prog: objs.Prog, link: l, rd: rd, poll: poll}, nil
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
