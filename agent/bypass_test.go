//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/internal/cni"
	"github.com/kubectl-netpol/kubectl-netpol/internal/cni/nodefacts"
	"github.com/kubectl-netpol/kubectl-netpol/internal/udpsink"
	pt "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
	"github.com/kubectl-netpol/kubectl-netpol/probe"
)

// conntrackOn switches conntrack on in the namespace, as kube-proxy's rules
// do on a node: rules that match on conntrack state make the kernel track.
func conntrackOn(t testing.TB, n *feNS) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "ct.nft")
	if err := os.WriteFile(f, []byte(`table inet netpolfect {
  chain ctforward { type filter hook forward priority 0; ct state new counter; }
  chain ctoutput { type filter hook output priority 0; ct state new counter; }
  chain ctinput { type filter hook input priority 0; ct state new counter; }
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	n.run(t, "nft", "-f", f)
}

// redirectPeer is the Cilium / Calico-eBPF pattern: a tc program at the
// ingress of one pod's host-side interface hands its IPv4 packets straight
// to another pod's interface (bpf_redirect_peer), past routing, conntrack
// and netfilter. ARP still goes the normal way, so the pod resolves its
// gateway.
func redirectPeer(t *testing.T, node *spoofNode, name string, from, to *spoofPod) (detach func()) {
	t.Helper()
	target := node.ifindex(t, to)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: name, Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 16, asm.Word), // __sk_buff.protocol (network order in a u32)
			asm.JNE.Imm(asm.R2, 0x0008, "pass"),       // ETH_P_IP
			asm.Mov.Imm(asm.R1, int32(target)),
			asm.Mov.Imm(asm.R2, 0),
			asm.FnRedirectPeer.Call(),
			asm.Return(),
			asm.Mov.Imm(asm.R0, -1).WithSymbol("pass"), // TCX_NEXT
			asm.Return(),
		}})
	if err != nil {
		t.Fatal(err)
	}
	var l link.Link
	err = node.in(func() error {
		var err error
		l, err = link.AttachTCX(link.TCXOptions{Interface: node.ifindex(t, from), Program: prog, Attach: ebpf.AttachTCXIngress})
		return err
	})
	prog.Close()
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	detach = func() { once.Do(func() { l.Close() }) }
	t.Cleanup(detach)
	return detach
}

// udpStream sends UDP from pod p to dst every 5 ms (from one socket: one
// flow) until stop is called.
func udpStream(t *testing.T, p *spoofPod, dst netip.AddrPort) (stop func()) {
	t.Helper()
	var c *net.UDPConn
	err := p.in(func() error {
		var err error
		c, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				c.Write([]byte("x"))
			}
		}
	})
	var once sync.Once
	stop = func() { once.Do(func() { close(done); wg.Wait(); c.Close() }) }
	t.Cleanup(stop)
	return stop
}

// TestBypassSelfCheck: two pods exchange traffic that a tc program
// redirects veth to veth; the self-check turns the node to "not enforcing"
// within its window, names the pod, writes an Event on the agent's pod and
// sets the metrics. The same pods over the normal path bring it back to
// "enforcing"; an idle pod is never named.
func TestBypassSelfCheck(t *testing.T) {
	requirePrivileged(t)
	node := newSpoofNode(t, false)
	conntrackOn(t, node.feNS)
	a1, b1, idle := node.addPod(t, "a"), node.addPod(t, "b"), node.addPod(t, "idle")
	pod := func(p *spoofPod) *corev1.Pod {
		o := onNodeSpoof(pt.Pod("shop", p.podName, pt.WithIP(p.ip4.String())))
		o.UID = types.UID("uid-" + p.podName)
		return o
	}
	agentPod := onNodeSpoof(pt.Pod("netpol-system", "netpol-agent-x", pt.HostNetwork()))
	client := fake.NewClientset(pt.Namespace("shop"), pt.Namespace("netpol-system"), pod(a1), pod(b1), pod(idle), agentPod)
	sink := udpsink.Listen(t, b1.in, netip.AddrPortFrom(b1.ip4, 5000))

	pinRoot := fmt.Sprintf("/sys/fs/bpf/netpol-agent-bypass-%d", os.Getpid())
	t.Cleanup(func() { os.RemoveAll(pinRoot) })
	const window = 500 * time.Millisecond
	var a *Agent
	err := node.in(func() error {
		var err error
		a, err = New(Config{Client: client, NodeName: spoofNodeName, PinRoot: pinRoot, Datapath: probe.DefaultConfig,
			GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", PodName: agentPod.Name, PodNamespace: agentPod.Namespace,
			CNIConfDir: t.TempDir(), BPFFSRoot: t.TempDir(), BypassWindow: window})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	var uninstall atomic.Bool
	uninstall.Store(true)
	go func() { ran <- a.Run(ctx, func(context.Context) bool { return uninstall.Load() }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, 10*time.Second, "agent ready", func() bool { return a.ready.Load() })
	st, _ := a.status(context.Background())
	if st.GetCni().GetName() != "" || st.GetEnforcement().GetState() != stateEnforcing {
		t.Errorf("before any traffic: CNI %v, enforcement %v", st.GetCni(), st.GetEnforcement())
	}

	// The pods' traffic bypasses netfilter: a's packets go straight to b.
	detach := redirectPeer(t, node, "redirect_peer", a1, b1)
	stop := udpStream(t, a1, netip.AddrPortFrom(b1.ip4, 5000))
	start := time.Now()
	e := waitEnforcement(t, a, 4*window, stateNot)
	t.Logf("bypass seen after %s: %s", time.Since(start).Round(time.Millisecond), e.GetDetail())
	if sink.Count(a1.ip4) == 0 {
		t.Fatal("the redirected datagrams did not arrive: the bypass layout is broken")
	}
	if !strings.Contains(e.GetDetail(), "bypasses netfilter") || !strings.Contains(strings.Join(e.GetBypassing(), " "), "shop/a") ||
		strings.Contains(strings.Join(e.GetBypassing(), " "), "idle") {
		t.Errorf("enforcement = %v, want shop/a named and idle not", e)
	}
	if got := gaugeValue(t, a, "kubectl_netpol_bypass_pods"); got < 1 {
		t.Errorf("bypass_pods metric = %v", got)
	}
	if got := enforcementMetric(t, a); got != stateNot {
		t.Errorf("enforcement metric says %q", got)
	}
	waitFor(t, 5*time.Second, "a NetfilterBypass Event on the agent's pod", func() bool {
		evs, _ := client.CoreV1().Events("netpol-system").List(context.Background(), metav1.ListOptions{})
		for _, ev := range evs.Items {
			if ev.Reason == "NetfilterBypass" && ev.InvolvedObject.Name == agentPod.Name && ev.Type == corev1.EventTypeWarning &&
				strings.Contains(ev.Message, "not enforcing") {
				return true
			}
		}
		return false
	})
	stop()

	// The same pods over the normal path: the hooks see it.
	detach()
	stop = udpStream(t, a1, netip.AddrPortFrom(b1.ip4, 5001))
	defer stop()
	e = waitEnforcement(t, a, 6*window, stateEnforcing)
	if e.GetActivePods() < 1 || len(e.GetBypassing()) != 0 {
		t.Errorf("normal path: %v", e)
	}
	waitFor(t, 5*time.Second, "an Enforcing Event after the bypass ended", func() bool {
		evs, _ := client.CoreV1().Events("netpol-system").List(context.Background(), metav1.ListOptions{})
		for _, ev := range evs.Items {
			if ev.Reason == "Enforcing" && ev.Type == corev1.EventTypeNormal {
				return true
			}
		}
		return false
	})
	// It stays so for several windows (no false alarm on a steady flow
	// whose connection the hooks saw windows ago).
	deadline := time.Now().Add(4 * window)
	for time.Now().Before(deadline) {
		if s := a.bypass.status(); s.GetState() != stateEnforcing {
			t.Fatalf("normal path turned to %v", s)
		}
		time.Sleep(window / 4)
	}
}

// TestBypassSelfCheckIdle: pods that exchange nothing (neighbour discovery
// only), a pod whose traffic only loops back inside it, and a hostNetwork
// pod never turn the node, whatever the CNI's datapath.
func TestBypassSelfCheckIdle(t *testing.T) {
	requirePrivileged(t)
	node := newSpoofNode(t, false)
	conntrackOn(t, node.feNS)
	a1, b1 := node.addPod(t, "a"), node.addPod(t, "b")
	redirectPeer(t, node, "redirect_peer", a1, b1)
	client := fake.NewClientset(pt.Namespace("shop"), pt.Namespace("kube-system"),
		onNodeSpoof(pt.Pod("shop", "a", pt.WithIP(a1.ip4.String()))), onNodeSpoof(pt.Pod("shop", "b", pt.WithIP(b1.ip4.String()))),
		onNodeSpoof(pt.Pod("kube-system", "proxy", pt.HostNetwork(), pt.WithIP("169.254.1.1"))))
	// a talks to itself over loopback, a lot.
	lo := listenLoopback(t, a1)
	udpStream(t, a1, lo)
	a, stop := startSpoofAgent(t, node, client, fmt.Sprintf("/sys/fs/bpf/netpol-agent-idle-%d", os.Getpid()),
		func(c *Config) { c.BypassWindow = 300 * time.Millisecond })
	// A few pings' worth of packets per window stays below the threshold.
	time.Sleep(10 * a.bypass.window)
	if e := a.bypass.status(); e.GetState() != stateEnforcing || e.GetBypassingPods() != 0 {
		t.Errorf("idle pods: %v", e)
	}
	if got := gaugeValue(t, a, "kubectl_netpol_bypass_active_pods"); got != 0 {
		t.Errorf("active pods metric = %v for idle pods", got)
	}
	if lo.Port() == 0 {
		t.Fatal("no loopback listener")
	}
	stop(true)
}

// listenLoopback receives UDP on the pod's loopback (and drops it).
func listenLoopback(t *testing.T, p *spoofPod) netip.AddrPort {
	t.Helper()
	var c *net.UDPConn
	err := p.in(func() error {
		var err error
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 16)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func waitEnforcement(t *testing.T, a *Agent, within time.Duration, state string) *flowv1.Enforcement {
	t.Helper()
	var e *flowv1.Enforcement
	waitFor(t, within, "enforcement "+state, func() bool {
		e = a.bypass.status()
		return e.GetState() == state
	})
	return e
}

func waitFor(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func enforcementMetric(t *testing.T, a *Agent) string {
	t.Helper()
	mfs, err := a.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "kubectl_netpol_enforcement" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetGauge().GetValue() == 1 {
				return m.GetLabel()[0].GetValue()
			}
		}
	}
	return ""
}

func TestIPReassembly(t *testing.T) {
	snmp := "Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos InDiscards InDelivers OutRequests OutDiscards OutNoRoutes ReasmTimeout ReasmReqds ReasmOKs ReasmFails FragOKs FragFails FragCreates OutTransmits\n" +
		"Ip: 1 64 100 0 0 0 0 0 100 100 0 0 0 12 4 0 0 0 0 100\n" +
		"Icmp: InMsgs\nIcmp: 0\n"
	if r, o := ipReassembly(snmp); r != 12 || o != 4 {
		t.Errorf("ipReassembly = %d, %d, want 12, 4", r, o)
	}
	if r, o := ipReassembly(""); r != 0 || o != 0 {
		t.Errorf("empty: %d, %d", r, o)
	}
}

// BenchmarkBypassSample is one window of the self-check on a node with 100
// pods (interfaces from the anti-spoofing guard): the link dump, the
// counters, and the flow ring of the window. The CNI identification
// (nodefacts) is timed too: it runs at start and every 5 minutes.
func BenchmarkBypassSample(b *testing.B) {
	a := podVethNode(b, 100, "bypassbench")
	if a.spoof.sync() {
		b.Fatalf("pods left waiting: %s", a.spoof.check().Detail)
	}
	a.bypass.sample(time.Now())
	start := time.Now()
	a.cni.refresh(context.Background())
	identify := time.Since(start)
	b.ResetTimer()
	for range b.N {
		a.bypass.sample(time.Now())
	}
	b.ReportMetric(float64(identify.Microseconds())/1000, "cni-identify-ms")
}

// TestCNIWatch: the agent identifies the CNI from its node's links and, where
// readable, the CNI's ConfigMap in kube-system; a forbidden read is not
// asked again.
func TestCNIWatch(t *testing.T) {
	requirePrivileged(t)
	node := newFeNS(t, "node")
	node.run(t, "ip", "link", "add", "cilium_host", "type", "veth", "peer", "name", "cilium_net")
	client := fake.NewClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "cilium-config"},
		Data: map[string]string{"routing-mode": "native", "enable-host-legacy-routing": "true", "enable-endpoint-routes": "true"}})
	reg := prometheus.NewRegistry()
	h, err := netns.GetFromName(node.name)
	if err != nil {
		t.Fatal(err)
	}
	w, err := newCNIWatch(h, client, nodefacts.Options{ConfDir: t.TempDir(), BPFFS: t.TempDir()}, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	r := w.refresh(context.Background())
	if r.String() != "Cilium (native routing, legacy host routing, endpoint routes)" || r.Coverage != cni.CoveragePartial {
		t.Errorf("with cilium-config: %s (%s), evidence %v", r, r.Coverage, r.Evidence)
	}
	if st := w.status(); st.GetName() != "Cilium" || st.GetCoverage() != "partial" {
		t.Errorf("status = %v", st)
	}

	forbidden := fake.NewClientset()
	calls := 0
	forbidden.PrependReactor("get", "configmaps", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
		calls++
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, "cilium-config", errors.New("no RBAC"))
	})
	w.client = forbidden
	for range 3 {
		r = w.refresh(context.Background())
	}
	if calls != 1 || r.String() != "Cilium (native routing)" {
		t.Errorf("forbidden: %d reads, result %s; want 1 read and the links alone", calls, r)
	}
}

// TestBypassSelfCheckPartial: one pair of pods redirected past netfilter,
// another over the normal path: the node is partially enforcing and only
// the redirected pod is named.
// TestBypassSelfCheckWithoutFlowEvents: with flow events off the hub holds
// no flow, so pods opening connections are explained by the datapath's
// stamp of their last new flow, never by a dump of the conntrack table
// (which costs the agent CPU in proportion to the node's connections); a
// pod whose only traffic is one long-lived flow still is, by the dump.
func TestBypassSelfCheckWithoutFlowEvents(t *testing.T) {
	node, client, a1, b1, c1, d1 := fourPodNode(t)
	const window = 400 * time.Millisecond
	a, stop := startSpoofAgent(t, node, client, fmt.Sprintf("/sys/fs/bpf/netpol-agent-noevents-%d", os.Getpid()),
		func(c *Config) { c.BypassWindow = window; c.Datapath.FlowEvents = false })
	defer stop(true)
	waitFor(t, 10*time.Second, "agent ready", func() bool { return a.ready.Load() })

	// a opens a new flow to b every 5 ms, each from a new socket.
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(done); wg.Wait() }()
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			_ = a1.in(func() error {
				c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(b1.ip4, 5000)))
				if err != nil {
					return err
				}
				defer c.Close()
				_, err = c.Write([]byte("x"))
				return err
			})
		}
	})
	time.Sleep(time.Second) // a's first window baseline
	dumps := a.bypass.conntrackDumps.Load()
	deadline := time.Now().Add(6 * window)
	for time.Now().Before(deadline) {
		if e := a.bypass.status(); e.GetState() != stateEnforcing {
			t.Fatalf("new flows without flow events: %v", e)
		}
		time.Sleep(window / 4)
	}
	if e := a.bypass.status(); e.GetActivePods() < 1 {
		t.Errorf("a's new flows made no pod active: %v", e)
	}
	if n := a.bypass.conntrackDumps.Load() - dumps; n != 0 {
		t.Errorf("%d conntrack dumps in 6 windows of pods opening new flows, want 0", n)
	}
	if hub := a.hub.Since(time.Time{}); len(hub) != 0 {
		t.Fatalf("flow events off, yet %d flows in the hub", len(hub))
	}

	// c's only flow is one long stream: after its first second no stamp
	// explains it, and the dump does.
	udpStream(t, c1, netip.AddrPortFrom(d1.ip4, 5000))
	dumps = a.bypass.conntrackDumps.Load()
	waitFor(t, 10*window, "a conntrack dump for the long-lived flow", func() bool { return a.bypass.conntrackDumps.Load() > dumps })
	if e := a.bypass.status(); e.GetState() != stateEnforcing {
		t.Errorf("long-lived flow: %v", e)
	}
}

// fourPodNode is a node with conntrack on and pods a, b, c and d in
// namespace shop, b and d receiving UDP on port 5000.
func fourPodNode(t *testing.T) (node *spoofNode, client *fake.Clientset, a1, b1, c1, d1 *spoofPod) {
	requirePrivileged(t)
	node = newSpoofNode(t, false)
	conntrackOn(t, node.feNS)
	a1, b1, c1, d1 = node.addPod(t, "a"), node.addPod(t, "b"), node.addPod(t, "c"), node.addPod(t, "d")
	var objs []k8sruntime.Object
	for _, p := range []*spoofPod{a1, b1, c1, d1} {
		o := onNodeSpoof(pt.Pod("shop", p.podName, pt.WithIP(p.ip4.String())))
		o.UID = types.UID("uid-" + p.podName)
		objs = append(objs, o)
	}
	client = fake.NewClientset(append(objs, pt.Namespace("shop"))...)
	udpsink.Listen(t, b1.in, netip.AddrPortFrom(b1.ip4, 5000))
	udpsink.Listen(t, d1.in, netip.AddrPortFrom(d1.ip4, 5000))
	return node, client, a1, b1, c1, d1
}

func TestBypassSelfCheckPartial(t *testing.T) {
	node, client, a1, b1, c1, d1 := fourPodNode(t)
	const window = 500 * time.Millisecond
	a, stop := startSpoofAgent(t, node, client, fmt.Sprintf("/sys/fs/bpf/netpol-agent-partial-%d", os.Getpid()),
		func(c *Config) { c.BypassWindow = window })
	defer stop(true)
	waitFor(t, 10*time.Second, "agent ready", func() bool { return a.ready.Load() })
	redirectPeer(t, node, "redirect_peer", a1, b1)
	udpStream(t, a1, netip.AddrPortFrom(b1.ip4, 5000))
	udpStream(t, c1, netip.AddrPortFrom(d1.ip4, 5000))
	e := waitEnforcement(t, a, 6*window, statePartial)
	t.Logf("partial: %s", e.GetDetail())
	if got := strings.Join(e.GetBypassing(), " "); got != "shop/a" || e.GetActivePods() < 2 {
		t.Errorf("bypassing %q of %d active pods, want shop/a only", got, e.GetActivePods())
	}
}
