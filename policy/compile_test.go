package policy_test

import (
	"fmt"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubectl-netpol/kubectl-netpol/internal/cnpcrd"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
	"github.com/kubectl-netpol/kubectl-netpol/policy/conformance"
)

// entryAllows is the meaning of a compiled Entry, written from its doc
// comment (independent of how the probe encodes it into maps).
func entryAllows(e policy.Entry, peer netip.Addr, peerID uint32, proto corev1.Protocol, port int32) bool {
	if e.CIDR.IsValid() {
		if !e.CIDR.Contains(peer) {
			return false
		}
		for _, x := range e.Except {
			if x.Contains(peer) {
				return false
			}
		}
	} else if e.Identity != policy.IdentityAny && e.Identity != peerID {
		return false
	}
	if e.Protocol == "" {
		return true
	}
	return e.Protocol == proto && port >= int32(e.PortMin) && port <= int32(e.PortMax)
}

func identityOf(dp *policy.Datapath, ip netip.Addr) uint32 {
	for _, id := range dp.Identities {
		for _, a := range id.IPs {
			if a == ip {
				return id.ID
			}
		}
	}
	for _, h := range dp.HostIPs {
		if h == ip {
			return policy.IdentityHost
		}
	}
	return policy.IdentityWorld
}

func endpointOf(dp *policy.Datapath, ip netip.Addr) *policy.Endpoint {
	for i := range dp.Endpoints {
		for _, a := range dp.Endpoints[i].IPs {
			if a == ip {
				return &dp.Endpoints[i]
			}
		}
	}
	return nil
}

// resolvedRule is a resolved direction's decision, from the doc comment of
// EndpointPolicy: the peer identity's entries, the most specific port
// first, else the entries of the longest CIDR holding the peer.
func resolvedRule(ep *policy.EndpointPolicy, peer netip.Addr, peerID uint32, proto corev1.Protocol, port int32) (uint32, bool) {
	// specificity: exact port 3, range 2, all ports 1, every protocol 0.
	best := func(match func(policy.Entry) bool) (uint32, bool) {
		rule, rank := uint32(0), -1
		for _, e := range ep.Entries {
			if !match(e) {
				continue
			}
			r := 0
			switch {
			case e.Protocol == "":
			case e.Protocol != proto || port < int32(e.PortMin) || port > int32(e.PortMax):
				continue
			case e.PortMin == e.PortMax:
				r = 3
			case e.PortMin == 0 && e.PortMax == 65535:
				r = 1
			default:
				r = 2
			}
			if r > rank {
				rule, rank = e.Rule, r
			}
		}
		return rule, rank >= 0
	}
	if r, ok := best(func(e policy.Entry) bool { return !e.CIDR.IsValid() && e.Identity == peerID }); ok {
		return r, true
	}
	var region netip.Prefix
	for _, e := range ep.Entries {
		if e.CIDR.IsValid() && e.CIDR.Contains(peer) && (!region.IsValid() || e.CIDR.Bits() > region.Bits()) {
			region = e.CIDR
		}
	}
	return best(func(e policy.Entry) bool { return e.CIDR == region })
}

func sideAllows(ep *policy.EndpointPolicy, peer netip.Addr, peerID uint32, proto corev1.Protocol, port int32) bool {
	if ep.Resolved {
		r, ok := resolvedRule(ep, peer, peerID, proto, port)
		return ok && r&policy.RuleDeny == 0
	}
	if !ep.Isolated {
		return true
	}
	for _, e := range ep.Entries {
		if entryAllows(e, peer, peerID, proto, port) {
			return true
		}
	}
	return false
}

// dpAllows is the datapath's verdict on a new connection, from Entries.
func dpAllows(dp *policy.Datapath, src, dst netip.Addr, proto corev1.Protocol, port int32) bool {
	if ep := endpointOf(dp, src); ep != nil && !sideAllows(&ep.Egress, dst, identityOf(dp, dst), proto, port) {
		return false
	}
	if ep := endpointOf(dp, dst); ep != nil && !sideAllows(&ep.Ingress, src, identityOf(dp, src), proto, port) {
		return false
	}
	return true
}

// TestCompileMatchesEngineOnConformance checks, for every upstream case,
// step, probe and pair of pods, that the compiled datapath's verdict equals
// Engine.Allowed, and that each compiled rule ID maps back to a rule of a
// policy the engine lists. All pods are on the compiled node.
func TestCompileMatchesEngineOnConformance(t *testing.T) {
	env := conformance.DefaultEnv()
	cases, err := conformance.Cases(env)
	if err != nil {
		t.Fatal(err)
	}
	cells := 0
	for _, c := range cases {
		for si := range c.Steps {
			snap, err := c.Snapshot(si, env)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range snap.Pods {
				p.Spec.NodeName = "n1"
			}
			eng, err := policy.NewEngine(snap)
			if err != nil {
				t.Fatalf("%s step %d: %v", c.Name, si, err)
			}
			dp, err := eng.Compile("n1")
			if err != nil {
				t.Fatalf("%s step %d: Compile: %v", c.Name, si, err)
			}
			if len(dp.Endpoints) != len(c.Model.Pods) {
				t.Fatalf("%s: %d endpoints, want %d", c.Name, len(dp.Endpoints), len(c.Model.Pods))
			}
			for _, ep := range dp.Endpoints {
				for _, side := range []policy.EndpointPolicy{ep.Ingress, ep.Egress} {
					for _, en := range side.Entries {
						if en.Rule == policy.RuleNodeTraffic {
							continue
						}
						if _, ok := dp.RuleByID(en.Rule); !ok {
							t.Fatalf("%s: entry rule %d not in the rule table", c.Name, en.Rule)
						}
					}
				}
			}
			for _, probe := range c.Steps[si].Probes {
				for _, from := range snap.Pods {
					for _, to := range snap.Pods {
						if from == to {
							continue
						}
						src, dst := netip.MustParseAddr(from.Status.PodIP), netip.MustParseAddr(to.Status.PodIP)
						want := eng.Allowed(policy.Traffic{Src: policy.Peer{Pod: from}, Dst: policy.Peer{Pod: to}, Protocol: probe.Protocol, Port: probe.Port})
						got := dpAllows(dp, src, dst, probe.Protocol, probe.Port)
						cells++
						if got != want {
							t.Errorf("%s step %d %s %s/%s -> %s/%s: datapath %v, engine %v",
								c.Name, si, probe, from.Namespace, from.Name, to.Namespace, to.Name, got, want)
						}
					}
				}
			}
		}
	}
	if cells < 500 {
		t.Fatalf("only %d cells compared", cells)
	}
	t.Logf("%d cells of %d cases agree", cells, len(cases))
}

func compileTCP(port int32) networkingv1.NetworkPolicyPort {
	p := corev1.ProtocolTCP
	v := intstr.FromInt32(port)
	return networkingv1.NetworkPolicyPort{Protocol: &p, Port: &v}
}

func compilePod(ns, name, node, ip string, labels map[string]string, ports ...corev1.ContainerPort) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Ports: ports}}},
		Status:     corev1.PodStatus{PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
}

// TestCompileShape checks the parts the conformance cases do not show:
// only local pods are endpoints, node addresses get the host identity and the
// implicit node allowance, named ports resolve per destination pod, endPort
// ranges and ipBlock excepts are kept, and IDs are stable when an unrelated
// policy is added.
func TestCompileShape(t *testing.T) {
	end := int32(90)
	web := map[string]string{"app": "web"}
	snap := &policy.Snapshot{
		NodeIPs: []netip.Addr{netip.MustParseAddr("10.77.255.1")},
		Pods: []*corev1.Pod{
			compilePod("ns", "web", "n1", "10.77.0.1", web),
			compilePod("ns", "db1", "n1", "10.77.0.2", map[string]string{"app": "db"}, corev1.ContainerPort{Name: "sql", ContainerPort: 5432}),
			compilePod("ns", "db2", "n2", "10.77.0.3", map[string]string{"app": "db"}, corev1.ContainerPort{Name: "sql", ContainerPort: 6432}),
		},
		Policies: []*networkingv1.NetworkPolicy{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web-egress"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: web},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress: []networkingv1.NetworkPolicyEgressRule{
					{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}},
						Ports: []networkingv1.NetworkPolicyPort{{Port: &intstr.IntOrString{Type: intstr.String, StrVal: "sql"}}}},
					{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "192.0.2.0/24", Except: []string{"192.0.2.128/25"}}}},
						Ports: []networkingv1.NetworkPolicyPort{func() networkingv1.NetworkPolicyPort { p := compileTCP(80); p.EndPort = &end; return p }()}},
				},
			},
		}},
	}
	dp, err := policy.Compile(snap, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if len(dp.Endpoints) != 2 {
		t.Fatalf("endpoints %+v: want the two pods of n1", dp.Endpoints)
	}
	webIP, db1, db2 := netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("10.77.0.2"), netip.MustParseAddr("10.77.0.3")
	node := netip.MustParseAddr("10.77.255.1")
	checks := []struct {
		dst   netip.Addr
		port  int32
		allow bool
	}{
		{db1, 5432, true}, {db1, 6432, false}, // named port per destination pod
		{db2, 6432, true}, {db2, 5432, false},
		{netip.MustParseAddr("192.0.2.10"), 80, true}, {netip.MustParseAddr("192.0.2.10"), 90, true},
		{netip.MustParseAddr("192.0.2.10"), 91, false}, {netip.MustParseAddr("192.0.2.200"), 80, false},
		{node, 22, true}, // node traffic is never restricted
	}
	for _, c := range checks {
		if got := dpAllows(dp, webIP, c.dst, corev1.ProtocolTCP, c.port); got != c.allow {
			t.Errorf("web -> %s:%d: datapath %v, want %v", c.dst, c.port, got, c.allow)
		}
	}
	ep := endpointOf(dp, webIP)
	if !ep.Egress.Isolated || ep.Ingress.Isolated || len(ep.Egress.IsolatedBy) != 1 || ep.Egress.IsolatedBy[0].Name != "web-egress" {
		t.Errorf("web isolation: %+v", ep)
	}

	// An unrelated policy in another namespace changes no existing ID.
	snap.Policies = append(snap.Policies, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "deny"},
		Spec:       networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{}}},
	})
	dp2, err := policy.Compile(snap, "n1")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range dp.Rules {
		r2, ok := dp2.RuleByID(r.ID)
		if !ok || r2 != r {
			t.Errorf("rule %d changed after an unrelated policy was added: %+v -> %+v", r.ID, r, r2)
		}
	}
	for i := range dp.Endpoints {
		if dp.Endpoints[i].ID != dp2.Endpoints[i].ID || dp.Endpoints[i].Identity != dp2.Endpoints[i].Identity {
			t.Errorf("endpoint %s changed ID or identity", dp.Endpoints[i].Name)
		}
	}
}

// TestCompileResolvedMatchesEngine compiles random worlds with
// ClusterNetworkPolicies (every pod on the compiled node) and checks that
// the datapath's verdict, read as EndpointPolicy documents it, equals
// Engine.Allowed for traffic between pods, nodes and other addresses.
func TestCompileResolvedMatchesEngine(t *testing.T) {
	compareWorlds(t, 200, func(n int, s *policy.Snapshot) bool { return len(s.ClusterPolicies) > 0 })
}

// TestCompileAuditMatchesEngine does the same with some policies (and
// namespaces) audited: the datapath's enforced verdict must be the
// engine's, and its audit flags must give the verdict the engine reports
// for enforcing the audited policies too (Decision.Audit).
func TestCompileAuditMatchesEngine(t *testing.T) {
	compareWorlds(t, 300, func(n int, s *policy.Snapshot) bool {
		audit := func(meta *metav1.ObjectMeta, k int, mode string) {
			if (n+k)%3 == 0 {
				meta.Annotations = map[string]string{policy.ModeAnnotation: mode}
			}
		}
		for k, p := range s.Policies {
			audit(&p.ObjectMeta, k, []string{policy.ModeAudit, policy.ModeEnforce}[k%2])
		}
		for k, c := range s.ClusterPolicies {
			audit(&c.ObjectMeta, k+1, policy.ModeAudit)
		}
		for k, ns := range s.Namespaces {
			audit(&ns.ObjectMeta, k+2, policy.ModeAudit)
		}
		return len(s.Policies)+len(s.ClusterPolicies) > 0
	})
}

// compareWorlds checks the compiled datapath against the engine on random
// worlds that prepare accepts (after changing them), at least minWorlds.
func compareWorlds(t *testing.T, minWorlds int, prepare func(n int, s *policy.Snapshot) bool) {
	worlds, cells, audited := 0, 0, 0
	for n := range 4000 {
		data := []byte(fmt.Sprintf("%064d", n*7919))
		for i := range data {
			data[i] = byte((int(data[i])*31 + i*17 + n*13) % 251)
		}
		s := randomWorld(&chooser{b: data})
		if !uniquePodIPs(s) || !prepare(n, s) {
			continue
		}
		for _, p := range s.Pods {
			p.Spec.NodeName = "n1"
		}
		e, err := policy.NewEngine(s)
		if err != nil {
			t.Fatalf("world %d: %v", n, err)
		}
		dp, err := e.Compile("n1")
		if err != nil {
			t.Fatalf("world %d: Compile: %v", n, err)
		}
		worlds++
		var addrs []netip.Addr
		for _, p := range s.Pods {
			if p.Status.PodIP != "" {
				addrs = append(addrs, netip.MustParseAddr(p.Status.PodIP))
			}
		}
		for _, ip := range []string{"10.0.0.1", "10.0.1.9", "172.31.0.1", "172.31.0.2", "192.0.2.1", "fd00::9"} {
			addrs = append(addrs, netip.MustParseAddr(ip))
		}
		for _, src := range addrs {
			for _, dst := range addrs {
				if src == dst || src.Is4() != dst.Is4() {
					continue
				}
				for _, pp := range []struct {
					proto corev1.Protocol
					port  int32
				}{{tcp, 80}, {tcp, 8080}, {tcp, 81}, {udp, 53}, {udp, 80}, {sctp, 80}, {"ICMP", 0}} {
					tr := policy.Traffic{Src: policy.Peer{IP: src}, Dst: policy.Peer{IP: dst}, Protocol: pp.proto, Port: pp.port}
					d := e.Evaluate(tr)
					wouldWant := d.Allowed
					if d.Audit != nil {
						wouldWant = d.Audit.Allowed
						audited++
					}
					cells++
					got, would := dpVerdict(dp, src, dst, pp.proto, pp.port)
					if got != d.Allowed || would != wouldWant {
						t.Fatalf("world %d: %s: datapath %v (audited: %v), engine %v (audited: %v)\n%s", n, trafficString(tr), got, would, d.Allowed, wouldWant, dump(e.Why(tr)))
					}
				}
			}
		}
	}
	if worlds < minWorlds {
		t.Fatalf("only %d worlds compiled", worlds)
	}
	t.Logf("%d cells (%d audited differently) of %d worlds agree", cells, audited, worlds)
}

// dpVerdict is the datapath's verdict on a new connection and, reading the
// audit flags, the verdict with the audited policies enforced.
func dpVerdict(dp *policy.Datapath, src, dst netip.Addr, proto corev1.Protocol, port int32) (allowed, wouldAllow bool) {
	allowed, wouldAllow = true, true
	side := func(ep *policy.EndpointPolicy, peer netip.Addr) {
		if !ep.Resolved {
			ok := sideAllows(ep, peer, identityOf(dp, peer), proto, port)
			allowed, wouldAllow = allowed && ok, wouldAllow && ok
			return
		}
		r, ok := resolvedRule(ep, peer, identityOf(dp, peer), proto, port)
		ok = ok && r&policy.RuleDeny == 0
		allowed = allowed && ok
		wouldAllow = wouldAllow && ok != (r&policy.RuleAudit != 0)
	}
	if ep := endpointOf(dp, src); ep != nil {
		side(&ep.Egress, dst)
	}
	if ep := endpointOf(dp, dst); ep != nil {
		side(&ep.Ingress, src)
	}
	return allowed, wouldAllow
}

// uniquePodIPs reports whether no two pods (or a pod and a node) share an
// address: the datapath knows endpoints by address.
func uniquePodIPs(s *policy.Snapshot) bool {
	seen := map[string]bool{}
	for _, ip := range s.NodeIPs {
		seen[ip.String()] = true
	}
	for _, p := range s.Pods {
		if p.Status.PodIP == "" {
			continue
		}
		if seen[p.Status.PodIP] || p.Spec.HostNetwork {
			return false
		}
		seen[p.Status.PodIP] = true
	}
	return true
}

// TestCompileCNPCases runs the ported upstream ClusterNetworkPolicy cases
// on the compiled datapaths (the source's egress on its node's, the
// destination's ingress on its node's), IPv4 and IPv6: every probe must
// give upstream's expectation.
func TestCompileCNPCases(t *testing.T) {
	dir, _, err := cnpcrd.ModuleDir()
	if err != nil {
		t.Fatal(err)
	}
	probes := 0
	for _, cidr := range []string{"10.128.0.0/24", "fd00:128::/64"} {
		for _, c := range conformance.CNPCases() {
			t.Run(cidr+"/"+c.Name, func(t *testing.T) {
				w, err := conformance.NewCNPWorld(dir, &c, netip.MustParsePrefix(cidr))
				if err != nil {
					t.Fatal(err)
				}
				var dps map[string]*policy.Datapath
				err = w.Run(&c, func(a conformance.CNPAction, src, dst *corev1.Pod, changed bool) error {
					if changed {
						e, err := policy.NewEngine(w.Snapshot())
						if err != nil {
							return err
						}
						dps = map[string]*policy.Datapath{}
						for _, p := range w.Snapshot().Pods {
							if dps[p.Spec.NodeName] == nil {
								if dps[p.Spec.NodeName], err = e.Compile(p.Spec.NodeName); err != nil {
									return err
								}
							}
						}
					}
					sip, dip := netip.MustParseAddr(src.Status.PodIP), netip.MustParseAddr(dst.Status.PodIP)
					sdp, ddp := dps[src.Spec.NodeName], dps[dst.Spec.NodeName]
					got := true
					if ep := endpointOf(sdp, sip); ep != nil {
						got = sideAllows(&ep.Egress, dip, identityOf(sdp, dip), a.Protocol, a.Port)
					}
					if ep := endpointOf(ddp, dip); ep != nil && got {
						got = sideAllows(&ep.Ingress, sip, identityOf(ddp, sip), a.Protocol, a.Port)
					}
					probes++
					if got != a.Allowed {
						t.Errorf("%s -> %s %d/%s: datapath allowed=%v, upstream expects %v", a.From, a.To, a.Port, a.Protocol, got, a.Allowed)
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			})
		}
	}
	t.Logf("%d probes on compiled datapaths", probes)
}

// TestCompileSharesReplicas: the local replicas of a workload (one
// datapath identity) share one compiled direction, whose rule IDs are
// rewritten once (twice would turn them into IDs of other rules or out of
// the table), and the datapath still agrees with the engine for each.
func TestCompileSharesReplicas(t *testing.T) {
	for _, audited := range []bool{false, true} {
		web := map[string]string{"app": "web"}
		db := map[string]string{"app": "db"}
		http := corev1.ContainerPort{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}
		named := intstr.FromString("http")
		tcp := corev1.ProtocolTCP
		snap := &policy.Snapshot{
			Namespaces: []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "x"}}},
			Pods: []*corev1.Pod{
				compilePod("x", "web-1", "n1", "10.9.0.1", web, http),
				compilePod("x", "web-2", "n1", "10.9.0.2", web, http),
				compilePod("x", "web-3", "n1", "10.9.0.3", web, http),
				compilePod("x", "db-1", "n1", "10.9.0.4", db),
				compilePod("x", "db-2", "n2", "10.9.0.5", db),
			},
			Policies: []*networkingv1.NetworkPolicy{
				{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "web-from-db"}, Spec: networkingv1.NetworkPolicySpec{
					PodSelector: metav1.LabelSelector{MatchLabels: web},
					Ingress: []networkingv1.NetworkPolicyIngressRule{{
						From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: db}}},
						Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &named}}}},
					Egress: []networkingv1.NetworkPolicyEgressRule{{
						To:    []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: db}}},
						Ports: []networkingv1.NetworkPolicyPort{compileTCP(5432)}}},
					PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}}},
			},
		}
		if audited {
			snap.Policies[0].Annotations = map[string]string{policy.ModeAnnotation: "audit"}
		}
		eng, err := policy.NewEngine(snap)
		if err != nil {
			t.Fatal(err)
		}
		dp, err := eng.Compile("n1")
		if err != nil {
			t.Fatal(err)
		}
		var first *policy.Entry
		for _, ep := range dp.Endpoints {
			if ep.Name == "db-1" {
				continue
			}
			if ep.Ingress.Resolved != audited || len(ep.Ingress.Entries) == 0 {
				t.Fatalf("audited=%v: %s ingress resolved=%v with %d entries", audited, ep.Name, ep.Ingress.Resolved, len(ep.Ingress.Entries))
			}
			if first == nil {
				first = &ep.Ingress.Entries[0]
			} else if &ep.Ingress.Entries[0] != first {
				t.Errorf("audited=%v: %s has its own copy of the replicas' entries", audited, ep.Name)
			}
			for _, side := range []policy.EndpointPolicy{ep.Ingress, ep.Egress} {
				for _, en := range side.Entries {
					if id := en.Rule & policy.RuleIDMask; id >= policy.FirstRuleID {
						if _, ok := dp.RuleByID(en.Rule &^ (policy.RuleDeny | policy.RuleAudit)); !ok {
							t.Fatalf("audited=%v: %s: entry rule %#x not in the rule table", audited, ep.Name, en.Rule)
						}
					}
				}
			}
		}
		if audited {
			continue // resolved entries are read by TestCompileAuditMatchesEngine's reader
		}
		for _, from := range snap.Pods {
			for _, to := range snap.Pods {
				for _, port := range []int32{8080, 5432, 80} {
					if from == to {
						continue
					}
					want := eng.Allowed(policy.Traffic{Src: policy.Peer{Pod: from}, Dst: policy.Peer{Pod: to}, Protocol: tcp, Port: port})
					got := dpAllows(dp, netip.MustParseAddr(from.Status.PodIP), netip.MustParseAddr(to.Status.PodIP), tcp, port)
					if got != want {
						t.Errorf("%s -> %s :%d: datapath %v, engine %v", from.Name, to.Name, port, got, want)
					}
				}
			}
		}
	}
}
