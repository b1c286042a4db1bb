//go:build linux

package probe

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// benchPeers returns a Datapath where endpoint A (10.78.0.1) is isolated
// for ingress with n rules: n peer identities, each allowed on TCP 80;
// peer i has address 10.79.x.y. B (10.78.0.2) is identity n (allowed); C
// (10.78.0.3) has no rule.
func benchDatapath(n int) *policy.Datapath {
	dp := &policy.Datapath{}
	a := netip.MustParseAddr("10.78.0.1")
	ep := policy.Endpoint{ID: 1, Namespace: "x", Name: "a", IPs: []netip.Addr{a}, Identity: 300,
		Ingress: policy.EndpointPolicy{Isolated: true, IsolatedBy: []policy.PolicyRef{ref("x", "bench")}}}
	dp.Identities = append(dp.Identities, policy.Identity{ID: 300, IPs: []netip.Addr{a}})
	for i := 0; i < n; i++ {
		id := uint32(1000 + i)
		ip := netip.AddrFrom4([4]byte{10, 79, byte(i >> 8), byte(i)})
		if i >= 65536 {
			ip = netip.AddrFrom4([4]byte{10, 80 + byte(i>>16), byte(i >> 8), byte(i)})
		}
		if i == n-1 {
			ip = netip.MustParseAddr("10.78.0.2")
		}
		dp.Identities = append(dp.Identities, policy.Identity{ID: id, IPs: []netip.Addr{ip}})
		ep.Ingress.Entries = append(ep.Ingress.Entries, policy.Entry{Rule: uint32(100 + i), Identity: id, Protocol: "TCP", PortMin: 80, PortMax: 80})
		dp.Rules = append(dp.Rules, policy.CompiledRule{ID: uint32(100 + i), Rule: policy.RuleRef{Policy: ref("x", "bench"), Direction: policy.Ingress, Index: i}})
	}
	dp.Identities = append(dp.Identities, policy.Identity{ID: 299, IPs: []netip.Addr{netip.MustParseAddr("10.78.0.3")}})
	dp.Endpoints = []policy.Endpoint{ep}
	return dp
}

// tcpSYN is an IPv4 + TCP SYN packet, the input of PROG_TEST_RUN for
// netfilter programs (no link header; hook LOCAL_IN, IPv4 by default; no
// conntrack entry, so the program takes its untracked, evaluate-everything
// path).
func tcpSYN(src, dst netip.Addr, dport uint16) []byte {
	ip := make([]byte, 20+20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 40)
	ip[8] = 64
	ip[9] = 6
	s, d := src.As4(), dst.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	tcp[12] = 5 << 4
	tcp[13] = 0x02
	return ip
}

func benchProbe(b *testing.B, cfg Config) *Probe {
	b.Helper()
	requireRoot(b)
	p, err := Load(Options{PinRoot: testPinRoot(b), Config: cfg})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Uninstall() })
	return p
}

// BenchmarkVerdict is the kernel-timed cost (PROG_TEST_RUN) of a new
// connection's verdict with 10, 10k and 100k rules on the destination:
// allowed (no flow event) and denied (drop events rate-limited away).
func BenchmarkVerdict(b *testing.B) {
	for _, n := range []int{10, 10_000, 100_000} {
		p := benchProbe(b, Config{DropEventsPerSec: 1, DropEventsBurst: 1, WakeupWatermark: 1 << 20})
		if _, err := p.Apply(benchDatapath(n)); err != nil {
			b.Fatal(err)
		}
		for _, c := range []struct {
			name string
			src  string
			want uint32
		}{{"allowed", "10.78.0.2", 1}, {"denied", "10.78.0.3", 0}} {
			pkt := tcpSYN(netip.MustParseAddr(c.src), netip.MustParseAddr("10.78.0.1"), 80)
			b.Run(fmt.Sprintf("%s/rules=%d", c.name, n), func(b *testing.B) {
				ret, d, err := p.objs.NetpolNf.Benchmark(pkt, b.N, nil)
				if err != nil {
					b.Fatal(err)
				}
				if ret != c.want {
					b.Fatalf("verdict %d, want %d", ret, c.want)
				}
				b.ReportMetric(float64(d.Nanoseconds()), "kernel-ns/pkt")
			})
		}
	}
}

// BenchmarkVerdictFlat is the flatness of BenchmarkVerdict measured in one
// run: three probes loaded side by side with 10, 10k and 100k rules, rounds
// of PROG_TEST_RUN (200k packets each) in the order 10, 10k, 100k, 100k,
// 10k, 10, so drift and noise from other load hit every size alike; it
// reports the median kernel ns per packet of each size and the ratios
// 100k/10 and 10k/10: allowed and denied with exact-port rules, and allowed
// by a port-range rule (8000-8063) per peer. NETPOL_FLAT_SIZES (e.g.
// "10,100,1000") measures other sizes; the ratios are then last/first and
// middle/first.
func BenchmarkVerdictFlat(b *testing.B) {
	sizes := flatSizes(b)
	load := func(shape string) []*Probe {
		probes := make([]*Probe, len(sizes))
		for i, n := range sizes {
			probes[i] = benchProbe(b, Config{DropEventsPerSec: 1, DropEventsBurst: 1, WakeupWatermark: 1 << 20})
			dp := benchDatapath(n)
			entries := dp.Endpoints[0].Ingress.Entries
			switch shape {
			case "ranges":
				// 8000-8063: a range in each peer's summary instead of an exact entry.
				for j := range entries {
					entries[j].PortMin, entries[j].PortMax = 8000, 8063
				}
			case "third-range":
				// Three ranges per peer: the third is beyond the summary's inline ones.
				var more []policy.Entry
				for j := range entries {
					e := entries[j]
					entries[j].PortMin, entries[j].PortMax = 7000, 7063
					e2, e3 := e, e
					e2.PortMin, e2.PortMax = 7500, 7563
					e3.PortMin, e3.PortMax = 8000, 8063
					more = append(more, e2, e3)
				}
				entries = append(entries, more...)
			case "cidrs":
				// The last rule a /24 with an except; the source of the
				// "allowed-cidr" cases (10.91.0.7, no pod) is in it.
				hostBlocks(entries)
				entries[len(entries)-1].CIDR = netip.MustParsePrefix("10.91.0.0/24")
				entries[len(entries)-1].Except = []netip.Prefix{netip.MustParsePrefix("10.91.0.128/25")}
			case "subnets":
				// Dense prefixes shorter than an address, which stay in the
				// trie: entry j is the /28 at 172.16.0.0 + 16 j.
				for j := range entries {
					a := binary.BigEndian.AppendUint32(nil, 172<<24|16<<16+uint32(16*j))
					entries[j].Identity = 0
					entries[j].CIDR = netip.PrefixFrom(netip.AddrFrom4([4]byte(a)), 28)
				}
			}
			dp.Endpoints[0].Ingress.Entries = entries
			if _, err := probes[i].Apply(dp); err != nil {
				b.Fatal(err)
			}
		}
		return probes
	}
	loaded := map[string][]*Probe{}
	for _, c := range []struct {
		name  string
		src   string
		port  uint16
		shape string
		want  uint32
	}{
		{"allowed", "10.78.0.2", 80, "exact", 1},
		{"denied", "10.78.0.3", 80, "exact", 0},
		{"allowed-port-range", "10.78.0.2", 8010, "ranges", 1},
		{"allowed-third-range", "10.78.0.2", 8010, "third-range", 1},
		{"allowed-cidr", "10.91.0.7", 80, "cidrs", 1},
		{"allowed-cidr-dense", "172.16.0.5", 80, "cidrs", 1}, // among the n /32s
		{"denied-cidr-except", "10.91.0.200", 80, "cidrs", 0},
		{"allowed-cidr-dense-subnets", "172.16.0.85", 80, "subnets", 1}, // in the sixth /28
	} {
		pkt := tcpSYN(netip.MustParseAddr(c.src), netip.MustParseAddr("10.78.0.1"), c.port)
		probes, ok := loaded[c.shape]
		if !ok {
			for _, p := range loaded { // one shape loaded at a time: 3 probes of up to 100k rules each
				for _, q := range p {
					q.Uninstall()
				}
			}
			clear(loaded)
			probes = load(c.shape)
			loaded[c.shape] = probes
		}
		b.Run(c.name, func(b *testing.B) {
			per := make([][]float64, len(sizes))
			for range b.N {
				for _, i := range []int{0, 1, 2, 2, 1, 0} { // ABBA over the sizes
					ret, d, err := probes[i].objs.NetpolNf.Benchmark(pkt, 200_000, nil)
					if err != nil {
						b.Fatal(err)
					}
					if ret != c.want {
						b.Fatalf("verdict %d, want %d", ret, c.want)
					}
					per[i] = append(per[i], float64(d.Nanoseconds()))
				}
			}
			for i, n := range sizes {
				b.ReportMetric(median(per[i]), fmt.Sprintf("ns/pkt-%d", n))
			}
			b.ReportMetric(median(per[2])/median(per[0]), "ratio-"+sizeLabel(sizes[2])+"/"+sizeLabel(sizes[0]))
			b.ReportMetric(median(per[1])/median(per[0]), "ratio-"+sizeLabel(sizes[1])+"/"+sizeLabel(sizes[0]))
		})
	}
}

// hostBlocks makes every entry an ipBlock instead of a pod: entry j a
// single address, 172.16.0.0 + j /32.
func hostBlocks(entries []policy.Entry) {
	for j := range entries {
		entries[j].Identity = 0
		entries[j].CIDR = netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16 + byte(j>>16), byte(j >> 8), byte(j)}), 32)
	}
}

// flatSizes are BenchmarkVerdictFlat's three rule counts.
func flatSizes(b *testing.B) []int {
	v := os.Getenv("NETPOL_FLAT_SIZES")
	if v == "" {
		return []int{10, 10_000, 100_000}
	}
	var sizes []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 10 {
			b.Fatalf("NETPOL_FLAT_SIZES=%q: want three rule counts of at least 10 (the dense case probes the sixth /32), such as 10,100,1000", v)
		}
		sizes = append(sizes, n)
	}
	if len(sizes) != 3 {
		b.Fatalf("NETPOL_FLAT_SIZES=%q: want three rule counts, such as 10,100,1000", v)
	}
	return sizes
}

// sizeLabel writes 10000 as 10k, the name the ratios had before sizes could change.
func sizeLabel(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

// BenchmarkEmptyProgram is the floor: a netfilter program that returns
// NF_ACCEPT, timed the same way.
func BenchmarkEmptyProgram(b *testing.B) {
	requireRoot(b)
	prog := emptyProgram(b)
	pkt := tcpSYN(netip.MustParseAddr("10.78.0.2"), netip.MustParseAddr("10.78.0.1"), 80)
	ret, d, err := prog.Benchmark(pkt, b.N, nil)
	if err != nil || ret != 1 {
		b.Fatal(ret, err)
	}
	b.ReportMetric(float64(d.Nanoseconds()), "kernel-ns/pkt")
}

func emptyProgram(b testing.TB) *ebpf.Program {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.Netfilter, AttachType: ebpf.AttachNetfilter, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { prog.Close() })
	return prog
}

// BenchmarkEstablished measures the per-packet cost of established traffic
// with kernel BPF run-time statistics: a TCP stream b -> a through the
// node's FORWARD hook, our program and an empty one attached side by side,
// with 10 and 100k rules loaded.
func BenchmarkEstablished(b *testing.B) {
	requireRoot(b)
	closer, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		b.Fatal(err)
	}
	defer closer.Close()
	for _, n := range []int{10, 100_000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			tp := newTopology(b, false)
			a, c := tp.addPod(b, "a"), tp.addPod(b, "c")
			a.serveEcho(b, 80)
			waitReachable(b, c, 80, a)
			p := benchProbe(b, testCfg)
			if err := tp.node.in(func() error { return p.Attach("node") }); err != nil {
				b.Fatal(err)
			}
			dp := benchDatapath(n)
			// Put the real pods into the datapath: a isolated, c allowed.
			dp.Endpoints[0].IPs = []netip.Addr{a.ip4}
			dp.Identities[0].IPs = []netip.Addr{a.ip4}
			dp.Identities[n].IPs = []netip.Addr{c.ip4}
			if _, err := p.Apply(dp); err != nil {
				b.Fatal(err)
			}
			empty := emptyProgram(b)
			var l link.Link
			err := tp.node.in(func() (err error) {
				l, err = link.AttachNetfilter(link.NetfilterOptions{Program: empty, ProtocolFamily: link.NetfilterProtoIPv4,
					Hook: link.NetfilterInetForward, Priority: -40})
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			conn, err := c.dialEcho(a.ip4, 80)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			s0, e0 := progStats(b, p.objs.NetpolNf), progStats(b, empty)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := conn.roundTrip("ping"); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			s1, e1 := progStats(b, p.objs.NetpolNf), progStats(b, empty)
			ours := float64(s1[0]-s0[0]) / float64(max(1, s1[1]-s0[1]))
			floor := float64(e1[0]-e0[0]) / float64(max(1, e1[1]-e0[1]))
			b.ReportMetric(ours, "ns/pkt")
			b.ReportMetric(floor, "empty-ns/pkt")
			b.ReportMetric(ours/floor, "x-empty")
		})
	}
}

// progStats returns (total run time ns, run count).
func progStats(b testing.TB, prog *ebpf.Program) [2]uint64 {
	st, err := prog.Stats()
	if err != nil {
		b.Fatal(err)
	}
	return [2]uint64{uint64(st.Runtime), st.RunCount}
}

// BenchmarkPolicySwap is Apply's time to replace one endpoint's policy of
// 1k and 10k entries (build a new map, fill it, swap it in). hosts/: the
// entries are single-address ipBlocks (hostBlocks) instead of pods.
func BenchmarkPolicySwap(b *testing.B) {
	for _, n := range []int{1000, 10_000} {
		for _, shape := range []string{"", "resolved/", "hosts/"} {
			// resolved/: the same entries as a resolved direction, with its
			// regions (ranges made disjoint per peer, CIDRs by exact prefix).
			b.Run(fmt.Sprintf("%sentries=%d", shape, n), func(b *testing.B) { benchmarkPolicySwap(b, n, shape) })
		}
	}
}

func benchmarkPolicySwap(b *testing.B, n int, shape string) {
	p := benchProbe(b, testCfg)
	dps := [2]*policy.Datapath{benchDatapath(n), benchDatapath(n)}
	for i := range dps[1].Endpoints[0].Ingress.Entries {
		dps[1].Endpoints[0].Ingress.Entries[i].PortMax = 81
	}
	if shape == "hosts/" {
		for _, dp := range dps {
			hostBlocks(dp.Endpoints[0].Ingress.Entries)
		}
	}
	if shape == "resolved/" {
		for _, dp := range dps {
			in := &dp.Endpoints[0].Ingress
			in.Resolved = true
			in.Entries = append(in.Entries,
				policy.Entry{Rule: policy.RuleIsolated | policy.RuleDeny, CIDR: netip.MustParsePrefix("0.0.0.0/0")},
				policy.Entry{Rule: policy.RuleIsolated | policy.RuleDeny, CIDR: netip.MustParsePrefix("::/0")})
		}
	}
	if _, err := p.Apply(dps[0]); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := p.Apply(dps[(i+1)%2])
		if err != nil || res.SlotsSwapped != 1 {
			b.Fatal(res, err)
		}
	}
}

// BenchmarkRingBuffer is events/s from the kernel into a Go reader: denied
// packets via PROG_TEST_RUN with unlimited drop events on one CPU, the
// reader on the other. Reports delivered events/s and the loss.
func BenchmarkRingBuffer(b *testing.B) {
	p := benchProbe(b, Config{DropEventsPerSec: 1 << 40, DropEventsBurst: 1 << 40, WakeupWatermark: 256 << 10})
	if _, err := p.Apply(benchDatapath(10)); err != nil {
		b.Fatal(err)
	}
	rd, err := p.NewReader(10 * time.Millisecond)
	if err != nil {
		b.Fatal(err)
	}
	defer rd.Close()
	pkt := tcpSYN(netip.MustParseAddr("10.78.0.3"), netip.MustParseAddr("10.78.0.1"), 80)
	got := make(chan int)
	stop := make(chan struct{})
	go func() {
		n := 0
		var ev Event
		for {
			select {
			case <-stop:
				got <- n
				return
			default:
			}
			if rd.Read(&ev) == nil {
				n++
			}
		}
	}()
	before, _ := p.Stats()
	b.ResetTimer()
	start := time.Now()
	const chunk = 10_000
	for sent := 0; sent < b.N; sent += chunk {
		if _, _, err := p.objs.NetpolNf.Benchmark(pkt, min(chunk, b.N-sent), nil); err != nil {
			b.Fatal(err)
		}
	}
	// Let the reader drain what is left.
	for i := 0; i < 100; i++ {
		st, _ := p.Stats()
		if st.Events-before.Events == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
		if i > 5 {
			break
		}
	}
	close(stop)
	n := <-got
	elapsed := time.Since(start)
	after, _ := p.Stats()
	b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(after.RingFull-before.RingFull), "lost")
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkVerdictResolved is the kernel-timed cost (PROG_TEST_RUN) of a
// verdict in a resolved direction (a ClusterNetworkPolicy or an audited
// policy applies) against the plain NetworkPolicy direction of the same
// peers, 1,000 of them: two probes side by side, rounds of 200k packets in
// ABBA order over the cases, median ns per packet. plain-*: benchDatapath;
// resolved-*: the same allows on TCP 80, C's identity denied by a rule,
// regions 0.0.0.0/0 (NetworkPolicy's default deny, RuleIsolated) and
// 10.91.0.0/24 (allowed). "-region" cases miss the peer's identity entries
// and are decided by the CIDR trie.
func BenchmarkVerdictResolved(b *testing.B) {
	const n = 1000
	cfg := Config{DropEventsPerSec: 1, DropEventsBurst: 1, WakeupWatermark: 1 << 20}
	plain, resolved := benchProbe(b, cfg), benchProbe(b, cfg)
	if _, err := plain.Apply(benchDatapath(n)); err != nil {
		b.Fatal(err)
	}
	dp := benchDatapath(n)
	in := &dp.Endpoints[0].Ingress
	in.Resolved = true
	in.Entries = append(in.Entries,
		policy.Entry{Rule: 90 | policy.RuleDeny, Identity: 299},
		policy.Entry{Rule: policy.RuleIsolated | policy.RuleDeny, CIDR: netip.MustParsePrefix("0.0.0.0/0")},
		policy.Entry{Rule: policy.RuleIsolated | policy.RuleDeny, CIDR: netip.MustParsePrefix("::/0")},
		policy.Entry{Rule: 91, CIDR: netip.MustParsePrefix("10.91.0.0/24")})
	if _, err := resolved.Apply(dp); err != nil {
		b.Fatal(err)
	}
	a := netip.MustParseAddr("10.78.0.1")
	cases := []struct {
		name string
		p    *Probe
		src  string
		want uint32
	}{
		{"plain-allowed", plain, "10.78.0.2", 1},
		{"plain-denied", plain, "10.78.0.3", 0},
		{"plain-denied-world", plain, "10.91.0.7", 0},
		{"resolved-allowed", resolved, "10.78.0.2", 1},
		{"resolved-denied-by-rule", resolved, "10.78.0.3", 0},
		{"resolved-default-deny-region", resolved, "10.92.0.7", 0},
		{"resolved-allowed-region", resolved, "10.91.0.7", 1},
	}
	per := make([][]float64, len(cases))
	run := func(i int) {
		c := cases[i]
		ret, d, err := c.p.objs.NetpolNf.Benchmark(tcpSYN(netip.MustParseAddr(c.src), a, 80), 200_000, nil)
		if err != nil {
			b.Fatal(err)
		}
		if ret != c.want {
			b.Fatalf("%s: verdict %d, want %d", c.name, ret, c.want)
		}
		per[i] = append(per[i], float64(d.Nanoseconds()))
	}
	for range b.N {
		for i := range cases {
			run(i)
		}
		for i := range cases {
			run(len(cases) - 1 - i)
		}
	}
	for i, c := range cases {
		b.ReportMetric(median(per[i]), "ns/pkt-"+c.name)
	}
}

// BenchmarkFirstApply is an agent's first Apply on a fresh datapath at
// cluster size: every pod address of the cluster written as an identity
// (one direction of 10 entries besides). What a node's start pays before it
// enforces.
func BenchmarkFirstApply(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("addresses=%d", n), func(b *testing.B) {
			requireRoot(b)
			dp := benchDatapath(10)
			for i := range n {
				ip := netip.AddrFrom4([4]byte{10, 120 + byte(i>>16), byte(i >> 8), byte(i)})
				dp.Identities = append(dp.Identities, policy.Identity{ID: uint32(200_000 + i/4), IPs: []netip.Addr{ip}})
			}
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				p, err := Load(Options{PinRoot: testPinRoot(b), Config: testCfg})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				res, err := p.Apply(dp)
				b.StopTimer()
				if err != nil || res.IPCacheWritten < n {
					b.Fatal(res, err)
				}
				if err := p.Uninstall(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
