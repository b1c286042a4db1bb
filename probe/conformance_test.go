//go:build linux

package probe

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-netpol/kubectl-netpol/internal/cnpcrd"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
	"github.com/kubectl-netpol/kubectl-netpol/policy/conformance"
)

const confNode = "node-1"

// sctpTag numbers SCTP probes uniquely across the whole test run.
var sctpTag atomic.Uint32

// TestConformanceRealPackets runs every upstream e2e case as real packets:
// the 9 model pods are network namespaces; for each
// step the snapshot is compiled and applied; every cell of every probe
// (TCP and UDP connections, SCTP INITs) must equal the engine's verdict, and
// every drop event must name the policies the engine says isolate the
// deciding side.
//
// It runs in the routed layout with the pods' IPv4 addresses and with their
// IPv6 ones (policies, ipBlocks and probes all IPv6: IPv6 is no bypass), and
// in the bridge layout (br_netfilter) with IPv4.
func TestConformanceRealPackets(t *testing.T) {
	requireRoot(t)
	// In parallel with the other layout and the ClusterNetworkPolicy cases:
	// each has its own namespaces, addresses and datapath, and most of their
	// time is denied connections' timeouts (make check: -parallel 3).
	t.Parallel()
	for _, layout := range []struct {
		name     string
		bridge   bool
		families []int
	}{{"routed", false, []int{4, 6}}, {"bridge", true, []int{4}}} {
		t.Run(layout.name, func(t *testing.T) {
			t.Parallel()
			tp := newTopology(t, layout.bridge)
			model := conformance.FullModel()
			pods := map[conformance.PodRef]*pod{}
			sinks := map[conformance.PodRef]*sctpSink{}
			for _, ref := range model.Pods {
				p := tp.addPod(t, string(ref))
				p.serve(t, 80, 81)
				pods[ref] = p
				sinks[ref] = p.sctpSinks(t)
			}
			for _, ref := range model.Pods[1:] {
				waitReachable(t, pods[ref], 80, pods[model.Pods[0]])
			}
			waitReachable(t, pods[model.Pods[0]], 81, pods[model.Pods[1]])
			pr := loadAttached(t, tp.node, testCfg)
			events := collect(t, pr)
			for _, family := range layout.families {
				t.Run(fmt.Sprintf("ipv%d", family), func(t *testing.T) {
					env := conformance.Env{PodIPs: conformance.PodIPs{}}
					for ref, p := range pods {
						env.PodIPs[ref] = p.ip4
						if family == 6 {
							env.PodIPs[ref] = p.ip6
						}
					}
					runConformance(t, env, pr, events, pods, sinks)
				})
			}
		})
	}
}

func runConformance(t *testing.T, env conformance.Env, pr *Probe, events *collector,
	pods map[conformance.PodRef]*pod, sinks map[conformance.PodRef]*sctpSink) {
	cases, err := conformance.Cases(env)
	if err != nil {
		t.Fatal(err)
	}
	cells, drops := 0, 0
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			for si := range c.Steps {
				snap, err := c.Snapshot(si, env)
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range snap.Pods {
					p.Spec.NodeName = confNode
				}
				eng, err := policy.NewEngine(snap)
				if err != nil {
					t.Fatal(err)
				}
				dp, err := eng.Compile(confNode)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := pr.Apply(dp); err != nil {
					t.Fatalf("step %d: Apply: %v", si, err)
				}
				events.drain() // events of earlier steps
				for _, probe := range c.Steps[si].Probes {
					type result struct {
						from, to *corev1.Pod
						got      bool
						err      error
						want     policy.Decision
					}
					var wg sync.WaitGroup
					var mu sync.Mutex
					var results []result
					for _, from := range snap.Pods {
						for _, to := range snap.Pods {
							if from == to {
								continue // upstream ignores loopback cells
							}
							want := eng.Evaluate(policy.Traffic{Src: policy.Peer{Pod: from}, Dst: policy.Peer{Pod: to}, Protocol: probe.Protocol, Port: probe.Port})
							src := pods[conformance.PodRef(from.Namespace+"/"+from.Name)]
							dst := pods[conformance.PodRef(to.Namespace+"/"+to.Name)]
							sink := sinks[conformance.PodRef(to.Namespace+"/"+to.Name)]
							wg.Add(1)
							go func() {
								defer wg.Done()
								r := result{from: from, to: to, want: want}
								switch probe.Protocol {
								case corev1.ProtocolSCTP:
									r.got, r.err = src.probeSCTP(sink, env.PodIPs[conformance.PodRef(to.Namespace+"/"+to.Name)], uint16(probe.Port), sctpTag.Add(1), 500*time.Millisecond)
								default:
									proto := map[corev1.Protocol]string{corev1.ProtocolTCP: "tcp", corev1.ProtocolUDP: "udp"}[probe.Protocol]
									ans, err := src.connect(proto, env.PodIPs[conformance.PodRef(to.Namespace+"/"+to.Name)], int(probe.Port), 500*time.Millisecond)
									r.got = err == nil && ans == dst.podName
									if err != nil && !isTimeout(err) {
										r.err = err
									}
								}
								mu.Lock()
								results = append(results, r)
								mu.Unlock()
							}()
						}
					}
					wg.Wait()
					byPair := map[[2]netip.Addr]result{}
					for _, r := range results {
						cells++
						if r.err != nil {
							t.Errorf("step %d %s %s/%s -> %s/%s: %v", si, probe, r.from.Namespace, r.from.Name, r.to.Namespace, r.to.Name, r.err)
						}
						if r.got != r.want.Allowed {
							t.Errorf("step %d %s %s/%s -> %s/%s: datapath allowed=%v, engine allowed=%v", si, probe,
								r.from.Namespace, r.from.Name, r.to.Namespace, r.to.Name, r.got, r.want.Allowed)
						}
						byPair[[2]netip.Addr{netip.MustParseAddr(r.from.Status.PodIP), netip.MustParseAddr(r.to.Status.PodIP)}] = r
					}
					// Every drop event names what the engine names.
					seen := map[[2]netip.Addr]bool{}
					for _, e := range events.drain() {
						if e.Type != EventDrop || int32(e.Tuple.Dport) != probe.Port {
							continue
						}
						src, dst := TupleAddrs(e.Tuple)
						r, ok := byPair[[2]netip.Addr{src, dst}]
						if !ok {
							continue
						}
						drops++
						seen[[2]netip.Addr{src, dst}] = true
						at := Attribute(dp, &e)
						side := r.want.Ingress
						if !r.want.Egress.Allowed {
							side = r.want.Egress
						}
						if at.Direction != side.Direction || !slices.Equal(at.DeniedBy, side.IsolatedBy) {
							t.Errorf("step %d %s drop %s -> %s attributed to %s %v, engine says %s %v", si, probe, src, dst,
								at.Direction, at.DeniedBy, side.Direction, side.IsolatedBy)
						}
					}
					for pair, r := range byPair {
						if !r.want.Allowed && !seen[pair] {
							t.Errorf("step %d %s %s -> %s: denied without a drop event", si, probe, pair[0], pair[1])
						}
					}
				}
			}
		})
	}
	st, _ := pr.Stats()
	t.Logf("%d cells, %d drop events checked; stats %+v", cells, drops, st)
	if st.RingFull != 0 {
		t.Errorf("ring full %d times", st.RingFull)
	}
}

// TestCNPConformanceRealPackets runs every ported upstream
// ClusterNetworkPolicy conformance case (policy/conformance, from
// sigs.k8s.io/network-policy-api v0.3.0) as real packets, IPv4 and IPv6:
// the model's pods are network namespaces (the hostNetwork "centaur" pods
// too, each standing for its node's address), every state is compiled and
// applied, and every probe (TCP and UDP connections, SCTP INITs) must get
// upstream's verdict, which the engine must give too; every denied probe
// has a drop event naming the ClusterNetworkPolicy rule that denied it, or
// the isolating NetworkPolicies for a default deny, as the engine does.
func TestCNPConformanceRealPackets(t *testing.T) {
	requireRoot(t)
	t.Parallel() // beside TestConformanceRealPackets' layouts
	dir, _, err := cnpcrd.ModuleDir()
	if err != nil {
		t.Fatal(err)
	}
	cases := conformance.CNPCases()
	if len(cases) == 0 {
		t.Fatal("no ported ClusterNetworkPolicy cases")
	}
	tp := newTopology(t, false)
	pods := map[string]*pod{}
	sinks := map[string]*sctpSink{}
	model, err := conformance.NewCNPWorld(dir, &cases[0], netip.MustParsePrefix("10.128.0.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	for _, mp := range model.Pods {
		key := mp.Namespace + "/" + mp.Name
		p := tp.addPod(t, key)
		if mp.Spec.HostNetwork {
			p.serve(t, conformance.CNPHostNetworkPorts...)
		} else {
			p.serve(t, 80, 8080, 53, 5353)
		}
		pods[key], sinks[key] = p, p.sctpSinks(t)
	}
	var first *pod
	for _, p := range pods {
		if first == nil {
			first = p
			continue
		}
		if p.podName != first.podName && !strings.Contains(p.podName, "centaur") && !strings.Contains(first.podName, "centaur") {
			waitReachable(t, p, 80, first)
		}
	}
	pr := loadAttached(t, tp.node, testCfg)
	events := collect(t, pr)
	for _, family := range []int{4, 6} {
		t.Run(fmt.Sprintf("ipv%d", family), func(t *testing.T) {
			probes, drops := 0, 0
			for _, c := range cases {
				t.Run(c.Name, func(t *testing.T) {
					cidr := map[int]string{4: "10.128.0.0/24", 6: "fd00:128::/64"}[family]
					w, err := conformance.NewCNPWorld(dir, &c, netip.MustParsePrefix(cidr))
					if err != nil {
						t.Fatal(err)
					}
					addr := func(p *pod) netip.Addr {
						if family == 6 {
							return p.ip6
						}
						return p.ip4
					}
					// The model's addresses become the namespaces': a
					// hostNetwork pod's is its node's.
					for _, mp := range w.Pods {
						ip := addr(pods[mp.Namespace+"/"+mp.Name]).String()
						mp.Status.PodIP, mp.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
						if !mp.Spec.HostNetwork {
							mp.Spec.NodeName = cnpNode
							continue
						}
						for _, n := range w.Nodes {
							if n.Name == mp.Spec.NodeName {
								n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
							}
						}
					}
					b := &cnpBatch{t: t, pr: pr, events: events}
					err = w.Run(&c, func(a conformance.CNPAction, src, dst *corev1.Pod, changed bool) error {
						if changed {
							b.flush()
							if err := b.apply(w.Snapshot()); err != nil {
								return err
							}
						}
						probes++
						b.probe(a, pods[src.Namespace+"/"+src.Name], sinks[dst.Namespace+"/"+dst.Name], src, netip.MustParseAddr(dst.Status.PodIP))
						return nil
					})
					b.flush()
					drops += b.drops
					if err != nil {
						t.Fatal(err)
					}
				})
			}
			st, _ := pr.Stats()
			t.Logf("%d probes over %d cases, %d drop events checked; stats %+v", probes, len(cases), drops, st)
			if st.RingFull != 0 {
				t.Errorf("ring full %d times", st.RingFull)
			}
		})
	}
}

const cnpNode = "cnp-node"

// cnpBatch runs the probes of one state of a ClusterNetworkPolicy case in
// parallel and checks them (and their drop events) when the state changes.
type cnpBatch struct {
	t       *testing.T
	pr      *Probe
	events  *collector
	eng     *policy.Engine
	dp      *policy.Datapath
	wg      sync.WaitGroup
	mu      sync.Mutex
	results []cnpResult
	drops   int // drop events checked
}

type cnpResult struct {
	a        conformance.CNPAction
	src, dst netip.Addr
	got      bool
	err      error
	want     policy.Decision
}

func (b *cnpBatch) apply(snap *policy.Snapshot) error {
	eng, err := policy.NewEngine(snap)
	if err != nil {
		return err
	}
	dp, err := eng.Compile(cnpNode)
	if err != nil {
		return err
	}
	if _, err := b.pr.Apply(dp); err != nil {
		return fmt.Errorf("Apply: %w", err)
	}
	b.eng, b.dp = eng, dp
	b.events.drain() // earlier states' events
	return nil
}

func (b *cnpBatch) probe(a conformance.CNPAction, from *pod, sink *sctpSink, srcPod *corev1.Pod, dst netip.Addr) {
	r := cnpResult{a: a, dst: dst, src: netip.MustParseAddr(srcPod.Status.PodIP),
		want: b.eng.Evaluate(policy.Traffic{Src: policy.Peer{Pod: srcPod}, Dst: policy.Peer{IP: dst}, Protocol: a.Protocol, Port: a.Port})}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		switch a.Protocol {
		case corev1.ProtocolSCTP:
			r.got, r.err = from.probeSCTP(sink, dst, uint16(a.Port), sctpTag.Add(1), 500*time.Millisecond)
		default:
			proto := map[corev1.Protocol]string{corev1.ProtocolTCP: "tcp", corev1.ProtocolUDP: "udp"}[a.Protocol]
			ans, err := from.connect(proto, dst, int(a.Port), 500*time.Millisecond)
			r.got = err == nil && ans != ""
			if err != nil && !isTimeout(err) {
				r.err = err
			}
		}
		b.mu.Lock()
		b.results = append(b.results, r)
		b.mu.Unlock()
	}()
}

// flush waits for the probes and checks them and their drop events.
func (b *cnpBatch) flush() {
	t := b.t
	b.wg.Wait()
	byFlow := map[string]cnpResult{}
	key := func(src, dst netip.Addr, port int32) string { return fmt.Sprint(src, dst, port) }
	for _, r := range b.results {
		what := fmt.Sprintf("%s -> %s %d/%s", r.a.From, r.a.To, r.a.Port, r.a.Protocol)
		if r.err != nil {
			t.Errorf("%s: %v", what, r.err)
		}
		if r.got != r.a.Allowed || r.want.Allowed != r.a.Allowed {
			t.Errorf("%s: datapath allowed=%v, engine %v, upstream expects %v\n  egress: %s\n  ingress: %s",
				what, r.got, r.want.Allowed, r.a.Allowed, r.want.Egress.Summary, r.want.Ingress.Summary)
		}
		byFlow[key(r.src, r.dst, r.a.Port)] = r
	}
	b.results = nil
	seen := map[string]bool{}
	for _, e := range b.events.drain() {
		if e.Type != EventDrop {
			continue
		}
		src, dst := TupleAddrs(e.Tuple)
		k := key(src, dst, int32(e.Tuple.Dport))
		r, ok := byFlow[k]
		if !ok || r.want.Allowed {
			continue
		}
		b.drops++
		seen[k] = true
		at := Attribute(b.dp, &e)
		side := r.want.Ingress
		if !r.want.Egress.Allowed {
			side = r.want.Egress
		}
		what := fmt.Sprintf("drop %s -> %s %d/%s", r.a.From, r.a.To, r.a.Port, r.a.Protocol)
		switch {
		case at.Direction != side.Direction:
			t.Errorf("%s attributed to %s, engine says %s", what, at.Direction, side.Direction)
		case side.ClusterRule != nil:
			if at.DeniedByRule == nil || at.DeniedByRule.Cluster == nil || at.DeniedByRule.Cluster.Policy != side.ClusterRule.Rule.Policy ||
				at.DeniedByRule.Cluster.Index != side.ClusterRule.Rule.Index {
				t.Errorf("%s attributed to %+v, engine says %+v", what, at, side.ClusterRule.Rule)
			}
		case !slices.Equal(at.DeniedBy, side.IsolatedBy):
			t.Errorf("%s attributed to %v (rule %+v), engine says isolated by %v", what, at.DeniedBy, at.DeniedByRule, side.IsolatedBy)
		}
	}
	for k, r := range byFlow {
		if !r.want.Allowed && !seen[k] {
			t.Errorf("%s -> %s %d/%s: denied without a drop event", r.a.From, r.a.To, r.a.Port, r.a.Protocol)
		}
	}
}
