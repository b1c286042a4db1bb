//go:build linux

package agent

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/ti-mo/conntrack"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/internal/privileged"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
	pt "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
	"github.com/kubectl-netpol/kubectl-netpol/probe"
)

// requirePrivileged fails in CI (env CI set) and skips elsewhere when the
// test cannot create network namespaces and load BPF programs.
func requirePrivileged(t testing.TB) {
	t.Helper()
	privileged.Require(t, "agent", "ip", "nft")
}

var feSeq atomic.Int64

// feNS is a named network namespace the test created (removed at cleanup).
type feNS struct {
	name string
	h    netns.NsHandle
}

func newFeNS(t testing.TB, role string) *feNS {
	t.Helper()
	name := fmt.Sprintf("%sfe%d-%s%d", testNSPrefix(), os.Getpid(), role, feSeq.Add(1))
	return &feNS{name: name, h: privileged.NewNamedNS(t, name)}
}

func (n *feNS) run(t testing.TB, args ...string) {
	t.Helper()
	privileged.RunIn(t, n.name, args...)
}

// in runs fn inside the namespace; sockets made by fn stay in it.
func (n *feNS) in(fn func() error) error { return privileged.In(n.h, fn) }

// feNode is a "node" namespace with conntrack on and pods routed to it
// over veths (/32 routes, no default route anywhere).
type feNode struct {
	*feNS
	pods int
}

const feNodeName = "fe-node"

func newFeNode(t testing.TB) *feNode {
	t.Helper()
	n := &feNode{feNS: newFeNS(t, "node")}
	n.run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	conntrackOn(t, n.feNS)
	// Counters on: the summaries' packets and bytes.
	n.run(t, "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1")
	return n
}

// addPod wires a pod namespace with address ip to the node.
func (n *feNode) addPod(t testing.TB, ip string) *feNS {
	t.Helper()
	n.pods++
	p := newFeNS(t, "pod")
	host := fmt.Sprintf("fe%d", n.pods)
	n.run(t, "ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", p.name)
	n.run(t, "ip", "link", "set", host, "up")
	n.run(t, "ip", "addr", "add", "169.254.1.1/32", "dev", host)
	n.run(t, "ip", "route", "add", ip+"/32", "dev", host)
	p.run(t, "ip", "link", "set", "eth0", "up")
	p.run(t, "ip", "addr", "add", ip+"/32", "dev", "eth0")
	p.run(t, "ip", "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
	p.run(t, "ip", "route", "add", "10.78.0.0/16", "via", "169.254.1.1", "dev", "eth0", "onlink")
	return p
}

// startFlowEndAgent runs the agent's datapath, informers, event reader and
// flow-end summaries for the node namespace, with the given cluster.
func startFlowEndAgent(t testing.TB, node *feNode, objs ...k8sruntime.Object) *Agent {
	t.Helper()
	return startFlowEndAgentFrom(t, node, FlowEndSourceAuto, objs...)
}

// startFlowEndAgentFrom is startFlowEndAgent with summaries from source
// (Config.FlowEndSource).
func startFlowEndAgentFrom(t testing.TB, node *feNode, source string, objs ...k8sruntime.Object) *Agent {
	t.Helper()
	return startFlowEndAgentWith(t, node, func(c *Config) { c.FlowEndSource = source }, objs...)
}

// startFlowEndAgentWith is startFlowEndAgent with tweak applied to the
// agent's Config.
func startFlowEndAgentWith(t testing.TB, node *feNode, tweak func(*Config), objs ...k8sruntime.Object) *Agent {
	t.Helper()
	pinRoot := fmt.Sprintf("/sys/fs/bpf/netpol-agent-fe-%d", os.Getpid())
	var a *Agent
	err := node.in(func() error {
		var err error
		cfg := Config{Client: fake.NewClientset(objs...), NodeName: feNodeName, PinRoot: pinRoot,
			Datapath: probe.DefaultConfig, FlowEndSummaries: true, ReadPoll: 10 * time.Millisecond}
		tweak(&cfg)
		a, err = New(cfg)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stop := make(chan struct{})
	var stopEnds func()
	t.Cleanup(func() {
		if stopEnds != nil {
			stopEnds()
		}
		cancel()
		close(stop)
		a.queue.ShutDown()
		if err := a.probe.Uninstall(); err != nil {
			t.Errorf("uninstall: %v", err)
		}
		os.RemoveAll(pinRoot)
	})
	if !a.cluster.Start(stop) {
		t.Fatal("informer caches did not sync")
	}
	go func() {
		for a.processNext() {
		}
	}()
	a.enqueue()
	deadline := time.Now().Add(10 * time.Second)
	for a.probe.Applied() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the first policy apply did not happen within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	rd, err := a.probe.NewReader(a.cfg.ReadPoll)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); a.readEvents(ctx, rd) }()
	t.Cleanup(func() { cancel(); <-done; rd.Close() })
	stopEnds, err = a.startFlowEnds(int(node.h))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// collect is a server stream that keeps what the hub sends.
type collect struct {
	grpc.ServerStream
	flows []*flowv1.Flow
}

func (c *collect) Send(b *flowv1.FlowBatch) error {
	c.flows = append(c.flows, b.GetFlows()...)
	return nil
}
func (c *collect) Context() context.Context { return context.Background() }

// ends returns the END flows in the hub's history.
func ends(t testing.TB, a *Agent) []*flowv1.Flow {
	t.Helper()
	var c collect
	if err := a.hub.ObserveBatches(&flowv1.ObserveRequest{Allowlist: []*flowv1.FlowFilter{
		{Type: []flowv1.EventType{flowv1.EventType_EVENT_TYPE_END}}}}, &c); err != nil {
		t.Fatal(err)
	}
	return c.flows
}

// waitEnd waits for the END flow of the connection from src:sport (proto).
// tick, when not nil, runs between looks.
func waitEnd(t testing.TB, a *Agent, proto flowv1.Protocol, src string, sport int, within time.Duration, tick func()) *flowv1.Flow {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if tick != nil {
			tick()
		}
		var found []*flowv1.Flow
		for _, f := range ends(t, a) {
			if f.GetL4().GetProtocol() == proto && f.GetIp().GetSource() == src && f.GetL4().GetSourcePort() == uint32(sport) {
				found = append(found, f)
			}
		}
		if len(found) > 1 {
			t.Fatalf("%d END flows for one connection: %v", len(found), found)
		}
		if len(found) == 1 {
			return found[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no END flow for %s %s:%d within %v (flows: %v)", proto, src, sport, within, ends(t, a))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFlowEndSummaries drives real connections between pod namespaces
// through a node namespace that runs the agent's datapath, and checks the
// summaries published when conntrack destroys their entries.
//
// How entries are destroyed: TCP by expiry. The node namespace's timeouts
// for the closing states (TIME_WAIT, CLOSE, ...) are one second instead of
// minutes; the kernel's garbage collector, shared by every namespace, may
// still take up to a minute to visit an expired entry, so the test lists
// the table (ctnetlink, as `conntrack -L`), which reaps expired entries on
// the way, the same DESTROY as the collector's. UDP by deleting the entry
// over ctnetlink (as `conntrack -D` and the agent's revocation do).
func TestFlowEndSummaries(t *testing.T) {
	requirePrivileged(t)
	node := newFeNode(t)
	for _, s := range []string{"tcp_timeout_time_wait", "tcp_timeout_close", "tcp_timeout_fin_wait",
		"tcp_timeout_last_ack", "tcp_timeout_close_wait"} {
		node.run(t, "sysctl", "-qw", "net.netfilter.nf_conntrack_"+s+"=1")
	}
	const aIP, cIP, xIP, yIP = "10.78.0.11", "10.78.0.12", "10.78.0.21", "10.78.0.22"
	podA, podC := node.addPod(t, aIP), node.addPod(t, cIP)
	podX, podY := node.addPod(t, xIP), node.addPod(t, yIP) // not pods of this node

	ns := pt.Namespace("shop")
	a := onNodeFE(pt.Pod("shop", "a", pt.WithLabels("app=db"), pt.WithIP(aIP)))
	c := onNodeFE(pt.Pod("shop", "c", pt.WithLabels("app=web"), pt.WithIP(cIP)))
	// db admits web on TCP 8080 (rule 0) and UDP 5353 (rule 1).
	pol := pt.Policy("shop", "db-ingress", pt.Selecting(pt.Sel("app=db")),
		pt.IngressRule(pt.Peers(pt.PodPeer(pt.Sel("app=web"))), pt.Port(corev1.ProtocolTCP, 8080)),
		pt.IngressRule(pt.Peers(pt.PodPeer(pt.Sel("app=web"))), pt.Port(corev1.ProtocolUDP, 5353)))
	ag := startFlowEndAgent(t, node, ns, a, c, pol)

	// TCP c -> a: a known payload, then both sides close.
	const payload = 100_000
	got := make(chan int, 1)
	var l net.Listener
	if err := podA.in(func() (err error) { l, err = net.Listen("tcp", aIP+":8080"); return err }); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		conn, err := l.Accept()
		if err != nil {
			got <- -1
			return
		}
		n, _ := io.Copy(io.Discard, conn)
		conn.Close()
		got <- int(n)
	}()
	var conn net.Conn
	if err := podC.in(func() (err error) { conn, err = net.DialTimeout("tcp", aIP+":8080", 5*time.Second); return err }); err != nil {
		t.Fatal(err)
	}
	sport := conn.LocalAddr().(*net.TCPAddr).Port
	if _, err := conn.Write(make([]byte, payload)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if n := <-got; n != payload {
		t.Fatalf("server read %d bytes, want %d", n, payload)
	}
	start := time.Now()
	f := waitEnd(t, ag, flowv1.Protocol_PROTOCOL_TCP, cIP, sport, 30*time.Second, func() { node.reapExpired(t) })
	t.Logf("TCP END %v after the close: %v", time.Since(start).Round(time.Millisecond), f)
	if f.GetIp().GetDestination() != aIP || f.GetL4().GetDestinationPort() != 8080 || f.GetNode() != feNodeName ||
		f.GetVerdict() != flowv1.Verdict_VERDICT_ALLOWED {
		t.Errorf("tuple, node or verdict: %v", f)
	}
	if f.GetSource().GetPod() != "c" || f.GetSource().GetLabels()["app"] != "web" ||
		f.GetDestination().GetPod() != "a" || f.GetDestination().GetNamespace() != "shop" {
		t.Errorf("endpoints: source %v destination %v", f.GetSource(), f.GetDestination())
	}
	if f.GetBytes() < payload || f.GetPackets() == 0 {
		t.Errorf("counters: %d bytes (want >= %d), %d packets", f.GetBytes(), payload, f.GetPackets())
	}
	checkAllowedBy(t, f, "db-ingress", 0)
	if f.GetDuration() == nil || f.GetDuration().AsDuration() <= 0 {
		t.Errorf("duration %v: the new-flow event of the connection was not matched", f.GetDuration())
	}

	// UDP c -> a: one datagram each way, then the entry is deleted.
	var pc net.PacketConn
	if err := podA.in(func() (err error) { pc, err = net.ListenPacket("udp", aIP+":5353"); return err }); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 2048)
		n, from, err := pc.ReadFrom(buf)
		if err == nil {
			pc.WriteTo(buf[:n], from)
		}
	}()
	var uc net.Conn
	if err := podC.in(func() (err error) { uc, err = net.Dial("udp", aIP+":5353"); return err }); err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if _, err := uc.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	uc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := uc.Read(make([]byte, 2048)); err != nil {
		t.Fatalf("UDP echo: %v", err)
	}
	usport := uc.LocalAddr().(*net.UDPAddr).Port
	node.deleteCT(t, unix.IPPROTO_UDP, cIP, usport)
	u := waitEnd(t, ag, flowv1.Protocol_PROTOCOL_UDP, cIP, usport, 10*time.Second, nil)
	if u.GetIp().GetDestination() != aIP || u.GetL4().GetDestinationPort() != 5353 ||
		u.GetSource().GetPod() != "c" || u.GetDestination().GetPod() != "a" ||
		u.GetPackets() != 2 || u.GetBytes() < 2000 {
		t.Errorf("UDP summary (want 2 packets, >= 2000 bytes, c -> a:5353): %v", u)
	}
	checkAllowedBy(t, u, "db-ingress", 1)
	// Deleted right after its start: the end still finds the start's record.
	if u.GetDuration() == nil || u.GetDuration().AsDuration() <= 0 {
		t.Errorf("UDP duration %v: the end was handled before the connection's new-flow event", u.GetDuration())
	}

	// x -> y: neither is a pod of this node, so the datapath judged nothing.
	var xc net.Conn
	var yl net.PacketConn
	if err := podY.in(func() (err error) { yl, err = net.ListenPacket("udp", yIP+":5353"); return err }); err != nil {
		t.Fatal(err)
	}
	defer yl.Close()
	if err := podX.in(func() (err error) { xc, err = net.Dial("udp", yIP+":5353"); return err }); err != nil {
		t.Fatal(err)
	}
	defer xc.Close()
	xc.Write([]byte("x"))
	yl.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := yl.ReadFrom(make([]byte, 16)); err != nil {
		t.Fatalf("x -> y: %v", err)
	}
	xsport := xc.LocalAddr().(*net.UDPAddr).Port
	node.deleteCT(t, unix.IPPROTO_UDP, xIP, xsport)
	// x -> a:8080 is denied (db admits only web): the datapath drops it
	// before conntrack confirms the entry, so no connection ever ends.
	if err := podX.in(func() error {
		dc, err := net.DialTimeout("tcp", aIP+":8080", 300*time.Millisecond)
		if err == nil {
			dc.Close()
			return fmt.Errorf("x reached a:8080 through a default-deny ingress policy")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The TCP connection's conntrack entry expires (its closing states
	// last a second here) and is reaped: where its END came from the socket
	// (kernel-tcp), the entry's DESTROY event is dropped by the socket
	// filter and no second END appears.
	time.Sleep(time.Until(start.Add(1500 * time.Millisecond)))
	node.reapExpired(t)
	// The c -> a UDP end above proves deletions arrive within ms; a second
	// marker deletion (c -> a again) orders the queue: once it is out, the
	// x -> y end has been seen and filtered.
	marker := sendUDP(t, podC, aIP+":5353")
	node.deleteCT(t, unix.IPPROTO_UDP, cIP, marker)
	waitEnd(t, ag, flowv1.Protocol_PROTOCOL_UDP, cIP, marker, 10*time.Second, nil)
	// An end without a recorded start is parked up to 2 polls + 50 ms.
	time.Sleep(2*ag.cfg.ReadPoll + 100*time.Millisecond)
	tcpEnds := 0
	for _, f := range ends(t, ag) {
		if f.GetIp().GetSource() == xIP || f.GetL4().GetSourcePort() == uint32(xsport) && f.GetIp().GetDestination() == yIP {
			t.Errorf("END flow for traffic between two addresses that are not local pods: %v", f)
		}
		if f.GetL4().GetProtocol() == flowv1.Protocol_PROTOCOL_TCP && f.GetL4().GetSourcePort() == uint32(sport) {
			tcpEnds++
		}
	}
	if tcpEnds != 1 {
		t.Errorf("%d END flows for the TCP connection c -> a, want 1", tcpEnds)
	}
	// This kernel refuses fentry programs and loads tp_btf ones: TCP from
	// the socket states, the rest from netlink.
	check := ag.flowEndSourceCheck()
	if !check.GetOk() || !strings.Contains(check.GetDetail(), "tcp from kernel-tcp") ||
		!strings.Contains(check.GetDetail(), "udp,sctp,icmp from netlink") {
		t.Errorf("flow-end-source check: %v", check)
	}
	if got := labelledGauge(t, ag, "kubectl_netpol_flow_end_source", map[string]string{"source": "kernel-tcp", "protocols": "tcp"}) +
		labelledGauge(t, ag, "kubectl_netpol_flow_end_source", map[string]string{"source": "netlink", "protocols": "udp,sctp,icmp"}); got != 2 {
		t.Errorf("kubectl_netpol_flow_end_source: %v of the 2 series for kernel-tcp and netlink", got)
	}
	if lost := counterSum(t, ag, "kubectl_netpol_flow_end_events_lost_total"); lost != 0 {
		t.Errorf("%v flow-end events lost", lost)
	}
}

func onNodeFE(p *corev1.Pod) *corev1.Pod { p.Spec.NodeName = feNodeName; return p }

// sendUDP sends one datagram from pod to addr and returns the source port.
func sendUDP(t testing.TB, pod *feNS, addr string) int {
	t.Helper()
	var c net.Conn
	if err := pod.in(func() (err error) { c, err = net.Dial("udp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("m")); err != nil {
		t.Fatal(err)
	}
	return c.LocalAddr().(*net.UDPAddr).Port
}

// deleteCT deletes the node's conntrack entries of src:sport over ctnetlink
// (as `conntrack -D` does); the kernel reports each as a DESTROY event.
func (n *feNS) deleteCT(t testing.TB, proto uint8, src string, sport int) {
	t.Helper()
	c, err := conntrack.Dial(&netlink.Config{NetNS: int(n.h)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	flows, err := c.Dump(nil)
	if err != nil {
		t.Fatal(err)
	}
	want, deleted := netip.MustParseAddr(src), 0
	for _, f := range flows {
		o := f.TupleOrig
		if o.Proto.Protocol == proto && o.IP.SourceAddress.Unmap() == want && o.Proto.SourcePort == uint16(sport) {
			if err := c.Delete(f); err != nil {
				t.Fatalf("deleting the conntrack entry %v: %v", o, err)
			}
			deleted++
		}
	}
	if deleted == 0 {
		t.Fatalf("no conntrack entry from %s:%d in %s", src, sport, n.name)
	}
}

// counterSum is a counter of the agent's registry, summed over its labels.
func counterSum(t testing.TB, a *Agent, name string) float64 {
	t.Helper()
	mfs, err := a.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// labelledGauge is the gauge name of the agent's registry with exactly
// the labels want, or 0 when there is none.
func labelledGauge(t testing.TB, a *Agent, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := a.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if maps.Equal(got, want) {
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// checkAllowedBy wants f attributed to rule index of policy name (ingress).
func checkAllowedBy(t testing.TB, f *flowv1.Flow, name string, index uint32) {
	t.Helper()
	by := f.GetAllowedBy()
	if f.GetReason() != flowv1.Reason_REASON_ALLOWED_BY_RULE || len(by) != 1 || by[0].GetName() != name ||
		by[0].RuleIndex == nil || by[0].GetRuleIndex() != index || by[0].GetDirection() != flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS {
		t.Errorf("want allowed by %s ingress rule %d: reason %v, allowed_by %v", name, index, f.GetReason(), by)
	}
}

// ctFlow is a conntrack entry as the kernel reports it: the original tuple
// (before NAT) and the reply tuple (after DNAT its source is the backend).
func ctFlow(proto uint8, src string, sport uint16, dst string, dport uint16, backend string, bport uint16) *conntrack.Flow {
	f := &conntrack.Flow{}
	f.TupleOrig.Proto = conntrack.ProtoTuple{Protocol: proto, SourcePort: sport, DestinationPort: dport}
	f.TupleOrig.IP = conntrack.IPTuple{SourceAddress: netip.MustParseAddr(src), DestinationAddress: netip.MustParseAddr(dst)}
	f.TupleReply.Proto = conntrack.ProtoTuple{Protocol: proto, SourcePort: bport, DestinationPort: sport}
	f.TupleReply.IP = conntrack.IPTuple{SourceAddress: netip.MustParseAddr(backend), DestinationAddress: netip.MustParseAddr(src)}
	return f
}

// A conntrack entry maps to the summary of the new-flow event's enrichment:
// the pre-NAT destination is the Service, the reply's source the backend;
// the start's record (pods, rules) wins over a look-up at the end.
func TestEndFlowMapping(t *testing.T) {
	db := onNode(pt.Pod("shop", "db", pt.WithLabels("app=db"), pt.WithIP("10.0.0.5", "fd00::5")))
	web := onNode(pt.Pod("shop", "web", pt.WithLabels("app=web"), pt.WithIP("10.0.0.6", "fd00::6")))
	pol := pt.Policy("shop", "db-policy", pt.Selecting(pt.Sel("app=db")),
		pt.IngressRule(pt.Peers(pt.PodPeer(pt.Sel("app=web"))), pt.Port(corev1.ProtocolTCP, 3306)),
		pt.IngressRule(pt.Peers(pt.IPPeer("192.0.2.0/24", "192.0.2.128/25")), pt.Port(corev1.ProtocolTCP, 3306)))
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.0.100.20", ClusterIPs: []string{"10.0.100.20"}}}
	c, dp := compiledCluster(t, db, web, pol, svc, pt.Namespace("shop"))
	e := newEnricher(c, "n1")
	var x endpointIndex
	x.use(dp)
	now := time.Now()

	// No record (the agent restarted, or flow events are off): the applied
	// datapath's answer, through the new-flow enrichment.
	ct := ctFlow(unix.IPPROTO_TCP, "10.0.0.6", 40000, "10.0.100.20", 3306, "10.0.0.5", 3306)
	ct.CountersOrig = conntrack.Counter{Packets: 5, Bytes: 500}
	ct.CountersReply = conntrack.Counter{Packets: 4, Bytes: 4000, Direction: true}
	ct.Timestamp = conntrack.Timestamp{Start: now.Add(-2 * time.Second), Stop: now}
	ce := endOfConntrack(ct)
	f := e.endFlow(&x, &ce, nil, now.Add(time.Second))
	if f.GetType() != flowv1.EventType_EVENT_TYPE_END || f.GetVerdict() != flowv1.Verdict_VERDICT_ALLOWED ||
		f.GetIp().GetSource() != "10.0.0.6" || f.GetIp().GetDestination() != "10.0.0.5" ||
		f.GetL4().GetSourcePort() != 40000 || f.GetL4().GetDestinationPort() != 3306 || f.GetL4().GetTcpFlags() != nil {
		t.Errorf("tuple: %v", f)
	}
	if s := f.GetService(); s.GetName() != "db" || s.GetIp() != "10.0.100.20" || s.GetPort() != 3306 {
		t.Errorf("service from the original tuple: %v", s)
	}
	if f.GetSource().GetPod() != "web" || f.GetDestination().GetPod() != "db" {
		t.Errorf("endpoints: %v -> %v", f.GetSource(), f.GetDestination())
	}
	checkAllowedBy(t, f, "db-policy", 0)
	if f.GetPackets() != 9 || f.GetBytes() != 4500 {
		t.Errorf("counters: %d packets %d bytes, want both directions summed (9, 4500)", f.GetPackets(), f.GetBytes())
	}
	if f.GetDuration().AsDuration() != 2*time.Second || !f.GetTime().AsTime().Equal(now) {
		t.Errorf("duration %v, time %v: want conntrack's timestamps (2s, stop)", f.GetDuration().AsDuration(), f.GetTime().AsTime())
	}

	// An address in the ipBlock but not in its except: the second rule.
	ext := ctFlow(unix.IPPROTO_TCP, "192.0.2.7", 41000, "10.0.0.5", 3306, "10.0.0.5", 3306)
	extE := endOfConntrack(ext)
	checkAllowedBy(t, e.endFlow(&x, &extE, nil, now), "db-policy", 1)
	// In the except: no rule admits it now (a connection a later policy
	// would deny, kept by --keep-established): no rule claimed.
	exc := ctFlow(unix.IPPROTO_TCP, "192.0.2.200", 41000, "10.0.0.5", 3306, "10.0.0.5", 3306)
	excE := endOfConntrack(exc)
	if f := e.endFlow(&x, &excE, nil, now); len(f.GetAllowedBy()) != 0 {
		t.Errorf("address in the ipBlock's except attributed to %v", f.GetAllowedBy())
	}

	// With the start's record: its pods and rules, even if the address
	// now belongs to another pod, and the duration since the start.
	ev := probe.Event{Version: probe.EventVersion, Type: probe.EventNewFlow, Verdict: probe.VerdictAllow,
		Protocol: unix.IPPROTO_TCP, Flags: probe.FlagDNAT}
	setTuple(&ev.Tuple.Saddr, &ev.Tuple.Daddr, &ev.Tuple.Sport, &ev.Tuple.Dport, "10.0.0.6", "10.0.0.5", 40000, 3306)
	setTuple(&ev.OrigTuple.Saddr, &ev.OrigTuple.Daddr, &ev.OrigTuple.Sport, &ev.OrigTuple.Dport, "10.0.0.6", "10.0.100.20", 40000, 3306)
	if keyOfEvent(&ev) != keyOfConntrack(ct) {
		t.Fatalf("a new-flow event and its conntrack entry key differently: %+v vs %+v", keyOfEvent(&ev), keyOfConntrack(ct))
	}
	rec := &flowv1.Flow{Time: timestamppb.New(now.Add(-3 * time.Second)), Verdict: flowv1.Verdict_VERDICT_ALLOWED,
		Reason: flowv1.Reason_REASON_ALLOWED_BY_RULE, Source: &flowv1.Endpoint{Namespace: "shop", Pod: "web-before"},
		Destination: &flowv1.Endpoint{Namespace: "shop", Pod: "db"}, Ip: &flowv1.IP{Source: "10.0.0.6", Destination: "10.0.0.5"},
		L4:        &flowv1.Layer4{Protocol: flowv1.Protocol_PROTOCOL_TCP, SourcePort: 40000, DestinationPort: 3306, TcpFlags: &flowv1.TCPFlags{Syn: true}},
		AllowedBy: []*flowv1.PolicyRef{{Kind: "NetworkPolicy", Namespace: "shop", Name: "from-record"}}}
	ct.Timestamp = conntrack.Timestamp{}
	ce = endOfConntrack(ct)
	f = e.endFlow(&x, &ce, rec, now)
	if f.GetSource().GetPod() != "web-before" || len(f.GetAllowedBy()) != 1 || f.GetAllowedBy()[0].GetName() != "from-record" ||
		f.GetL4().GetTcpFlags() != nil || f.GetDuration().AsDuration() != 3*time.Second || f.GetType() != flowv1.EventType_EVENT_TYPE_END {
		t.Errorf("summary from the start's record: %v", f)
	}
	// An audited start: the summary says what would have decided it.
	audited := proto.Clone(rec).(*flowv1.Flow)
	audited.Verdict = flowv1.Verdict_VERDICT_AUDIT
	audited.IsolatedBy = []*flowv1.PolicyRef{{Kind: "NetworkPolicy", Namespace: "shop", Name: "lockdown"}}
	audited.Audit = &flowv1.Audit{WouldBe: flowv1.Verdict_VERDICT_DENIED, IsolatedBy: audited.IsolatedBy}
	f = e.endFlow(&x, &ce, audited, now)
	if f.GetVerdict() != flowv1.Verdict_VERDICT_AUDIT || f.GetAudit().GetWouldBe() != flowv1.Verdict_VERDICT_DENIED ||
		len(f.GetAudit().GetIsolatedBy()) != 1 || len(f.GetIsolatedBy()) != 1 {
		t.Errorf("summary of an audited connection lost what would have decided it: %v", f)
	}

	// IPv6: the same mapping.
	v6E := endOfConntrack(ctFlow(unix.IPPROTO_TCP, "fd00::6", 42000, "fd00::5", 3306, "fd00::5", 3306))
	v6 := e.endFlow(&x, &v6E, nil, now)
	if v6.GetIp().GetVersion() != flowv1.IPVersion_IP_VERSION_IPV6 || v6.GetIp().GetSource() != "fd00::6" ||
		v6.GetSource().GetPod() != "web" || v6.GetDestination().GetPod() != "db" || v6.GetService() != nil {
		t.Errorf("IPv6 summary: %v", v6)
	}
	checkAllowedBy(t, v6, "db-policy", 0)

	// Neither end a local pod: the datapath judged nothing.
	nonLocal := endOfConntrack(ctFlow(unix.IPPROTO_UDP, "192.0.2.1", 1, "192.0.2.2", 53, "192.0.2.2", 53))
	if f := e.endFlow(&x, &nonLocal, nil, now); f != nil {
		t.Errorf("summary for non-local traffic: %v", f)
	}
}

// The record table keeps at most max connections, forgetting the oldest.
// TestEndpointIndexAnswersPerDatapath: an end without its start is
// attributed from the applied datapath; the index remembers each answer for
// that datapath only, and its identities are built on the first such end.
func TestEndpointIndexAnswersPerDatapath(t *testing.T) {
	db := onNode(pt.Pod("shop", "db", pt.WithLabels("app=db"), pt.WithIP("10.0.0.5")))
	web := onNode(pt.Pod("shop", "web", pt.WithLabels("app=web"), pt.WithIP("10.0.0.6")))
	port := func(p int32) *networkingv1.NetworkPolicy {
		return pt.Policy("shop", "db-policy", pt.Selecting(pt.Sel("app=db")),
			pt.IngressRule(pt.Peers(pt.PodPeer(pt.Sel("app=web"))), pt.Port(corev1.ProtocolTCP, p)))
	}
	_, dp1 := compiledCluster(t, db, web, port(3306), pt.Namespace("shop"))
	_, dp2 := compiledCluster(t, db, web, port(5432), pt.Namespace("shop"))
	webIP, dbIP := netip.MustParseAddr("10.0.0.6"), netip.MustParseAddr("10.0.0.5")

	var x endpointIndex
	x.use(dp1)
	if x.identity != nil {
		t.Fatal("the identity index was built before any end asked for it")
	}
	in := &x.local[dbIP].Ingress
	want := ruleAllowing(*in, x.identityOf(webIP), webIP, corev1.ProtocolTCP, 3306)
	if want == 0 {
		t.Fatal("db-policy admits web on 3306 in the first datapath, yet no rule does")
	}
	for range 2 {
		if got := x.ruleAllowing(in, webIP, corev1.ProtocolTCP, 3306); got != want {
			t.Fatalf("rule %d, want %d", got, want)
		}
	}
	if len(x.allowing) != 1 {
		t.Errorf("%d answers remembered for one question", len(x.allowing))
	}
	x.use(dp2)
	if got := x.ruleAllowing(&x.local[dbIP].Ingress, webIP, corev1.ProtocolTCP, 3306); got != 0 {
		t.Errorf("after the policy moved to 5432, 3306 is still admitted by rule %d", got)
	}
	if got := x.ruleAllowing(&x.local[dbIP].Ingress, webIP, corev1.ProtocolTCP, 5432); got == 0 {
		t.Error("the second datapath's rule for 5432 is not found")
	}
}

// TestMayHaveStart: with flow events off, only an end that a resolved
// direction (ClusterNetworkPolicy, audit) judged can have a start to wait for.
func TestMayHaveStart(t *testing.T) {
	db := onNode(pt.Pod("shop", "db", pt.WithLabels("app=db"), pt.WithIP("10.0.0.5")))
	_, dp := compiledCluster(t, db, pt.Namespace("shop"))
	ce := endOfConntrack(ctFlow(unix.IPPROTO_TCP, "10.0.9.9", 40000, "10.0.0.5", 80, "10.0.0.5", 80))
	var x endpointIndex
	x.use(dp)
	if !mayHaveStart(true, &x, &ce) {
		t.Error("flow events on: the start may still be unread")
	}
	if mayHaveStart(false, &x, &ce) {
		t.Error("flow events off, plain direction: no start can come, yet the end would wait")
	}
	resolved := *dp
	resolved.Endpoints = slices.Clone(dp.Endpoints)
	resolved.Endpoints[0].Ingress.Resolved = true
	x.use(&resolved)
	if !mayHaveStart(false, &x, &ce) {
		t.Error("flow events off, resolved (audited) ingress: its audited start may come")
	}
}

func TestNewFlowTableBounded(t *testing.T) {
	tb := newNewFlowTable(2)
	k := func(i int) ctKey { return ctKey{proto: 6, sport: uint16(i)} }
	f := func(i int) *flowv1.Flow { return &flowv1.Flow{RuleId: uint32(i)} }
	tb.remember(k(1), f(1))
	tb.remember(k(2), f(2))
	tb.remember(k(3), f(3)) // forgets 1
	if tb.len() != 2 || tb.take(k(1)) != nil {
		t.Fatalf("oldest record kept past the bound (len %d)", tb.len())
	}
	if got := tb.take(k(2)); got.GetRuleId() != 2 || tb.take(k(2)) != nil {
		t.Errorf("take: %v, then not forgotten", got)
	}
	tb.remember(k(3), f(33)) // a reused tuple keeps both records
	tb.remember(k(4), f(4))  // the slot of the first k(3) is reused: the new k(3) stays
	if got := tb.take(k(3)); got.GetRuleId() != 33 || tb.take(k(3)) != nil {
		t.Errorf("the newer record of a reused tuple was evicted with the older one: %v", got)
	}

	// A tuple reused before its first connection ended: each end takes its
	// own start, oldest first.
	tb = newNewFlowTable(8)
	tb.remember(k(5), f(51))
	tb.remember(k(5), f(52))
	if tb.len() != 2 {
		t.Errorf("len %d, want 2", tb.len())
	}
	if a, b := tb.take(k(5)), tb.take(k(5)); a.GetRuleId() != 51 || b.GetRuleId() != 52 || tb.take(k(5)) != nil {
		t.Errorf("takes %v, %v: want the older start first", a, b)
	}

	// A third start before the first's end forgets the first; the ring
	// wrapping over records already taken or forgotten keeps the others.
	tb.remember(k(6), f(61))
	tb.remember(k(6), f(62))
	tb.remember(k(6), f(63))
	if tb.len() != 2 {
		t.Errorf("three starts of one tuple: len %d, want 2", tb.len())
	}
	for i := 7; i < 12; i++ { // wraps: slots of 51, 52 and 61 are reused
		tb.remember(k(i), f(i))
	}
	if a, b := tb.take(k(6)), tb.take(k(6)); a.GetRuleId() != 62 || b.GetRuleId() != 63 || tb.take(k(6)) != nil {
		t.Errorf("takes %v, %v after a third start: want 62 then 63", a, b)
	}
	// The ring wraps over a key's older record while its newer one stays:
	// the newer is taken alone.
	tb = newNewFlowTable(3)
	tb.remember(k(1), f(11))
	tb.remember(k(1), f(12))
	tb.remember(k(2), f(2))
	tb.remember(k(3), f(3)) // reuses the slot of 11
	if got := tb.take(k(1)); got.GetRuleId() != 12 || tb.take(k(1)) != nil || tb.len() != 2 {
		t.Errorf("after the older record was evicted: took %v (len %d), want 12 and nothing more", got, tb.len())
	}
}

// takeAll answers a batch of ends as take would one by one, in order: a
// reused tuple's two ends take the older start then the newer, an unknown
// key nothing, and a key's second end nothing once its only start is taken.
func TestNewFlowTableTakeAll(t *testing.T) {
	end := func(sport uint16) flowEnd {
		return flowEnd{proto: 6, src: netip.MustParseAddr("10.0.0.1"), dst: netip.MustParseAddr("10.0.0.2"), sport: sport, dport: 80}
	}
	fill := func() *newFlowTable {
		tb := newNewFlowTable(8)
		for i, sp := range []uint16{1, 2, 2, 3} {
			e := end(sp)
			tb.remember(keyOfEnd(&e), &flowv1.Flow{RuleId: uint32(10*int(sp) + i)})
		}
		return tb
	}
	batch := []flowEnd{end(2), end(9), end(1), end(2), end(1), end(2)}
	one := fill()
	var want []uint32
	for i := range batch {
		want = append(want, one.take(keyOfEnd(&batch[i])).GetRuleId())
	}
	all := fill()
	var got []uint32
	for _, f := range all.takeAll(batch, nil) {
		got = append(got, f.GetRuleId())
	}
	if !slices.Equal(got, want) || !slices.Equal(want, []uint32{21, 0, 10, 22, 0, 0}) {
		t.Errorf("takeAll %v, take one by one %v, want [21 0 10 22 0 0]", got, want)
	}
	if all.len() != 1 || one.len() != 1 {
		t.Errorf("left %d and %d records, want 1 (port 3)", all.len(), one.len())
	}
}

// Two keys of one hash (the table's index is a 64-bit hash, once in 2^64):
// a look-up of one never returns the other's start, and the newer key's
// start displaces the older's, which is then forgotten (its end takes the
// costlier look-up of an unknown start).
func TestNewFlowTableHashCollision(t *testing.T) {
	tb := newNewFlowTable(8)
	k1, k2 := ctKey{proto: 6, sport: 1}, ctKey{proto: 6, sport: 2}
	tb.remember(k1, &flowv1.Flow{RuleId: 1})
	// Make k1's record sit at k2's hash, as if the two hashed alike.
	h1, h2 := tb.hash(&k1), tb.hash(&k2)
	slot := tb.m[h1]
	delete(tb.m, h1)
	tb.m[h2], tb.slots[slot].hash = slot, h2
	if got := tb.take(k2); got != nil || tb.len() != 1 {
		t.Fatalf("take of a colliding key returned %v (len %d), want nothing and the record kept", got, tb.len())
	}
	tb.remember(k2, &flowv1.Flow{RuleId: 2})
	if tb.len() != 1 {
		t.Errorf("len %d after a colliding start, want 1 (the displaced start forgotten)", tb.len())
	}
	if got := tb.take(k2); got.GetRuleId() != 2 || tb.take(k2) != nil {
		t.Errorf("take after the colliding start: %v, want rule 2 once", got)
	}
	if got := tb.take(k1); got != nil {
		t.Errorf("the displaced start was found: %v", got)
	}
	// The ring wraps over the displaced record without touching the index.
	for i := range 10 {
		tb.remember(ctKey{proto: 17, sport: uint16(i)}, &flowv1.Flow{RuleId: uint32(100 + i)})
	}
	if got := tb.take(ctKey{proto: 17, sport: 9}); got.GetRuleId() != 109 || len(tb.m) != 7 {
		t.Errorf("after wrapping: took %v, index holds %d keys, want rule 109 and 7", got, len(tb.m))
	}
}

// The accounting check reads the node's namespace: off is not OK and says
// what summaries lose and the fix.
func TestConntrackAcctCheck(t *testing.T) {
	requirePrivileged(t)
	node := newFeNode(t)
	for _, tc := range []struct {
		acct           string
		ok             bool
		tcpFromSockets bool
	}{{"0", false, false}, {"1", true, false}, {"0", false, true}} {
		node.run(t, "sysctl", "-qw", "net.netfilter.nf_conntrack_acct="+tc.acct)
		var c *flowv1.NodeCheck
		if err := node.in(func() error { c = conntrackAcctCheck(tc.tcpFromSockets); return nil }); err != nil {
			t.Fatal(err)
		}
		if tc.tcpFromSockets != strings.Contains(c.GetDetail(), "TCP's come from the sockets") {
			t.Errorf("TCP from sockets %v: detail %q", tc.tcpFromSockets, c.GetDetail())
		}
		if c.GetOk() != tc.ok {
			t.Errorf("nf_conntrack_acct=%s: check %v", tc.acct, c)
		}
		if !tc.ok && (!strings.Contains(c.GetDetail(), "no packet/byte counts") ||
			!strings.Contains(c.GetDetail(), "sysctl -w net.netfilter.nf_conntrack_acct=1")) {
			t.Errorf("detail does not say what is missing and the fix: %q", c.GetDetail())
		}
	}
}

// reapExpired lists the node's conntrack table: the kernel removes the
// expired entries it meets (each a DESTROY event) instead of waiting for
// its garbage collector.
func (n *feNS) reapExpired(t testing.TB) {
	t.Helper()
	c, err := conntrack.Dial(&netlink.Config{NetNS: int(n.h)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Dump(nil); err != nil {
		t.Fatal(err)
	}
}

// compiledCluster is a synced Cluster of objs and its datapath for node n1.
func compiledCluster(t *testing.T, objs ...k8sruntime.Object) (*Cluster, *policy.Datapath) {
	t.Helper()
	c := startCluster(t, objs...)
	snap, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	dp, err := policy.Compile(snap, "n1")
	if err != nil {
		t.Fatal(err)
	}
	return c, dp
}

// newFeNodeConntrack is a node namespace and a ctnetlink connection to its
// conntrack table, closed when the test ends.
func newFeNodeConntrack(t *testing.T) (*feNode, *conntrack.Conn) {
	node := newFeNode(t)
	ct, err := conntrack.Dial(&netlink.Config{NetNS: int(node.h)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ct.Close() })
	return node, ct
}

// The listener never blocks and never stops on loss: a queue nobody reads
// drops and counts, a socket the kernel overran (ENOBUFS) is counted and
// keeps delivering.
func TestFlowEndListenerLoss(t *testing.T) {
	requirePrivileged(t)
	node, ct := newFeNodeConntrack(t)
	const mark = 0x4e51
	burst := func(n int, src string) {
		t.Helper()
		for i := range n {
			f := conntrack.NewFlow(unix.IPPROTO_UDP, 0, netip.MustParseAddr(src), netip.MustParseAddr("10.78.2.2"),
				uint16(1024+i), 53, 120, mark)
			if err := ct.Create(f); err != nil {
				t.Fatalf("creating conntrack entry %d: %v", i, err)
			}
		}
		if err := ct.FlushFilter(conntrack.NewFilter().Mark(mark)); err != nil {
			t.Fatal(err)
		}
	}
	listen := func(queue, rcvbuf int) (*flowEndListener, *prometheus.CounterVec) {
		t.Helper()
		lost := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lost"}, []string{"reason"})
		l, err := listenFlowEnds(int(node.h), queue, rcvbuf, lost)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l, lost
	}
	waitCount := func(c prometheus.Counter, what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for counterValue(c) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no %s counted", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// Nobody reads a queue of 10: the rest of 200 ends are dropped, counted.
	l, lost := listen(10, 1<<20)
	burst(200, "10.78.2.1")
	waitCount(lost.WithLabelValues(lostQueueFull), "queue_full")
	if got := len(l.events); got != 10 {
		t.Errorf("queue holds %d events, want its capacity 10", got)
	}

	// A 4 KiB socket buffer and 5000 ends at once: the kernel overruns it.
	l, lost = listen(100000, 4096)
	for range 20 {
		burst(5000, "10.78.2.1")
		if counterValue(lost.WithLabelValues(lostSocketOverrun)) > 0 {
			break
		}
	}
	waitCount(lost.WithLabelValues(lostSocketOverrun), "socket_overrun")
	for len(l.events) > 0 {
		<-l.events
	}
	// Still delivering after the overrun: a marker end comes through (the
	// tiny buffer may drop a marker too, so up to 10, a second apart).
	for try := range 10 {
		burst(1, "10.78.2.9")
		timeout := time.After(time.Second)
	wait:
		for {
			select {
			case ev := <-l.events:
				if ev.src == netip.MustParseAddr("10.78.2.9") {
					t.Logf("marker %d delivered after %v overruns", try+1, counterValue(lost.WithLabelValues(lostSocketOverrun)))
					return
				}
			case <-timeout:
				break wait
			}
		}
	}
	t.Fatalf("no event after a socket overrun (%v overruns): the listener stopped", counterValue(lost.WithLabelValues(lostSocketOverrun)))
}

// TestFlowEndListenerFilter: the socket filter drops in the kernel the
// DESTROY events of TCP entries (IPv4 and IPv6) with skipTCP, and those of
// UDP entries to a port of the node's vxlan links (one added later once the
// listener reads the links again; this kernel has no geneve); it delivers the
// rest. Without skipTCP and tunnels every event arrives.
func TestFlowEndListenerFilter(t *testing.T) {
	requirePrivileged(t)
	node, ct := newFeNodeConntrack(t)
	const mark = 0x4e52
	type entry struct {
		proto    uint8
		src, dst string
		dport    uint16
	}
	entries := []entry{
		{unix.IPPROTO_TCP, "10.78.3.1", "10.78.3.2", 80}, {unix.IPPROTO_UDP, "10.78.3.1", "10.78.3.2", 80},
		{unix.IPPROTO_SCTP, "10.78.3.1", "10.78.3.2", 80}, {unix.IPPROTO_TCP, "fd78::1", "fd78::2", 80},
		{unix.IPPROTO_UDP, "fd78::1", "fd78::2", 80},
		// A vxlan link's outer flows, both ways (the other node's source
		// port is a hash of the inner flow), and a second link's.
		{unix.IPPROTO_UDP, "10.78.4.1", "10.78.4.2", 8472}, {unix.IPPROTO_UDP, "10.78.4.2", "10.78.4.1", 8472},
		{unix.IPPROTO_UDP, "fd78::4:1", "fd78::4:2", 8472}, {unix.IPPROTO_UDP, "10.78.4.1", "10.78.4.2", 4789},
		// The same port over TCP is no tunnel's.
		{unix.IPPROTO_TCP, "10.78.4.1", "10.78.4.2", 8472},
	}
	// received creates and flushes the entries and says which arrived, by
	// protocol and destination port. Each call ends with its own marker: a
	// listener also holds the events of calls made for another listener,
	// up to their marker.
	markers := 0
	received := func(t *testing.T, l *flowEndListener) map[string]int {
		t.Helper()
		markers++
		end := netip.AddrFrom4([4]byte{10, 78, 3, byte(100 + markers)})
		for i, e := range entries {
			f := conntrack.NewFlow(e.proto, 0, netip.MustParseAddr(e.src), netip.MustParseAddr(e.dst), uint16(2000+i), e.dport, 120, mark)
			if err := ct.Create(f); err != nil {
				t.Fatalf("creating the %d entry %s -> %s: %v", e.proto, e.src, e.dst, err)
			}
		}
		if err := ct.FlushFilter(conntrack.NewFilter().Mark(mark)); err != nil {
			t.Fatal(err)
		}
		// A UDP marker last: once it is out, every earlier event was seen.
		marker := conntrack.NewFlow(unix.IPPROTO_UDP, 0, end, netip.MustParseAddr("10.78.3.2"), 9, 80, 120, mark)
		if err := ct.Create(marker); err != nil {
			t.Fatal(err)
		}
		if err := ct.FlushFilter(conntrack.NewFilter().Mark(mark)); err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		timeout := time.After(10 * time.Second)
		for {
			select {
			case ev := <-l.events:
				switch {
				case ev.src == end:
					return got
				case ev.src.Is4() && ev.src.As4()[2] == 3 && ev.src.As4()[3] > 100:
					got = map[string]int{} // an earlier call's: what follows is this one's
					continue
				}
				got[fmt.Sprintf("%d/%d", ev.proto, ev.dport)]++
			case <-timeout:
				t.Fatalf("no marker event (got %v)", got)
			}
		}
	}
	all := map[string]int{"6/80": 2, "17/80": 2, "132/80": 1, "17/8472": 3, "17/4789": 1, "6/8472": 1}
	without := func(keys ...string) map[string]int {
		m := maps.Clone(all)
		for _, k := range keys {
			delete(m, k)
		}
		return m
	}
	listen := func(t *testing.T, skip bool) *flowEndListener {
		lost := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lost"}, []string{"reason"})
		l, err := listenFlowEndsPoll(int(node.h), 100, 1<<20, 10*time.Millisecond, skip, lost)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	check := func(t *testing.T, l *flowEndListener, want map[string]int) {
		t.Helper()
		if got := received(t, l); !maps.Equal(got, want) {
			t.Errorf("events by protocol/port %v, want %v", got, want)
		}
	}
	t.Run("no-tunnel", func(t *testing.T) {
		check(t, listen(t, true), without("6/80", "6/8472"))
		check(t, listen(t, false), all)
	})
	node.run(t, "ip", "link", "add", "fevx", "type", "vxlan", "id", "42", "dstport", "8472")
	t.Run("vxlan", func(t *testing.T) {
		l := listen(t, true)
		if !slices.Equal(l.tunnelPorts, []uint16{8472}) {
			t.Fatalf("tunnel ports %v, want [8472]", l.tunnelPorts)
		}
		check(t, l, without("6/80", "6/8472", "17/8472"))
		check(t, listen(t, false), without("17/8472"))
		// A link added while the listener runs: dropped once the links
		// are read again.
		node.run(t, "ip", "link", "add", "fevx2", "type", "vxlan", "id", "43", "dstport", "4789")
		if err := l.refreshFilter(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(l.tunnelPorts, []uint16{4789, 8472}) {
			t.Fatalf("tunnel ports %v, want [4789 8472]", l.tunnelPorts)
		}
		check(t, l, without("6/80", "6/8472", "17/8472", "17/4789"))
	})
	// The tunnels gone, a listener without skipTCP detaches its filter.
	t.Run("tunnels-removed", func(t *testing.T) {
		l := listen(t, false)
		check(t, l, without("17/8472", "17/4789"))
		node.run(t, "ip", "link", "del", "fevx")
		node.run(t, "ip", "link", "del", "fevx2")
		if err := l.refreshFilter(); err != nil {
			t.Fatal(err)
		}
		check(t, l, all)
	})
}

// TestMonotonicNowIsTheKernelsClock: monotonicNow (Go's clock from one
// reading) stays on CLOCK_MONOTONIC, the clock bpf_ktime_get_ns stamps
// records with, which an END's stop time and the starts-read mark rely on.
func TestMonotonicNowIsTheKernelsClock(t *testing.T) {
	read := func() uint64 {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			t.Fatal(err)
		}
		return uint64(ts.Nano())
	}
	for range 100 {
		before := read()
		now := monotonicNow()
		after := read()
		// A microsecond of slack for the two clocks' rounding.
		if now+1000 < before || now > after+1000 {
			t.Fatalf("monotonicNow %d outside the kernel's [%d, %d]", now, before, after)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFlowEndSourceKernelTCP: --flow-end-source=kernel-tcp summarizes TCP
// connections from the socket states and opens no conntrack listener, so a
// UDP flow's end gives no summary, and status and the metric say so.
func TestFlowEndSourceKernelTCP(t *testing.T) {
	requirePrivileged(t)
	node := newFeNode(t)
	const aIP, cIP = "10.78.1.11", "10.78.1.12"
	podA, podC := node.addPod(t, aIP), node.addPod(t, cIP)
	a := onNodeFE(pt.Pod("shop", "a", pt.WithLabels("app=db"), pt.WithIP(aIP)))
	c := onNodeFE(pt.Pod("shop", "c", pt.WithLabels("app=web"), pt.WithIP(cIP)))
	ag := startFlowEndAgentFrom(t, node, FlowEndSourceKernelTCP, pt.Namespace("shop"), a, c)

	var l net.Listener
	if err := podA.in(func() (err error) { l, err = net.Listen("tcp", aIP+":8080"); return err }); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if conn, err := l.Accept(); err == nil {
			io.Copy(io.Discard, conn)
			conn.Close()
		}
	}()
	var conn net.Conn
	if err := podC.in(func() (err error) { conn, err = net.DialTimeout("tcp", aIP+":8080", 5*time.Second); return err }); err != nil {
		t.Fatal(err)
	}
	sport := conn.LocalAddr().(*net.TCPAddr).Port
	conn.Write([]byte("hello"))
	conn.Close()
	f := waitEnd(t, ag, flowv1.Protocol_PROTOCOL_TCP, cIP, sport, 10*time.Second, nil)
	if f.GetIp().GetDestination() != aIP || f.GetSource().GetPod() != "c" || f.GetDestination().GetPod() != "a" {
		t.Errorf("TCP END: %v", f)
	}

	// A UDP flow that ends: no listener, no summary (the TCP END above
	// shows the pipeline works; 2 polls + 50 ms is the longest an end waits).
	var pc net.PacketConn
	if err := podA.in(func() (err error) { pc, err = net.ListenPacket("udp", aIP+":5353"); return err }); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	usport := sendUDP(t, podC, aIP+":5353")
	node.deleteCT(t, unix.IPPROTO_UDP, cIP, usport)
	time.Sleep(2*ag.cfg.ReadPoll + 300*time.Millisecond)
	for _, f := range ends(t, ag) {
		if f.GetL4().GetProtocol() != flowv1.Protocol_PROTOCOL_TCP {
			t.Errorf("an END for a %v flow with TCP summaries only: %v", f.GetL4().GetProtocol(), f)
		}
	}
	check := ag.flowEndSourceCheck()
	if !check.GetOk() || !strings.Contains(check.GetDetail(), "tcp from kernel-tcp") || strings.Contains(check.GetDetail(), "netlink") ||
		!strings.Contains(check.GetDetail(), "no summaries of UDP") {
		t.Errorf("flow-end-source check: %v", check)
	}
	if got := labelledGauge(t, ag, "kubectl_netpol_flow_end_source", map[string]string{"source": "kernel-tcp", "protocols": "tcp"}); got != 1 {
		t.Errorf("kubectl_netpol_flow_end_source{kernel-tcp,tcp} = %v, want 1", got)
	}
	if got := labelledGauge(t, ag, "kubectl_netpol_flow_end_source", map[string]string{"source": "netlink", "protocols": "udp,sctp,icmp"}); got != 0 {
		t.Errorf("kubectl_netpol_flow_end_source{netlink} = %v, want 0 (no listener)", got)
	}
}

// TestFlowEndSourceNamesTheFix: an unknown --flow-end-source is refused up
// front, naming the flag and the values it takes.
func TestFlowEndSourceNamesTheFix(t *testing.T) {
	_, err := New(Config{NodeName: "n1", FlowEndSource: "kernal"})
	if err == nil || !strings.Contains(err.Error(), `--flow-end-source="kernal"`) || !strings.Contains(err.Error(), `"kernel-tcp"`) {
		t.Fatalf("New with --flow-end-source=kernal: %v", err)
	}
}
