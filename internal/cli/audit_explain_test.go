package cli

import (
	"encoding/json"
	"testing"
)

// lockdownAudit is a default deny for db in audit mode.
const lockdownAudit = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: lockdown
  namespace: db
  annotations: {netpol.kubectl.io/mode: audit}
spec:
  podSelector: {}
  policyTypes: [Ingress]
`

// TestExplainAudit: an audited default deny leaves db/other reachable and
// explain says so, naming the policy and what enforcing it would do; a
// connection it would not change carries no audit.
func TestExplainAudit(t *testing.T) {
	f := writeFile(t, t.TempDir(), "lockdown.yaml", lockdownAudit)
	out, _, err := run(t, offlineFactory(t), "", "explain", "-f", example, "-f", f, "db/web-0", "db/other", "--port", "80")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "ALLOWED  db/web-0 → db/other on 80/TCP  (audit: would be DENIED)",
		"audit: db/lockdown is audited, not enforced; enforced, it would make this DENIED",
		"    ingress to db/other: denied (isolated for Ingress and no rule allows this traffic)",
		"db/lockdown selects pod db/other")
	out, _, err = run(t, offlineFactory(t), "", "explain", "-f", example, "-f", f, "db/web-0", "db/other", "--port", "80", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var x Explanation
	if err := json.Unmarshal([]byte(out), &x); err != nil {
		t.Fatal(err)
	}
	if a := x.Ports[0].Audit; !x.Allowed || a == nil || a.Allowed || len(a.Policies) != 1 || a.Policies[0] != "db/lockdown" || a.Ingress.Allowed {
		t.Fatalf("json audit = %+v (allowed %v), want would-deny by db/lockdown on ingress", a, x.Allowed)
	}
	// web-0 -> mysql-0:3306 is allowed by db-policy; the audited default deny
	// adds nothing there.
	out, _, err = run(t, offlineFactory(t), "", "explain", "-f", example, "-f", f, "db/web-0", "db/mysql-0", "--port", "3306", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	x = Explanation{}
	if err := json.Unmarshal([]byte(out), &x); err != nil {
		t.Fatal(err)
	}
	if !x.Allowed || x.Ports[0].Audit != nil {
		t.Fatalf("web-0 -> mysql-0: allowed %v audit %+v, want allowed without audit", x.Allowed, x.Ports[0].Audit)
	}
}
