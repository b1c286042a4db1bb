//go:build linux

package agent

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubectl-netpol/kubectl-netpol/internal/udpsink"
	pt "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
	"github.com/kubectl-netpol/kubectl-netpol/probe"
)

// spoofPod is a pod namespace wired to the test's node namespace.
type spoofPod struct {
	*feNS
	podName  string
	ip4, ip6 netip.Addr
	hostIf   string
}

// spoofNode is a node namespace in the routed /32 layout (a veth and host
// routes per pod) or the bridge layout (veths on br0, one subnet).
type spoofNode struct {
	*feNS
	bridge bool
	n      int
}

func newSpoofNode(t *testing.T, bridge bool) *spoofNode {
	t.Helper()
	n := &spoofNode{feNS: newFeNS(t, "node"), bridge: bridge}
	n.run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
		"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	if bridge {
		n.run(t, "ip", "link", "add", "br0", "type", "bridge")
		n.run(t, "ip", "addr", "add", "10.79.1.1/24", "dev", "br0")
		n.run(t, "ip", "-6", "addr", "add", "fd79:1::1/64", "dev", "br0", "nodad")
		n.run(t, "ip", "link", "set", "br0", "up")
	}
	return n
}

func (n *spoofNode) addPod(t *testing.T, name string) *spoofPod {
	t.Helper()
	n.n++
	p := &spoofPod{feNS: newFeNS(t, "pod"), podName: name, hostIf: fmt.Sprintf("sp%d", n.n)}
	p.run(t, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	n.run(t, "ip", "link", "add", p.hostIf, "type", "veth", "peer", "name", "eth0", "netns", p.name)
	n.run(t, "ip", "link", "set", p.hostIf, "up")
	p.run(t, "ip", "link", "set", "eth0", "up")
	if n.bridge {
		p.ip4 = netip.MustParseAddr(fmt.Sprintf("10.79.1.%d", 10+n.n))
		p.ip6 = netip.MustParseAddr(fmt.Sprintf("fd79:1::%x", 0x10+n.n))
		n.run(t, "ip", "link", "set", p.hostIf, "master", "br0")
		p.run(t, "ip", "addr", "add", p.ip4.String()+"/24", "dev", "eth0")
		p.run(t, "ip", "-6", "addr", "add", p.ip6.String()+"/64", "dev", "eth0", "nodad")
		return p
	}
	p.ip4 = netip.MustParseAddr(fmt.Sprintf("10.79.0.%d", 10+n.n))
	p.ip6 = netip.MustParseAddr(fmt.Sprintf("fd79::%x", 0x10+n.n))
	n.run(t, "ip", "addr", "add", "169.254.1.1/32", "dev", p.hostIf)
	n.run(t, "ip", "-6", "addr", "add", "fe80::1/64", "dev", p.hostIf, "nodad")
	n.run(t, "ip", "route", "add", p.ip4.String()+"/32", "dev", p.hostIf)
	n.run(t, "ip", "-6", "route", "add", p.ip6.String()+"/128", "dev", p.hostIf)
	p.run(t, "ip", "addr", "add", p.ip4.String()+"/32", "dev", "eth0")
	p.run(t, "ip", "-6", "addr", "add", p.ip6.String()+"/128", "dev", "eth0", "nodad")
	p.run(t, "ip", "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
	p.run(t, "ip", "route", "add", "10.79.0.0/16", "via", "169.254.1.1", "dev", "eth0", "onlink")
	p.run(t, "ip", "-6", "route", "add", "fd79::/32", "via", "fe80::1", "dev", "eth0")
	return p
}

func (n *spoofNode) ifindex(t *testing.T, p *spoofPod) int {
	t.Helper()
	var idx int
	err := n.in(func() error {
		ifc, err := net.InterfaceByName(p.hostIf)
		if err == nil {
			idx = ifc.Index
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// podSink receives UDP on port 5000 of pod p, on both its addresses.
type podSink struct{ *udpsink.Sink }

func listenSink(t *testing.T, p *spoofPod) podSink {
	return podSink{udpsink.Listen(t, p.in, netip.AddrPortFrom(p.ip4, 5000), netip.AddrPortFrom(p.ip6, 5000))}
}

// reaches reports whether UDP from pod p with source src arrives at pod to.
func (s podSink) reaches(t *testing.T, p *spoofPod, src netip.Addr, to *spoofPod) bool {
	t.Helper()
	dst := to.ip4
	if src.Is6() {
		dst = to.ip6
	}
	return s.Reaches(t, p.in, src, netip.AddrPortFrom(dst, 5000))
}

// TestAntiSpoofing runs the agent on a node namespace, routed and bridged:
// it finds every local pod's interface from the pods in the API, guards it
// with the pod's addresses (IPv4 and IPv6), keeps a found interface when
// another pod claims the address on the bridge, keeps enforcing while it is
// stopped and hands the guards to the next agent, reports the pods whose
// interface it cannot find (or must not guard) without failing the others,
// and removes a gone pod's link and entries; on uninstall nothing is left.
func TestAntiSpoofing(t *testing.T) {
	requirePrivileged(t)
	for _, bridge := range []bool{false, true} {
		t.Run(map[bool]string{false: "routed", true: "bridge"}[bridge], func(t *testing.T) {
			testAntiSpoofing(t, bridge)
		})
	}
}

func testAntiSpoofing(t *testing.T, bridge bool) {
	node := newSpoofNode(t, bridge)
	db, web, other := node.addPod(t, "db"), node.addPod(t, "web"), node.addPod(t, "other")
	ghost := netip.MustParseAddr("10.79.0.99") // a pod whose interface does not exist
	if bridge {
		ghost = netip.MustParseAddr("10.79.1.99")
	}
	pod := func(p *spoofPod) *corev1.Pod {
		o := onNodeSpoof(pt.Pod("shop", p.podName, pt.WithIP(p.ip4.String(), p.ip6.String())))
		o.UID = types.UID("uid-" + p.podName)
		return o
	}
	ghostPod := onNodeSpoof(pt.Pod("shop", "ghost", pt.WithIP(ghost.String())))
	// A pod claiming the node's own address (its route is local): never
	// guarded, or the node's loopback or bridge would drop its own traffic.
	local := "169.254.1.1"
	if bridge {
		local = "10.79.1.1"
	}
	localPod := onNodeSpoof(pt.Pod("shop", "local", pt.WithIP(local)))
	elsewhere := pt.Pod("shop", "elsewhere", pt.WithIP("10.79.0.200"))
	elsewhere.Spec.NodeName = "another-node"
	host := onNodeSpoof(pt.Pod("kube-system", "proxy", pt.HostNetwork(), pt.WithIP("10.79.1.1")))
	client := fake.NewClientset(pt.Namespace("shop"), pt.Namespace("kube-system"),
		pod(db), pod(web), pod(other), ghostPod, localPod, elsewhere, host)

	// Without the agent, web can send as other.
	sink := listenSink(t, db)
	for _, p := range []*spoofPod{web, other} {
		for _, src := range []netip.Addr{p.ip4, p.ip6} {
			if !sink.reaches(t, p, src, db) {
				t.Fatalf("%s -> db from %s does not pass before the agent runs: the layout is broken", p.podName, src)
			}
		}
	}

	pinRoot := fmt.Sprintf("/sys/fs/bpf/netpol-agent-spoof-%d-%v", os.Getpid(), bridge)
	t.Cleanup(func() { os.RemoveAll(pinRoot) })
	a, stop := startSpoofAgent(t, node, client, pinRoot)
	idb, iweb, iother := node.ifindex(t, db), node.ifindex(t, web), node.ifindex(t, other)
	want := map[int][]netip.Addr{idb: {db.ip4, db.ip6}, iweb: {web.ip4, web.ip6}, iother: {other.ip4, other.ip6}}
	waitGuards(t, a, want)

	before, _ := a.probe.Stats()
	for _, src := range []netip.Addr{web.ip4, web.ip6} {
		if !sink.reaches(t, web, src, db) {
			t.Errorf("web -> db from its own %s is dropped", src)
		}
	}
	// web takes other's addresses: on the bridge it now also answers ARP
	// and neighbour solicitations for them.
	web.run(t, "ip", "addr", "add", other.ip4.String()+"/32", "dev", "eth0")
	web.run(t, "ip", "-6", "addr", "add", other.ip6.String()+"/128", "dev", "eth0", "nodad")
	for _, src := range []netip.Addr{other.ip4, other.ip6} {
		if sink.reaches(t, web, src, db) {
			t.Errorf("web -> db forging other's %s passes", src)
		}
	}
	if after, _ := a.probe.Stats(); after.SpoofDropped-before.SpoofDropped < 20 {
		t.Errorf("spoof drops counted: %d, want >= 20", after.SpoofDropped-before.SpoofDropped)
	}
	if bridge {
		// A forged ARP reply and neighbour advertisement convinced the node
		// that web has other's addresses: the agent keeps the interface it
		// found.
		var mac string
		web.in(func() error {
			ifc, err := net.InterfaceByName("eth0")
			if err == nil {
				mac = ifc.HardwareAddr.String()
			}
			return err
		})
		for _, ip := range []netip.Addr{other.ip4, other.ip6} {
			node.run(t, "ip", "neigh", "replace", ip.String(), "lladdr", mac, "dev", "br0", "nud", "reachable")
		}
		time.Sleep(3 * a.spoof.resync)
		waitGuards(t, a, want)
	}
	// The agent stops (a restart or an upgrade): the guards stay, and the
	// next agent keeps them (on the bridge: despite the poisoned
	// neighbour table, from the pinned guards).
	stop(false)
	if sink.reaches(t, web, other.ip4, db) {
		t.Error("with the agent stopped, web -> db forging other's address passes")
	}
	a, stop = startSpoofAgent(t, node, client, pinRoot)
	waitGuards(t, a, want)
	if !sink.reaches(t, other, other.ip4, db) {
		t.Error("other -> db from its own address is dropped after web claimed it")
	}

	// The ghost and local pods are reported, and did not stop the others.
	// (The pins the previous agent left satisfy waitGuards before this
	// agent's first reconcile: wait for that reconcile.)
	waitFor(t, 10*time.Second, "the restarted agent's first reconcile", func() bool {
		return !a.spoof.check().Ok
	})
	check := a.spoof.check()
	t.Logf("anti-spoofing check: %s", check.Detail)
	if check.Ok || !strings.Contains(check.Detail, "shop/ghost") || !strings.Contains(check.Detail, "shop/local") ||
		strings.Contains(check.Detail, "proxy") || strings.Contains(check.Detail, "elsewhere") {
		t.Errorf("status check = %v %q, want not ok naming shop/ghost and shop/local only", check.Ok, check.Detail)
	}
	if got := gaugeValue(t, a, "kubectl_netpol_spoof_unguarded_pods"); got != 2 {
		t.Errorf("unguarded pods metric = %v, want 2", got)
	}
	if got := gaugeValue(t, a, "kubectl_netpol_spoof_guarded_interfaces"); got != 3 {
		t.Errorf("guarded interfaces metric = %v, want 3", got)
	}

	// other is deleted: its link and entries go (its veth still exists).
	if err := client.CoreV1().Pods("shop").Delete(context.Background(), "other", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	delete(want, iother)
	waitGuards(t, a, want)
	if _, err := os.Stat(filepath.Join(a.probe.PinDir(), "links", "node", fmt.Sprintf("spoof_%d", iother))); !os.IsNotExist(err) {
		t.Errorf("other's link pin is still there: %v", err)
	}
	stray := netip.MustParseAddr("10.79.0.250")
	if bridge {
		stray = netip.MustParseAddr("10.79.1.250")
	}
	other.run(t, "ip", "addr", "add", stray.String()+"/32", "dev", "eth0")
	if !sink.reaches(t, other, stray, db) {
		t.Error("other's interface still drops what it sends with other's pod gone (its guard is not removed)")
	}
	if sink.reaches(t, web, other.ip4, db) {
		t.Error("web -> db forging other's address passes with other gone")
	}
	// web's sandbox goes (its veth with it) while the pod object stays.
	node.run(t, "ip", "link", "del", web.hostIf)
	delete(want, iweb)
	waitGuards(t, a, want)

	// Restarted with anti-spoofing off (an upgrade with install
	// --anti-spoofing=false): the guards the previous agent pinned go with
	// their entries, or the pods it was turned off for would stay checked.
	if len(want) == 0 {
		t.Fatal("no guard left to remove: the step below would prove nothing")
	}
	stop(false)
	a, stop = startSpoofAgent(t, node, client, pinRoot, func(c *Config) { c.AntiSpoofing = false })
	guards, err := a.probe.Guards("node")
	entries, err2 := a.probe.GuardEntries()
	if err != nil || err2 != nil || len(guards) != 0 || len(entries) != 0 {
		t.Errorf("anti-spoofing off: guards %v, entries %v (%v, %v), want none", guards, entries, err, err2)
	}

	stop(true)
	if _, err := os.Stat(a.probe.PinDir()); !os.IsNotExist(err) {
		t.Errorf("after the agent uninstalled, %s is still there: %v", a.probe.PinDir(), err)
	}
}

const spoofNodeName = "spoof-node"

// startSpoofAgent runs the agent with anti-spoofing on the node namespace;
// stop(uninstall) ends it, removing everything or leaving it pinned.
func startSpoofAgent(t *testing.T, node *spoofNode, client *fake.Clientset, pinRoot string, tweaks ...func(*Config)) (*Agent, func(uninstall bool)) {
	t.Helper()
	var a *Agent
	cfg := Config{Client: client, NodeName: spoofNodeName, PinRoot: pinRoot, Datapath: probe.DefaultConfig,
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", AntiSpoofing: true, CNIConfDir: t.TempDir(), BPFFSRoot: t.TempDir()}
	for _, tw := range tweaks {
		tw(&cfg)
	}
	err := node.in(func() error {
		var err error
		a, err = New(cfg)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if a.spoof != nil {
		a.spoof.resync, a.spoof.retry, a.spoof.grace = 200*time.Millisecond, 100*time.Millisecond, 0
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	var uninstall atomic.Bool
	go func() { ran <- a.Run(ctx, func(context.Context) bool { return uninstall.Load() }) }()
	var once sync.Once
	stop := func(un bool) {
		once.Do(func() {
			uninstall.Store(un)
			cancel()
			if err := <-ran; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(func() { stop(true) })
	return a, stop
}

func onNodeSpoof(p *corev1.Pod) *corev1.Pod { p.Spec.NodeName = spoofNodeName; return p }

// waitGuards waits until the guarded interfaces, and every entry in the
// map, are exactly want.
func waitGuards(t *testing.T, a *Agent, want map[int][]netip.Addr) {
	t.Helper()
	for _, v := range want {
		slices.SortFunc(v, netip.Addr.Compare)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		guards, err1 := a.probe.Guards("node")
		entries, err2 := a.probe.GuardEntries()
		if err1 == nil && err2 == nil && maps.EqualFunc(guards, want, slices.Equal) && maps.EqualFunc(entries, want, slices.Equal) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("guards %v, map entries %v (errors %v, %v); want %v; status: %s", guards, entries, err1, err2, want, a.spoof.check().Detail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func gaugeValue(t *testing.T, a *Agent, name string) float64 {
	t.Helper()
	mfs, err := a.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// BenchmarkSpoofSync is one anti-spoofing reconcile of a routed node with
// 100 pods when nothing changed (discovery of every pod, reading the pinned
// guards and the map back); first-sync-ms is the reconcile that attaches
// all 100 guards.
func BenchmarkSpoofSync(b *testing.B) {
	const pods = 100
	a := podVethNode(b, pods, "spoofbench")
	start := time.Now()
	if a.spoof.sync() {
		b.Fatalf("first reconcile left pods waiting: %s", a.spoof.check().Detail)
	}
	first := time.Since(start)
	if g, _ := a.probe.Guards("node"); len(g) != pods {
		b.Fatalf("%d interfaces guarded, want %d", len(g), pods)
	}
	b.ResetTimer()
	for range b.N {
		if a.spoof.sync() {
			b.Fatal("a pod went missing")
		}
	}
	b.ReportMetric(float64(first.Microseconds())/1000, "first-sync-ms")
}

// podVethNode is a routed node namespace with n pod veths (their peers in one
// namespace) and an agent with anti-spoofing whose informers have synced;
// name tells its pins apart.
func podVethNode(b *testing.B, n int, name string) *Agent {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			b.Fatal("CI is set but the benchmark needs root (BPF, network namespaces)")
		}
		b.Skip("needs root (BPF, network namespaces)")
	}
	node, peers := newFeNS(b, "node"), newFeNS(b, "pods")
	var batch strings.Builder
	objs := []k8sruntime.Object{pt.Namespace("shop")}
	for i := range n {
		ip := fmt.Sprintf("10.79.%d.%d", 2+i/200, 10+i%200)
		fmt.Fprintf(&batch, "link add bs%d type veth peer name p%d netns %s\nlink set bs%d up\nroute add %s/32 dev bs%d\n", i, i, peers.name, i, ip, i)
		p := onNodeSpoof(pt.Pod("shop", fmt.Sprintf("pod-%d", i), pt.WithIP(ip)))
		p.UID = types.UID(fmt.Sprintf("uid-%d", i))
		objs = append(objs, p)
	}
	f := filepath.Join(b.TempDir(), "links.batch")
	if err := os.WriteFile(f, []byte(batch.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	node.run(b, "ip", "-batch", f)
	pinRoot := fmt.Sprintf("/sys/fs/bpf/netpol-agent-%s-%d", name, os.Getpid())
	var a *Agent
	err := node.in(func() error {
		var err error
		a, err = New(Config{Client: fake.NewClientset(objs...), NodeName: spoofNodeName, PinRoot: pinRoot,
			Datapath: probe.DefaultConfig, AntiSpoofing: true, CNIConfDir: b.TempDir(), BPFFSRoot: b.TempDir()})
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	b.Cleanup(func() {
		close(stop)
		a.spoof.close()
		a.closeChecks()
		a.probe.Uninstall()
		os.RemoveAll(pinRoot)
	})
	if !a.cluster.Start(stop) {
		b.Fatal("informer caches did not sync")
	}
	return a
}
