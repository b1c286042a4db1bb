package policy_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	. "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

// TestIncrementalCompileMatchesFull applies random sequences of pod,
// namespace, policy and cluster policy changes (as informers deliver them)
// to Synthetic worlds with ClusterNetworkPolicies, ipBlocks, named ports
// and dual-stack pods, and requires every Compile of an Engine built
// through a Cache (which reuses the plain directions of the previous
// Compile) to equal, entry for entry, the Compile of a fresh Engine. Rounds
// that change only policies must reuse most directions.
func TestIncrementalCompileMatchesFull(t *testing.T) {
	rounds := 60
	if testing.Short() {
		rounds = 15
	}
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			in := syntheticInformer(seed)
			c := policy.NewCache()
			compiled := 0
			for round := range rounds {
				// Mostly policy changes, the agent's common case, and
				// every other kind of change between them.
				switch n := in.r.IntN(4); n {
				case 0:
					for range 1 + in.r.IntN(3) {
						in.mutate()
					}
				default:
					in.changePolicy()
				}
				s := in.snapshot()
				got, gotErr := policy.NewEngineCached(s, c)
				want, wantErr := policy.NewEngine(s)
				if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
					t.Fatalf("round %d: cached build error %v, fresh build error %v", round, gotErr, wantErr)
				}
				if wantErr != nil {
					continue
				}
				for _, node := range []string{"n1", "n1", "n2"} { // n1 twice: a Compile with nothing changed
					gdp, gerr := got.Compile(node)
					wdp, werr := want.Compile(node)
					if fmt.Sprint(gerr) != fmt.Sprint(werr) {
						t.Fatalf("round %d: Compile(%s) error %v, fresh %v", round, node, gerr, werr)
					}
					if !reflect.DeepEqual(gdp, wdp) {
						reportDatapathDiff(t, gdp, wdp)
						t.Fatalf("round %d: incremental Compile(%s) differs from a fresh one", round, node)
					}
					compiled++
				}
			}
			st := c.Stats()
			t.Logf("%d compiles; directions reused %d, built %d", compiled, st.DirectionsReused, st.DirectionsCompiled)
			if st.DirectionsReused < st.DirectionsCompiled {
				t.Fatalf("the rounds did not exercise reuse: %d directions reused, %d built", st.DirectionsReused, st.DirectionsCompiled)
			}
		})
	}
}

// syntheticInformer is an informer over Synthetic(600, 150) plus cluster
// policies, a few dual-stack pods, and pods spread over nodes n1..n4.
func syntheticInformer(seed uint64) *informer {
	r := rand.New(rand.NewPCG(seed, 16))
	s := Synthetic(600, 150, seed)
	SyntheticCluster(s, 6, seed)
	in := &informer{r: r, s: s}
	for i, p := range s.Pods {
		p.ResourceVersion, p.UID = in.nextRV(), types.UID("uid-"+p.Name)
		p.Spec.NodeName = []string{"n1", "n2", "n3", "n4"}[i%4]
		if i%7 == 0 {
			WithIP(p.Status.PodIP, fmt.Sprintf("fd00::%x", i+1))(p)
		}
	}
	for _, np := range s.Policies {
		np.ResourceVersion = in.nextRV()
	}
	for _, ns := range s.Namespaces {
		ns.ResourceVersion = in.nextRV()
	}
	for _, cnp := range s.ClusterPolicies {
		cnp.ResourceVersion = in.nextRV()
	}
	return in
}

// changePolicy adds, deletes or edits one NetworkPolicy, like the agent's
// benchmark: some select the pods of a namespace and allow an app, some
// carry ipBlocks or egress named ports, some come from random worlds.
func (in *informer) changePolicy() {
	s := in.s
	in.seq++
	ns := s.Namespaces[in.r.IntN(len(s.Namespaces))].Name
	var np *networkingv1.NetworkPolicy
	switch in.r.IntN(5) {
	case 0:
		np = Policy(ns, fmt.Sprintf("change-%d", in.seq), Selecting(Sel()),
			IngressRule(Peers(PodPeer(Sel(fmt.Sprintf("app=app-%d", in.r.IntN(10))))), Port(tcp, int32(1000+in.r.IntN(50)))))
	case 1:
		np = Policy(ns, fmt.Sprintf("change-%d", in.seq), Selecting(Sel("tier=web")), Types(networkingv1.PolicyTypeEgress),
			EgressRule(Peers(IPPeer("10.128.0.0/9", "10.128.1.0/24"), IPPeer("fd00::/112")), NamedPort("http", tcp)))
	case 2:
		if len(s.Policies) > 0 {
			i := in.r.IntN(len(s.Policies))
			s.Policies = append(s.Policies[:i], s.Policies[i+1:]...)
			return
		}
		fallthrough
	case 3:
		if len(s.Policies) > 0 {
			i := in.r.IntN(len(s.Policies))
			np = s.Policies[i].DeepCopy()
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{Ports: []networkingv1.NetworkPolicyPort{NamedPort("metrics", tcp)}})
			np.ResourceVersion = in.nextRV()
			s.Policies[i] = np
			return
		}
		fallthrough
	default:
		np = in.newPolicy()
		np.Namespace = ns
	}
	np.ResourceVersion = in.nextRV()
	s.Policies = append(s.Policies, np)
}

// reportDatapathDiff logs the first parts of two datapaths that differ.
func reportDatapathDiff(t *testing.T, got, want *policy.Datapath) {
	t.Helper()
	if !reflect.DeepEqual(got.Identities, want.Identities) {
		t.Logf("identities differ")
	}
	if !reflect.DeepEqual(got.Rules, want.Rules) {
		t.Logf("rules differ: %d vs %d", len(got.Rules), len(want.Rules))
	}
	if len(got.Endpoints) != len(want.Endpoints) {
		t.Logf("%d endpoints, fresh %d", len(got.Endpoints), len(want.Endpoints))
		return
	}
	for i := range got.Endpoints {
		g, w := got.Endpoints[i], want.Endpoints[i]
		if !reflect.DeepEqual(g, w) {
			t.Logf("endpoint %s/%s:\nincremental ingress %+v\nfresh       ingress %+v\nincremental egress %+v\nfresh       egress %+v",
				g.Namespace, g.Name, g.Ingress, w.Ingress, g.Egress, w.Egress)
			return
		}
	}
}
