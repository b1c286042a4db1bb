//go:build linux

package probe

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

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
	for _, layout := range []struct {
		name     string
		bridge   bool
		families []int
	}{{"routed", false, []int{4, 6}}, {"bridge", true, []int{4}}} {
		t.Run(layout.name, func(t *testing.T) {
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
