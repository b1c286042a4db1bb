package policy_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	"slices"
	"strconv"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	. "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

// informer plays an informer cache: every update is a new object with a new
// ResourceVersion; the objects handed out are never modified afterwards
// (except by inPlace, which bumps the ResourceVersion of the same object).
type informer struct {
	r   *rand.Rand
	s   *policy.Snapshot
	rv  int
	seq int
	// inPlace is set in a round that modified an object in place.
	inPlace bool
	// broken is set while the snapshot holds an object NewEngine rejects.
	broken bool
	// mix, when set, makes a change of its choice instead of mutate's
	// (reporting true), or leaves it to mutate.
	mix func(*informer) bool
}

func (in *informer) nextRV() string { in.rv++; return strconv.Itoa(in.rv) }

// donor draws a random valid world (fuzz_test.go's generator) to take
// pods and policies from: every selector, peer and port form.
func (in *informer) donor() *policy.Snapshot {
	b := make([]byte, 64)
	for i := range b {
		b[i] = byte(in.r.IntN(256))
	}
	return randomWorld(&chooser{b: b})
}

func (in *informer) nsNames() []string {
	out := []string{"x", "y", "z"} // pods and policies may name a namespace absent from the snapshot
	for _, ns := range in.s.Namespaces {
		if !slices.Contains(out, ns.Name) {
			out = append(out, ns.Name)
		}
	}
	return out
}

func (in *informer) pick(xs []string) string { return xs[in.r.IntN(len(xs))] }

// donated is one object of a random world (which may have none of a kind).
func donated[T any](in *informer, of func(*policy.Snapshot) []T) T {
	for {
		if xs := of(in.donor()); len(xs) > 0 {
			in.seq++
			return xs[in.r.IntN(len(xs))]
		}
	}
}

func (in *informer) newPod() *corev1.Pod {
	p := donated(in, func(s *policy.Snapshot) []*corev1.Pod { return s.Pods })
	p.Name, p.Namespace = fmt.Sprintf("pod-%d", in.seq), in.pick(in.nsNames())
	p.UID = types.UID("uid-" + p.Name)
	p.Spec.NodeName = in.pick([]string{"n1", "n2", "n1", ""})
	if in.r.IntN(2) == 0 {
		in.setIP(p)
	}
	p.ResourceVersion = in.nextRV()
	return p
}

func (in *informer) setIP(p *corev1.Pod) {
	switch in.r.IntN(6) {
	case 0:
		p.Status.PodIP, p.Status.PodIPs = "", nil
	case 1:
		WithIP(fmt.Sprintf("10.0.%d.%d", in.r.IntN(2), 1+in.r.IntN(4)), fmt.Sprintf("fd00::%x", 1+in.r.IntN(9)))(p)
	case 2:
		WithIP("172.31.0.1")(p) // a node address
	default:
		WithIP(fmt.Sprintf("10.0.%d.%d", in.r.IntN(2), 1+in.r.IntN(9)))(p)
	}
}

func (in *informer) newPolicy() *networkingv1.NetworkPolicy {
	np := donated(in, func(s *policy.Snapshot) []*networkingv1.NetworkPolicy { return s.Policies })
	np.Name, np.Namespace = fmt.Sprintf("np-%d", in.seq), in.pick(in.nsNames())
	np.ResourceVersion = in.nextRV()
	return np
}

// mutate applies one random change, as the API server would deliver it.
func (in *informer) mutate() {
	if in.mix != nil && in.mix(in) {
		return
	}
	s := in.s
	rv := in.nextRV()
	switch k := in.r.IntN(20); {
	case k == 0 || len(s.Pods) == 0:
		s.Pods = append(s.Pods, in.newPod())
	case k == 1:
		i := in.r.IntN(len(s.Pods))
		s.Pods = slices.Delete(s.Pods, i, i+1)
	case k <= 5: // update a pod
		i := in.r.IntN(len(s.Pods))
		p := s.Pods[i].DeepCopy()
		switch in.r.IntN(7) {
		case 0:
			p.Labels = in.newPod().Labels
		case 1:
			in.setIP(p)
		case 2:
			p.Status.Phase = corev1.PodPhase(in.pick([]string{"Running", "Succeeded", "Failed", "Pending"}))
		case 3:
			p.Spec.HostNetwork = !p.Spec.HostNetwork
		case 4:
			p.Spec.Containers = in.newPod().Spec.Containers // other named ports
		case 5:
			p.Spec.NodeName = in.pick([]string{"n1", "n2", ""})
		default: // no change but the version (a resync or an unrelated field)
		}
		p.ResourceVersion = rv
		s.Pods[i] = p
	case k == 6:
		if len(s.Namespaces) < 5 {
			in.seq++
			ns := Namespace(fmt.Sprintf("ns-%d", in.seq), "team=a")
			ns.ResourceVersion = rv
			s.Namespaces = append(s.Namespaces, ns)
		} else {
			i := in.r.IntN(len(s.Namespaces))
			s.Namespaces = slices.Delete(s.Namespaces, i, i+1)
		}
	case k == 7 && len(s.Namespaces) > 0:
		i := in.r.IntN(len(s.Namespaces))
		ns := s.Namespaces[i].DeepCopy()
		ns.Labels = Labels(in.pick([]string{"team=a", "team=b", "env=prod", "env="}), in.pick([]string{"team=b", "env="}))
		ns.ResourceVersion = rv
		s.Namespaces[i] = ns
	case k == 8 || len(s.Policies) == 0:
		s.Policies = append(s.Policies, in.newPolicy())
	case k == 9:
		i := in.r.IntN(len(s.Policies))
		s.Policies = slices.Delete(s.Policies, i, i+1)
	case k <= 12: // edit a policy's spec
		i := in.r.IntN(len(s.Policies))
		np := s.Policies[i].DeepCopy()
		np.Spec = in.newPolicy().Spec
		np.ResourceVersion = rv
		s.Policies[i] = np
	case k == 16: // a new cluster policy
		c := donated(in, func(s *policy.Snapshot) []*cnpv1beta1.ClusterNetworkPolicy { return s.ClusterPolicies }).DeepCopy()
		c.Name, c.ResourceVersion = fmt.Sprintf("cnp-%d", in.seq), rv
		s.ClusterPolicies = append(s.ClusterPolicies, c)
	case k == 17 && len(s.ClusterPolicies) > 0:
		i := in.r.IntN(len(s.ClusterPolicies))
		s.ClusterPolicies = slices.Delete(s.ClusterPolicies, i, i+1)
	case k == 18 && len(s.ClusterPolicies) > 0: // another priority, or audited
		i := in.r.IntN(len(s.ClusterPolicies))
		c := s.ClusterPolicies[i].DeepCopy()
		c.Spec.Priority = int32(in.r.IntN(4))
		c.Annotations = map[string]string{policy.ModeAnnotation: in.pick([]string{"audit", "enforce", ""})}
		c.ResourceVersion = rv
		s.ClusterPolicies[i] = c
	case k == 19: // audit a policy or a namespace, or stop
		if in.r.IntN(2) == 0 && len(s.Namespaces) > 0 {
			i := in.r.IntN(len(s.Namespaces))
			ns := s.Namespaces[i].DeepCopy()
			ns.Annotations = map[string]string{policy.ModeAnnotation: in.pick([]string{"audit", ""})}
			ns.ResourceVersion = rv
			s.Namespaces[i] = ns
		} else {
			i := in.r.IntN(len(s.Policies))
			np := s.Policies[i].DeepCopy()
			np.Annotations = map[string]string{policy.ModeAnnotation: in.pick([]string{"audit", "enforce", ""})}
			np.ResourceVersion = rv
			s.Policies[i] = np
		}
	case k == 13:
		s.NodeIPs = [][]netip.Addr{{Addr("172.31.0.1")}, {Addr("172.31.0.1"), Addr("10.0.0.3")}, nil}[in.r.IntN(3)]
	case k == 14: // an object without a ResourceVersion (built by hand)
		if in.r.IntN(2) == 0 {
			i := in.r.IntN(len(s.Pods))
			p := s.Pods[i].DeepCopy()
			p.ResourceVersion = ""
			s.Pods[i] = p
		} else {
			i := in.r.IntN(len(s.Policies))
			np := s.Policies[i].DeepCopy()
			np.ResourceVersion = ""
			s.Policies[i] = np
		}
	default: // the same object changed in place with a new version
		in.inPlace = true
		if in.r.IntN(2) == 0 {
			p := s.Pods[in.r.IntN(len(s.Pods))]
			p.Labels = in.newPod().Labels
			p.ResourceVersion = rv
		} else {
			np := s.Policies[in.r.IntN(len(s.Policies))]
			np.Spec = in.newPolicy().Spec
			np.ResourceVersion = rv
		}
	}
}

// breakOrFix puts one object NewEngine rejects into the snapshot, or
// replaces the broken one by a valid version.
func (in *informer) breakOrFix() {
	s := in.s
	if in.broken {
		for i, p := range s.Pods {
			if p.Status.PodIP == "10.0.0.999" || (i > 0 && p.Name == s.Pods[0].Name && p.Namespace == s.Pods[0].Namespace) {
				s.Pods[i] = in.newPod()
			}
		}
		for i, np := range s.Policies {
			if np.Name == "Invalid" {
				s.Policies[i] = in.newPolicy()
			}
		}
		in.broken = false
		return
	}
	in.broken = true
	switch in.r.IntN(3) {
	case 0:
		p := in.newPod()
		p.Status.PodIP = "10.0.0.999"
		s.Pods = append(s.Pods, p)
	case 1:
		np := in.newPolicy()
		np.Name = "Invalid" // not a DNS subdomain
		s.Policies = append(s.Policies, np)
	default:
		p := in.newPod()
		p.Name, p.Namespace = s.Pods[0].Name, s.Pods[0].Namespace
		s.Pods = append(s.Pods, p)
	}
}

// snapshot returns a copy of the lists (the objects are shared, as from listers).
func (in *informer) snapshot() *policy.Snapshot {
	return &policy.Snapshot{Namespaces: slices.Clone(in.s.Namespaces), Pods: slices.Clone(in.s.Pods),
		Policies: slices.Clone(in.s.Policies), NodeIPs: slices.Clone(in.s.NodeIPs),
		ClusterPolicies: slices.Clone(in.s.ClusterPolicies)}
}

// answers is everything compared between two Engines on one snapshot.
type answers struct {
	compiled  map[string]*policy.Datapath
	decisions []policy.Decision
	selecting [][]policy.PolicyRef
	peerPods  [][]*corev1.Pod
	reach     [][][]bool
}

var equivalenceProbes = []policy.Probe{{Protocol: tcp, Port: 80}, {Protocol: udp, Port: 53}, {Protocol: sctp, Port: 8080}}

func collect(t *testing.T, e *policy.Engine, s *policy.Snapshot, ts []policy.Traffic) answers {
	t.Helper()
	a := answers{compiled: map[string]*policy.Datapath{}}
	for _, node := range []string{"n1", "n2", "elsewhere"} {
		dp, err := e.Compile(node)
		if err != nil {
			t.Fatalf("Compile(%s): %v", node, err)
		}
		a.compiled[node] = dp
	}
	for _, tr := range ts {
		d := e.Evaluate(tr)
		if e.Allowed(tr) != d.Allowed {
			t.Fatalf("Allowed and Evaluate disagree on %s", trafficString(tr))
		}
		checkWhy(t, e.Why(tr), d, tr)
		a.decisions = append(a.decisions, d)
	}
	for _, p := range s.Pods {
		a.selecting = append(a.selecting, e.SelectingPolicies(p, policy.Ingress), e.SelectingPolicies(p, policy.Egress))
	}
	for _, np := range e.Policies() {
		ref := policy.PolicyRef{Kind: policy.KindNetworkPolicy, Namespace: np.Namespace, Name: np.Name}
		for _, dir := range []policy.Direction{policy.Ingress, policy.Egress} {
			for ri := range e.RuleCount(ref, dir) {
				r := policy.RuleRef{Policy: ref, Direction: dir, Index: ri}
				peers, _, _, _, _ := e.RuleShape(r)
				for i := range peers {
					a.peerPods = append(a.peerPods, e.PeerPods(r, i))
				}
			}
		}
	}
	a.reach = e.Reachability(s.Pods, s.Pods, equivalenceProbes)
	return a
}

// sampleTraffics draws traffic between snapshot pods (by object and by
// address), node and external addresses, on numbered and named ports.
func sampleTraffics(r *rand.Rand, s *policy.Snapshot, n int) []policy.Traffic {
	ends := func() policy.Peer {
		switch k := r.IntN(8); {
		case k < 5 && len(s.Pods) > 0:
			return policy.Peer{Pod: s.Pods[r.IntN(len(s.Pods))]}
		case k == 5 && len(s.Pods) > 0:
			p := s.Pods[r.IntN(len(s.Pods))]
			ip, _ := netip.ParseAddr(p.Status.PodIP)
			return policy.Peer{IP: ip}
		case k == 6:
			return policy.Peer{Pod: Pod("x", "outsider", WithLabels("app=a"), WithIP("10.0.0.77"))}
		}
		return policy.Peer{IP: Addr([]string{"10.0.0.1", "10.0.1.9", "172.31.0.1", "192.0.2.1", "fd00::1", "127.0.0.1"}[r.IntN(6)])}
	}
	out := make([]policy.Traffic, n)
	for i := range out {
		out[i] = policy.Traffic{Src: ends(), Dst: ends(),
			Protocol: []corev1.Protocol{"", tcp, udp, sctp}[r.IntN(4)], Port: []int32{53, 80, 8080, 81}[r.IntN(4)]}
	}
	return out
}

// TestCacheEquivalence builds, after each of many rounds of random changes
// delivered the way informers deliver them, one Engine through a Cache that
// lives across the rounds and one with NewEngine, and requires the same
// error or the same answers: Compile for several nodes, Evaluate and Allowed
// on sampled traffic, SelectingPolicies, PeerPods, Reachability. The Engine
// of the previous round must still answer as it did when built.
func TestCacheEquivalence(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 99))
			in := &informer{r: r, s: &policy.Snapshot{NodeIPs: []netip.Addr{Addr("172.31.0.1")}}}
			for _, ns := range []string{"x", "y", "z"} {
				n := Namespace(ns, "team="+ns)
				n.ResourceVersion = in.nextRV()
				in.s.Namespaces = append(in.s.Namespaces, n)
			}
			for range 40 {
				in.s.Pods = append(in.s.Pods, in.newPod())
			}
			for range 15 {
				in.s.Policies = append(in.s.Policies, in.newPolicy())
			}
			for range 4 {
				c := donated(in, func(s *policy.Snapshot) []*cnpv1beta1.ClusterNetworkPolicy { return s.ClusterPolicies }).DeepCopy()
				c.Name, c.ResourceVersion = fmt.Sprintf("cnp-%d", in.seq), in.nextRV()
				in.s.ClusterPolicies = append(in.s.ClusterPolicies, c)
			}
			runEquivalence(t, in, 250, 1+r.IntN(2))
		})
	}
}

// TestCacheEquivalenceSynthetic is the same at the benchmarks' shape: a
// Synthetic snapshot of 1,500 pods and 300 policies, fewer rounds.
func TestCacheEquivalenceSynthetic(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the large-snapshot rounds")
	}
	r := rand.New(rand.NewPCG(7, 7))
	in := &informer{r: r, s: Synthetic(800, 200, 3)}
	for i, p := range in.s.Pods {
		p.ResourceVersion, p.UID = in.nextRV(), types.UID("uid-"+p.Name)
		p.Spec.NodeName = []string{"n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8"}[i%8]
	}
	for _, np := range in.s.Policies {
		np.ResourceVersion = in.nextRV()
	}
	for _, ns := range in.s.Namespaces {
		ns.ResourceVersion = in.nextRV()
	}
	runEquivalence(t, in, 15, 3)
}

// runEquivalence returns the Cache it built through.
func runEquivalence(t *testing.T, in *informer, rounds, maxChanges int) *policy.Cache {
	c := policy.NewCache()
	var prev *policy.Engine
	var prevSnap *policy.Snapshot
	var prevTraffic []policy.Traffic
	var prevAnswers answers
	built := 0
	for round := range rounds {
		in.inPlace = false
		if in.broken || in.r.IntN(25) == 0 {
			in.breakOrFix()
		}
		for range in.r.IntN(maxChanges + 1) { // 0: a round with no change at all
			in.mutate()
		}
		s := in.snapshot()
		got, gotErr := policy.NewEngineCached(s, c)
		want, wantErr := policy.NewEngine(s)
		if in.inPlace {
			prev = nil // its objects changed under it: nothing to compare
		}
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Fatalf("round %d: cached build error %v, fresh build error %v", round, gotErr, wantErr)
		}
		if st := c.Stats(); st.Pods > len(s.Pods) || st.Policies > len(s.Policies) {
			t.Fatalf("round %d: the cache holds %d pods and %d policies, the snapshot %d and %d", round, st.Pods, st.Policies, len(s.Pods), len(s.Policies))
		}
		if wantErr != nil {
			continue
		}
		built++
		ts := sampleTraffics(in.r, s, 150)
		ga, wa := collect(t, got, s, ts), collect(t, want, s, ts)
		for node, dp := range wa.compiled {
			if !reflect.DeepEqual(ga.compiled[node], dp) {
				t.Fatalf("round %d: Compile(%s) differs:\ncached %+v\nfresh  %+v", round, node, ga.compiled[node], dp)
			}
		}
		for i := range ts {
			if !reflect.DeepEqual(ga.decisions[i], wa.decisions[i]) {
				t.Fatalf("round %d: %s:\ncached %s\nfresh  %s", round, trafficString(ts[i]), dump(ga.decisions[i]), dump(wa.decisions[i]))
			}
		}
		if !reflect.DeepEqual(ga.selecting, wa.selecting) || !reflect.DeepEqual(ga.peerPods, wa.peerPods) || !reflect.DeepEqual(ga.reach, wa.reach) {
			t.Fatalf("round %d: SelectingPolicies, PeerPods or Reachability differ", round)
		}
		// The Engine of the previous build shares cached parts with this
		// one: it must not have changed.
		if prev != nil {
			if again := collect(t, prev, prevSnap, prevTraffic); !reflect.DeepEqual(again, prevAnswers) {
				for node, dp := range again.compiled {
					if !reflect.DeepEqual(prevAnswers.compiled[node], dp) {
						t.Logf("Compile(%s):\nthen %+v\nnow  %+v", node, prevAnswers.compiled[node], dp)
					}
				}
				for i := range prevTraffic {
					if !reflect.DeepEqual(again.decisions[i], prevAnswers.decisions[i]) {
						t.Logf("%s:\nthen %s\nnow  %s", trafficString(prevTraffic[i]), dump(prevAnswers.decisions[i]), dump(again.decisions[i]))
					}
				}
				t.Logf("selecting %v peerPods %v reach %v", reflect.DeepEqual(again.selecting, prevAnswers.selecting), reflect.DeepEqual(again.peerPods, prevAnswers.peerPods), reflect.DeepEqual(again.reach, prevAnswers.reach))
				t.Fatalf("round %d: the previous round's Engine answers differently after this build", round)
			}
		}
		prev, prevSnap, prevTraffic, prevAnswers = got, s, ts, ga
	}
	st := c.Stats()
	t.Logf("%d rounds, %d built; cache: %+v", rounds, built, st)
	if built < rounds/2 || st.Hits < st.Misses {
		t.Fatalf("the rounds did not exercise the cache: %d of %d built, %+v", built, rounds, st)
	}
	// Bounded: a build with nothing in it leaves nothing behind.
	if _, err := policy.NewEngineCached(&policy.Snapshot{}, c); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Pods != 0 || st.Policies != 0 {
		t.Fatalf("after an empty build the cache still holds %+v", st)
	}
	return c
}

// TestCacheReusesUnchangedObjects checks that the cache is used at all: a
// second build of the same objects derives nothing again, and a change of
// ResourceVersion on the same object is a miss.
func TestCacheReusesUnchangedObjects(t *testing.T) {
	s := Synthetic(300, 60, 1)
	for i, p := range s.Pods {
		p.ResourceVersion = strconv.Itoa(i + 1)
	}
	for i, np := range s.Policies {
		np.ResourceVersion = strconv.Itoa(1000 + i)
	}
	c := policy.NewCache()
	for range 2 {
		if _, err := policy.NewEngineCached(s, c); err != nil {
			t.Fatal(err)
		}
	}
	objects := uint64(len(s.Pods) + len(s.Policies))
	if st := c.Stats(); st.Misses != objects || st.Hits != objects {
		t.Fatalf("two builds of %d objects: %+v, want as many misses (first) as hits (second)", objects, st)
	}
	// An in-place edit with a new version must be seen.
	np := s.Policies[0]
	port := intstr.FromInt32(4444)
	np.Spec.PodSelector = *Sel()
	np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &port}}}}
	np.ResourceVersion = "changed"
	e, err := policy.NewEngineCached(s, c)
	if err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Misses != objects+1 {
		t.Fatalf("after a version change: %+v, want one more miss", st)
	}
	fresh, err := policy.NewEngine(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range traffics(s, 500) {
		tr.Port = 4444
		if got, want := e.Evaluate(tr), fresh.Evaluate(tr); !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: cached %s, fresh %s", trafficString(tr), dump(got), dump(want))
		}
	}
}

// TestCacheConcurrentBuilds builds through one Cache from several
// goroutines, alternating two versions of a snapshot, while Engines built
// earlier answer queries, and compile. Run with -race.
func TestCacheConcurrentBuilds(t *testing.T) {
	a := Synthetic(200, 40, 5)
	for i, p := range a.Pods {
		p.ResourceVersion = strconv.Itoa(i + 1)
	}
	for i, np := range a.Policies {
		np.ResourceVersion = strconv.Itoa(1000 + i)
	}
	b := &policy.Snapshot{Namespaces: a.Namespaces, Pods: slices.Clone(a.Pods), Policies: a.Policies[1:], NodeIPs: a.NodeIPs}
	b.Pods[0] = b.Pods[0].DeepCopy()
	b.Pods[0].Labels = Labels("app=other")
	b.Pods[0].ResourceVersion = "changed"
	ts := traffics(a, 300)
	want := map[*policy.Snapshot][]bool{}
	wantDP := map[*policy.Snapshot]*policy.Datapath{} // every pod is on node ""
	for _, s := range []*policy.Snapshot{a, b} {
		e, err := policy.NewEngine(s)
		if err != nil {
			t.Fatal(err)
		}
		if wantDP[s], err = e.Compile(""); err != nil {
			t.Fatal(err)
		}
		for _, tr := range ts {
			want[s] = append(want[s], e.Allowed(tr))
		}
	}
	c := policy.NewCache()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 6 {
				s := []*policy.Snapshot{a, b}[(g+i)%2]
				e, err := policy.NewEngineCached(s, c)
				if err != nil {
					t.Error(err)
					return
				}
				// Compiles through the Cache run concurrently too.
				if dp, err := e.Compile(""); err != nil || !reflect.DeepEqual(dp, wantDP[s]) {
					t.Errorf("goroutine %d build %d: Compile differs from a fresh one (%v)", g, i, err)
					return
				}
				for k, tr := range ts {
					if e.Allowed(tr) != want[s][k] {
						t.Errorf("goroutine %d build %d: %s differs from NewEngine", g, i, trafficString(tr))
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// checkWhy: Why says what Evaluate says about what decided, direction by
// direction, and nothing about the rules that did not match.
func checkWhy(t *testing.T, why, full policy.Decision, tr policy.Traffic) {
	t.Helper()
	if why.Allowed != full.Allowed || len(why.Warnings) != 0 {
		t.Fatalf("Why on %s: allowed %v (Evaluate %v), %d warnings", trafficString(tr), why.Allowed, full.Allowed, len(why.Warnings))
	}
	for _, p := range [][2]policy.DirectionDecision{{why.Egress, full.Egress}, {why.Ingress, full.Ingress}} {
		w, f := p[0], p[1]
		if w.Allowed != f.Allowed || w.Reason != f.Reason || w.Isolated != f.Isolated || !reflect.DeepEqual(w.IsolatedBy, f.IsolatedBy) ||
			!reflect.DeepEqual(w.AllowedBy, f.AllowedBy) || len(w.Policies) != 0 {
			t.Fatalf("Why on %s, %s: %+v\nEvaluate: %+v", trafficString(tr), w.Direction, w, f)
		}
	}
}
