//go:build linux

package probe

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// resolvedEnv is a node with pods a (the endpoint under test, ID 7), b, c
// (b and c in 10.77.0.12/31 and fd77::12/127) and d, each its own network
// namespace and identity, and the datapath attached.
type resolvedEnv struct {
	tp         *topology
	a, b, c, d *pod
	node       *pod // the node namespace as a client (source 169.254.1.1: the world)
	p          *Probe
	ev         *collector
	aEP        uint32 // a's endpoint ID in the Datapath last applied
}

const resolvedEP = 7

func newResolvedEnv(t *testing.T, cfg Config, ports ...int) *resolvedEnv {
	t.Helper()
	tp := newTopology(t, false)
	env := &resolvedEnv{tp: tp, a: tp.addPod(t, "a"), b: tp.addPod(t, "b"), c: tp.addPod(t, "c"), d: tp.addPod(t, "d")}
	env.node = &pod{testNS: tp.node, podName: "node"}
	if env.b.ip4 != netip.MustParseAddr("10.77.0.12") || env.d.ip6 != netip.MustParseAddr("fd77::14") {
		t.Fatalf("pod addresses changed (b %s, d %s): the regions below assume them", env.b.ip4, env.d.ip6)
	}
	env.a.serve(t, ports...)
	waitReachable(t, env.b, ports[0], env.a)
	waitReachable(t, env.c, ports[0], env.a)
	waitReachable(t, env.d, ports[0], env.a)
	env.p = loadAttached(t, tp.node, cfg)
	env.ev = collect(t, env.p)
	return env
}

func (env *resolvedEnv) identity(p *pod) uint32 {
	return map[*pod]uint32{env.a: 300, env.b: 301, env.c: 302, env.d: 303}[p]
}

// dp is a's ingress (and egress) as given, with every pod's identity.
func (env *resolvedEnv) dp(ingress, egress policy.EndpointPolicy, rules ...policy.CompiledRule) *policy.Datapath {
	dp := &policy.Datapath{Rules: rules}
	for _, p := range []*pod{env.a, env.b, env.c, env.d} {
		dp.Identities = append(dp.Identities, policy.Identity{ID: env.identity(p), Namespace: "x", IPs: []netip.Addr{p.ip4, p.ip6}})
	}
	dp.Endpoints = []policy.Endpoint{{ID: resolvedEP, Namespace: "x", Name: "a", IPs: []netip.Addr{env.a.ip4, env.a.ip6},
		Identity: 300, Ingress: ingress, Egress: egress}}
	slices.SortFunc(dp.Rules, func(x, y policy.CompiledRule) int { return int(x.ID) - int(y.ID) })
	return dp
}

func (env *resolvedEnv) apply(t *testing.T, dp *policy.Datapath) ApplyResult {
	t.Helper()
	res, err := env.p.Apply(dp)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for _, ep := range dp.Endpoints {
		if ep.Name == "a" {
			env.aEP = ep.ID
		}
	}
	return res
}

// regions are entries for 0.0.0.0/0 and ::/0 (or other prefix pairs).
func regions(rule uint32, pfxs ...string) []policy.Entry {
	if len(pfxs) == 0 {
		pfxs = []string{"0.0.0.0/0", "::/0"}
	}
	var out []policy.Entry
	for _, p := range pfxs {
		out = append(out, policy.Entry{Rule: rule, CIDR: netip.MustParsePrefix(p)})
	}
	return out
}

func tcpEntry(rule uint32, id uint32, lo, hi uint16) policy.Entry {
	return policy.Entry{Rule: rule, Identity: id, Protocol: "TCP", PortMin: lo, PortMax: hi}
}

func cnpRule(id uint32, name string, action policy.ClusterAction) policy.CompiledRule {
	return policy.CompiledRule{ID: id, Peer: -1, Port: -1, Cluster: &policy.ClusterRuleRef{Name: name, Action: action, Direction: policy.Ingress}}
}

type flowCheck struct {
	from  *pod
	port  int
	allow bool
}

// check connects over TCP to a (IPv4 and IPv6) and returns the events of
// those connections, keyed by "from/port".
func (env *resolvedEnv) check(t *testing.T, what string, cases ...flowCheck) map[string][]Event {
	t.Helper()
	env.ev.drain()
	for _, c := range cases {
		for _, ip := range []netip.Addr{env.a.ip4, env.a.ip6} {
			got, err := c.from.connect("tcp", ip, c.port, 400*time.Millisecond)
			if c.allow && (err != nil || got != "a") {
				t.Errorf("%s: %s -> %s:%d: want answer from a, got %q, %v", what, c.from.podName, ip, c.port, got, err)
			}
			if !c.allow && err == nil {
				t.Errorf("%s: %s -> %s:%d: want drop, got answer %q", what, c.from.podName, ip, c.port, got)
			}
		}
	}
	out := map[string][]Event{}
	for _, e := range env.ev.drain() {
		if e.Protocol != 6 || e.DstEndpoint != env.aEP {
			continue
		}
		src, _ := TupleAddrs(e.Tuple)
		for _, c := range cases {
			if (src == c.from.ip4 || src == c.from.ip6) && int(e.Tuple.Dport) == c.port {
				k := fmt.Sprintf("%s/%d", c.from.podName, c.port)
				out[k] = append(out[k], e)
			}
		}
	}
	return out
}

// expectIngressRules checks that the events of each "from/port" name the
// rule (and its reason) on a's ingress.
func expectIngressRules(t *testing.T, evs map[string][]Event, want map[string]uint32) {
	t.Helper()
	for k, rule := range want {
		if len(evs[k]) == 0 {
			t.Errorf("%s: no event", k)
		}
		for _, e := range evs[k] {
			if e.IngressRule != rule || e.IngressReason != wantReason(rule) {
				t.Errorf("%s: event rule %#x reason %d, want %#x", k, e.IngressRule, e.IngressReason, rule)
			}
		}
	}
}

// TestResolvedRealPackets runs real TCP connections (IPv4 and IPv6)
// between pod namespaces through hand-built resolved directions of a's
// ingress: a deny on an identity beats an allow of the 0.0.0.0/0 region;
// port ranges where the most specific port decides (a deny inside an allow,
// exact port and range, hash and trie); nested regions where only the
// longest prefix's entries decide (no union); a pod identity's partial
// entries falling through to its address's region; and the events' reasons
// and attributions of each.
func TestResolvedRealPackets(t *testing.T) {
	requireRoot(t)
	env := newResolvedEnv(t, testCfg, 80, 81, 85, 1200, 1550)
	a, b, c, d := env.a, env.b, env.c, env.d
	const (
		denyC    = 20 | policy.RuleDeny
		allowAll = 21
	)

	t.Run("identity deny beats region allow", func(t *testing.T) {
		dp := env.dp(policy.EndpointPolicy{Resolved: true, Entries: append(regions(allowAll),
			policy.Entry{Rule: denyC, Identity: env.identity(c)})}, policy.EndpointPolicy{},
			cnpRule(denyC&policy.RuleIDMask, "deny-c", policy.ActionDeny), cnpRule(allowAll, "allow-all", policy.ActionAccept))
		env.apply(t, dp)
		evs := env.check(t, "identity deny", flowCheck{b, 80, true}, flowCheck{c, 80, false}, flowCheck{d, 81, true})
		for _, e := range evs["c/80"] {
			at := Attribute(dp, &e)
			if e.Verdict != VerdictDrop || e.IngressReason != ReasonDeniedByRule || e.IngressRule != denyC ||
				at.DeniedByRule == nil || at.DeniedByRule.Cluster.Name != "deny-c" || at.DeniedBy != nil || at.Direction != policy.Ingress {
				t.Errorf("c's drop: event %+v, attribution %+v", e, at)
			}
		}
		for _, e := range evs["b/80"] {
			if at := Attribute(dp, &e); e.IngressReason != ReasonAllowedByRule || e.IngressRule != allowAll || len(at.AllowedBy) != 1 {
				t.Errorf("b's flow: event %+v, attribution %+v", e, at)
			}
		}
		if len(evs["c/80"]) < 2 || len(evs["b/80"]) != 2 {
			t.Errorf("events %d for c, %d for b; want >= 2 drops and 2 flows", len(evs["c/80"]), len(evs["b/80"]))
		}
	})

	t.Run("most specific port", func(t *testing.T) {
		bid := env.identity(b)
		dp := env.dp(policy.EndpointPolicy{Resolved: true, Entries: append(regions(30|policy.RuleDeny),
			tcpEntry(31, bid, 80, 90), tcpEntry(32|policy.RuleDeny, bid, 85, 85),
			tcpEntry(33, bid, 1000, 2000), tcpEntry(34|policy.RuleDeny, bid, 1500, 1600),
			tcpEntry(35, env.identity(c), 0, 65535), tcpEntry(36|policy.RuleDeny, env.identity(c), 1024, 2047))}, policy.EndpointPolicy{})
		env.apply(t, dp)
		evs := env.check(t, "ports", flowCheck{b, 80, true}, flowCheck{b, 85, false}, flowCheck{b, 1200, true}, flowCheck{b, 1550, false},
			flowCheck{b, 81, true}, flowCheck{c, 80, true}, flowCheck{c, 1200, false}, flowCheck{d, 80, false})
		expectIngressRules(t, evs, map[string]uint32{"b/85": 32 | policy.RuleDeny, "b/1550": 34 | policy.RuleDeny, "c/1200": 36 | policy.RuleDeny,
			"b/1200": 33, "d/80": 30 | policy.RuleDeny})
	})

	t.Run("longest region decides alone", func(t *testing.T) {
		entries := append(regions(40), regions(41|policy.RuleDeny, "10.77.0.0/16", "fd77::/64")...)
		entries = append(entries, policy.Entry{Rule: 42, CIDR: netip.MustParsePrefix("10.77.0.0/16"), Protocol: "TCP", PortMin: 81, PortMax: 81},
			policy.Entry{Rule: 42, CIDR: netip.MustParsePrefix("fd77::/64"), Protocol: "TCP", PortMin: 81, PortMax: 81},
			policy.Entry{Rule: 43, CIDR: netip.MustParsePrefix("10.77.0.12/31"), Protocol: "TCP", PortMin: 80, PortMax: 80},
			policy.Entry{Rule: 43, CIDR: netip.MustParsePrefix("fd77::12/127"), Protocol: "TCP", PortMin: 80, PortMax: 80})
		dp := env.dp(policy.EndpointPolicy{Resolved: true, Entries: entries}, policy.EndpointPolicy{})
		env.apply(t, dp)
		// b, c: the /31 allows 80 and decides nothing else (no union with
		// the /16's allow of 81); d: the /16 denies but 81; the node's
		// address is in 0.0.0.0/0 only.
		evs := env.check(t, "regions", flowCheck{b, 80, true}, flowCheck{c, 80, true}, flowCheck{b, 81, false},
			flowCheck{d, 80, false}, flowCheck{d, 81, true})
		if got, err := env.node.connect("tcp", a.ip4, 85, 400*time.Millisecond); err != nil || got != "a" {
			t.Errorf("node -> a:85 (region 0.0.0.0/0 allows): %q, %v", got, err)
		}
		expectIngressRules(t, evs, map[string]uint32{"b/80": 43, "b/81": 0, "d/80": 41 | policy.RuleDeny, "d/81": 42})
	})

	t.Run("partial identity falls through to its region", func(t *testing.T) {
		dp := env.dp(policy.EndpointPolicy{Resolved: true, Entries: append(regions(50),
			tcpEntry(51|policy.RuleDeny, env.identity(b), 80, 80))}, policy.EndpointPolicy{})
		env.apply(t, dp)
		evs := env.check(t, "partial", flowCheck{b, 80, false}, flowCheck{b, 81, true}, flowCheck{c, 80, true})
		for _, e := range evs["b/81"] {
			if e.IngressRule != 50 {
				t.Errorf("b/81 decided by rule %#x, want the region's 50", e.IngressRule)
			}
		}
	})

	t.Run("reserved rules", func(t *testing.T) {
		isolatedBy := []policy.PolicyRef{ref("x", "a-in")}
		dp := env.dp(policy.EndpointPolicy{Resolved: true, Isolated: true, IsolatedBy: isolatedBy,
			Entries: append(regions(policy.RuleIsolated|policy.RuleDeny), tcpEntry(60, env.identity(b), 80, 80))},
			policy.EndpointPolicy{Resolved: true, Entries: regions(policy.RuleNotIsolated)},
			policy.CompiledRule{ID: 60, Rule: policy.RuleRef{Policy: isolatedBy[0], Direction: policy.Ingress}})
		env.apply(t, dp)
		evs := env.check(t, "reserved", flowCheck{b, 80, true}, flowCheck{c, 80, false})
		for _, e := range evs["c/80"] {
			at := Attribute(dp, &e)
			if e.IngressReason != ReasonNoRuleMatched || at.DeniedByRule != nil || len(at.DeniedBy) != 1 || at.DeniedBy[0].Name != "a-in" {
				t.Errorf("c's default deny: event %+v, attribution %+v", e, at)
			}
		}
		// a's egress: resolved, NetworkPolicy does not isolate it, nothing
		// decides: allowed as not isolated, by no rule.
		env.ev.drain()
		if got, err := a.connect("tcp", b.ip4, 80, 400*time.Millisecond); err == nil || isTimeout(err) {
			// b serves nothing: a refused connection is the allowed outcome.
			t.Errorf("a -> b:80: %q, %v; want the connection to reach b (refused)", got, err)
		}
		var seen bool
		for _, e := range env.ev.drain() {
			if e.SrcEndpoint != resolvedEP || e.Protocol != 6 {
				continue
			}
			seen = true
			if at := Attribute(dp, &e); e.Verdict != VerdictAllow || e.EgressReason != ReasonNotIsolated ||
				e.EgressRule != policy.RuleNotIsolated || len(at.AllowedBy) != 0 {
				t.Errorf("a's egress flow: event %+v, attribution %+v", e, at)
			}
		}
		if !seen {
			t.Error("no event for a's egress flow")
		}
	})
}

// TestResolvedAudit: with flow events off, flows an audited rule decides
// are still reported (FlagAudit; drops within the drop-event rate), others
// not; Stats.Audited counts them and Attribute exposes what would decide.
func TestResolvedAudit(t *testing.T) {
	requireRoot(t)
	cfg := testCfg
	cfg.FlowEvents = false
	env := newResolvedEnv(t, cfg, 80)
	b, c, d := env.b, env.c, env.d
	wouldDeny := &policy.AuditDecision{Allowed: false, IsolatedBy: []policy.PolicyRef{ref("x", "audited-default-deny")}}
	dp := env.dp(policy.EndpointPolicy{Resolved: true, Entries: append(regions(70),
		policy.Entry{Rule: 71 | policy.RuleAudit, Identity: env.identity(b)},
		policy.Entry{Rule: 72 | policy.RuleDeny | policy.RuleAudit, Identity: env.identity(c)})}, policy.EndpointPolicy{},
		policy.CompiledRule{ID: 71, Peer: -1, Port: -1, Cluster: &policy.ClusterRuleRef{Name: "allow-b"}, Audit: wouldDeny},
		policy.CompiledRule{ID: 72, Peer: -1, Port: -1, Cluster: &policy.ClusterRuleRef{Name: "deny-c"}, Audit: &policy.AuditDecision{Allowed: true}})
	env.apply(t, dp)
	before, err := env.p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	evs := env.check(t, "audit", flowCheck{b, 80, true}, flowCheck{c, 80, false}, flowCheck{d, 80, true})
	after, err := env.p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if len(evs["d/80"]) != 0 {
		t.Errorf("flow events are off, yet d's unaudited flows gave %d events", len(evs["d/80"]))
	}
	if len(evs["b/80"]) != 2 || len(evs["c/80"]) < 2 {
		t.Fatalf("audited flows gave %d events for b, %d for c; want 2 and >= 2", len(evs["b/80"]), len(evs["c/80"]))
	}
	for _, e := range evs["b/80"] {
		at := Attribute(dp, &e)
		if e.Flags&FlagAudit == 0 || e.Verdict != VerdictAllow || len(at.Audited) != 1 || at.Audited[0].Rule.Audit != wouldDeny ||
			at.Audited[0].Direction != policy.Ingress {
			t.Errorf("b's audited flow: event %+v, attribution %+v", e, at)
		}
	}
	for _, e := range evs["c/80"] {
		at := Attribute(dp, &e)
		if e.Flags&FlagAudit == 0 || e.Verdict != VerdictDrop || at.DeniedByRule == nil || at.DeniedByRule.Cluster.Name != "deny-c" ||
			len(at.Audited) != 1 || !at.Audited[0].Rule.Audit.Allowed {
			t.Errorf("c's audited drop: event %+v, attribution %+v", e, at)
		}
	}
	if n := after.Audited - before.Audited; n < 4 {
		t.Errorf("Stats.Audited grew by %d, want >= 4 (b's and c's connections)", n)
	}
}

// TestResolvedSwapRevokes: a resolved direction swapped from allow to deny
// revokes the established connection it now denies (and keeps another it
// still allows); swapped back, new connections pass again.
func TestResolvedSwapRevokes(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t, false)
	a, b, c := tp.addPod(t, "a"), tp.addPod(t, "b"), tp.addPod(t, "c")
	a.serveEcho(t, 7)
	waitReachable(t, b, 7, a)
	waitReachable(t, c, 7, a)
	p := loadAttached(t, tp.node, testCfg)
	dp := func(denyB bool) *policy.Datapath {
		ingress := policy.EndpointPolicy{Resolved: true, Entries: regions(80)}
		if denyB {
			ingress.Entries = append(ingress.Entries, policy.Entry{Rule: 81 | policy.RuleDeny, Identity: 301})
		}
		return &policy.Datapath{
			Identities: []policy.Identity{{ID: 300, IPs: []netip.Addr{a.ip4, a.ip6}}, {ID: 301, IPs: []netip.Addr{b.ip4, b.ip6}},
				{ID: 302, IPs: []netip.Addr{c.ip4, c.ip6}}},
			Endpoints: []policy.Endpoint{{ID: 7, Namespace: "x", Name: "a", IPs: []netip.Addr{a.ip4, a.ip6}, Identity: 300, Ingress: ingress}},
		}
	}
	if _, err := p.Apply(dp(false)); err != nil {
		t.Fatal(err)
	}
	var conns []*echoConn
	for _, from := range []*pod{b, c} {
		for _, ip := range []netip.Addr{a.ip4, a.ip6} {
			ec, err := from.dialEcho(ip, 7)
			if err != nil {
				t.Fatalf("%s -> %s:7 while allowed: %v", from.podName, ip, err)
			}
			defer ec.Close()
			conns = append(conns, ec)
		}
	}
	res, err := p.Apply(dp(true))
	if err != nil {
		t.Fatal(err)
	}
	// An added entry of a resolved direction can deny: always a walk.
	if res.SlotsSwapped != 1 || !res.ConntrackScanned || res.Revoked < 2 {
		t.Errorf("allow -> deny: %+v; want one swap, a conntrack walk and b's two connections revoked", res)
	}
	for i, ec := range conns {
		err := ec.roundTrip("after")
		if fromB := i < 2; fromB && err == nil {
			t.Errorf("b's connection %d still works after the swap to deny", i)
		} else if !fromB && err != nil {
			t.Errorf("c's connection %d broke: %v", i, err)
		}
	}
	if _, err := b.connect("tcp", a.ip4, 7, 400*time.Millisecond); err == nil {
		t.Error("b's new connection passed after the swap to deny")
	}
	res, err = p.Apply(dp(false))
	if err != nil {
		t.Fatal(err)
	}
	if res.SlotsSwapped != 1 || !res.ConntrackScanned {
		t.Errorf("deny -> allow: %+v; want one swap and a conntrack walk", res)
	}
	for _, ip := range []netip.Addr{a.ip4, a.ip6} {
		if got, err := b.connect("tcp", ip, 7, time.Second); err != nil || got != "a" {
			t.Errorf("b -> %s:7 after the swap back: %q, %v", ip, got, err)
		}
	}
	for _, ec := range conns[2:] {
		if err := ec.roundTrip("again"); err != nil {
			t.Errorf("c's connection broke: %v", err)
		}
	}
}

// TestAuditedPolicyRealPackets compiles an audited NetworkPolicy (a's
// ingress from b only, annotated netpol.kubectl.io/mode=audit) and runs real
// connections with flow events off: no packet changes, c's connections
// (which enforcing it would deny) are reported with FlagAudit and attributed
// to the would-be default deny of a-in, b's are not reported. Promoted
// (annotation removed), exactly c's connections are dropped.
func TestAuditedPolicyRealPackets(t *testing.T) {
	requireRoot(t)
	cfg := testCfg
	cfg.FlowEvents = false
	env := newResolvedEnv(t, cfg, 80)
	a, b, c, d := env.a, env.b, env.c, env.d
	compile := func(mode string) *policy.Datapath {
		np := netpol("x", "a-in", selector("app", "a"), ingressOnly,
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: selector("app", "b")}}}}, nil)
		if mode != "" {
			np.Annotations = map[string]string{policy.ModeAnnotation: mode}
		}
		snap := &policy.Snapshot{Pods: []*corev1.Pod{podObject(a, "x", map[string]string{"app": "a"}),
			podObject(b, "x", map[string]string{"app": "b"}), podObject(c, "x", map[string]string{"app": "c"}),
			podObject(d, "x", map[string]string{"app": "d"})},
			Policies: []*networkingv1.NetworkPolicy{np}}
		dp, err := policy.Compile(snap, testNode)
		if err != nil {
			t.Fatal(err)
		}
		return dp
	}
	dp := compile(policy.ModeAudit)
	env.apply(t, dp)
	before, _ := env.p.Stats()
	env.ev.drain()
	for _, from := range []*pod{b, c} {
		for _, ip := range []netip.Addr{a.ip4, a.ip6} {
			if got, err := from.connect("tcp", ip, 80, time.Second); err != nil || got != "a" {
				t.Errorf("audited: %s -> %s:80: %q, %v; want no packet changed", from.podName, ip, got, err)
			}
		}
	}
	after, _ := env.p.Stats()
	var fromB, fromC int
	for _, e := range env.ev.drain() {
		if e.DstEndpoint != env.aEP || e.Protocol != 6 {
			continue
		}
		src, _ := TupleAddrs(e.Tuple)
		at := Attribute(dp, &e)
		switch src {
		case b.ip4, b.ip6:
			fromB++
		case c.ip4, c.ip6:
			fromC++
			if e.Verdict != VerdictAllow || e.Flags&FlagAudit == 0 || len(at.Audited) != 1 || at.Audited[0].Rule.Audit.Allowed ||
				len(at.Audited[0].Rule.Audit.IsolatedBy) != 1 || at.Audited[0].Rule.Audit.IsolatedBy[0].Name != "a-in" ||
				len(at.AllowedBy) != 0 {
				t.Errorf("c's audited flow: event %+v, attribution %+v", e, at)
			}
		}
	}
	if fromB != 0 || fromC != 2 {
		t.Errorf("events: %d for b (want none: enforcing changes nothing), %d for c (want 2)", fromB, fromC)
	}
	if n := after.Audited - before.Audited; n != 2 {
		t.Errorf("Stats.Audited grew by %d, want 2", n)
	}

	dp = compile("")
	env.apply(t, dp)
	evs := env.check(t, "promoted", flowCheck{b, 80, true}, flowCheck{c, 80, false})
	if len(evs["c/80"]) < 2 {
		t.Errorf("promoted: %d drop events for c, want >= 2", len(evs["c/80"]))
	}
	for _, e := range evs["c/80"] {
		if at := Attribute(dp, &e); e.Flags&FlagAudit != 0 || len(at.DeniedBy) != 1 || at.DeniedBy[0].Name != "a-in" {
			t.Errorf("promoted: c's drop %+v attributed to %+v, want a-in's isolation", e, at)
		}
	}
}
