//go:build linux

package probe

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// TestApplyKeepsUnchangedAddresses: an Apply whose identities share the
// last Apply's address lists (a policy changed, not a pod) writes and
// removes nothing in the ipcache, and real packets are still judged by
// their identities; new address lists (b and c trade identities) are
// written, and packets follow them.
func TestApplyKeepsUnchangedAddresses(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t, false)
	a, b, c := tp.addPod(t, "a"), tp.addPod(t, "b"), tp.addPod(t, "c")
	a.serve(t, 80)
	waitReachable(t, b, 80, a)
	waitReachable(t, c, 80, a)
	p := loadAttached(t, tp.node, testCfg)
	const rule = 100
	allow := func(ids []policy.Identity, from uint32) *policy.Datapath {
		return &policy.Datapath{Identities: ids,
			Endpoints: []policy.Endpoint{{ID: 7, Namespace: "x", Name: "a", IPs: []netip.Addr{a.ip4, a.ip6}, Identity: 300,
				Ingress: policy.EndpointPolicy{Isolated: true, IsolatedBy: []policy.PolicyRef{ref("x", "allow")},
					Entries: []policy.Entry{{Rule: rule, Identity: from, Protocol: "TCP", PortMin: 80, PortMax: 80}}}}},
			Rules: []policy.CompiledRule{{ID: rule, Rule: policy.RuleRef{Policy: ref("x", "allow"), Direction: policy.Ingress}}}}
	}
	ipsA, ipsB, ipsC := []netip.Addr{a.ip4, a.ip6}, []netip.Addr{b.ip4, b.ip6}, []netip.Addr{c.ip4, c.ip6}
	ids := []policy.Identity{{ID: 300, IPs: ipsA}, {ID: 301, IPs: ipsB}, {ID: 302, IPs: ipsC}}
	check := func(step string, allowed, denied *pod) {
		t.Helper()
		for _, ip := range []netip.Addr{a.ip4, a.ip6} {
			if got, err := allowed.connect("tcp", ip, 80, 400*time.Millisecond); err != nil || got != "a" {
				t.Errorf("%s: %s -> %s:80: want answer from a, got %q, %v", step, allowed.podName, ip, got, err)
			}
			if got, err := denied.connect("tcp", ip, 80, 400*time.Millisecond); err == nil {
				t.Errorf("%s: %s -> %s:80: want drop, got answer %q", step, denied.podName, ip, got)
			}
		}
	}
	res, err := p.Apply(allow(ids, 301))
	if err != nil || res.IPCacheWritten != 6 {
		t.Fatalf("first Apply: %+v, %v; want 6 addresses written", res, err)
	}
	check("first", b, c)
	// A policy change: the same address lists in a new Datapath.
	res, err = p.Apply(allow(slices.Clone(ids), 302))
	if err != nil || res.IPCacheWritten != 0 || res.IPCacheRemoved != 0 {
		t.Fatalf("policy change: %+v, %v; want no ipcache write", res, err)
	}
	check("policy change", c, b)
	// b and c trade identities: new lists, written.
	traded := []policy.Identity{{ID: 300, IPs: ipsA}, {ID: 301, IPs: slices.Clone(ipsC)}, {ID: 302, IPs: slices.Clone(ipsB)}}
	res, err = p.Apply(allow(traded, 302))
	if err != nil || res.IPCacheWritten != 4 {
		t.Fatalf("identities traded: %+v, %v; want 4 addresses written", res, err)
	}
	check("identities traded", b, c)
}
