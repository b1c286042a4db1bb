package policy_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	. "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

// chooser draws decisions from fuzz input; exhausted input gives zeros, so
// every input builds a valid world.
type chooser struct {
	b []byte
	i int
}

func (c *chooser) n(k int) int {
	if c.i >= len(c.b) {
		return 0
	}
	v := int(c.b[c.i]) % k
	c.i++
	return v
}

func (c *chooser) pick(xs ...string) string { return xs[c.n(len(xs))] }

// randomWorld builds a small valid snapshot from the input: 3 namespaces,
// up to 6 pods (some hostNetwork or without IP), up to 4 policies using every
// selector, peer and port form.
func randomWorld(c *chooser) *policy.Snapshot {
	s := &policy.Snapshot{NodeIPs: []netip.Addr{Addr("172.31.0.1")}}
	nsLabel := func() []string {
		var kv []string
		if l := c.pick("", "team=a", "team=b"); l != "" {
			kv = append(kv, l)
		}
		if l := c.pick("", "env=", "env=prod"); l != "" {
			kv = append(kv, l)
		}
		return kv
	}
	for _, ns := range []string{"x", "y", "z"} {
		s.Namespaces = append(s.Namespaces, Namespace(ns, nsLabel()...))
	}
	ips := []string{"10.0.0.1", "10.0.0.2", "10.0.1.1", "10.0.1.2", "172.31.0.1", "", "fd00::1"}
	for i := range 2 + c.n(5) {
		tw := []PodTweak{WithLabels(c.pick("app=a", "app=b", "app=c"), c.pick("tier=web", "tier=db", "env=prod", "env="))}
		if ip := ips[c.n(len(ips))]; ip != "" {
			tw = append(tw, WithIP(ip))
		}
		if c.n(6) == 0 {
			tw = append(tw, HostNetwork())
		}
		for range c.n(3) {
			tw = append(tw, WithPort(c.pick("http", "dns", "web"), []int32{80, 53, 8080}[c.n(3)], corev1.Protocol(c.pick("", "TCP", "UDP", "SCTP"))))
		}
		s.Pods = append(s.Pods, Pod(c.pick("x", "y", "z"), fmt.Sprintf("p%d", i), tw...))
	}
	sel := func() *metav1.LabelSelector {
		switch c.n(7) {
		case 0:
			return Sel()
		case 1:
			return Sel(c.pick("app=a", "app=b", "team=a", "team=b", "env=", "env=prod"))
		case 2:
			return Expr(c.pick("app", "env", "team"), metav1.LabelSelectorOpNotIn, c.pick("a", "b", "prod", ""))
		case 3:
			return Expr(c.pick("app", "env", "team"), metav1.LabelSelectorOpDoesNotExist)
		case 4:
			return Expr(c.pick("app", "env", "tier"), metav1.LabelSelectorOpExists)
		case 5:
			return Expr(policy.NamespaceNameLabel, metav1.LabelSelectorOpIn, c.pick("x", "y"), c.pick("z", "w"))
		}
		return Expr(c.pick("app", "team", "tier"), metav1.LabelSelectorOpIn, c.pick("a", "b", "web"), c.pick("c", "db"))
	}
	peers := func() []networkingv1.NetworkPolicyPeer {
		if c.n(4) == 0 {
			return nil
		}
		var out []networkingv1.NetworkPolicyPeer
		for range 1 + c.n(2) {
			switch c.n(4) {
			case 0:
				out = append(out, PodPeer(sel()))
			case 1:
				out = append(out, NSPeer(sel()))
			case 2:
				out = append(out, PodNSPeer(sel(), sel()))
			default:
				switch c.n(4) {
				case 0:
					out = append(out, IPPeer("10.0.0.0/16", "10.0.1.0/24"))
				case 1:
					out = append(out, IPPeer("10.0.0.1/32"))
				case 2:
					out = append(out, IPPeer("0.0.0.0/0", "172.31.0.0/16"))
				default:
					out = append(out, IPPeer("fd00::/64"))
				}
			}
		}
		return out
	}
	protos := []corev1.Protocol{"", tcp, udp, sctp}
	ports := func() []networkingv1.NetworkPolicyPort {
		var out []networkingv1.NetworkPolicyPort
		for range c.n(3) {
			p := protos[c.n(4)]
			switch c.n(5) {
			case 0:
				out = append(out, PortNoProto([]int32{80, 53, 8080}[c.n(3)]))
			case 1:
				if p == "" {
					p = tcp
				}
				out = append(out, Port(p, []int32{80, 53, 8080}[c.n(3)]))
			case 2:
				if p == "" {
					p = udp
				}
				out = append(out, PortRange(p, 50, []int32{53, 80, 8080}[c.n(3)]))
			case 3:
				out = append(out, NamedPort(c.pick("http", "dns", "web", "missing"), p))
			default:
				if p == "" {
					p = sctp
				}
				out = append(out, ProtoOnly(p))
			}
		}
		return out
	}
	for j := range c.n(5) {
		tw := []PolicyTweak{Selecting(sel())}
		switch c.n(4) {
		case 1:
			tw = append(tw, Types(networkingv1.PolicyTypeIngress))
		case 2:
			tw = append(tw, Types(networkingv1.PolicyTypeEgress))
		case 3:
			tw = append(tw, Types(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress))
		}
		for range c.n(3) {
			tw = append(tw, IngressRule(peers(), ports()...))
		}
		for range c.n(3) {
			tw = append(tw, EgressRule(peers(), ports()...))
		}
		s.Policies = append(s.Policies, Policy(c.pick("x", "y", "z"), fmt.Sprintf("np%d", j), tw...))
	}
	randomClusterPolicies(c, s, sel)
	return s
}

// FuzzEvaluate builds random valid worlds and checks every traffic between
// its pods and a few addresses against the reference evaluator and the
// Decision invariants. Run: go test -fuzz FuzzEvaluate ./policy/
func FuzzEvaluate(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f"))
	f.Add([]byte("policies with both directions and named ports everywhere, many of them, many rules"))
	f.Add([]byte{4, 2, 1, 0, 3, 3, 3, 3, 2, 2, 2, 1, 1, 1, 4, 4, 4, 4, 4, 4, 3, 2, 3, 2, 3, 2, 3, 1, 0, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		s := randomWorld(&chooser{b: data})
		e, err := policy.NewEngine(s)
		if err != nil {
			t.Fatalf("NewEngine rejected a valid world: %v", err)
		}
		checkWorld(t, s, e)
	})
}

// checkWorld compares every traffic between the world's pods and a few
// addresses with the reference evaluator and the Decision invariants.
func checkWorld(t *testing.T, s *policy.Snapshot, e *policy.Engine) {
	t.Helper()
	var ends []policy.Peer
	for _, p := range s.Pods {
		ends = append(ends, policy.Peer{Pod: p})
	}
	for _, ip := range []string{"10.0.0.1", "10.0.1.9", "172.31.0.1", "172.31.0.2", "192.0.2.1", "127.0.0.1", "fd00::9"} {
		ends = append(ends, policy.Peer{IP: Addr(ip)})
	}
	for _, src := range ends {
		for _, dst := range ends {
			for _, pp := range []struct {
				proto corev1.Protocol
				port  int32
			}{{"", 80}, {tcp, 8080}, {udp, 53}, {sctp, 80}, {"udp", 80}} {
				tr := policy.Traffic{Src: src, Dst: dst, Protocol: pp.proto, Port: pp.port}
				d := e.Evaluate(tr)
				if got := e.Allowed(tr); got != d.Allowed {
					t.Fatalf("Allowed()=%v, Evaluate().Allowed=%v for %s", got, d.Allowed, trafficString(tr))
				}
				ref := tr
				ref.Protocol = corev1.Protocol(map[corev1.Protocol]string{"udp": "UDP"}[pp.proto])
				if ref.Protocol == "" {
					ref.Protocol = pp.proto
				}
				if want := refAllowed(s, ref); want != d.Allowed {
					t.Fatalf("engine says allowed=%v, reference says %v for %s\n%s", d.Allowed, want, trafficString(tr), dump(d))
				}
				checkInvariants(t, e, tr, d)
			}
		}
	}
}

func trafficString(tr policy.Traffic) string {
	end := func(p policy.Peer) string {
		if p.Pod != nil {
			return fmt.Sprintf("%s/%s%v(ip %q host=%v)", p.Pod.Namespace, p.Pod.Name, p.Pod.Labels, p.Pod.Status.PodIP, p.Pod.Spec.HostNetwork)
		}
		return p.IP.String()
	}
	return fmt.Sprintf("%s -> %s %d/%s", end(tr.Src), end(tr.Dst), tr.Port, tr.Protocol)
}

// FuzzNewEngine feeds arbitrary policy JSON (as a file or the API would carry
// it) to NewEngine: it must reject or accept without panicking, and whatever
// it accepts must evaluate in agreement with the reference evaluator.
// Run: go test -fuzz FuzzNewEngine ./policy/
func FuzzNewEngine(f *testing.F) {
	for _, seed := range []string{
		`{"metadata":{"name":"p","namespace":"x"},"spec":{"podSelector":{}}}`,
		`{"metadata":{"name":"p","namespace":"x"},"spec":{"podSelector":{"matchExpressions":[{"key":"app","operator":"NotIn","values":["a"]}]},"ingress":[{"from":[{"ipBlock":{"cidr":"10.10.0.0/16","except":["10.10.1.0/24"]}}],"ports":[{"port":"http"},{"protocol":"UDP","port":50,"endPort":60}]}]}}`,
		`{"metadata":{"name":"p","namespace":"y"},"spec":{"podSelector":{"matchLabels":{"app":"a"}},"policyTypes":["Egress"],"egress":[{"to":[{"namespaceSelector":{"matchLabels":{"team":"a"}},"podSelector":{}}],"ports":[{"protocol":"SCTP"}]}]}}`,
		`{"metadata":{"name":"p","namespace":"x"},"spec":{"podSelector":{},"ingress":[{"from":[{"ipBlock":{"cidr":"10.0.0.0/8"},"podSelector":{}}]}],"policyTypes":["Bogus"]}}`,
		`{"metadata":{"name":"p","namespace":"x"},"spec":{"podSelector":{},"ingress":[{"ports":[{"port":"http","endPort":3},{"endPort":5},{"port":0}]}]}}`,
		`{"metadata":{"name":"p","namespace":"x"},"spec":{"podSelector":{},"egress":[{"to":[{"ipBlock":{"cidr":"fd00::/64","except":["10.0.0.0/8","fd00::/60","zzz"]}}]}]}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var np networkingv1.NetworkPolicy
		if err := json.Unmarshal(data, &np); err != nil {
			return
		}
		s := world()
		s.Policies = []*networkingv1.NetworkPolicy{&np}
		e, err := policy.NewEngine(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		for _, src := range []string{"x/a", "y/b", "10.10.1.1", "192.0.2.1"} {
			for _, dst := range []string{"x/a", "x/b", "y/a", "fd00::5"} {
				for _, proto := range []corev1.Protocol{tcp, udp, sctp} {
					tr := policy.Traffic{Src: peer(t, s, src), Dst: peer(t, s, dst), Protocol: proto, Port: 80}
					d := e.Evaluate(tr)
					if want := refAllowed(s, tr); want != d.Allowed {
						t.Fatalf("engine says allowed=%v, reference says %v for %s\n%s", d.Allowed, want, trafficString(tr), dump(d))
					}
					checkInvariants(t, e, tr, d)
				}
			}
		}
	})
}
