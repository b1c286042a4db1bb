//go:build linux

package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubectl-netpol/kubectl-netpol/internal/connrate"
	pt "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
	"github.com/kubectl-netpol/kubectl-netpol/probe"
)

// testNSPrefix starts every namespace name the tests create:
// NETPOL_TEST_NS_PREFIX, or "np" (engineers sharing a machine set their own).
func testNSPrefix() string {
	if p := os.Getenv("NETPOL_TEST_NS_PREFIX"); p != "" {
		return p
	}
	return "np"
}

// The agent A/B benchmark pins the connect-rate client to CPU 0 and the
// server to CPU 1 (issue 19's setup); the agent itself is not pinned.
const (
	agentABClientCPU = "0"
	agentABServerCPU = "1"
	agentABPort      = 80
)

// TestConnectRateProcess is BenchmarkAgentAB's pinned connect-rate server
// or client (internal/connrate); it does nothing on its own.
func TestConnectRateProcess(t *testing.T) { connrate.Child(t) }

// agentABObjects is the cluster of the agent A/B benchmark: pods a (server)
// and c (client) on this node, 1000 remote pods, and 1000 NetworkPolicies
// (half isolate a's ingress, half c's egress, each naming its own remote
// peer and port) plus the two that let c reach a on agentABPort.
func agentABObjects(aIP, cIP string) []k8sruntime.Object {
	objs := []k8sruntime.Object{pt.Namespace("x"),
		onNodeFE(pt.Pod("x", "a", pt.WithLabels("app=a"), pt.WithIP(aIP))),
		onNodeFE(pt.Pod("x", "c", pt.WithLabels("app=c"), pt.WithIP(cIP)))}
	for i := range 1000 {
		p := pt.Pod("x", fmt.Sprintf("peer-%d", i), pt.WithLabels("peer="+strconv.Itoa(i)),
			pt.WithIP(fmt.Sprintf("10.76.%d.%d", i>>8, i&255)))
		p.Spec.NodeName = "node-2"
		objs = append(objs, p)
		peer := pt.Peers(pt.PodPeer(pt.Sel("peer=" + strconv.Itoa(i))))
		port := pt.Port(corev1.ProtocolTCP, int32(10000+i))
		if i%2 == 0 {
			objs = append(objs, pt.Policy("x", fmt.Sprintf("p%04d", i), pt.Selecting(pt.Sel("app=a")), pt.IngressRule(peer, port)))
		} else {
			objs = append(objs, pt.Policy("x", fmt.Sprintf("p%04d", i), pt.Selecting(pt.Sel("app=c")), pt.EgressRule(peer, port)))
		}
	}
	objs = append(objs,
		pt.Policy("x", "a-from-c", pt.Selecting(pt.Sel("app=a")), pt.IngressRule(pt.Peers(pt.PodPeer(pt.Sel("app=c"))), pt.Port(corev1.ProtocolTCP, agentABPort))),
		pt.Policy("x", "c-to-a", pt.Selecting(pt.Sel("app=c")), pt.EgressRule(pt.Peers(pt.PodPeer(pt.Sel("app=a"))), pt.Port(corev1.ProtocolTCP, agentABPort))))
	return objs
}

// agentMode is one arm of BenchmarkAgentAB.
type agentMode struct {
	name   string
	on     bool // false: no agent at all
	cfg    func(*Config)
	legacy bool // flow-end summaries by the pre-issue-19 netlink listener
}

// runBenchAgent starts the whole agent (datapath, informers, event reader,
// hub, metrics, anti-spoofing, flow-end summaries as configured) for the
// node namespace and returns its stop, which removes everything it made.
func runBenchAgent(b *testing.B, node *feNode, pinRoot string, objs []k8sruntime.Object, mode agentMode) (*Agent, func()) {
	b.Helper()
	cfg := Config{Client: fake.NewClientset(objs...), NodeName: feNodeName, PinRoot: pinRoot,
		Datapath: probe.DefaultConfig, AntiSpoofing: true, FlowEndSummaries: true}
	if mode.cfg != nil {
		mode.cfg(&cfg)
	}
	var a *Agent
	if err := node.in(func() (err error) { a, err = New(cfg); return err }); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stop := make(chan struct{})
	if !a.cluster.Start(stop) {
		b.Fatal("informer caches did not sync")
	}
	processed := make(chan struct{})
	go func() {
		defer close(processed)
		for a.processNext() {
		}
	}()
	a.enqueue()
	for deadline := time.Now().Add(20 * time.Second); a.probe.Applied() == nil; {
		if time.Now().After(deadline) {
			b.Fatal("the first policy apply did not happen within 20 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The informers' first events queue more applies after the first one:
	// wait until they are done, so an arm measures connections, not a
	// recompile of 1000 policies.
	for last, quiet := appliesDone(a), time.Now(); time.Since(quiet) < 500*time.Millisecond; time.Sleep(50 * time.Millisecond) {
		if n := appliesDone(a); n != last || a.queue.Len() > 0 {
			last, quiet = n, time.Now()
		}
	}
	a.spoof.start()
	rd, err := a.probe.NewReader(a.cfg.ReadPoll)
	if err != nil {
		b.Fatal(err)
	}
	read := make(chan struct{})
	go func() { defer close(read); a.readEvents(ctx, rd) }()
	var stopEnds func()
	if cfg.FlowEndSummaries {
		start := a.startFlowEnds
		if mode.legacy {
			start = a.legacyFlowEnds
		}
		if stopEnds, err = start(int(node.h)); err != nil {
			b.Fatal(err)
		}
	}
	return a, func() {
		if stopEnds != nil {
			stopEnds()
		}
		cancel()
		<-read
		rd.Close()
		close(stop)
		a.queue.ShutDown()
		<-processed
		a.spoof.close()
		if err := a.probe.Uninstall(); err != nil {
			b.Errorf("uninstall: %v", err)
		}
	}
}

// BenchmarkAgentAB is the TCP connect rate from pod c to pod a through a
// node namespace, with no agent against the whole agent as installed
// (datapath enforcing 1000 policies, a verdict event per new flow read and
// enriched into the hub, metrics, anti-spoofing, flow-end summaries), and
// with each optional feature off. Modes alternate in each round (forward
// then backward: A B C .. C B A); each arm starts a fresh agent (not timed;
// the arm waits for its start-up applies and collects their garbage first),
// flushes conntrack and runs the client for NETPOL_AB_SECS (default 2) s.
// Client pinned to CPU 0, server to CPU 1. It reports medians per mode, the
// ratio to no agent, the agent's CPU per connection (this process's CPU
// time during the arm: the agent's Go side; kernel work done in the
// client's and server's context shows in the rate), and the load average.
//
//	go test -run '^$' -bench BenchmarkAgentAB -benchtime 3x -v ./agent/
//
// NETPOL_AB_MODES=none,defaults,... picks modes, NETPOL_AB_SECS sets the
// arm length, NETPOL_AB_PROFILE=/tmp/ab writes a CPU profile of each arm
// (from the client's start to the last summary) to /tmp/ab-MODE-ROUND-N.prof,
// and the contended locks so far to .mutex.
func BenchmarkAgentAB(b *testing.B) {
	requirePrivileged(b)
	for _, tool := range []string{"taskset", "conntrack"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("needs %s: run hack/install-deps.sh", tool)
		}
	}
	secs := 2.0
	if s := os.Getenv("NETPOL_AB_SECS"); s != "" {
		secs, _ = strconv.ParseFloat(s, 64)
	}
	modes := []agentMode{
		{name: "none"},
		{name: "defaults", on: true},
		{name: "netlink", on: true, cfg: func(c *Config) { c.FlowEndSource = FlowEndSourceNetlink }},
		{name: "kernel-tcp", on: true, cfg: func(c *Config) { c.FlowEndSource = FlowEndSourceKernelTCP }},
		{name: "netlink-old", on: true, legacy: true},
		{name: "no-anti-spoofing", on: true, cfg: func(c *Config) { c.AntiSpoofing = false }},
		{name: "no-flow-ends", on: true, cfg: func(c *Config) { c.FlowEndSummaries = false }},
	}
	if m := os.Getenv("NETPOL_AB_MODES"); m != "" {
		keep := map[string]bool{}
		for _, n := range strings.Split(m, ",") {
			keep[n] = true
		}
		var sel []agentMode
		for _, md := range modes {
			if keep[md.name] {
				sel = append(sel, md)
			}
		}
		modes = sel
	}
	load0 := loadAvgAgent()
	node := newFeNode(b)
	const aIP, cIP = "10.78.0.11", "10.78.0.12"
	podA, podC := node.addPod(b, aIP), node.addPod(b, cIP)
	podC.run(b, "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1")
	// Closed connections' entries expire after 1 s instead of 2 min, so
	// they are destroyed (and summarised) during the arm, as on a node
	// that has been busy for minutes, not after it.
	node.run(b, "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_time_wait=1")
	objs := agentABObjects(aIP, cIP)
	pinRoot := fmt.Sprintf("/sys/fs/bpf/netpol-agent-ab-%d", os.Getpid())
	b.Cleanup(func() { os.RemoveAll(pinRoot) })

	addr := aIP + ":" + strconv.Itoa(agentABPort)
	pinned := func(p *feNS, cpu string) *exec.Cmd {
		return exec.Command("ip", append([]string{"netns", "exec", p.name, "taskset", "-c", cpu}, connrate.Args()...)...)
	}
	srv := pinned(podA, agentABServerCPU)
	srv.Env = connrate.Env(connrate.Server, addr, 0)
	out, err := srv.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Process.Signal(syscall.SIGKILL); srv.Wait() })
	line := make([]byte, len(connrate.Ready)+1)
	if _, err := out.Read(line); err != nil || string(line) != connrate.Ready+"\n" {
		b.Fatalf("server did not start: %q %v", line, err)
	}
	connectRate := func() float64 {
		cmd := pinned(podC, agentABClientCPU)
		cmd.Env = connrate.Env(connrate.Client, addr, time.Duration(secs*float64(time.Second)))
		out, err := cmd.Output()
		n, perr := connrate.Connections(out)
		if err != nil || perr != nil {
			b.Fatalf("connect-rate client: %v %v: %s", err, perr, out)
		}
		return float64(n) / secs
	}
	type result struct{ cps, cpuPerConn, idleMsPerSec, aboveIdle float64 }
	res := map[string][]result{}
	for i := 0; i < b.N; i++ {
		order := append([]agentMode(nil), modes...)
		for j := len(modes) - 1; j >= 0; j-- {
			order = append(order, modes[j])
		}
		for _, m := range order {
			var stop func()
			var a *Agent
			if m.on {
				a, stop = runBenchAgent(b, node, pinRoot, objs, m)
			}
			node.run(b, "conntrack", "-F")
			time.Sleep(200 * time.Millisecond) // the flush's summaries
			applies0 := appliesDone(a)
			// The start-up's garbage (the compile of 1000 policies, the
			// informers' lists) is collected now, not during the arm: the
			// collections in the arm are those its connections cause.
			runtime.GC()
			// The agent's CPU with no connection, over a second: what the
			// per-connection figure includes that no connection causes.
			idle0 := processCPU(b)
			time.Sleep(time.Second)
			idle := processCPU(b) - idle0
			gcs0 := gcCycles()
			sw0 := contextSwitches(b)
			stopProfile := profileArm(b, fmt.Sprintf("%s-%d-%d", m.name, i, len(res[m.name])))
			user0, sys0 := processUserSys(b) // the agent runs in this process; client and server are others
			armStart := time.Now()
			cps := connectRate()
			// The summaries of the arm's connections come when their
			// entries are destroyed: flush them and wait for the agent.
			node.run(b, "conntrack", "-F")
			if m.on {
				// Until every new flow's end is published (or 3 s).
				want := float64(0)
				if st, err := a.probe.Stats(); err == nil && a.cfg.FlowEndSummaries {
					want = float64(st.NewAllowed)
				}
				for deadline := time.Now().Add(3 * time.Second); counterValue(a.metrics.FlowEnds) < want && time.Now().Before(deadline); {
					time.Sleep(20 * time.Millisecond)
				}
			}
			time.Sleep(100 * time.Millisecond)
			user, sys := processUserSys(b)
			user, sys = user-user0, sys-sys0
			cpu := user + sys
			armTime := time.Since(armStart)
			stopProfile()
			gcs := gcCycles() - gcs0
			switches := contextSwitches(b) - sw0
			r := result{cps: cps}
			if m.on {
				r.cpuPerConn = float64(cpu.Nanoseconds()) / (cps * secs)
				r.idleMsPerSec = float64(idle.Microseconds()) / 1e3
				// What the connections add to the idle agent: less
				// dependent on the rate the loaded machine allows.
				r.aboveIdle = (float64(cpu.Nanoseconds()) - float64(idle.Nanoseconds())*armTime.Seconds()) / (cps * secs)
				st, _ := a.probe.Stats()
				b.Logf("round %d %s: %.0f conn/s, agent %.1f µs CPU/conn (%.0f %% in the kernel, %.2f context switches/conn; idle %.1f ms CPU/s, %.1f µs/conn above it), load %.2f; datapath: %d new, %d events, %d ends, %d lost, flow ends published %.0f (%d starts unmatched); %d policy applies and %d GC cycles in the arm",
					i, m.name, cps, r.cpuPerConn/1e3, 100*sys.Seconds()/cpu.Seconds(), float64(switches)/(cps*secs), r.idleMsPerSec, r.aboveIdle/1e3, loadAvgAgent(), st.NewAllowed, st.Events, st.FlowEnds, st.RingFull+st.FlowEndsLost, counterValue(a.metrics.FlowEnds), a.newFlows.len(), appliesDone(a)-applies0, gcs)
				stop()
			} else {
				b.Logf("round %d %s: %.0f conn/s, load %.2f", i, m.name, cps, loadAvgAgent())
			}
			res[m.name] = append(res[m.name], r)
		}
	}
	med := func(rs []result, f func(result) float64) float64 {
		var v []float64
		for _, r := range rs {
			v = append(v, f(r))
		}
		sort.Float64s(v)
		if len(v) == 0 {
			return 0
		}
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	base := med(res["none"], func(r result) float64 { return r.cps })
	for _, m := range modes {
		cps := med(res[m.name], func(r result) float64 { return r.cps })
		b.ReportMetric(cps, "conn/s-"+m.name)
		if m.on {
			if base > 0 {
				b.ReportMetric(cps/base, "ratio-"+m.name)
			}
			b.ReportMetric(med(res[m.name], func(r result) float64 { return r.cpuPerConn })/1e3, "agent-µs/conn-"+m.name)
			b.ReportMetric(med(res[m.name], func(r result) float64 { return r.idleMsPerSec }), "idle-ms/s-"+m.name)
			b.ReportMetric(med(res[m.name], func(r result) float64 { return r.aboveIdle })/1e3, "above-idle-µs/conn-"+m.name)
		}
	}
	b.ReportMetric(load0, "load-start")
	b.ReportMetric(loadAvgAgent(), "load-end")
}

// contextSwitches is how many times this process's threads were switched
// out (voluntarily or not).
func contextSwitches(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Nvcsw + ru.Nivcsw
}

// gcCycles is how many garbage collections this process has finished.
func gcCycles() uint32 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.NumGC
}

// appliesDone is how many policy applies a has finished (0 without an agent).
func appliesDone(a *Agent) uint64 {
	if a == nil {
		return 0
	}
	var m dto.Metric
	_ = a.metrics.ApplyDuration.Write(&m)
	return m.GetHistogram().GetSampleCount()
}

// profileArm writes a CPU profile of one arm to NETPOL_AB_PROFILE-name.prof
// when that is set (go tool pprof merges several); the returned func stops
// it. Not with -cpuprofile, which profiles the agents' start-up too.
func profileArm(b *testing.B, name string) func() {
	prefix := os.Getenv("NETPOL_AB_PROFILE")
	if prefix == "" {
		return func() {}
	}
	f, err := os.Create(prefix + "-" + name + ".prof")
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	runtime.SetMutexProfileFraction(1)
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		// Contended locks so far (cumulative over the arms).
		if m, err := os.Create(prefix + "-" + name + ".mutex"); err == nil {
			_ = pprof.Lookup("mutex").WriteTo(m, 0)
			m.Close()
		}
	}
}

func loadAvgAgent() float64 {
	raw, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(raw))
	if len(f) == 0 {
		return -1
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
