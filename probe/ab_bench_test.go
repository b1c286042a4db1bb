//go:build linux

package probe

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/kubectl-netpol/kubectl-netpol/internal/connrate"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// The A/B benchmark's processes: servers pinned to abServerCPU, clients to
// abClientCPU (unpinned connect latency on this 2-core VM jumps between ~45
// and ~90 µs from run to run).
const (
	abServerCPU = "0"
	abClientCPU = "1"
	abCRRPort   = 80
	abIperfPort = 5201
)

// TestConnectRateProcess is BenchmarkDatapathAB's connect-rate server or
// client, run pinned inside a pod namespace (internal/connrate); it does
// nothing on its own.
func TestConnectRateProcess(t *testing.T) { connrate.Child(t) }

// pinnedIn is the command line that runs args inside p's namespace on cpu.
func pinnedIn(p *pod, cpu string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", p.name, "taskset", "-c", cpu}, args...)...)
}

// startServer starts cmd and kills it (by PID) when the benchmark ends;
// ready, if set, is the line it prints once it accepts connections.
func startServer(b *testing.B, cmd *exec.Cmd, ready string) {
	b.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	})
	if ready == "" {
		return
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != ready {
		b.Fatalf("%s did not start: %q %v", cmd.Args, line, err)
	}
}

// abDatapath is 1000 NetworkPolicies (plus the two that let c reach a on
// the benchmark's ports) compiled for the node: half isolate a's ingress,
// half c's egress, each naming its own remote peer pod and port, so the
// datapath holds ~1000 identities and ~500 rules on each of the two sides.
func abDatapath(b testing.TB, a, c *pod) *policy.Datapath {
	b.Helper()
	snap := &policy.Snapshot{Pods: []*corev1.Pod{podObject(a, "x", map[string]string{"app": "a"}),
		podObject(c, "x", map[string]string{"app": "c"})}}
	for i := range 1000 {
		ip := netip.AddrFrom4([4]byte{10, 76, byte(i >> 8), byte(i)}).String()
		snap.Pods = append(snap.Pods, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: fmt.Sprintf("peer-%d", i), Labels: map[string]string{"peer": strconv.Itoa(i)},
				UID: types.UID(fmt.Sprintf("uid-peer-%d", i))},
			Spec:   corev1.PodSpec{NodeName: "node-2"},
			Status: corev1.PodStatus{PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
		})
		peer := []networkingv1.NetworkPolicyPeer{{PodSelector: selector("peer", strconv.Itoa(i))}}
		port := []networkingv1.NetworkPolicyPort{tcpPort(int32(10000+i), 0)}
		if i%2 == 0 {
			snap.Policies = append(snap.Policies, netpol("x", fmt.Sprintf("p%04d", i), selector("app", "a"), ingressOnly,
				[]networkingv1.NetworkPolicyIngressRule{{From: peer, Ports: port}}, nil))
		} else {
			snap.Policies = append(snap.Policies, netpol("x", fmt.Sprintf("p%04d", i), selector("app", "c"), egressOnly,
				nil, []networkingv1.NetworkPolicyEgressRule{{To: peer, Ports: port}}))
		}
	}
	ports := []networkingv1.NetworkPolicyPort{tcpPort(abCRRPort, 0), tcpPort(abIperfPort, 0)}
	snap.Policies = append(snap.Policies,
		netpol("x", "a-from-c", selector("app", "a"), ingressOnly, []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{{PodSelector: selector("app", "c")}}, Ports: ports}}, nil),
		netpol("x", "c-to-a", selector("app", "c"), egressOnly, nil, []networkingv1.NetworkPolicyEgressRule{{
			To: []networkingv1.NetworkPolicyPeer{{PodSelector: selector("app", "a")}}, Ports: ports}}))
	dp, err := policy.Compile(snap, testNode)
	if err != nil {
		b.Fatal(err)
	}
	return dp
}

func loadAvg() float64 {
	raw, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(raw))
	if len(f) == 0 {
		return -1
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// BenchmarkDatapathAB is iperf3 throughput and TCP connect rate from pod c
// to pod a (routed veths through the node namespace, conntrack on as with
// kube-proxy), with the datapath enforcing 1000 policies on both pods and a
// reader consuming the flow events (DefaultConfig), against no programs.
// Each benchmark iteration is one A B B A round; each arm measures iperf3
// for 2 s (after 1 s omitted) and then the connect rate for 1 s; servers run
// pinned to CPU 0 and clients to CPU 1; conntrack is flushed before each
// arm. It reports the medians, their ratios, the same for the work done per
// CPU-second the client and server processes got, in bpf-stats the
// program's own CPU time from kernel run-time statistics (share of one CPU
// during iperf3, ns per connection: figures that other load on this shared
// machine barely touches), and the 1-minute load average at the start and
// the end.
//
// The sub-benchmark flow-events is the product's default configuration (one
// event per new flow, read by a Go reader); no-flow-events separates the
// cost of the events and their reader from the verdicts'; bpf-stats is
// flow-events with the kernel's BPF run-time statistics on, which measure
// the program's own time but add clock reads to every run of it, so the
// ratios come from the first two.
//
//	go test -run '^$' -bench BenchmarkDatapathAB -benchtime 10x -v ./probe/
func BenchmarkDatapathAB(b *testing.B) {
	for _, c := range []struct {
		name              string
		flowEvents, stats bool
	}{{"flow-events", true, false}, {"no-flow-events", false, false}, {"bpf-stats", true, true}} {
		b.Run(c.name, func(b *testing.B) { benchmarkDatapathAB(b, c.flowEvents, c.stats) })
	}
}

func benchmarkDatapathAB(b *testing.B, flowEvents, stats bool) {
	requireRoot(b)
	for _, tool := range []string{"iperf3", "taskset", "conntrack"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("needs %s: run hack/install-deps.sh", tool)
		}
	}
	load0 := loadAvg()
	tp := newTopology(b, false)
	a, c := tp.addPod(b, "a"), tp.addPod(b, "c")
	startServer(b, pinnedIn(a, abServerCPU, "iperf3", "-s", "-B", a.ip4.String(), "-p", strconv.Itoa(abIperfPort)), "")
	for deadline := time.Now().Add(5 * time.Second); ; {
		if out, _ := a.try("ss", "-Hltn", fmt.Sprintf("sport = :%d", abIperfPort)); strings.TrimSpace(out) != "" {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("iperf3 server did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	crrAddr := netip.AddrPortFrom(a.ip4, abCRRPort).String()
	crr := pinnedIn(a, abServerCPU, connrate.Args()...)
	crr.Env = connrate.Env(connrate.Server, crrAddr, 0)
	startServer(b, crr, connrate.Ready)
	dp := abDatapath(b, a, c)
	root := testPinRoot(b)
	const iperfSecs = 2

	// Each measurement also gives its work per CPU-second that the client and
	// server processes got (iperf3's own accounting; rusage and /proc for the
	// connect-rate processes): a ratio of those depends less on what else
	// runs on the machine than a ratio of rates.
	iperf := func() (bps, perCPU float64) {
		out, err := pinnedIn(c, abClientCPU, "iperf3", "-c", a.ip4.String(), "-p", strconv.Itoa(abIperfPort),
			"-t", strconv.Itoa(iperfSecs), "-O", "1", "-J").Output()
		if err != nil {
			b.Fatalf("iperf3: %v: %s", err, out)
		}
		var res struct {
			End struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
				CPU struct {
					Host   float64 `json:"host_total"`
					Remote float64 `json:"remote_total"`
				} `json:"cpu_utilization_percent"`
			} `json:"end"`
		}
		if err := json.Unmarshal(out, &res); err != nil || res.End.SumReceived.BitsPerSecond == 0 {
			b.Fatalf("iperf3 output: %v: %s", err, out)
		}
		bps = res.End.SumReceived.BitsPerSecond
		return bps, bps / ((res.End.CPU.Host + res.End.CPU.Remote) / 100)
	}
	serverCPU := func() time.Duration {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", crr.Process.Pid))
		if err != nil {
			b.Fatal(err)
		}
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
		ut, _ := strconv.Atoi(f[11])
		st, _ := strconv.Atoi(f[12])
		return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
	}
	connectRate := func() (cps, perCPU float64) {
		secs := iperfSecs / 2.0
		cmd := pinnedIn(c, abClientCPU, connrate.Args()...)
		cmd.Env = connrate.Env(connrate.Client, crrAddr, time.Duration(secs*float64(time.Second)))
		srv0 := serverCPU()
		out, err := cmd.Output()
		n, perr := connrate.Connections(out)
		if err != nil || perr != nil {
			b.Fatalf("connect-rate client: %v %v: %s", err, perr, out)
		}
		used := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime() + serverCPU() - srv0
		return float64(n) / secs, float64(n) / used.Seconds()
	}
	// The datapath is loaded, filled and read once; an enforced arm attaches
	// its programs to the node's hooks and detaches them after, so arms are
	// short and alternate often (the load on this shared machine changes
	// from second to second).
	cfg := DefaultConfig
	cfg.FlowEvents = flowEvents
	p, err := Load(Options{PinRoot: root, Config: cfg})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Uninstall() })
	if _, err := p.Apply(dp); err != nil {
		b.Fatal(err)
	}
	rd, err := p.NewReader(100 * time.Millisecond)
	if err != nil {
		b.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		var ev Event
		for {
			select {
			case <-stop:
				return
			default:
			}
			rd.Read(&ev)
		}
	}()
	b.Cleanup(func() { close(stop); <-done; rd.Close() })
	// Kernel run-time statistics of the program during enforced arms: its
	// own CPU time, which other load on the machine barely inflates.
	if stats {
		closer, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
		if err != nil {
			b.Fatal(err)
		}
		defer closer.Close()
	}
	var iperfRun, iperfWall, crrRun time.Duration
	var crrConns float64
	type result struct{ bps, bpsPerCPU, cps, cpsPerCPU float64 }
	measure := func() (r result) {
		r.bps, r.bpsPerCPU = iperf()
		r.cps, r.cpsPerCPU = connectRate()
		return r
	}
	arm := func(enforce bool) (r result) {
		tp.node.run(b, "conntrack", "-F")
		if !enforce {
			return measure()
		}
		var links []link.Link
		err := tp.node.in(func() error {
			for _, h := range hooks {
				l, err := p.attachNetfilter(h, nfPriority)
				if err != nil {
					return err
				}
				links = append(links, l)
			}
			return nil
		})
		defer func() {
			for _, l := range links {
				l.Close()
			}
		}()
		if err != nil {
			b.Fatal(err)
		}
		s0, t0 := progStats(b, p.objs.NetpolNf), time.Now()
		r.bps, r.bpsPerCPU = iperf()
		s1, t1 := progStats(b, p.objs.NetpolNf), time.Now()
		r.cps, r.cpsPerCPU = connectRate()
		s2 := progStats(b, p.objs.NetpolNf)
		iperfRun += time.Duration(s1[0] - s0[0])
		iperfWall += t1.Sub(t0)
		crrRun += time.Duration(s2[0] - s1[0])
		crrConns += r.cps * iperfSecs / 2
		return r
	}
	var on, off []result
	for i := 0; i < b.N; i++ {
		for _, enforce := range []bool{true, false, false, true} {
			r := arm(enforce)
			b.Logf("round %d enforce=%v: %.2f Gbit/s (%.2f per CPU-s), %.0f conn/s (%.0f per CPU-s), load %.2f",
				i, enforce, r.bps/1e9, r.bpsPerCPU/1e9, r.cps, r.cpsPerCPU, loadAvg())
			if enforce {
				on = append(on, r)
			} else {
				off = append(off, r)
			}
		}
	}
	med := func(rs []result, f func(result) float64) float64 {
		var v []float64
		for _, r := range rs {
			v = append(v, f(r))
		}
		return median(v)
	}
	bps := func(r result) float64 { return r.bps }
	cps := func(r result) float64 { return r.cps }
	b.ReportMetric(med(on, bps)/1e9, "Gbit/s-enforced")
	b.ReportMetric(med(off, bps)/1e9, "Gbit/s-baseline")
	b.ReportMetric(med(on, bps)/med(off, bps), "iperf3-ratio")
	b.ReportMetric(med(on, cps), "conn/s-enforced")
	b.ReportMetric(med(off, cps), "conn/s-baseline")
	b.ReportMetric(med(on, cps)/med(off, cps), "connect-ratio")
	bpsCPU := func(r result) float64 { return r.bpsPerCPU }
	cpsCPU := func(r result) float64 { return r.cpsPerCPU }
	b.ReportMetric(med(on, bpsCPU)/med(off, bpsCPU), "iperf3-per-cpu-ratio")
	b.ReportMetric(med(on, cpsCPU)/med(off, cpsCPU), "connect-per-cpu-ratio")
	st, _ := p.Stats()
	if st.NewAllowed == 0 {
		b.Error("no new flow was judged: the programs were not in the path")
	}
	b.Logf("enforced arms: %d new flows allowed, %d denied, %d events, %d lost", st.NewAllowed, st.NewDenied, st.Events, st.RingFull)
	if stats {
		b.ReportMetric(float64(iperfRun)/float64(iperfWall), "bpf-cpu-share-iperf3")
		b.ReportMetric(float64(crrRun.Nanoseconds())/crrConns, "bpf-ns/conn")
	}
	b.ReportMetric(load0, "load-start")
	b.ReportMetric(loadAvg(), "load-end")
}
