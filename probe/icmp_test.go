//go:build linux

package probe

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// ping sends one ICMP (ICMPv6) echo request from p to dst and reports
// whether the matching echo reply came back within timeout.
func (p *pod) ping(t *testing.T, dst netip.Addr, seq uint16, timeout time.Duration) bool {
	t.Helper()
	var ok bool
	err := p.in(func() error {
		netw, req, rep := "ip4:icmp", byte(8), byte(0)
		if dst.Is6() {
			netw, req, rep = "ip6:ipv6-icmp", 128, 129
		}
		c, err := net.Dial(netw, dst.String())
		if err != nil {
			return err
		}
		defer c.Close()
		const id = 0x4e50
		msg := make([]byte, 16)
		msg[0] = req
		binary.BigEndian.PutUint16(msg[4:], id)
		binary.BigEndian.PutUint16(msg[6:], seq)
		if dst.Is4() { // the kernel sums ICMPv6 itself
			binary.BigEndian.PutUint16(msg[2:], inetChecksum(msg))
		}
		if _, err := c.Write(msg); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(timeout))
		buf := make([]byte, 1500)
		for {
			n, _, err := c.(*net.IPConn).ReadFrom(buf) // ReadFrom strips the IPv4 header
			if err != nil {
				return nil // timeout: no reply
			}
			if n >= 8 && buf[0] == rep && binary.BigEndian.Uint16(buf[4:]) == id && binary.BigEndian.Uint16(buf[6:]) == seq {
				ok = true
				return nil
			}
		}
	})
	if err != nil {
		t.Fatalf("ping from %s: %v", p.podName, err)
	}
	return ok
}

func inetChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// TestICMPRealPackets: echo requests (IPv4 and IPv6) between every pair of
// pods get the engine's verdict for protocol ICMP: a rule without ports
// allows every protocol, ICMP included; a rule with ports never allows
// ICMP; not isolated allows; replies always pass. a's ingress allows b
// (no ports) and c (TCP 80 only); c's egress allows a on TCP 80 only; b is
// not isolated.
func TestICMPRealPackets(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t, false)
	pods := []*pod{tp.addPod(t, "a"), tp.addPod(t, "b"), tp.addPod(t, "c")}
	a, b, c := pods[0], pods[1], pods[2]
	for _, p := range pods {
		p.serve(t, 80)
	}
	waitReachable(t, b, 80, a)
	waitReachable(t, c, 80, a)
	waitReachable(t, a, 80, b, c)
	snap := &policy.Snapshot{
		Pods: []*corev1.Pod{podObject(a, "x", map[string]string{"app": "a"}), podObject(b, "x", map[string]string{"app": "b"}),
			podObject(c, "x", map[string]string{"app": "c"})},
		Policies: []*networkingv1.NetworkPolicy{
			netpol("x", "a-in", selector("app", "a"), ingressOnly, []networkingv1.NetworkPolicyIngressRule{
				{From: []networkingv1.NetworkPolicyPeer{{PodSelector: selector("app", "b")}}},
				{From: []networkingv1.NetworkPolicyPeer{{PodSelector: selector("app", "c")}}, Ports: []networkingv1.NetworkPolicyPort{tcpPort(80, 0)}},
			}, nil),
			netpol("x", "c-out", selector("app", "c"), egressOnly, nil, []networkingv1.NetworkPolicyEgressRule{
				{To: []networkingv1.NetworkPolicyPeer{{PodSelector: selector("app", "a")}}, Ports: []networkingv1.NetworkPolicyPort{tcpPort(80, 0)}},
			}),
		},
	}
	eng, err := policy.NewEngine(snap)
	if err != nil {
		t.Fatal(err)
	}
	dp, err := eng.Compile(testNode)
	if err != nil {
		t.Fatal(err)
	}
	pr := loadAttached(t, tp.node, testCfg)
	if _, err := pr.Apply(dp); err != nil {
		t.Fatal(err)
	}
	podOf := map[*pod]*corev1.Pod{a: snap.Pods[0], b: snap.Pods[1], c: snap.Pods[2]}
	seq, allowed, denied := uint16(0), 0, 0
	for _, from := range pods {
		for _, to := range pods {
			if from == to {
				continue
			}
			want := eng.Evaluate(policy.Traffic{Src: policy.Peer{Pod: podOf[from]}, Dst: policy.Peer{Pod: podOf[to]}, Protocol: "ICMP"}).Allowed
			for _, dst := range []netip.Addr{to.ip4, to.ip6} {
				seq++
				got := from.ping(t, dst, seq, 400*time.Millisecond)
				if got != want {
					t.Errorf("ping %s -> %s (%s): datapath allowed=%v, engine allowed=%v", from.podName, to.podName, dst, got, want)
				}
				if got {
					allowed++
				} else {
					denied++
				}
			}
		}
	}
	if allowed == 0 || denied == 0 {
		t.Errorf("%d allowed, %d denied: the table does not test both verdicts", allowed, denied)
	}
}
