package policy_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	. "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

// TestEngineReuseMatchesFresh runs random sequences of changes through one
// Cache, whose builds take the previous Engine's namespaces, policy
// instances, identities and pods where they still hold: mostly policy
// changes (the agent's common case), then namespaces' labels and audit
// mode, and every other kind (pods, ClusterNetworkPolicies, node addresses,
// objects without a version, broken objects). Every Engine must answer as a
// fresh one (Compile for several nodes, Evaluate, selections, peers,
// reachability), and the previous Engine as it did when built.
func TestEngineReuseMatchesFresh(t *testing.T) {
	var reused, built uint64
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 61))
			in := &informer{r: r, s: Synthetic(240, 60, seed), mix: reuseMix}
			if seed != 1 {
				SyntheticCluster(in.s, 3, seed) // identities then carry cluster policies too
			}
			for i, p := range in.s.Pods {
				p.ResourceVersion, p.UID = in.nextRV(), types.UID("uid-"+p.Name)
				p.Spec.NodeName = []string{"n1", "n2", "n3"}[i%3]
			}
			for _, np := range in.s.Policies {
				np.ResourceVersion = in.nextRV()
			}
			for _, ns := range in.s.Namespaces {
				ns.ResourceVersion = in.nextRV()
			}
			for _, cnp := range in.s.ClusterPolicies {
				cnp.ResourceVersion = in.nextRV()
			}
			st := runEquivalence(t, in, 40, 2).Stats()
			t.Logf("identities reused %d, built %d", st.IdentitiesReused, st.IdentitiesBuilt)
			reused, built = reused+st.IdentitiesReused, built+st.IdentitiesBuilt
		})
	}
	// (An object without a version, which mutate makes now and then, stops
	// the reuse until it is replaced: counted over the seeds.)
	if 2*reused < built {
		t.Fatalf("the rounds did not exercise the reuse: %d identities reused, %d built", reused, built)
	}
}

// reuseMix is TestEngineReuseMatchesFresh's mix of changes: 60 % policy
// changes, 20 % namespace changes, 10 % the namespaces reordered, the rest
// mutate's.
func reuseMix(in *informer) bool {
	s := in.s
	switch k := in.r.IntN(10); {
	case k < 6:
		in.changePolicy()
	case k < 8 && len(s.Namespaces) > 0:
		i := in.r.IntN(len(s.Namespaces))
		ns := s.Namespaces[i].DeepCopy()
		if k == 6 {
			ns.Labels = Labels(in.pick([]string{"team=team-1", "team=team-2", "env=prod"}), in.pick([]string{"env=dev", "env=prod"}))
		} else {
			ns.Annotations = map[string]string{policy.ModeAnnotation: in.pick([]string{"audit", ""})}
		}
		ns.ResourceVersion = in.nextRV()
		s.Namespaces[i] = ns
	case k == 8: // the same namespaces in another order, as listers give them
		in.r.Shuffle(len(s.Namespaces), func(i, j int) { s.Namespaces[i], s.Namespaces[j] = s.Namespaces[j], s.Namespaces[i] })
	default:
		return false
	}
	return true
}

// TestDatapathsShareIdentities checks what SameIdentities promises: the
// Datapaths of Engines built through one Cache from the same pods share
// one identity list, and a pod change gives another.
func TestDatapathsShareIdentities(t *testing.T) {
	in := syntheticInformer(5)
	c := policy.NewCache()
	compile := func() *policy.Datapath { return Compile(t, c, in.snapshot(), "n1") }
	in.s.ClusterPolicies = nil // node identities would be made per Compile
	first := compile()
	in.changePolicy()
	second := compile()
	if !policy.SameIdentities(first, second) {
		t.Fatalf("a policy change gave another identity list")
	}
	p := in.s.Pods[0].DeepCopy()
	p.Labels = map[string]string{"app": "elsewhere"}
	p.ResourceVersion = in.nextRV()
	in.s.Pods[0] = p
	if third := compile(); policy.SameIdentities(second, third) {
		t.Fatalf("a pod's new labels kept the identity list")
	}
}

// denyFromY is an Admin ClusterNetworkPolicy denying y's pods into x's.
const denyFromY = `
metadata: {name: deny-from-y, resourceVersion: "9"}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: x}}}
  ingress:
  - name: deny-y
    action: Deny
    from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: y}}}]
`

// TestReuseFollowsNamespacesAndClusterPolicies changes, between builds of
// the same pods and NetworkPolicies through one Cache, only a namespace's
// labels, then only the ClusterNetworkPolicies: the last Engine's
// identities and the compile cache's world are then not this build's, and
// each Compile must be a fresh one's.
func TestReuseFollowsNamespacesAndClusterPolicies(t *testing.T) {
	x, y := Namespace("x"), Namespace("y", "team=red")
	a, b := Pod("x", "a", WithLabels("app=a"), WithIP("10.0.0.1")), Pod("y", "b", WithLabels("app=b"), WithIP("10.0.0.2"))
	a.Spec.NodeName = "n1"
	pol := Policy("x", "from-blue", Selecting(Sel("app=a")), IngressRule(Peers(NSPeer(Sel("team=blue")))))
	for i, o := range []metav1.Object{x, y, a, b, pol} {
		o.SetResourceVersion(fmt.Sprint(i + 1))
	}
	s := &policy.Snapshot{Namespaces: []*corev1.Namespace{x, y}, Pods: []*corev1.Pod{a, b}, Policies: []*networkingv1.NetworkPolicy{pol}}
	c := policy.NewCache()
	check := func(step string) {
		t.Helper()
		if got, want := Compile(t, c, s, "n1"), Compile(t, nil, s, "n1"); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: the cached build compiles\n%+v\na fresh one\n%+v", step, got.Endpoints, want.Endpoints)
		}
	}
	check("first")
	check("nothing changed")
	blue := y.DeepCopy()
	blue.Labels, blue.ResourceVersion = map[string]string{"team": "blue"}, "6"
	s.Namespaces = []*corev1.Namespace{blue, x}
	check("y now blue")
	check("nothing changed again")
	s.ClusterPolicies = cnps(t, denyFromY)
	check("a cluster policy")
	s.ClusterPolicies = nil
	check("no cluster policy")
	if st := c.Stats(); st.IdentitiesReused == 0 {
		t.Fatalf("no build took the last one's identities: %+v", st)
	}
}
