package policy

import (
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
)

// Probe is one destination port of a reachability matrix.
type Probe struct {
	// Protocol defaults to TCP.
	Protocol corev1.Protocol
	Port     int32
}

// Reachability answers Allowed for every source, destination and probe:
// out[k][i][j] is Allowed(Traffic{Src: Peer{Pod: srcs[i]}, Dst: Peer{Pod:
// dsts[j]}, Protocol: probes[k].Protocol, Port: probes[k].Port}).
//
// Pods the policy semantics cannot tell apart (same identity, host-network
// flag, named ports, node-address flag and the same answer from every ipBlock
// of every policy) form one class, and each (source class, destination class,
// probe) is decided once, by the code Allowed runs; only the loopback
// exemption, which depends on the pods themselves, is judged per cell. Work
// is spread over GOMAXPROCS goroutines. Like Allowed it is safe for
// concurrent use.
func (e *Engine) Reachability(srcs, dsts []*corev1.Pod, probes []Probe) [][][]bool {
	blocks := e.ipBlocks()
	srcEPs, srcClass, srcReps := e.classify(srcs, blocks)
	dstEPs, dstClass, dstReps := e.classify(dsts, blocks)
	out := make([][][]bool, len(probes))
	for k, pr := range probes {
		proto := normProtocol(pr.Protocol)
		classes := make([]bool, len(srcReps)*len(dstReps))
		parallel(len(srcReps), func(sc int) {
			row := classes[sc*len(dstReps) : (sc+1)*len(dstReps)]
			for dc := range dstReps {
				row[dc] = e.permits(&srcReps[sc], &dstReps[dc], proto, pr.Port)
			}
		})
		cells := make([]bool, len(srcs)*len(dsts))
		out[k] = make([][]bool, len(srcs))
		parallel(len(srcs), func(i int) {
			row := cells[i*len(dsts) : (i+1)*len(dsts) : (i+1)*len(dsts)]
			classRow := classes[srcClass[i]*len(dstReps):]
			for j := range dsts {
				row[j] = classRow[dstClass[j]] || isLoopback(&srcEPs[i], &dstEPs[j])
			}
			out[k][i] = row
		})
	}
	return out
}

// ipBlocks returns one peer per distinct ipBlock (cidr and excepts) of every
// policy and network of every cluster policy, to class endpoints by the
// blocks their address falls in.
func (e *Engine) ipBlocks() []*peerInfo {
	seen := map[string]bool{}
	var out []*peerInfo
	for _, pol := range e.policies {
		for d := range pol.rules {
			for ri := range pol.rules[d] {
				for pi := range pol.rules[d][ri].peers {
					p := &pol.rules[d][ri].peers[pi]
					if !p.ipBlock {
						continue
					}
					k := fmt.Sprint(p.cidr, p.except)
					if !seen[k] {
						seen[k] = true
						out = append(out, p)
					}
				}
			}
		}
	}
	// Networks peers of ClusterNetworkPolicies class addresses the same way.
	for _, ci := range e.clusters {
		for d := range ci.rules {
			for ri := range ci.rules[d] {
				for _, p := range ci.rules[d][ri].peers {
					for _, n := range p.networks {
						if k := fmt.Sprint(n, "[]"); !seen[k] {
							seen[k] = true
							out = append(out, &peerInfo{ipBlock: true, cidr: n})
						}
					}
				}
			}
		}
	}
	return out
}

// classKey is everything side and isLoopback-free rule matching read from an
// endpoint: two endpoints with the same key get the same verdicts.
type classKey struct {
	ident       *identity
	hostNetwork bool
	ipValid     bool
	node        bool
	ports       string
	blocks      string // one byte per ipBlocks entry: '1' if the address is in it
	// nodeIP is the node address itself when node peers of cluster
	// policies may tell nodes apart.
	nodeIP netip.Addr
}

// classify resolves pods to endpoints and groups them into classes. It
// returns the endpoints, each one's class, and one representative per class.
func (e *Engine) classify(pods []*corev1.Pod, blocks []*peerInfo) (eps []endpoint, class []int, reps []endpoint) {
	eps = make([]endpoint, len(pods))
	class = make([]int, len(pods))
	index := map[classKey]int{}
	var b strings.Builder
	for i, pod := range pods {
		ep := e.resolve(Peer{Pod: pod})
		eps[i] = ep
		k := classKey{ipValid: ep.ip.IsValid(), node: ep.node}
		if ep.node && len(e.clusters) > 0 {
			k.nodeIP = ep.ip
		}
		if ep.pod != nil {
			k.ident, k.hostNetwork, k.ports = ep.pod.ident, ep.pod.hostNetwork, fmt.Sprint(ep.pod.ports)
		}
		if k.ipValid && len(blocks) > 0 {
			b.Reset()
			for _, p := range blocks {
				if p.inBlock(ep.ip) {
					b.WriteByte('1')
				} else {
					b.WriteByte('0')
				}
			}
			k.blocks = b.String()
		}
		c, ok := index[k]
		if !ok {
			c = len(reps)
			index[k] = c
			reps = append(reps, ep)
		}
		class[i] = c
	}
	return eps, class, reps
}

// parallel calls fn(0..n-1) from GOMAXPROCS goroutines.
func parallel(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		})
	}
	wg.Wait()
}
