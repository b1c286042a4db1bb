//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
	pt "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
	"github.com/kubectl-netpol/kubectl-netpol/probe"
)

func onNode(p *corev1.Pod) *corev1.Pod { p.Spec.NodeName = "n1"; return p }

// setTuple fills a tuple of the generated (unexported) event type.
func setTuple(saddr, daddr *[16]uint8, sport, dport *uint16, src, dst string, sp, dp uint16) {
	*saddr, *daddr = netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	*sport, *dport = sp, dp
}

// Kernel events become flows with the pods of both ends, the Service from
// the pre-NAT tuple, and the policy attribution of the applied datapath.
func TestEnrichAttributesKernelEvents(t *testing.T) {
	db := onNode(pt.Pod("shop", "db", pt.WithLabels("app=db"), pt.WithIP("10.0.0.5")))
	web := onNode(pt.Pod("shop", "web", pt.WithLabels("app=web"), pt.WithIP("10.0.0.6")))
	other := onNode(pt.Pod("shop", "other", pt.WithLabels("app=other"), pt.WithIP("10.0.0.7")))
	pol := pt.Policy("shop", "db-policy", pt.Selecting(pt.Sel("app=db")),
		pt.IngressRule(pt.Peers(pt.PodPeer(pt.Sel("app=web"))), pt.Port(corev1.ProtocolTCP, 3306)))
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.20", ClusterIPs: []string{"10.96.0.20"}}}
	c, dp := compiledCluster(t, db, web, other, pol, svc, pt.Namespace("shop"))
	epID := map[string]uint32{}
	for _, ep := range dp.Endpoints {
		epID[ep.Name] = ep.ID
	}
	var rule uint32
	for _, r := range dp.Rules {
		if r.Rule.Policy.Name == "db-policy" {
			rule = r.ID
		}
	}
	if rule == 0 || epID["db"] == 0 {
		t.Fatalf("compiled datapath lacks db-policy's rule or db's endpoint: %+v", dp)
	}
	e := newEnricher(c, "n1")
	var now unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &now)

	allowed := probe.Event{Version: probe.EventVersion, Type: probe.EventNewFlow, Verdict: probe.VerdictAllow,
		Protocol: unix.IPPROTO_TCP, TcpFlags: 0x02, Flags: probe.FlagDNAT, TimestampNs: uint64(now.Nano()),
		SrcEndpoint: epID["web"], DstEndpoint: epID["db"], IngressRule: rule}
	setTuple(&allowed.Tuple.Saddr, &allowed.Tuple.Daddr, &allowed.Tuple.Sport, &allowed.Tuple.Dport, "10.0.0.6", "10.0.0.5", 40000, 3306)
	setTuple(&allowed.OrigTuple.Saddr, &allowed.OrigTuple.Daddr, &allowed.OrigTuple.Sport, &allowed.OrigTuple.Dport, "10.0.0.6", "10.96.0.20", 40000, 3306)
	f := e.flow(dp, &allowed)
	if f.GetVerdict() != flowv1.Verdict_VERDICT_ALLOWED || f.GetReason() != flowv1.Reason_REASON_ALLOWED_BY_RULE ||
		len(f.GetAllowedBy()) != 1 || f.GetAllowedBy()[0].GetName() != "db-policy" || f.GetAllowedBy()[0].RuleIndex == nil ||
		f.GetAllowedBy()[0].GetDirection() != flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS {
		t.Errorf("allowed flow attribution: %v", f)
	}
	if f.GetService().GetName() != "db" || f.GetService().GetIp() != "10.96.0.20" || f.GetService().GetPort() != 3306 {
		t.Errorf("service from the pre-NAT tuple: %v", f.GetService())
	}
	if f.GetSource().GetPod() != "web" || f.GetDestination().GetLabels()["app"] != "db" || !f.GetL4().GetTcpFlags().GetSyn() ||
		f.GetL4().GetDestinationPort() != 3306 || f.GetIp().GetSource() != "10.0.0.6" {
		t.Errorf("endpoints and L4: %v", f)
	}
	if d := time.Since(f.GetTime().AsTime()); d < -time.Second || d > 5*time.Second {
		t.Errorf("flow time %v is %v from now: the monotonic clock is not converted", f.GetTime().AsTime(), d)
	}

	drop := probe.Event{Version: probe.EventVersion, Type: probe.EventDrop, Verdict: probe.VerdictDrop, Direction: probe.DirIngress,
		Protocol: unix.IPPROTO_TCP, SrcEndpoint: epID["other"], DstEndpoint: epID["db"]}
	setTuple(&drop.Tuple.Saddr, &drop.Tuple.Daddr, &drop.Tuple.Sport, &drop.Tuple.Dport, "10.0.0.7", "10.0.0.5", 40001, 3306)
	f = e.flow(dp, &drop)
	if f.GetType() != flowv1.EventType_EVENT_TYPE_DROP || f.GetVerdict() != flowv1.Verdict_VERDICT_DENIED ||
		f.GetReason() != flowv1.Reason_REASON_NO_RULE_MATCHED || len(f.GetIsolatedBy()) != 1 ||
		f.GetIsolatedBy()[0].GetName() != "db-policy" || f.GetDirection() != flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS ||
		f.GetService() != nil {
		t.Errorf("default-deny drop attribution: %v", f)
	}

	notIsolated := probe.Event{Version: probe.EventVersion, Type: probe.EventNewFlow, Verdict: probe.VerdictAllow,
		Protocol: unix.IPPROTO_UDP, SrcEndpoint: epID["db"], DstEndpoint: epID["web"]}
	setTuple(&notIsolated.Tuple.Saddr, &notIsolated.Tuple.Daddr, &notIsolated.Tuple.Sport, &notIsolated.Tuple.Dport, "10.0.0.5", "10.0.0.6", 5000, 53)
	if f = e.flow(dp, &notIsolated); f.GetReason() != flowv1.Reason_REASON_NOT_ISOLATED || len(f.GetAllowedBy())+len(f.GetIsolatedBy()) != 0 {
		t.Errorf("flow between non-isolated directions: %v", f)
	}
}

// Node addresses (of any node) and hostNetwork pods show as their node.
func TestEnrichNamesNodes(t *testing.T) {
	db := onNode(pt.Pod("shop", "db", pt.WithLabels("app=db"), pt.WithIP("10.244.1.5")))
	hostPod := onNode(pt.Pod("kube-system", "proxy", pt.HostNetwork(), pt.WithIP("10.250.0.2")))
	n1 := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: corev1.NodeSpec{PodCIDRs: []string{"10.244.1.0/24"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.250.0.2"}}}}
	n2 := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"}, Spec: corev1.NodeSpec{PodCIDRs: []string{"10.244.2.0/24"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.250.0.3"}}}}
	c := startCluster(t, db, hostPod, n1, n2, pt.Namespace("shop"))
	c.SetLocalAddresses([]netip.Addr{netip.MustParseAddr("172.17.0.1")})
	snap, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	dp, err := policy.Compile(snap, "n1")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnricher(c, "n1")
	for src, want := range map[string]string{
		"10.244.1.1": "n1", // the kubelet's probe from the local cni0
		"10.244.2.0": "n2", // a host process on n2, through flannel.1
		"10.250.0.2": "n1", // the hostNetwork pod, or the node itself
		"172.17.0.1": "n1", // a local address no Node object lists
		"192.0.2.9":  "",   // the world
	} {
		ev := probe.Event{Version: probe.EventVersion, Type: probe.EventNewFlow, Verdict: probe.VerdictAllow, Protocol: unix.IPPROTO_TCP}
		setTuple(&ev.Tuple.Saddr, &ev.Tuple.Daddr, &ev.Tuple.Sport, &ev.Tuple.Dport, src, "10.244.1.5", 40000, 8080)
		f := e.flow(dp, &ev)
		if got := f.GetSource().GetNodeName(); got != want || f.GetSource().GetPod() != "" || f.GetSource().GetHostNetwork() != (want != "") {
			t.Errorf("from %s: source %v, want node %q", src, f.GetSource(), want)
		}
		if f.GetDestination().GetPod() != "db" || f.GetDestination().GetNodeName() != "n1" {
			t.Errorf("from %s: destination %v, want shop/db on n1", src, f.GetDestination())
		}
	}
}

// The enricher shares endpoints, Services, policy references and TCP flag
// sets between flows, and flow-end summaries share their start's: every
// consumer of a published flow must only read them. This runs flows
// through each consumer in the agent (the hub's history and a following
// gRPC stream, a query's filter, the flow-end summaries with and without a
// recorded start, the pairing of two nodes' records) and checks the shared
// messages are as built.
func TestSharedFlowPartsAreNotMutated(t *testing.T) {
	a, dp, ev := benchPath(t)
	ev.Flags |= probe.FlagDNAT
	setTuple(&ev.OrigTuple.Saddr, &ev.OrigTuple.Daddr, &ev.OrigTuple.Sport, &ev.OrigTuple.Dport, "10.0.0.6", "10.96.0.20", 40000, 3306)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	flowv1.RegisterObserverServer(gs, a.hub)
	go gs.Serve(lis)
	defer gs.Stop()
	cc, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n = 50
	var starts []*flowv1.Flow
	for i := range n {
		ev.Tuple.Sport, ev.OrigTuple.Sport = uint16(40000+i), uint16(40000+i)
		f := a.enrich.flow(dp, &ev)
		a.count(f)
		a.hub.Publish(f)
		a.newFlows.remember(keyOfEvent(&ev), f)
		starts = append(starts, f)
	}
	first := starts[0]
	if starts[1].GetSource() != first.GetSource() || starts[1].GetDestination() != first.GetDestination() ||
		starts[1].GetService() != first.GetService() || starts[1].GetAllowedBy()[0] != first.GetAllowedBy()[0] ||
		starts[1].GetL4().GetTcpFlags() != first.GetL4().GetTcpFlags() {
		t.Fatal("two flows of the same pods and rule do not share their parts: this test checks nothing")
	}
	shared := []proto.Message{first.GetSource(), first.GetDestination(), first.GetService(), first.GetAllowedBy()[0],
		first.GetL4().GetTcpFlags(), first.GetIp()}
	var want []proto.Message
	for _, m := range shared {
		want = append(want, proto.Clone(m))
	}
	labels := maps.Clone(first.GetSource().GetLabels())

	// Flow-end summaries: half with their start, half judged afresh.
	var x endpointIndex
	x.use(dp)
	now := time.Now()
	for i := range n {
		ct := ctEnd{proto: unix.IPPROTO_TCP, src: netip.MustParseAddr("10.0.0.6"), dst: netip.MustParseAddr("10.96.0.20"),
			rsrc: netip.MustParseAddr("10.0.0.5"), sport: uint16(40000 + i), dport: 3306, rsprt: 3306, packets: 4, bytes: 300,
			start: now.Add(-time.Second), stop: now, at: now}
		rec := a.newFlows.take(keyOfEnd(&ct))
		if rec == nil {
			t.Fatalf("end %d found no start", i)
		}
		if i%2 == 1 {
			rec = nil
		}
		f := a.enrich.endFlow(&x, &ct, rec, now)
		if f == nil {
			t.Fatalf("no summary for end %d", i)
		}
		a.hub.Publish(f)
	}

	// Every flow through a gRPC stream (marshalled: the history, then
	// following), a query, and pairs merged as the CLI does.
	follow, err := flowv1.NewObserverClient(cc).ObserveBatches(ctx, &flowv1.ObserveRequest{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	a.hub.Publish(first) // once more, while followed
	got := 0
	for got < 2*n+1 {
		b, err := follow.Recv()
		if err != nil {
			t.Fatalf("after %d flows: %v", got, err)
		}
		got += len(b.GetFlows())
	}
	hist, err := flowv1.NewObserverClient(cc).ObserveBatches(ctx, &flowv1.ObserveRequest{
		Allowlist: []*flowv1.FlowFilter{{Policy: []string{"shop/db-policy"}, DestinationLabel: []string{"app=db"}, SourcePod: []string{"shop/web"}}}})
	if err != nil {
		t.Fatal(err)
	}
	var matched []*flowv1.Flow
	for {
		b, err := hist.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		matched = append(matched, b.GetFlows()...)
	}
	if len(matched) != 2*n+1 {
		t.Errorf("the query matched %d flows, want %d", len(matched), 2*n+1)
	}
	for _, f := range append(starts, first) {
		other := proto.Clone(f).(*flowv1.Flow)
		other.Node = "n2"
		flow.MergePair(f, other)
		flow.MergePair(other, f)
	}

	for i, m := range shared {
		if !proto.Equal(m, want[i]) {
			t.Errorf("shared %T changed: %v, was %v", m, m, want[i])
		}
	}
	if !maps.Equal(first.GetSource().GetLabels(), labels) {
		t.Errorf("shared labels changed: %v, were %v", first.GetSource().GetLabels(), labels)
	}
}

// The enricher's caches follow the cluster: a relabelled pod, an address
// taken over by another pod, a Service replaced and a new node show in the
// very next flow once the informer's store (or the Snapshot, for nodes)
// has them, without waiting for any event handler.
func TestEnrichFollowsClusterChanges(t *testing.T) {
	web := onNode(pt.Pod("shop", "web", pt.WithLabels("app=web"), pt.WithIP("10.0.0.6")))
	db := onNode(pt.Pod("shop", "db", pt.WithLabels("app=db"), pt.WithIP("10.0.0.5")))
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.20", ClusterIPs: []string{"10.96.0.20"}}}
	client := fake.NewClientset(pt.Namespace("shop"), web, db, svc)
	c := NewCluster(client)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	if !c.Start(stop) {
		t.Fatal("caches did not sync")
	}
	snap, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	dp, err := policy.Compile(snap, "n1")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnricher(c, "n1")
	ev := probe.Event{Version: probe.EventVersion, Type: probe.EventNewFlow, Verdict: probe.VerdictAllow, Protocol: unix.IPPROTO_TCP, Flags: probe.FlagDNAT}
	setTuple(&ev.Tuple.Saddr, &ev.Tuple.Daddr, &ev.Tuple.Sport, &ev.Tuple.Dport, "10.0.0.6", "10.0.0.5", 40000, 3306)
	setTuple(&ev.OrigTuple.Saddr, &ev.OrigTuple.Daddr, &ev.OrigTuple.Sport, &ev.OrigTuple.Dport, "10.0.0.6", "10.96.0.20", 40000, 3306)
	check := func(what, pod, label, service string) {
		t.Helper()
		f := e.flow(dp, &ev)
		if f.GetSource().GetPod() != pod || f.GetSource().GetLabels()["app"] != label || f.GetService().GetName() != service {
			t.Errorf("%s: source %v, service %v; want pod %s app=%s, service %s", what, f.GetSource(), f.GetService(), pod, label, service)
		}
	}
	check("at start", "web", "web", "db")
	check("cached", "web", "web", "db")
	ctx := context.Background()
	waitFor := func(what string, done func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !done(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the informer did not see %s within 10 s", what)
			}
		}
	}
	ip := netip.MustParseAddr("10.0.0.6")

	web.Labels = map[string]string{"app": "web2"}
	if _, err := client.CoreV1().Pods("shop").Update(ctx, web, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the relabel", func() bool { return c.PodByIP(ip).Labels["app"] == "web2" })
	check("relabelled", "web", "web2", "db")

	if err := client.CoreV1().Pods("shop").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Pods("shop").Create(ctx, onNode(pt.Pod("shop", "web-2", pt.WithLabels("app=web"), pt.WithIP("10.0.0.6"))), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the new pod", func() bool { p := c.PodByIP(ip); return p != nil && p.Name == "web-2" })
	check("address reused", "web-2", "web", "db")

	if err := client.CoreV1().Services("shop").Delete(ctx, "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	svc2 := svc.DeepCopy()
	svc2.Name = "db-2"
	if _, err := client.CoreV1().Services("shop").Create(ctx, svc2, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	vip := netip.MustParseAddr("10.96.0.20")
	waitFor("the new Service", func() bool { s := c.ServiceByIP(vip); return s != nil && s.Name == "db-2" })
	check("Service replaced", "web-2", "web", "db-2")

	// A node's address: the world until a Snapshot names it.
	setTuple(&ev.Tuple.Saddr, &ev.Tuple.Daddr, &ev.Tuple.Sport, &ev.Tuple.Dport, "10.250.0.3", "10.0.0.5", 40000, 3306)
	if f := e.flow(dp, &ev); f.GetSource().GetNodeName() != "" {
		t.Fatalf("before the node exists: %v", f.GetSource())
	}
	n2 := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.250.0.3"}}}}
	if _, err := client.CoreV1().Nodes().Create(ctx, n2, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the node", func() bool { n, _ := c.nodeLister.Get("n2"); return n != nil })
	if _, err := c.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if f := e.flow(dp, &ev); f.GetSource().GetNodeName() != "n2" || !f.GetSource().GetHostNetwork() {
		t.Errorf("after the Snapshot with node n2: %v", f.GetSource())
	}
}

// A drop names every policy isolating its endpoint. With a thousand of them,
// each denied flow must not carry its own thousand references: the hub keeps
// 65,536 recent flows, and fresh references per flow (~50 KB) outgrew the
// agent's memory limit under a flood of denied connections. Flows judged by
// one Datapath share one clipped list; a new Datapath gets its own.
func TestDeniedFlowsShareIsolatingPolicies(t *testing.T) {
	db := onNode(pt.Pod("shop", "db", pt.WithLabels("app=db"), pt.WithIP("10.0.0.5")))
	web := onNode(pt.Pod("shop", "web", pt.WithLabels("app=web"), pt.WithIP("10.0.0.6")))
	objs := []runtime.Object{pt.Namespace("shop"), db, web}
	for i := range 1000 {
		objs = append(objs, pt.Policy("shop", fmt.Sprintf("isolate-%04d", i), pt.Selecting(pt.Sel("app=db")),
			pt.IngressRule(pt.Peers(pt.PodPeer(pt.Sel("app=nobody"))), pt.Port(corev1.ProtocolTCP, 3306))))
	}
	c := NewCluster(fake.NewClientset(objs...))
	stop := make(chan struct{})
	defer close(stop)
	if !c.Start(stop) {
		t.Fatal("caches did not sync")
	}
	snap, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	compile := func() *policy.Datapath {
		dp, err := policy.Compile(snap, "n1")
		if err != nil {
			t.Fatal(err)
		}
		return dp
	}
	dp := compile()
	var x endpointIndex
	x.use(dp)
	ev := probe.Event{Version: probe.EventVersion, Type: probe.EventDrop, Verdict: probe.VerdictDrop, Direction: probe.DirIngress,
		Protocol: unix.IPPROTO_TCP, TcpFlags: 0x02, DstEndpoint: x.local[netip.MustParseAddr("10.0.0.5")].ID}
	setTuple(&ev.Tuple.Saddr, &ev.Tuple.Daddr, &ev.Tuple.Sport, &ev.Tuple.Dport, "10.0.0.6", "10.0.0.5", 40000, 3306)
	ev.OrigTuple = ev.Tuple
	e := newEnricher(c, "n1")

	first, second := e.flow(dp, &ev), e.flow(dp, &ev)
	refs := first.GetIsolatedBy()
	if len(refs) != 1000 || refs[0].GetName() != "isolate-0000" || refs[999].GetName() != "isolate-0999" ||
		refs[0].GetDirection() != flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS {
		t.Fatalf("isolated by %d policies (%v ... %v), want the 1000 isolate-NNNN, ingress", len(refs), refs[0], refs[len(refs)-1])
	}
	if &second.GetIsolatedBy()[0] != &refs[0] {
		t.Error("two drops of one endpoint carry two copies of its isolating policies")
	}
	if cap(refs) != len(refs) {
		t.Errorf("the shared list has room to grow (len %d cap %d): an append elsewhere would write into every flow", len(refs), cap(refs))
	}
	if next := e.flow(compile(), &ev); &next.GetIsolatedBy()[0] == &refs[0] {
		t.Error("a new Datapath reuses the references of the previous one")
	}
}
