package advise

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// randomScenario: workloads in three namespaces whose labels sometimes
// collide, named ports on some, connections among them, to outside
// addresses and from a node, some before the window, some denied.
func randomScenario(r *rand.Rand, workloads, conns int) *scenario {
	s := &scenario{nodes: map[string]string{"10.0.0.1": "node-a"}}
	names := []string{"web", "api", "db", "cache", "queue", "auth"}
	for i := range workloads {
		l := map[string]string{}
		switch r.IntN(4) {
		case 0:
			l["app"] = names[r.IntN(len(names))]
		case 1:
			l["app.kubernetes.io/name"] = names[r.IntN(len(names))]
		default:
			l["app.kubernetes.io/name"] = names[r.IntN(len(names))]
			l["app.kubernetes.io/instance"] = fmt.Sprintf("i%d", r.IntN(3))
		}
		if r.IntN(3) == 0 {
			l["tier"] = []string{"front", "back"}[r.IntN(2)]
		}
		w := workload{ns: fmt.Sprintf("ns%d", r.IntN(3)), name: fmt.Sprintf("w%d", i), labels: l, ip: fmt.Sprintf("10.1.%d.%d", i/200, i%200+1)}
		if r.IntN(2) == 0 {
			w.ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}}
		}
		s.workloads = append(s.workloads, w)
	}
	ends := func() string {
		switch n := r.IntN(20); {
		case n == 0:
			return "10.0.0.1"
		case n == 1:
			return fmt.Sprintf("203.0.113.%d", r.IntN(3)+1)
		}
		w := s.workloads[r.IntN(len(s.workloads))]
		return w.ns + "/" + w.name
	}
	ports := []struct {
		proto flowv1.Protocol
		port  uint32
	}{{tcp, 80}, {tcp, 443}, {tcp, 8080}, {tcp, 5432}, {udp, 53}}
	for range conns {
		src, dst := ends(), ends()
		if src == dst || (!strings.Contains(src, "/") && !strings.Contains(dst, "/")) {
			continue
		}
		p := ports[r.IntN(len(ports))]
		at := now.Add(-time.Duration(r.IntN(20)) * time.Hour)
		if r.IntN(8) == 0 {
			at = now.Add(-72 * time.Hour)
		}
		s.conns = append(s.conns, conn{src: src, dst: dst, proto: p.proto, port: p.port, n: 1 + r.IntN(3), at: at, denied: r.IntN(10) == 0})
	}
	return s
}

// TestAdviseProperties: for random scenarios, the advice denies no observed
// connection in the window, and where every selector is unique, removing
// any rule, peer or port denies one.
func TestAdviseProperties(t *testing.T) {
	seeds := 60
	if testing.Short() {
		seeds = 15
	}
	minimalChecked := 0
	for seed := range uint64(seeds) {
		r := rand.New(rand.NewPCG(seed, 7))
		s := randomScenario(r, 12, 40)
		since := now.Add(-24 * time.Hour)
		in := Input{Since: since, Ingress: r.IntN(3) != 0, Egress: r.IntN(2) == 0}
		if r.IntN(2) == 0 {
			in.Namespaces = []string{"ns0", "ns1"}
		}
		rep, out, pols := s.advise(t, in)
		if d := s.newlyDenied(t, since, pols); len(d) > 0 {
			t.Errorf("seed %d: the advice denies observed connections:\n%s\n%s", seed, changes(d), out)
			continue
		}
		shared := false
		for _, p := range rep.Proposals {
			shared = shared || strings.Contains(strings.Join(p.Notes, " "), "shares its labels")
		}
		if shared {
			continue // a peer selector matching two workloads admits more than observed
		}
		minimalChecked++
		assertNothingElse(t, seed, s, since, rep, pols)
		for _, m := range mutations(pols) {
			if d := s.newlyDenied(t, since, m.pols); len(d) == 0 {
				t.Errorf("seed %d: not minimal: without %s no observed connection is denied\n%s", seed, m.what, out)
			}
		}
	}
	t.Logf("minimality checked on %d of %d scenarios", minimalChecked, seeds)
	if minimalChecked < seeds/4 {
		t.Errorf("minimality checked on %d of %d scenarios only: the generator makes too many shared labels", minimalChecked, seeds)
	}
}

// assertNothingElse: under the advice, a workload's unobserved connection
// into a workload with an ingress proposal is denied.
func assertNothingElse(t *testing.T, seed uint64, s *scenario, since time.Time, rep *Report, pols []*networkingv1.NetworkPolicy) {
	t.Helper()
	type key struct {
		src, dst string
		proto    flowv1.Protocol
		port     uint32
	}
	seen := map[key]bool{}
	for _, c := range s.conns {
		if !c.denied && c.at.After(since) {
			seen[key{c.src, c.dst, c.proto, c.port}] = true
		}
	}
	e := engine(t, s.snapshot(pols...))
	for _, p := range rep.Proposals {
		if p.Direction != "ingress" {
			continue
		}
		parts := strings.Split(p.Workload, "/")
		dst := s.find(parts[0] + "/" + parts[2])
		for i := range s.workloads {
			src := &s.workloads[i]
			for _, pt := range []struct {
				proto flowv1.Protocol
				port  uint32
			}{{tcp, 80}, {tcp, 8080}, {udp, 53}} {
				k := key{src.ns + "/" + src.name, dst.ns + "/" + dst.name, pt.proto, pt.port}
				if src == dst || seen[k] {
					continue
				}
				proto, _ := protocol(pt.proto)
				if e.Allowed(policy.Traffic{Src: policy.Peer{Pod: s.pod(src)}, Dst: policy.Peer{Pod: s.pod(dst)}, Protocol: proto, Port: int32(pt.port)}) {
					t.Errorf("seed %d: %s -> %s %s/%d was never observed, yet the advice admits it", seed, k.src, k.dst, proto, pt.port)
				}
			}
		}
	}
}
