//go:build linux

package probe

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// LayoutVersion names the pin directory. Bump it whenever a map's key,
// value or type changes: an existing pin with another layout cannot be
// reused (ebpf.ErrMapIncompatible), so a new layout gets fresh maps.
const LayoutVersion = "v7"

// DefaultPinRoot is where the agent pins its maps and links.
const DefaultPinRoot = "/sys/fs/bpf/netpol"

// Options configure Load.
type Options struct {
	// PinRoot is the bpffs directory for pins (default DefaultPinRoot);
	// tests use a unique one. Pins live under PinRoot/LayoutVersion.
	PinRoot string
	// Config is written at load; see SetConfig.
	Config Config
	// ReplaceLinks makes Attach replace pinned links even when they run the
	// same program (attach new, then swap the pin): what an upgrade does
	// when the program changed.
	ReplaceLinks bool
	// RingSize overrides the ring buffer size in bytes (a power of two,
	// multiple of the page size; default 16 MiB). A different size is a
	// different map: use it with its own PinRoot.
	RingSize uint32
}

// Config is the run-time configuration of the datapath.
type Config struct {
	// DropEventsPerSec is the refill rate of each CPU's token bucket for drop
	// events; 0 disables drop events. Drops are never rate-limited, only
	// their events.
	DropEventsPerSec uint64
	// DropEventsBurst is the bucket size.
	DropEventsBurst uint64
	// WakeupWatermark is the amount of unread ring data (bytes) above which
	// the datapath wakes the reader; below it the reader polls.
	WakeupWatermark uint64
	// FlowEvents emits one event per allowed new flow.
	FlowEvents bool
	// AggregateInterval, when set, records only the first allowed new flow
	// (and the first TCP socket end) of a flow key per interval and counts
	// the rest in the kernel (ReadNewFlowAggregates, ReadEndAggregates).
	// The key is the flow without the client's port: source, destination
	// (and the address dialled before DNAT), destination port, protocol,
	// and the rules that decided it. Drops, audited and picked-up flows are
	// always recorded one by one.
	AggregateInterval time.Duration
}

// DefaultConfig is a reasonable production configuration.
var DefaultConfig = Config{DropEventsPerSec: 1000, DropEventsBurst: 5000, WakeupWatermark: 64 << 10, FlowEvents: true}

// Probe is the loaded datapath. Its methods are safe for concurrent use.
type Probe struct {
	dir      string
	spec     *ebpf.CollectionSpec
	objs     netpolObjects
	hashSpec *ebpf.MapSpec // of the per-endpoint-direction policy hashes
	trieSpec *ebpf.MapSpec // and tries
	// dirCache memoizes built directions across endpoints and Applies.
	dirCache *directionCache
	// ipcacheOf is the Datapath whose identities and host addresses the
	// ipcache holds, set by an Apply that completed; nil when unknown.
	ipcacheOf *policy.Datapath

	mu     sync.Mutex
	state  applied
	attach []*attachment
	closed bool
	revoke bool
	// revokeOwed: the next Apply walks conntrack even when it changes no
	// map (the first of a process, or after a failed walk).
	revokeOwed bool
	// pendingRetire: attach names whose older-layout links wait for the
	// first Apply (see Attach).
	pendingRetire []string

	replaceLinks bool

	// flowEndNetns is the network namespace (inode) whose conntrack ends
	// are recorded (see OpenFlowEnds); 0: none.
	flowEndNetns uint32
	cfg          Config // last written by SetConfig
}

// Load loads the programs and opens (or creates) the pinned maps under
// opts.PinRoot/LayoutVersion, mounting bpffs at /sys/fs/bpf first if needed.
// Nothing is attached yet: see Attach.
func Load(opts Options) (*Probe, error) {
	if opts.PinRoot == "" {
		opts.PinRoot = DefaultPinRoot
	}
	if err := ensureBPFFS(opts.PinRoot); err != nil {
		return nil, err
	}
	// Memory is charged to the cgroup on this kernel; older kernels need this.
	_ = rlimit.RemoveMemlock()
	dir := filepath.Join(opts.PinRoot, LayoutVersion)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating pin directory: %w", err)
	}
	spec, err := loadNetpol()
	if err != nil {
		return nil, fmt.Errorf("loading program spec: %w", err)
	}
	for name, m := range spec.Maps {
		if !strings.HasPrefix(name, ".") { // .bss etc. are per program
			m.Pinning = ebpf.PinByName
		}
	}
	if opts.RingSize != 0 {
		spec.Maps["netpol_events"].MaxEntries = opts.RingSize
	}
	hash, trie := spec.Maps["netpol_policy_slots"].InnerMap, spec.Maps["netpol_policy_tries"].InnerMap
	if hash == nil || trie == nil {
		return nil, errors.New("program spec has no inner policy maps")
	}
	hash, trie = hash.Copy(), trie.Copy()
	hash.Name, trie.Name = "netpol_policy_h", "netpol_policy_t"
	p := &Probe{dir: dir, revoke: true, revokeOwed: true, hashSpec: hash, trieSpec: trie, replaceLinks: opts.ReplaceLinks}
	// The flow-end program is loaded apart (OpenFlowEnds): a kernel without
	// its hook still enforces.
	var main struct {
		netpolMaps
		netpolVariables
		NetpolNf    *ebpf.Program `ebpf:"netpol_nf"`
		NetpolSpoof *ebpf.Program `ebpf:"netpol_spoof"`
	}
	if err := spec.LoadAndAssign(&main, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: dir}}); err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("loading programs: %+v", ve)
		}
		return nil, fmt.Errorf("loading programs: %w", err)
	}
	p.spec = spec
	p.objs.netpolMaps, p.objs.netpolVariables = main.netpolMaps, main.netpolVariables
	p.objs.NetpolNf, p.objs.NetpolSpoof = main.NetpolNf, main.NetpolSpoof
	cfg := opts.Config
	if cfg == (Config{}) {
		cfg = DefaultConfig
	}
	if err := p.SetConfig(cfg); err != nil {
		p.objs.Close()
		return nil, err
	}
	if err := p.recover(); err != nil {
		p.objs.Close()
		return nil, err
	}
	return p, nil
}

// PinDir is the versioned pin directory.
func (p *Probe) PinDir() string { return p.dir }

// SetConfig changes the run-time configuration (e.g. the drop-event rate).
func (p *Probe) SetConfig(c Config) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg = c
	return p.writeConfigLocked()
}

func (p *Probe) writeConfigLocked() error {
	c := p.cfg
	v := netpolNetpolConfig{
		DropEventsPerSec: c.DropEventsPerSec,
		DropEventsBurst:  c.DropEventsBurst,
		WakeupWatermark:  c.WakeupWatermark,
		FlowEndNetns:     p.flowEndNetns,
		AggIntervalNs:    uint64(max(c.AggregateInterval, 0)),
	}
	if c.FlowEvents {
		v.FlowEvents = 1
	}
	if err := p.objs.NetpolConfig.Put(uint32(0), &v); err != nil {
		return fmt.Errorf("writing config: %w", err)
	}
	return nil
}

// SetRevocation chooses whether Apply deletes established connections that
// the new policy denies (the default) or keeps them.
func (p *Probe) SetRevocation(on bool) {
	p.mu.Lock()
	p.revoke = on
	p.revokeOwed = p.revokeOwed || on
	p.mu.Unlock()
}

// Close releases this process's handles and leaves enforcement running:
// links and maps stay pinned.
func (p *Probe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	for _, a := range p.attach {
		a.close()
	}
	return p.objs.Close()
}

// Uninstall detaches every program this layout attached (in every
// namespace, found through the pins), removes every pin and closes p.
func (p *Probe) Uninstall() error {
	p.mu.Lock()
	dir := p.dir
	p.mu.Unlock()
	var errs []error
	errs = append(errs, unpinLinks(filepath.Join(dir, "links")))
	errs = append(errs, p.Close())
	errs = append(errs, os.RemoveAll(dir))
	// Remove the root too when no other layout version is left in it.
	_ = os.Remove(filepath.Dir(dir))
	return errors.Join(errs...)
}

// Counter indexes Stats.
type Counter int

// Counters, in the order of the C enum netpol_counter.
const (
	CounterPackets Counter = iota
	CounterEstablished
	CounterNewAllowed
	CounterNewDenied
	CounterUntracked
	CounterEvents
	CounterRingFull
	CounterRateLimited
	CounterNotParsed
	CounterSpoofDropped
	CounterRevokedAnswers
	CounterFlowEnds
	CounterFlowEndsRingFull
	CounterAudit
	CounterAggregated
	CounterFlowEndsAggregated
	counterMax
)

// Stats are the datapath counters summed over CPUs.
type Stats struct {
	Packets      uint64 // packets seen by the netfilter programs
	Established  uint64 // accepted by conntrack state without evaluation
	NewAllowed   uint64
	NewDenied    uint64
	Untracked    uint64 // no conntrack entry: evaluated statelessly
	Events       uint64 // events written to the ring buffer
	RingFull     uint64 // events lost because the ring was full
	RateLimited  uint64 // drop events suppressed by the token bucket
	NotParsed    uint64 // packets the parser could not read (accepted)
	SpoofDropped uint64 // packets dropped by the anti-spoofing check
	// RevokedAnswers are UDP/SCTP packets answering a revoked flow, judged
	// in that flow's orientation (dropped while it stays denied).
	RevokedAnswers uint64
	FlowEnds       uint64 // flow-end records written (OpenFlowEnds)
	FlowEndsLost   uint64 // flow-end records lost because their ring was full
	// Audited are new flows whose verdict enforcing the audited policies
	// would flip (FlagAudit).
	Audited uint64
	// Aggregated are allowed new flows counted in an aggregate instead of
	// recorded (Config.AggregateInterval); FlowEndsAggregated the same for
	// TCP ends.
	Aggregated, FlowEndsAggregated uint64
}

// Stats reads the counters.
func (p *Probe) Stats() (Stats, error) {
	var vals [counterMax]uint64
	for i := range vals {
		var per []uint64
		if err := p.objs.NetpolCounters.Lookup(uint32(i), &per); err != nil {
			return Stats{}, fmt.Errorf("reading counter %d: %w", i, err)
		}
		for _, v := range per {
			vals[i] += v
		}
	}
	return Stats{
		Packets: vals[CounterPackets], Established: vals[CounterEstablished],
		NewAllowed: vals[CounterNewAllowed], NewDenied: vals[CounterNewDenied],
		Untracked: vals[CounterUntracked], Events: vals[CounterEvents],
		RingFull: vals[CounterRingFull], RateLimited: vals[CounterRateLimited],
		NotParsed: vals[CounterNotParsed], SpoofDropped: vals[CounterSpoofDropped],
		RevokedAnswers: vals[CounterRevokedAnswers],
		FlowEnds:       vals[CounterFlowEnds], FlowEndsLost: vals[CounterFlowEndsRingFull],
		Audited: vals[CounterAudit], Aggregated: vals[CounterAggregated],
		FlowEndsAggregated: vals[CounterFlowEndsAggregated],
	}, nil
}

// LastNewFlow is when the datapath last judged a new flow to or from the
// local endpoint with address addr, in bpf_ktime_get_ns nanoseconds
// (CLOCK_MONOTONIC), at most a second behind while its flows keep coming;
// false when addr is no local endpoint or has had no new flow since it
// became one.
func (p *Probe) LastNewFlow(addr netip.Addr) (uint64, bool) {
	p.mu.Lock()
	ep, ok := p.state.endpoints[addr16(addr)]
	p.mu.Unlock()
	if !ok {
		return 0, false
	}
	var ns uint64
	if err := p.objs.NetpolEndpointSeen.Lookup(ep.SlotIngress/2, &ns); err != nil || ns == 0 {
		return 0, false
	}
	return ns, true
}

// ensureBPFFS mounts bpffs at /sys/fs/bpf when root lies under it and it is
// not mounted (the case on this kind of host).
func ensureBPFFS(root string) error {
	const bpffs = "/sys/fs/bpf"
	var st unix.Statfs_t
	if err := unix.Statfs(bpffs, &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if rel, err := filepath.Rel(bpffs, root); err != nil || rel == ".." || filepath.IsAbs(rel) || (len(rel) > 2 && rel[:3] == "../") {
		return nil // caller chose another bpffs mount
	}
	if err := os.MkdirAll(bpffs, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", bpffs, err)
	}
	if err := unix.Mount("bpffs", bpffs, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mounting bpffs at %s: %w", bpffs, err)
	}
	return nil
}
