//go:build linux

package probe

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

const testNode = "node-1"

func podObject(p *pod, ns string, labels map[string]string, ports ...corev1.ContainerPort) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: p.podName, Labels: labels, UID: types.UID("uid-" + ns + "-" + p.podName)},
		Spec:       corev1.PodSpec{NodeName: testNode, Containers: []corev1.Container{{Name: "c", Ports: ports}}},
		Status: corev1.PodStatus{PodIP: p.ip4.String(),
			PodIPs: []corev1.PodIP{{IP: p.ip4.String()}, {IP: p.ip6.String()}}},
	}
}

func selector(kv ...string) *metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &metav1.LabelSelector{MatchLabels: m}
}

func tcpPort(port, end int32) networkingv1.NetworkPolicyPort {
	proto := corev1.ProtocolTCP
	v := intstr.FromInt32(port)
	np := networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &v}
	if end != 0 {
		np.EndPort = &end
	}
	return np
}

func netpol(ns, name string, sel *metav1.LabelSelector, types []networkingv1.PolicyType,
	ingress []networkingv1.NetworkPolicyIngressRule, egress []networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: *sel, PolicyTypes: types, Ingress: ingress, Egress: egress},
	}
}

var (
	ingressOnly = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	egressOnly  = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
)

// external is a namespace outside the cluster (192.0.2.0/24) reached from
// the node through a veth; pods reach it masqueraded to 192.0.2.1.
type external struct {
	*testNS
	seen chan string // "local-addr remote-addr" of each connection
}

func addExternal(t *testing.T, tp *topology) *external {
	t.Helper()
	x := &external{testNS: newNS(t, "ext"), seen: make(chan string, 100)}
	tp.node.run(t, "ip", "link", "add", "ext0", "type", "veth", "peer", "name", "eth0", "netns", x.name)
	tp.node.run(t, "ip", "addr", "add", "192.0.2.1/24", "dev", "ext0")
	tp.node.run(t, "ip", "link", "set", "ext0", "up")
	x.run(t, "ip", "link", "set", "eth0", "up")
	for _, a := range []string{"192.0.2.10/24", "192.0.2.200/24"} {
		x.run(t, "ip", "addr", "add", a, "dev", "eth0")
	}
	err := x.in(func() error {
		for _, port := range []int{80, 81, 82} {
			err := acceptLoop(t, "tcp4", fmt.Sprintf(":%d", port), func(c net.Conn) {
				select {
				case x.seen <- c.LocalAddr().String() + " " + c.RemoteAddr().String():
				default:
				}
				fmt.Fprintf(c, "ext\n")
				c.Close()
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// TestServiceMasqueradeAndReplies: a kube-proxy-style DNAT Service with
// backends a (allowed by b's egress policy) and d (not allowed); replies
// pass although a's egress and b's ingress deny everything; masquerade
// toward an external namespace keeps b's identity; ipBlock except and
// endPort are enforced on the external side.
func TestServiceMasqueradeAndReplies(t *testing.T) {
	requireRoot(t)
	for _, bridge := range []bool{false, true} {
		t.Run(map[bool]string{false: "routed", true: "bridge"}[bridge], func(t *testing.T) { serviceCase(t, bridge) })
	}
}

func serviceCase(t *testing.T, bridge bool) {
	tp := newTopology(t, bridge)
	a, b, d := tp.addPod(t, "a"), tp.addPod(t, "b"), tp.addPod(t, "d")
	a.serve(t, 80)
	d.serve(t, 80)
	ext := addExternal(t, tp)
	const vip = "10.77.255.10"
	tp.node.nft(t, fmt.Sprintf(`table ip kubeproxy {
  chain pre {
    type nat hook prerouting priority -100;
    ip daddr %s tcp dport 80 dnat to numgen inc mod 2 map { 0 : %s, 1 : %s }
  }
  chain post {
    type nat hook postrouting priority 100;
    ip saddr 10.77.0.0/16 ip daddr 192.0.2.0/24 masquerade
  }
}
`, vip, a.ip4, d.ip4))
	waitReachable(t, b, 80, a, d)

	snap := &policy.Snapshot{
		Namespaces: nil,
		Pods: []*corev1.Pod{
			podObject(a, "x", map[string]string{"app": "a"}),
			podObject(b, "x", map[string]string{"app": "b"}),
			podObject(d, "x", map[string]string{"app": "d"}),
		},
		Policies: []*networkingv1.NetworkPolicy{
			netpol("x", "b-egress", selector("app", "b"), egressOnly, nil, []networkingv1.NetworkPolicyEgressRule{
				{To: []networkingv1.NetworkPolicyPeer{{PodSelector: selector("app", "a")}}, Ports: []networkingv1.NetworkPolicyPort{tcpPort(80, 0)}},
				{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "192.0.2.0/24", Except: []string{"192.0.2.128/25"}}}},
					Ports: []networkingv1.NetworkPolicyPort{tcpPort(80, 81)}},
			}),
			netpol("x", "a-only-from-b", selector("app", "a"), ingressOnly, []networkingv1.NetworkPolicyIngressRule{
				{From: []networkingv1.NetworkPolicyPeer{{PodSelector: selector("app", "b")}}},
			}, nil),
			netpol("x", "deny-reverse", selector(), nil, nil, nil), // ingress deny-all for everyone...
			netpol("x", "a-egress-deny", selector("app", "a"), egressOnly, nil, nil),
		},
	}
	dp, err := policy.Compile(snap, testNode)
	if err != nil {
		t.Fatal(err)
	}
	pr := loadAttached(t, tp.node, testCfg)
	evs := collect(t, pr)
	if _, err := pr.Apply(dp); err != nil {
		t.Fatal(err)
	}

	// Through the Service: only connections that picked a succeed.
	okA, failed := 0, 0
	for range 10 {
		got, err := b.connect("tcp", netip.MustParseAddr(vip), 80, 400*time.Millisecond)
		switch {
		case err == nil && got == "a":
			okA++
		case err == nil:
			t.Errorf("b -> svc reached %q: egress policy bypassed through the Service", got)
		default:
			failed++
		}
	}
	if okA == 0 || failed == 0 {
		t.Errorf("b -> svc: %d reached a, %d failed; want both (numgen alternates backends)", okA, failed)
	}
	// External: allowed inside the block and port range, masqueraded.
	for _, c := range []struct {
		ip    string
		port  int
		allow bool
	}{{"192.0.2.10", 80, true}, {"192.0.2.10", 81, true}, {"192.0.2.10", 82, false}, {"192.0.2.200", 80, false}} {
		got, err := b.connect("tcp", netip.MustParseAddr(c.ip), c.port, 400*time.Millisecond)
		if c.allow != (err == nil && got == "ext") {
			t.Errorf("b -> %s:%d: got %q %v, want allowed=%v", c.ip, c.port, got, err, c.allow)
		}
	}
	select {
	case s := <-ext.seen:
		if !strings.Contains(s, " 192.0.2.1:") {
			t.Errorf("external side saw %q, want the masqueraded node address 192.0.2.1", s)
		}
	default:
		t.Error("external side saw no connection")
	}

	var svcDrops, svcFlows, extFlows int
	for _, e := range evs.drain() {
		src, dst := TupleAddrs(e.Tuple)
		osrc, odst := TupleAddrs(e.OrigTuple)
		if src != b.ip4 || e.Protocol != 6 {
			continue
		}
		at := Attribute(dp, &e)
		switch {
		case odst.String() == vip && e.Type == EventDrop:
			svcDrops++
			if dst != d.ip4 || e.Flags&FlagDNAT == 0 || osrc != b.ip4 || at.Direction != policy.Egress ||
				len(at.DeniedBy) != 1 || at.DeniedBy[0].Name != "b-egress" {
				t.Errorf("service drop event: %s -> %s (orig %s -> %s) flags %d attribution %+v", src, dst, osrc, odst, e.Flags, at)
			}
		case odst.String() == vip && e.Type == EventNewFlow:
			svcFlows++
			if dst != a.ip4 || len(at.AllowedBy) != 2 {
				t.Errorf("service flow event: %s -> %s attribution %+v, want b's egress rule and a's ingress rule", src, dst, at)
			}
		case dst.String() == "192.0.2.10" && e.Type == EventNewFlow:
			extFlows++ // judged before SNAT: the source is still b
			if len(at.AllowedBy) != 1 || at.AllowedBy[0].Rule.Index != 1 {
				t.Errorf("external flow attribution %+v, want b-egress rule 1", at)
			}
		}
	}
	if svcDrops != failed || svcFlows != okA || extFlows != 2 {
		t.Errorf("events: %d service drops (want %d), %d service flows (want %d), %d external flows (want 2)", svcDrops, failed, svcFlows, okA, extFlows)
	}
}

// TestRevocation: a policy change that denies an established connection
// deletes its conntrack entry, so its next packet is dropped; a connection
// the new policy still allows keeps working.
func TestRevocation(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t, false)
	// c is declared on another node: an identity here, not an endpoint. d
	// keeps label app=c (and its identity) when c is relabelled.
	remote := func(p *corev1.Pod) *corev1.Pod { p.Spec.NodeName = "elsewhere"; return p }
	a, b, c, d := tp.addPod(t, "a"), tp.addPod(t, "b"), tp.addPod(t, "c"), tp.addPod(t, "d")
	a.serveEcho(t, 7)
	waitReachable(t, b, 7, a)
	cApp := "c" // c's label: "c" is allowed, anything else not
	objs := func(allowB bool) *policy.Datapath {
		from := []networkingv1.NetworkPolicyPeer{{PodSelector: selector("app", "c")}}
		if allowB {
			from = append(from, networkingv1.NetworkPolicyPeer{PodSelector: selector("app", "b")})
		}
		snap := &policy.Snapshot{
			Pods: []*corev1.Pod{podObject(a, "x", map[string]string{"app": "a"}), podObject(b, "x", map[string]string{"app": "b"}),
				remote(podObject(c, "x", map[string]string{"app": cApp})), podObject(d, "x", map[string]string{"app": "c"})},
			Policies: []*networkingv1.NetworkPolicy{netpol("x", "a-in", selector("app", "a"), ingressOnly,
				[]networkingv1.NetworkPolicyIngressRule{{From: from}}, nil)},
		}
		dp, err := policy.Compile(snap, testNode)
		if err != nil {
			t.Fatal(err)
		}
		return dp
	}
	pr := loadAttached(t, tp.node, testCfg)
	if res, err := pr.Apply(objs(true)); err != nil || !res.ConntrackScanned || res.ConntrackAddresses != 0 {
		t.Fatalf("first Apply: %+v, %v (the first of a process always walks the whole conntrack table)", res, err)
	}
	cb, err := b.dialEcho(a.ip4, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	cc, err := c.dialEcho(a.ip4, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for _, conn := range []*echoConn{cb, cc} {
		if err := conn.roundTrip("before"); err != nil {
			t.Fatalf("established connection before the change: %v", err)
		}
	}
	res, err := pr.Apply(objs(false))
	if err != nil {
		t.Fatal(err)
	}
	if res.Revoked < 1 || !res.ConntrackScanned {
		t.Errorf("revoked %d conntrack entries (scanned %v), want b's", res.Revoked, res.ConntrackScanned)
	}
	// Only a's ingress changed: only a's entries are read.
	if n := res.ConntrackAddresses; n < 1 || n > 2 {
		t.Errorf("the walk read %d addresses' entries (0: the whole table), want a's (1 or 2)", n)
	}
	// The same policy again changes no map: nothing can have become
	// denied, so conntrack is not walked.
	if res, err := pr.Apply(objs(false)); err != nil || res.ConntrackScanned || res.Revoked != 0 {
		t.Errorf("unchanged Apply: %+v, %v; want no conntrack walk", res, err)
	}
	before, _ := pr.Stats()
	if err := cb.roundTrip("after"); err == nil {
		after, _ := pr.Stats()
		t.Errorf("b's established connection still works after b lost access; stats before %+v after %+v", before, after)
	}
	if err := cc.roundTrip("after"); err != nil {
		t.Errorf("c's allowed connection broke: %v", err)
	}
	// Allowing b again only adds entries: no walk. Taking it away again
	// walks conntrack (and c's connection survives that too).
	if res, err := pr.Apply(objs(true)); err != nil || res.ConntrackScanned || res.SlotsSwapped == 0 {
		t.Errorf("Apply adding an allow: %+v, %v; want a swap and no conntrack walk", res, err)
	}
	if res, err := pr.Apply(objs(false)); err != nil || !res.ConntrackScanned {
		t.Errorf("Apply removing an allow: %+v, %v; want a conntrack walk", res, err)
	}
	if err := cc.roundTrip("again"); err != nil {
		t.Errorf("c's allowed connection broke: %v", err)
	}
	// c relabelled like b: only c's identity changes (a's ingress still
	// admits app=c, which d has; c is no endpoint here), so only c's
	// entries are read, and c's connection, found by its source, goes.
	cApp = "b"
	res, err = pr.Apply(objs(false))
	if err != nil {
		t.Fatal(err)
	}
	if n := res.ConntrackAddresses; res.Revoked < 1 || n < 1 || n > 2 || res.SlotsSwapped != 0 {
		t.Errorf("relabelling c: %+v; want c's connection revoked by reading only c's addresses' entries, no slot swapped", res)
	}
	if err := cc.roundTrip("relabelled"); err == nil {
		t.Error("c's established connection still works after c lost access")
	}
}

// echo helpers: a TCP echo server and a client that round-trips lines.
func (p *pod) serveEcho(t testing.TB, port int) {
	t.Helper()
	err := p.in(func() error {
		for _, ip := range []netip.Addr{p.ip4, p.ip6} {
			if err := p.echoOn(t, netip.AddrPortFrom(ip, uint16(port))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (p *pod) echoOn(t testing.TB, addr netip.AddrPort) error {
	return acceptLoop(t, "tcp", addr.String(), func(c net.Conn) {
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			fmt.Fprintf(c, "%s\n", p.podName) // greeting, as serve does
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				c.Write([]byte(line))
			}
		}()
	})
}

type echoConn struct {
	c net.Conn
	r *bufio.Reader
}

func (p *pod) dialEcho(ip netip.Addr, port int) (*echoConn, error) {
	var ec *echoConn
	err := p.in(func() error {
		c, err := net.DialTimeout("tcp", netip.AddrPortFrom(ip, uint16(port)).String(), time.Second)
		if err != nil {
			return err
		}
		ec = &echoConn{c: c, r: bufio.NewReader(c)}
		c.SetDeadline(time.Now().Add(time.Second))
		_, err = ec.r.ReadString('\n')
		return err
	})
	return ec, err
}

func (e *echoConn) roundTrip(msg string) error {
	e.c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := fmt.Fprintf(e.c, "%s\n", msg); err != nil {
		return err
	}
	line, err := e.r.ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != msg {
		return fmt.Errorf("echo %q, want %q", line, msg)
	}
	return nil
}

func (e *echoConn) Close() error { return e.c.Close() }

// TestRevocationUDPServerFirst: after revocation deletes b's UDP flow to a,
// a's next datagram to b (the server side speaking first) must not start
// the flow again as a new a -> b flow whose replies would carry b's traffic
// past a's ingress policy. It is judged in the revoked orientation and
// dropped (attributed to a's ingress policy); b's next datagram is dropped
// too; c's flow is untouched; and once b is allowed again, a's datagrams
// pass. The same with a resolved direction denying b by a rule: the
// reverse judgement reads the deny bit, and the drop names the rule.
func TestRevocationUDPServerFirst(t *testing.T) {
	requireRoot(t)
	for _, resolved := range []bool{false, true} {
		t.Run(map[bool]string{false: "networkpolicy", true: "resolved"}[resolved], func(t *testing.T) {
			revocationUDPServerFirst(t, resolved)
		})
	}
}

func revocationUDPServerFirst(t *testing.T, resolved bool) {
	tp := newTopology(t, false)
	a, b, c := tp.addPod(t, "a"), tp.addPod(t, "b"), tp.addPod(t, "c")
	const denyB = 81 | policy.RuleDeny
	objs := func(allowB bool) *policy.Datapath {
		if resolved {
			ingress := policy.EndpointPolicy{Resolved: true, Entries: regions(80)}
			if !allowB {
				ingress.Entries = append(ingress.Entries, policy.Entry{Rule: denyB, Identity: 301})
			}
			return &policy.Datapath{
				Identities: []policy.Identity{{ID: 300, IPs: []netip.Addr{a.ip4, a.ip6}}, {ID: 301, IPs: []netip.Addr{b.ip4, b.ip6}},
					{ID: 302, IPs: []netip.Addr{c.ip4, c.ip6}}},
				Endpoints: []policy.Endpoint{{ID: 7, Namespace: "x", Name: "a", IPs: []netip.Addr{a.ip4, a.ip6}, Identity: 300, Ingress: ingress}},
				Rules:     []policy.CompiledRule{{ID: denyB & policy.RuleIDMask, Peer: -1, Port: -1, Cluster: &policy.ClusterRuleRef{Name: "deny-b"}}},
			}
		}
		from := []networkingv1.NetworkPolicyPeer{{PodSelector: selector("app", "c")}}
		if allowB {
			from = append(from, networkingv1.NetworkPolicyPeer{PodSelector: selector("app", "b")})
		}
		snap := &policy.Snapshot{
			Pods: []*corev1.Pod{podObject(a, "x", map[string]string{"app": "a"}), podObject(b, "x", map[string]string{"app": "b"}),
				podObject(c, "x", map[string]string{"app": "c"})},
			Policies: []*networkingv1.NetworkPolicy{netpol("x", "a-in", selector("app", "a"), ingressOnly,
				[]networkingv1.NetworkPolicyIngressRule{{From: from}}, nil)},
		}
		dp, err := policy.Compile(snap, testNode)
		if err != nil {
			t.Fatal(err)
		}
		return dp
	}
	var server *net.UDPConn
	if err := a.in(func() (err error) {
		server, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.ip4, 7)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	client := func(p *pod) *net.UDPConn {
		var conn *net.UDPConn
		if err := p.in(func() (err error) {
			conn, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.ip4, 7)))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	// serverGot reads what a receives for a while: datagram text -> sender.
	serverGot := func(d time.Duration) map[string]netip.AddrPort {
		got := map[string]netip.AddrPort{}
		buf := make([]byte, 64)
		server.SetReadDeadline(time.Now().Add(d))
		for {
			n, from, err := server.ReadFromUDPAddrPort(buf)
			if err != nil {
				return got
			}
			got[string(buf[:n])] = from
		}
	}
	recv := func(conn *net.UDPConn, d time.Duration) (string, error) {
		buf := make([]byte, 64)
		conn.SetReadDeadline(time.Now().Add(d))
		n, err := conn.Read(buf)
		return string(buf[:n]), err
	}

	pr := loadAttached(t, tp.node, testCfg)
	events := collect(t, pr)
	dpAllow := objs(true)
	if _, err := pr.Apply(dpAllow); err != nil {
		t.Fatal(err)
	}
	cb, cc := client(b), client(c)
	cb.Write([]byte("b1"))
	cc.Write([]byte("c1"))
	got := serverGot(300 * time.Millisecond)
	bAddr, okB := got["b1"]
	cAddr, okC := got["c1"]
	if !okB || !okC {
		t.Fatalf("before the change a received %v, want b1 and c1", got)
	}
	for _, to := range []netip.AddrPort{bAddr, cAddr} {
		server.WriteToUDPAddrPort([]byte("a1"), to)
	}
	for name, conn := range map[string]*net.UDPConn{"b": cb, "c": cc} {
		if msg, err := recv(conn, 300*time.Millisecond); err != nil || msg != "a1" {
			t.Fatalf("before the change %s got %q %v from a", name, msg, err)
		}
	}

	dpDeny := objs(false)
	res, err := pr.Apply(dpDeny)
	if err != nil {
		t.Fatal(err)
	}
	if res.Revoked < 1 {
		t.Fatalf("revoked %d conntrack entries, want b's", res.Revoked)
	}
	events.drain()
	before, _ := pr.Stats()
	// The server side speaks first, to both clients.
	for _, to := range []netip.AddrPort{bAddr, cAddr} {
		server.WriteToUDPAddrPort([]byte("a2"), to)
	}
	if msg, err := recv(cb, 300*time.Millisecond); err == nil {
		t.Errorf("after revocation a's datagram reached b (%q): the revoked flow started again", msg)
	}
	if msg, err := recv(cc, 300*time.Millisecond); err != nil || msg != "a2" {
		t.Errorf("c's allowed flow: got %q %v from a", msg, err)
	}
	cb.Write([]byte("b2"))
	cc.Write([]byte("c2"))
	got = serverGot(300 * time.Millisecond)
	if _, ok := got["b2"]; ok {
		t.Error("after revocation b's datagram reached a")
	}
	if _, ok := got["c2"]; !ok {
		t.Errorf("c's datagram after the change did not reach a: %v", got)
	}
	after, _ := pr.Stats()
	if after.RevokedAnswers-before.RevokedAnswers < 1 {
		t.Errorf("revoked answers counted: %d, want >= 1", after.RevokedAnswers-before.RevokedAnswers)
	}
	found := false
	for _, e := range events.drain() {
		src, dst := TupleAddrs(e.Tuple)
		if e.Type != EventDrop || e.Flags&FlagRevoked == 0 || src != a.ip4 || dst != b.ip4 {
			continue
		}
		found = true
		at := Attribute(dpDeny, &e)
		switch {
		case resolved:
			if at.Direction != policy.Ingress || at.DeniedByRule == nil || at.DeniedByRule.Cluster.Name != "deny-b" ||
				e.IngressRule != denyB || e.IngressReason != ReasonDeniedByRule {
				t.Errorf("drop of a's datagram to b: event %+v attributed to %+v, want a's ingress rule deny-b", e, at)
			}
		case at.Direction != policy.Ingress || len(at.DeniedBy) != 1 || at.DeniedBy[0].Name != "a-in":
			t.Errorf("drop of a's datagram to b attributed to %s %v, want a's ingress policy a-in", at.Direction, at.DeniedBy)
		}
	}
	if !found {
		t.Error("no drop event flagged revoked for a's datagram to b")
	}

	// b allowed again: the tombstone does not stand in the way.
	if _, err := pr.Apply(dpAllow); err != nil {
		t.Fatal(err)
	}
	server.WriteToUDPAddrPort([]byte("a3"), bAddr)
	if msg, err := recv(cb, 300*time.Millisecond); err != nil || msg != "a3" {
		t.Errorf("b allowed again: got %q %v from a", msg, err)
	}
}
