package policy_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	. "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

// auditWorld: web (frontend) and db (mysql, ledger); a default deny for db
// and an allowance for frontend -> mysql:3306, each possibly annotated.
func auditWorld(denyMode, allowMode, nsMode string) *policy.Snapshot {
	annotate := func(mode string) map[string]string {
		if mode == "" {
			return nil
		}
		return map[string]string{policy.ModeAnnotation: mode}
	}
	db := Namespace("db")
	db.Annotations = annotate(nsMode)
	deny := Policy("db", "default-deny", Selecting(Sel()), Types(networkingv1.PolicyTypeIngress))
	deny.Annotations = annotate(denyMode)
	allow := Policy("db", "allow-web", Selecting(Sel("app=mysql")),
		IngressRule(Peers(NSPeer(Sel("kubernetes.io/metadata.name=web"))), Port(corev1.ProtocolTCP, 3306)))
	allow.Annotations = annotate(allowMode)
	return &policy.Snapshot{
		Namespaces: []*corev1.Namespace{Namespace("web"), db},
		Pods: []*corev1.Pod{
			Pod("web", "frontend", WithLabels("app=web"), WithIP("10.0.2.1")),
			Pod("db", "mysql", WithLabels("app=mysql"), WithIP("10.0.3.1")),
			Pod("db", "ledger", WithLabels("app=ledger"), WithIP("10.0.3.2")),
		},
		Policies: []*networkingv1.NetworkPolicy{deny, allow},
	}
}

func TestAuditMode(t *testing.T) {
	tcp := func(dst string, port int32) policy.Traffic {
		return policy.Traffic{Src: policy.Peer{IP: Addr("10.0.2.1")}, Dst: policy.Peer{IP: Addr(dst)}, Protocol: corev1.ProtocolTCP, Port: port}
	}
	for _, tc := range []struct {
		name                string
		deny, allow, ns     string
		dst                 string
		port                int32
		allowed, wouldAllow bool
		audited             []string // the audited policies named by Decision.Audit
	}{
		{name: "audited default deny: ledger stays reachable, would be denied", deny: "audit", dst: "10.0.3.2", port: 80,
			allowed: true, wouldAllow: false, audited: []string{"default-deny"}},
		{name: "audited default deny: mysql:3306 allowed either way", deny: "audit", dst: "10.0.3.1", port: 3306,
			allowed: true, wouldAllow: true},
		{name: "namespace audits both: mysql:80 would be denied by both", ns: "audit", dst: "10.0.3.1", port: 80,
			allowed: true, wouldAllow: false, audited: []string{"allow-web", "default-deny"}},
		{name: "namespace audits, the deny says enforce", ns: "audit", deny: "enforce", dst: "10.0.3.1", port: 3306,
			allowed: false, wouldAllow: true, audited: []string{"allow-web"}},
		{name: "nothing audited", dst: "10.0.3.2", port: 80, allowed: false, wouldAllow: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := policy.NewEngine(auditWorld(tc.deny, tc.allow, tc.ns))
			if err != nil {
				t.Fatal(err)
			}
			d := e.Evaluate(tcp(tc.dst, tc.port))
			if d.Allowed != tc.allowed || e.Allowed(tcp(tc.dst, tc.port)) != tc.allowed {
				t.Fatalf("allowed = %v, want %v", d.Allowed, tc.allowed)
			}
			would := d.Allowed
			var names []string
			if d.Audit != nil {
				would = d.Audit.Allowed
				for _, p := range d.Audit.Policies {
					names = append(names, p.Name)
				}
			}
			if would != tc.wouldAllow {
				t.Fatalf("would allow = %v, want %v (%+v)", would, tc.wouldAllow, d.Audit)
			}
			if len(names) != len(tc.audited) {
				t.Fatalf("audited policies %v, want %v", names, tc.audited)
			}
			for i := range names {
				if names[i] != tc.audited[i] {
					t.Fatalf("audited policies %v, want %v", names, tc.audited)
				}
			}
		})
	}
}

// TestAuditCompiledAttribution: an audited default deny compiles to an
// allowing entry flagged RuleAudit whose rule says "would deny, isolated by
// default-deny", for the ledger only; mysql's direction is not audited.
func TestAuditCompiledAttribution(t *testing.T) {
	s := auditWorld("audit", "", "")
	for _, p := range s.Pods {
		p.Spec.NodeName = "n1"
	}
	e, err := policy.NewEngine(s)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.AuditedPolicies(); len(got) != 1 || got[0].Name != "default-deny" {
		t.Fatalf("AuditedPolicies = %v", got)
	}
	dp, err := e.Compile("n1")
	if err != nil {
		t.Fatal(err)
	}
	ep := endpointOf(dp, Addr("10.0.3.2"))
	if !ep.Ingress.Resolved || ep.Ingress.Isolated {
		t.Fatalf("ledger ingress: resolved %v isolated %v, want resolved and not isolated (the only isolating policy is audited)", ep.Ingress.Resolved, ep.Ingress.Isolated)
	}
	r, ok := resolvedRule(&ep.Ingress, Addr("10.0.2.1"), identityOf(dp, Addr("10.0.2.1")), corev1.ProtocolTCP, 80)
	if !ok || r&policy.RuleDeny != 0 || r&policy.RuleAudit == 0 {
		t.Fatalf("frontend -> ledger: rule %#x, want an allowing audited entry", r)
	}
	cr, ok := dp.RuleByID(r)
	if !ok || cr.Audit == nil || cr.Audit.Allowed || cr.Base != policy.RuleNotIsolated ||
		len(cr.Audit.IsolatedBy) != 1 || cr.Audit.IsolatedBy[0].Name != "default-deny" {
		t.Fatalf("rule %+v (audit %+v), want not isolated now, would be denied by default-deny's isolation", cr, cr.Audit)
	}
}
