package policy_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	. "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

// cnp parses a ClusterNetworkPolicy written as YAML (apiVersion and kind
// may be left out), strictly: a misspelt field fails the test.
func cnp(t testing.TB, doc string) *cnpv1beta1.ClusterNetworkPolicy {
	t.Helper()
	var c cnpv1beta1.ClusterNetworkPolicy
	if err := yaml.UnmarshalStrict([]byte(doc), &c); err != nil {
		t.Fatalf("test CNP: %v\n%s", err, doc)
	}
	return &c
}

// campus: monitoring (prometheus, grafana), web, db; two nodes.
func campus(cnps []*cnpv1beta1.ClusterNetworkPolicy, nps ...*networkingv1.NetworkPolicy) *policy.Snapshot {
	node := func(name, ip string, kv ...string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: Labels(kv...)},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}}}
	}
	return &policy.Snapshot{
		Namespaces: []*corev1.Namespace{Namespace("monitoring", "team=ops"), Namespace("web"), Namespace("db", "team=db")},
		Pods: []*corev1.Pod{
			Pod("monitoring", "prometheus", WithLabels("app=prometheus"), WithIP("10.0.1.1")),
			Pod("monitoring", "grafana", WithLabels("app=grafana"), WithIP("10.0.1.2")),
			Pod("web", "frontend", WithLabels("app=web"), WithIP("10.0.2.1")),
			Pod("db", "mysql", WithLabels("app=db"), WithIP("10.0.3.1"), WithPort("sql", 3306, corev1.ProtocolTCP), WithPort("dns", 53, corev1.ProtocolUDP)),
			Pod("kube-system", "agent", HostNetwork(), WithIP("172.31.0.2")),
		},
		Nodes:           []*corev1.Node{node("cp", "172.31.0.1", "role=control"), node("worker", "172.31.0.2", "role=worker")},
		Policies:        nps,
		ClusterPolicies: cnps,
	}
}

func cnps(t testing.TB, docs ...string) []*cnpv1beta1.ClusterNetworkPolicy {
	var out []*cnpv1beta1.ClusterNetworkPolicy
	for _, d := range docs {
		out = append(out, cnp(t, d))
	}
	return out
}

const denyMonitoring = `
metadata: {name: deny-monitoring}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {team: ops}}}
  ingress:
  - name: allow-prometheus-peers
    action: Accept
    from: [{pods: {namespaceSelector: {matchLabels: {team: ops}}, podSelector: {matchLabels: {app: prometheus}}}}]
  - name: deny-all
    action: Deny
    from: [{namespaces: {}}]
`

const passDB = `
metadata: {name: pass-db}
spec:
  tier: Admin
  priority: 5
  subject: {namespaces: {matchLabels: {team: db}}}
  ingress:
  - name: to-owners
    action: Pass
    from: [{namespaces: {}}]
`

const baselineDenyCross = `
metadata: {name: baseline-isolate}
spec:
  tier: Baseline
  priority: 0
  subject: {namespaces: {}}
  ingress:
  - name: same-team
    action: Deny
    from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: web}}}]
`

func TestClusterTiers(t *testing.T) {
	dbDefaultDeny := Policy("db", "default-deny", Selecting(Sel()))
	dbAllowWeb := Policy("db", "allow-web", Selecting(Sel()), IngressRule(Peers(NSPeer(Sel("kubernetes.io/metadata.name=web")))))
	cases := []struct {
		name       string
		cnps       []string
		nps        []*networkingv1.NetworkPolicy
		src, dst   string // ns/pod or an IP
		proto      corev1.Protocol
		port       int32
		allowed    bool
		side       policy.Direction // the side that decided and whose explanation is checked
		reason     policy.Reason
		tier       policy.Tier
		summary    string // a substring of that side's Summary
		isolatedBy string // the side's IsolatedBy[0].Name, when a NetworkPolicy isolates
	}{
		{name: "admin deny, NetworkPolicy never consulted", cnps: []string{denyMonitoring}, nps: []*networkingv1.NetworkPolicy{Policy("monitoring", "allow-all", Selecting(Sel()), IngressRule(nil))},
			src: "web/frontend", dst: "monitoring/grafana", port: 3000, allowed: false, side: policy.Ingress,
			reason: policy.ReasonDeniedByClusterPolicy, tier: policy.TierAdmin,
			summary: "Admin policy `deny-monitoring` (priority 10) ingress rule 1 `deny-all` denies; NetworkPolicy never consulted"},
		{name: "admin accept before deny (rule order)", cnps: []string{denyMonitoring}, src: "monitoring/prometheus", dst: "monitoring/grafana", port: 3000,
			allowed: true, side: policy.Ingress, reason: policy.ReasonAcceptedByClusterPolicy, tier: policy.TierAdmin,
			summary: "rule 0 `allow-prometheus-peers` accepts"},
		{name: "admin accept overrides a NetworkPolicy default deny", cnps: []string{denyMonitoring}, nps: []*networkingv1.NetworkPolicy{Policy("monitoring", "default-deny", Selecting(Sel()))},
			src: "monitoring/prometheus", dst: "monitoring/grafana", port: 3000, allowed: true, side: policy.Ingress, reason: policy.ReasonAcceptedByClusterPolicy, tier: policy.TierAdmin},
		{name: "pass to NetworkPolicy: default deny attributed", cnps: []string{passDB}, nps: []*networkingv1.NetworkPolicy{dbDefaultDeny},
			src: "web/frontend", dst: "db/mysql", port: 3306, allowed: false, side: policy.Ingress, reason: policy.ReasonNoRuleMatched, tier: policy.TierNetworkPolicy,
			summary: "Admin policy `pass-db` (priority 5) ingress rule 0 `to-owners` passes to NetworkPolicy; NetworkPolicy selects pod db/mysql for ingress and no rule allows", isolatedBy: "default-deny"},
		{name: "pass, then baseline denies a pod no NetworkPolicy selects", cnps: []string{passDB, baselineDenyCross},
			src: "web/frontend", dst: "db/mysql", port: 3306, allowed: false, side: policy.Ingress, reason: policy.ReasonDeniedByClusterPolicy, tier: policy.TierBaseline,
			summary: "passes to NetworkPolicy; no NetworkPolicy selects pod db/mysql for ingress; Baseline policy `baseline-isolate` (priority 0) ingress rule 0 `same-team` denies"},
		{name: "NetworkPolicy overrides baseline", cnps: []string{baselineDenyCross}, nps: []*networkingv1.NetworkPolicy{dbAllowWeb},
			src: "web/frontend", dst: "db/mysql", port: 3306, allowed: true, side: policy.Ingress, reason: policy.ReasonAllowedByRule, tier: policy.TierNetworkPolicy,
			summary: "Baseline never consulted"},
		{name: "baseline no match: allowed by default", cnps: []string{baselineDenyCross},
			src: "monitoring/prometheus", dst: "db/mysql", port: 3306, allowed: true, side: policy.Ingress, reason: policy.ReasonNotIsolated,
			summary: "no Baseline rule matches; allowed by default"},
		{name: "lower priority number first", cnps: []string{`
metadata: {name: b-accept}
spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Accept, from: [{namespaces: {}}]}]}`, `
metadata: {name: a-deny}
spec: {tier: Admin, priority: 2, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}]}]}`},
			src: "web/frontend", dst: "db/mysql", port: 1, allowed: true, side: policy.Ingress, reason: policy.ReasonAcceptedByClusterPolicy, tier: policy.TierAdmin,
			summary: "Admin policy `b-accept` (priority 1) ingress rule 0 accepts"},
		{name: "same priority: by name", cnps: []string{`
metadata: {name: b-accept}
spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Accept, from: [{namespaces: {}}]}]}`, `
metadata: {name: a-deny}
spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}]}]}`},
			src: "web/frontend", dst: "db/mysql", port: 1, allowed: false, side: policy.Ingress, reason: policy.ReasonDeniedByClusterPolicy, tier: policy.TierAdmin},
		{name: "egress accept leaves the destination's ingress to judge", cnps: []string{`
metadata: {name: web-out}
spec: {tier: Admin, priority: 1, subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: web}}}, egress: [{action: Accept, to: [{namespaces: {}}]}]}`},
			nps: []*networkingv1.NetworkPolicy{dbDefaultDeny}, src: "web/frontend", dst: "db/mysql", port: 3306, allowed: false, side: policy.Ingress,
			reason: policy.ReasonNoRuleMatched, isolatedBy: "default-deny"},
		{name: "networks match pod IPs", cnps: []string{`
metadata: {name: no-db-range}
spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, egress: [{name: db-range, action: Deny, to: [{networks: [10.0.3.0/24]}]}]}`},
			src: "web/frontend", dst: "db/mysql", port: 3306, allowed: false, side: policy.Egress, reason: policy.ReasonDeniedByClusterPolicy, tier: policy.TierAdmin,
			summary: "egress rule 0 `db-range` denies"},
		{name: "networks match external IPs", cnps: []string{`
metadata: {name: no-db-range}
spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, egress: [{action: Deny, to: [{networks: [192.0.2.0/24]}]}]}`},
			src: "web/frontend", dst: "192.0.2.7", port: 443, allowed: false, side: policy.Egress, reason: policy.ReasonDeniedByClusterPolicy, tier: policy.TierAdmin},
		{name: "node peer by label denies the control plane", cnps: []string{`
metadata: {name: no-cp}
spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, egress: [{name: cp, action: Deny, to: [{nodes: {matchLabels: {role: control}}}]}]}`},
			src: "web/frontend", dst: "172.31.0.1", port: 6443, allowed: false, side: policy.Egress, reason: policy.ReasonDeniedByClusterPolicy, tier: policy.TierAdmin},
		{name: "node peer: other node untouched", cnps: []string{`
metadata: {name: no-cp}
spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, egress: [{action: Deny, to: [{nodes: {matchLabels: {role: control}}}]}]}`},
			src: "web/frontend", dst: "172.31.0.2", port: 10250, allowed: true, side: policy.Egress, reason: policy.ReasonNotApplicable},
		{name: "baseline node peer for a pod no NetworkPolicy selects", cnps: []string{`
metadata: {name: no-nodes}
spec: {tier: Baseline, priority: 1, subject: {namespaces: {}}, egress: [{action: Deny, to: [{nodes: {}}]}]}`},
			src: "web/frontend", dst: "172.31.0.2", port: 10250, allowed: false, side: policy.Egress, reason: policy.ReasonDeniedByClusterPolicy, tier: policy.TierBaseline},
		{name: "port range", cnps: []string{`
metadata: {name: range}
spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {range: {start: 3000, end: 3306}}}}]}]}`},
			src: "web/frontend", dst: "db/mysql", port: 3306, allowed: false, side: policy.Ingress, reason: policy.ReasonDeniedByClusterPolicy, tier: policy.TierAdmin},
		{name: "port range: outside", cnps: []string{`
metadata: {name: range}
spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {range: {start: 3000, end: 3305}}}}]}]}`},
			src: "web/frontend", dst: "db/mysql", port: 3306, allowed: true, side: policy.Ingress, reason: policy.ReasonNotIsolated, summary: "no Admin rule matches"},
		{name: "protocol: UDP rule does not match TCP", cnps: []string{`
metadata: {name: udp}
spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{udp: {destinationPort: {number: 53}}}]}]}`},
			src: "web/frontend", dst: "db/mysql", port: 53, allowed: true, side: policy.Ingress, reason: policy.ReasonNotIsolated},
		{name: "protocol: SCTP", cnps: []string{`
metadata: {name: sctp}
spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{sctp: {destinationPort: {number: 9003}}}]}]}`},
			src: "web/frontend", dst: "db/mysql", proto: corev1.ProtocolSCTP, port: 9003, allowed: false, side: policy.Ingress, reason: policy.ReasonDeniedByClusterPolicy, tier: policy.TierAdmin},
		{name: "absent protocols: all traffic", cnps: []string{`
metadata: {name: all}
spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}]}]}`},
			src: "web/frontend", dst: "db/mysql", proto: corev1.ProtocolUDP, port: 9, allowed: false, side: policy.Ingress, reason: policy.ReasonDeniedByClusterPolicy, tier: policy.TierAdmin},
		{name: "named port resolves with the pod's protocol", cnps: []string{`
metadata: {name: named}
spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{destinationNamedPort: dns}]}]}`},
			src: "web/frontend", dst: "db/mysql", proto: corev1.ProtocolUDP, port: 53, allowed: false, side: policy.Ingress, reason: policy.ReasonDeniedByClusterPolicy, tier: policy.TierAdmin},
		{name: "named port: other protocol does not match", cnps: []string{`
metadata: {name: named}
spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{destinationNamedPort: dns}]}]}`},
			src: "web/frontend", dst: "db/mysql", proto: corev1.ProtocolTCP, port: 53, allowed: true, side: policy.Ingress, reason: policy.ReasonNotIsolated},
		{name: "hostNetwork pods are never subjects", cnps: []string{`
metadata: {name: all}
spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}]}]}`},
			src: "web/frontend", dst: "kube-system/agent", port: 80, allowed: true, side: policy.Ingress, reason: policy.ReasonNotApplicable},
		{name: "selector peers never match hostNetwork pods", cnps: []string{`
metadata: {name: all}
spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}]}]}`},
			src: "kube-system/agent", dst: "web/frontend", port: 80, allowed: true, side: policy.Ingress, reason: policy.ReasonNotApplicable},
		{name: "pod subject selector", cnps: []string{`
metadata: {name: only-grafana}
spec: {tier: Admin, priority: 1, subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: grafana}}}}, ingress: [{action: Deny, from: [{namespaces: {}}]}]}`},
			src: "web/frontend", dst: "monitoring/prometheus", port: 9090, allowed: true, side: policy.Ingress, reason: policy.ReasonNotIsolated},
		{name: "loopback is never subject", cnps: []string{`
metadata: {name: all}
spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}]}], egress: [{action: Deny, to: [{networks: [0.0.0.0/0]}]}]}`},
			src: "web/frontend", dst: "web/frontend", port: 80, allowed: true, side: policy.Ingress, reason: policy.ReasonNotApplicable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			snap := campus(cnps(t, c.cnps...), c.nps...)
			e, err := policy.NewEngine(snap)
			if err != nil {
				t.Fatal(err)
			}
			tr := policy.Traffic{Src: peerOf(e, c.src), Dst: peerOf(e, c.dst), Protocol: c.proto, Port: c.port}
			d := e.Evaluate(tr)
			if d.Allowed != c.allowed || e.Allowed(tr) != c.allowed {
				t.Fatalf("allowed = %v (Allowed %v), want %v; decision %+v", d.Allowed, e.Allowed(tr), c.allowed, d)
			}
			dd := d.Ingress
			if c.side == policy.Egress {
				dd = d.Egress
			}
			if dd.Reason != c.reason || dd.Tier != c.tier {
				t.Errorf("%s: reason %s tier %q, want %s tier %q (summary %q)", c.side, dd.Reason, dd.Tier, c.reason, c.tier, dd.Summary)
			}
			if !strings.Contains(dd.Summary, c.summary) {
				t.Errorf("%s summary %q, want it to contain %q", c.side, dd.Summary, c.summary)
			}
			if c.isolatedBy != "" && (len(dd.IsolatedBy) == 0 || dd.IsolatedBy[0].Name != c.isolatedBy) {
				t.Errorf("isolatedBy %v, want %s", dd.IsolatedBy, c.isolatedBy)
			}
			if (dd.Reason == policy.ReasonDeniedByClusterPolicy || dd.Reason == policy.ReasonAcceptedByClusterPolicy) && dd.ClusterRule == nil {
				t.Errorf("no ClusterRule for %s", dd.Reason)
			}
			if dd.Tier == policy.TierAdmin && len(dd.Policies) > 0 {
				t.Errorf("Admin decided yet NetworkPolicies were consulted: %+v", dd.Policies)
			}
		})
	}
}

// peerOf is "ns/pod" or an IP.
func peerOf(e *policy.Engine, s string) policy.Peer {
	if ns, name, ok := strings.Cut(s, "/"); ok {
		return policy.Peer{Pod: e.Pod(ns, name)}
	}
	return policy.Peer{IP: netip.MustParseAddr(s)}
}

func TestClusterPassVisible(t *testing.T) {
	e, err := policy.NewEngine(campus(cnps(t, passDB)))
	if err != nil {
		t.Fatal(err)
	}
	d := e.Evaluate(policy.Traffic{Src: peerOf(e, "web/frontend"), Dst: peerOf(e, "db/mysql"), Port: 3306})
	if len(d.Ingress.Passed) != 1 || d.Ingress.Passed[0].Rule.Name != "to-owners" || d.Ingress.Passed[0].Rule.Action != policy.ActionPass {
		t.Fatalf("Passed = %+v, want rule to-owners", d.Ingress.Passed)
	}
	if want := "Admin policy `pass-db` (priority 5) ingress rule 0 `to-owners` passes to NetworkPolicy; no NetworkPolicy selects pod db/mysql for ingress; allowed by default"; d.Ingress.Summary != want {
		t.Errorf("summary %q\nwant    %q", d.Ingress.Summary, want)
	}
}

func TestClusterDomainNamesReported(t *testing.T) {
	pol := `
metadata: {name: egress-allowlist}
spec:
  tier: Admin
  priority: 3
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: web}}}
  egress:
  - {name: allow-example, action: Accept, to: [{domainNames: ["*.example.com"]}]}
  - {name: deny-rest, action: Deny, to: [{networks: [0.0.0.0/0]}]}
`
	e, err := policy.NewEngine(campus(cnps(t, pol)))
	if err != nil {
		t.Fatal(err)
	}
	if got := e.DomainNamePolicies(); len(got) != 1 || got[0] != "egress-allowlist" {
		t.Errorf("DomainNamePolicies = %v", got)
	}
	d := e.Evaluate(policy.Traffic{Src: peerOf(e, "web/frontend"), Dst: peerOf(e, "198.51.100.1"), Port: 443})
	if d.Allowed || d.Egress.ClusterRule == nil || d.Egress.ClusterRule.Rule.Name != "deny-rest" {
		t.Fatalf("the deny after a domainNames accept must still apply: %+v", d.Egress)
	}
	found := false
	for _, w := range d.Warnings {
		found = found || w.Code == policy.WarnDomainNames && strings.Contains(w.Message, "*.example.com")
	}
	if !found {
		t.Errorf("no %s warning: %+v", policy.WarnDomainNames, d.Warnings)
	}
}

func TestClusterValidation(t *testing.T) {
	cases := []struct{ name, doc, want string }{
		{"tier", `{metadata: {name: x}, spec: {tier: Middle, priority: 1, subject: {namespaces: {}}}}`, `spec.tier: Unsupported value: "Middle"`},
		{"priority", `{metadata: {name: x}, spec: {tier: Admin, priority: 1001, subject: {namespaces: {}}}}`, "spec.priority: Invalid value: 1001"},
		{"subject none", `{metadata: {name: x}, spec: {tier: Admin, priority: 1, subject: {}}}`, "spec.subject: Required value"},
		{"subject both", `{metadata: {name: x}, spec: {tier: Admin, priority: 1, subject: {namespaces: {}, pods: {podSelector: {}}}}}`, "spec.subject: Invalid value"},
		{"action", `{metadata: {name: x}, spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Allow, from: [{namespaces: {}}]}]}}`, `spec.ingress[0].action: Unsupported value: "Allow"`},
		{"no peers", `{metadata: {name: x}, spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny}]}}`, "spec.ingress[0].from: Required value"},
		{"two peer fields", `{metadata: {name: x}, spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, egress: [{action: Deny, to: [{namespaces: {}, networks: [10.0.0.0/8]}]}]}}`, "spec.egress[0].to[0]: Invalid value"},
		{"cidr not canonical (CEL)", `{metadata: {name: x}, spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, egress: [{action: Deny, to: [{networks: [10.0.0.1/8]}]}]}}`, `spec.egress[0].to[0].networks[0]: Invalid value: "10.0.0.1/8": Invalid CIDR format provided`},
		{"range order (CEL)", `{metadata: {name: x}, spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {range: {start: 90, end: 80}}}}]}]}}`, "Start port must be less than End port"},
		{"named port with networks (CEL)", `{metadata: {name: x}, spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, egress: [{action: Deny, to: [{networks: [10.0.0.0/8]}], protocols: [{destinationNamedPort: web}]}]}}`, "spec.egress[0].protocols[0].destinationNamedPort: Invalid value: \"web\": networks/nodes/domainNames peer cannot be set with namedPorts"},
		{"port number bounds", `{metadata: {name: x}, spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{udp: {destinationPort: {number: 70000}}}]}]}}`, "spec.ingress[0].protocols[0].udp.destinationPort.number: Invalid value: 70000"},
		{"tcp without port", `{metadata: {name: x}, spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {}}]}]}}`, "spec.ingress[0].protocols[0].tcp.destinationPort: Required value"},
		{"domain pattern", `{metadata: {name: x}, spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, egress: [{action: Accept, to: [{domainNames: ["bad..name"]}]}]}}`, "spec.egress[0].to[0].domainNames[0]: Invalid value"},
		{"rule name length", `{metadata: {name: x}, spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{name: ` + strings.Repeat("n", 101) + `, action: Deny, from: [{namespaces: {}}]}]}}`, "spec.ingress[0].name: Too long"},
		{"selector", `{metadata: {name: x}, spec: {tier: Admin, priority: 1, subject: {namespaces: {matchExpressions: [{key: a, operator: In}]}}}}`, "spec.subject.namespaces.matchExpressions[0].values: Required value"},
		{"name", `{metadata: {name: Bad_Name}, spec: {tier: Admin, priority: 1, subject: {namespaces: {}}}}`, "metadata.name: Invalid value"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			obj := cnp(t, c.doc)
			err := policy.ValidateClusterPolicy(obj)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
			if !strings.HasPrefix(err.Error(), "clusternetworkpolicy "+obj.Name+" is invalid: ") {
				t.Errorf("error does not name the object: %v", err)
			}
			var ve *policy.ValidationError
			if !errors.As(err, &ve) || ve.Kind != policy.KindClusterNetworkPolicy {
				t.Errorf("not a cluster ValidationError: %T", err)
			}
			if _, err := policy.NewEngine(campus([]*cnpv1beta1.ClusterNetworkPolicy{obj})); err == nil {
				t.Error("NewEngine accepted the invalid policy")
			}
		})
	}
	for _, good := range []string{denyMonitoring, passDB, baselineDenyCross} {
		if err := policy.ValidateClusterPolicy(cnp(t, good)); err != nil {
			t.Errorf("valid policy rejected: %v", err)
		}
	}
}

// TestCompileClusterAttribution checks what the kernel will report for
// flows a ClusterNetworkPolicy decides: the entry of frontend -> grafana is
// a deny naming the Admin rule "deny-all", prometheus -> grafana an accept
// naming "allow-prometheus-peers", and the direction is resolved.
func TestCompileClusterAttribution(t *testing.T) {
	s := campus(cnps(t, denyMonitoring))
	for _, p := range s.Pods {
		p.Spec.NodeName = "worker"
	}
	e, err := policy.NewEngine(s)
	if err != nil {
		t.Fatal(err)
	}
	dp, err := e.Compile("worker")
	if err != nil {
		t.Fatal(err)
	}
	var grafana *policy.Endpoint
	idOf := map[string]uint32{}
	for i := range dp.Endpoints {
		ep := &dp.Endpoints[i]
		idOf[ep.Name] = ep.Identity
		if ep.Name == "grafana" {
			grafana = ep
		}
	}
	if grafana == nil || !grafana.Ingress.Resolved || grafana.Egress.Resolved {
		t.Fatalf("grafana: want a resolved ingress and a plain egress, got %+v", grafana)
	}
	ruleFor := func(peer string) (uint32, policy.CompiledRule) {
		t.Helper()
		for _, en := range grafana.Ingress.Entries {
			if en.Identity == idOf[peer] && !en.CIDR.IsValid() && (en.Protocol == "" || en.Protocol == corev1.ProtocolTCP) {
				r, ok := dp.RuleByID(en.Rule)
				if !ok || r.Cluster == nil {
					t.Fatalf("%s: entry rule %#x names no cluster rule", peer, en.Rule)
				}
				return en.Rule, r
			}
		}
		t.Fatalf("no entry for %s in %+v", peer, grafana.Ingress.Entries)
		return 0, policy.CompiledRule{}
	}
	if id, r := ruleFor("frontend"); id&policy.RuleDeny == 0 || r.Cluster.Name != "deny-all" || r.Cluster.Priority != 10 || r.Cluster.Tier != policy.TierAdmin {
		t.Errorf("frontend -> grafana: rule %#x %+v, want a deny by Admin deny-all (priority 10)", id, r.Cluster)
	}
	if id, r := ruleFor("prometheus"); id&policy.RuleDeny != 0 || r.Cluster.Name != "allow-prometheus-peers" {
		t.Errorf("prometheus -> grafana: rule %#x %+v, want an accept by allow-prometheus-peers", id, r.Cluster)
	}
	for _, ep := range dp.Endpoints {
		for _, side := range []policy.EndpointPolicy{ep.Ingress, ep.Egress} {
			for _, en := range side.Entries {
				if id := en.Rule & policy.RuleIDMask; id >= policy.FirstRuleID && id >= policy.RuleAudit {
					t.Fatalf("rule ID %#x overlaps the flags", en.Rule)
				}
			}
		}
	}
}
