package policy_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

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
