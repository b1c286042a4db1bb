package policy_test

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"

	"testing"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	. "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

// TestPodIndexReuse builds through one Cache: a policy change reuses the
// pod index of the previous build (same pod records), while a change of
// the node addresses alone, which makes a pod's address a node's, or a new
// version of a pod, does not; every build answers as a fresh Engine.
func TestPodIndexReuse(t *testing.T) {
	src := Pod("x", "src", WithLabels("app=src"), WithIP("10.0.0.5"))
	dst := Pod("x", "dst", WithLabels("app=dst"), WithIP("10.0.0.6"))
	src.ResourceVersion, dst.ResourceVersion = "1", "2"
	deny := Policy("x", "deny", Selecting(Sel("app=dst")))
	deny.ResourceVersion = "3"
	s := &policy.Snapshot{Namespaces: []*corev1.Namespace{Namespace("x")}, Pods: []*corev1.Pod{src, dst}}
	c := policy.NewCache()
	tr := policy.Traffic{Src: policy.Peer{Pod: src}, Dst: policy.Peer{Pod: dst}, Protocol: tcp, Port: 80}
	step := func(name string, want bool) {
		t.Helper()
		e, err := policy.NewEngineCached(s, c)
		if err != nil {
			t.Fatal(err)
		}
		fresh, err := policy.NewEngine(s)
		if err != nil {
			t.Fatal(err)
		}
		if got, f := e.Allowed(tr), fresh.Allowed(tr); got != want || f != want {
			t.Fatalf("%s: allowed %v through the Cache, %v fresh, want %v", name, got, f, want)
		}
	}
	step("no policy", true)
	s.Policies = append(s.Policies, deny)
	step("deny", false)
	s.NodeIPs = []netip.Addr{Addr("10.0.0.5")} // src's address is now a node's: node traffic
	step("node address", true)
	s.NodeIPs = nil
	step("not a node", false)
	moved := src.DeepCopy()
	moved.Status.PodIP, moved.Status.PodIPs = "172.31.0.1", nil
	moved.ResourceVersion = "4"
	s.Pods[0] = moved
	s.NodeIPs = []netip.Addr{Addr("172.31.0.1")}
	tr.Src.Pod = moved
	step("new version on a node address", true)
	if st := c.Stats(); st.Hits == 0 {
		t.Fatalf("nothing reused: %+v", st)
	}
}
