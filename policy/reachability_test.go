package policy_test

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	"github.com/kubectl-netpol/kubectl-netpol/policy/conformance"
	. "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

var reachProbes = []policy.Probe{{Protocol: "", Port: 8080}, {Protocol: tcp, Port: 9090}, {Protocol: udp, Port: 53},
	{Protocol: tcp, Port: 8050}, {Protocol: sctp, Port: 80}, {Protocol: "udp", Port: 80}, {Protocol: tcp, Port: 80}}

// sameAsAllowed asserts that every cell of Reachability equals Allowed for
// that pair and probe, and returns how many cells were allowed.
func sameAsAllowed(t *testing.T, e *policy.Engine, srcs, dsts []*corev1.Pod, probes []policy.Probe) (allowed, cells int) {
	t.Helper()
	got := e.Reachability(srcs, dsts, probes)
	if len(got) != len(probes) {
		t.Fatalf("Reachability returned %d tables for %d probes", len(got), len(probes))
	}
	for k, pr := range probes {
		if len(got[k]) != len(srcs) {
			t.Fatalf("probe %d: %d rows for %d sources", k, len(got[k]), len(srcs))
		}
		for i, src := range srcs {
			if len(got[k][i]) != len(dsts) {
				t.Fatalf("probe %d row %d: %d cells for %d destinations", k, i, len(got[k][i]), len(dsts))
			}
			for j, dst := range dsts {
				want := e.Allowed(policy.Traffic{Src: policy.Peer{Pod: src}, Dst: policy.Peer{Pod: dst}, Protocol: pr.Protocol, Port: pr.Port})
				if got[k][i][j] != want {
					t.Fatalf("%d/%s %s/%s -> %s/%s: Reachability %v, Allowed %v", pr.Port, pr.Protocol, src.Namespace, src.Name, dst.Namespace, dst.Name, got[k][i][j], want)
				}
				if want {
					allowed++
				}
				cells++
			}
		}
	}
	return allowed, cells
}

// TestReachabilityEqualsAllowedSynthetic compares every cell on a synthetic
// snapshot, with pods outside the snapshot (a copy of a snapshot pod under
// another UID, one sharing a snapshot pod's IP, one on a node address, a
// host-network pod) among the sources and destinations.
func TestReachabilityEqualsAllowedSynthetic(t *testing.T) {
	s := Synthetic(300, 600, 7)
	e, err := policy.NewEngine(s)
	if err != nil {
		t.Fatal(err)
	}
	copied := s.Pods[5].DeepCopy()
	copied.UID = types.UID("another")
	outsiders := []*corev1.Pod{
		copied,
		Pod(s.Pods[9].Namespace, "shares-ip", WithLabels("app=app-1", "tier=api"), WithIP(s.Pods[9].Status.PodIP), WithPort("http", 8080, tcp)),
		Pod(s.Pods[3].Namespace, "on-node", WithLabels("app=app-2", "tier=db"), WithIP(s.NodeIPs[0].String())),
		Pod(s.Pods[4].Namespace, "host", WithLabels("app=app-3", "tier=web"), WithIP(s.NodeIPs[1].String()), HostNetwork()),
		Pod(s.Pods[4].Namespace, "no-ip", WithLabels("app=app-3", "tier=web")),
	}
	srcs := append(append([]*corev1.Pod{}, s.Pods...), outsiders...)
	var dsts []*corev1.Pod
	for i := len(srcs) - 1; i >= 0; i -= 2 {
		dsts = append(dsts, srcs[i])
	}
	dsts = append(dsts, outsiders...)
	allowed, cells := sameAsAllowed(t, e, srcs, dsts, reachProbes)
	if allowed == 0 || allowed == cells {
		t.Fatalf("degenerate snapshot: %d of %d cells allowed", allowed, cells)
	}
}

// TestReachabilityEqualsAllowedRandomWorlds compares every cell on small
// random worlds (the fuzz generator's: host-network pods, pods without IP,
// on node addresses, sharing addresses, IPv6, every peer and port form), each
// pod with a twin of the same namespace and labels but another address, other
// named ports or another host-network flag, which must not share its verdicts.
func TestReachabilityEqualsAllowedRandomWorlds(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	for n := range 400 {
		data := make([]byte, 64+r.IntN(192))
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		s := randomWorld(&chooser{b: data})
		addTwins(s, r)
		e, err := policy.NewEngine(s)
		if err != nil {
			t.Fatalf("world %d: %v", n, err)
		}
		sameAsAllowed(t, e, s.Pods, s.Pods, reachProbes)
	}
}

// TestReachabilityEqualsAllowedConformance compares every cell of every
// upstream e2e case, step and probe, IPv4 and IPv6.
func TestReachabilityEqualsAllowedConformance(t *testing.T) {
	for _, prefix := range []string{conformance.DefaultPodCIDR, "fd00:77::/64"} {
		ips, err := conformance.AssignPodIPs(netip.MustParsePrefix(prefix))
		if err != nil {
			t.Fatal(err)
		}
		env := conformance.Env{PodIPs: ips}
		cases, err := conformance.Cases(env)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			for i, step := range c.Steps {
				snap, err := c.Snapshot(i, env)
				if err != nil {
					t.Fatal(err)
				}
				e, err := policy.NewEngine(snap)
				if err != nil {
					t.Fatalf("%s step %d: %v", c.Name, i, err)
				}
				var probes []policy.Probe
				for _, p := range step.Probes {
					probes = append(probes, policy.Probe{Protocol: p.Protocol, Port: p.Port})
				}
				sameAsAllowed(t, e, snap.Pods, snap.Pods, probes)
			}
		}
	}
}

// addTwins adds, for each pod, one with the same namespace and labels (so the
// same identity) that differs in address, named ports or host network.
func addTwins(s *policy.Snapshot, r *rand.Rand) {
	ips := []string{"10.0.0.1", "10.0.1.7", "10.0.2.2", "172.31.0.1", "", "fd00::7", "192.0.2.9"}
	for _, p := range s.Pods[:len(s.Pods):len(s.Pods)] {
		twin := p.DeepCopy()
		twin.Name += "-twin"
		twin.UID = types.UID(twin.Name)
		switch r.IntN(3) {
		case 0:
			twin.Status.PodIP, twin.Status.PodIPs = "", nil
			if ip := ips[r.IntN(len(ips))]; ip != "" {
				WithIP(ip)(twin)
			}
		case 1:
			twin.Spec.Containers = []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
				{Name: []string{"http", "dns", "web"}[r.IntN(3)], ContainerPort: []int32{80, 53, 8080}[r.IntN(3)], Protocol: []corev1.Protocol{tcp, udp}[r.IntN(2)]}}}}
		default:
			twin.Spec.HostNetwork = !twin.Spec.HostNetwork
		}
		s.Pods = append(s.Pods, twin)
	}
}
