//go:build e2e

package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kubectl-netpol/kubectl-netpol/internal/snapshot"
	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

// TestAdviseLive: known traffic (newShop's own check: other -> db:3306 and
// db:80; then web -> db:3306; db on another node than its clients), advise
// from the agents' history for both directions, apply the advice: the
// observed connections still pass with real packets, the unobserved ones
// (web -> db:80, other -> db:8080, both open before) are dropped.
func TestAdviseLive(t *testing.T) {
	runBesideConformance(t)
	c := framework.Connect(t)
	installAgent(t, c)
	s := newShop(t, c)
	db8080 := framework.Target{Host: s.dbIP, Port: 8080, Protocol: "tcp"}
	for range 3 {
		expect(t, c, s.web, true, s.podDB)
		expect(t, c, s.other, true, s.podDB80)
	}
	if err := wait.PollUntilContextTimeout(framework.Context(t, time.Minute), time.Second, 30*time.Second, true, func(context.Context) (bool, error) {
		return len(historyConnections(t, c, s.ns, "web", "db", 3306)) > 0 && len(historyConnections(t, c, s.ns, "other", "db", 80)) > 0, nil
	}); err != nil {
		t.Fatalf("the traffic never reached the agents' history")
	}

	// promote refuses an audited policy that would deny what was observed
	// (other -> db), naming it, from the agents' history; the policy stays audited.
	narrow := filepath.Join(t.TempDir(), "narrow.yaml")
	writeFile(t, narrow, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-web-only, namespace: `+s.ns+`, annotations: {netpol.kubectl.io/mode: audit}}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{protocol: TCP, port: 3306}]}]
`)
	np, err := snapshot.LoadPolicyFiles([]string{narrow}, s.ns)
	if err != nil {
		t.Fatal(err)
	}
	pctx := framework.Context(t, time.Minute)
	if _, err := c.Client.NetworkingV1().NetworkPolicies(s.ns).Create(pctx, np.Policies[0], metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	out, err := netpol(t, c, "", "promote", s.ns+"/db-web-only", "--since", "1h")
	if exitCode(err) != 1 || !strings.Contains(out, "Would deny (2):") || !strings.Contains(out, s.ns+"/other") || !strings.Contains(out, "TCP/80") ||
		!strings.Contains(out, "Refused") {
		t.Errorf("promote of a policy denying observed traffic: exit %d (%v), want 1 naming other -> db\n%s", exitCode(err), err, out)
	}
	t.Logf("promote:\n%s", out)
	if got, err := c.Client.NetworkingV1().NetworkPolicies(s.ns).Get(pctx, "db-web-only", metav1.GetOptions{}); err != nil || got.Annotations["netpol.kubectl.io/mode"] != "audit" {
		t.Errorf("refused policy: %v, annotations %v; want it still audited", err, got.GetAnnotations())
	}
	if err := c.Client.NetworkingV1().NetworkPolicies(s.ns).Delete(pctx, "db-web-only", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	out, err = netpol(t, c, "", "advise", "-n", s.ns, "--both", "--since", "1h", "--audit=false")
	if err != nil {
		t.Fatalf("advise: %v\n%s", err, out)
	}
	t.Logf("advice:\n%s", out)
	for _, want := range []string{"name: advised-db-ingress", "port: mysql", "from " + s.ns + "/web TCP/3306 (mysql)", "from " + s.ns + "/other TCP/80",
		"from " + s.ns + "/other TCP/3306 (mysql)"} {
		if !strings.Contains(out, want) {
			t.Errorf("advice lacks %q", want)
		}
	}
	advice := filepath.Join(t.TempDir(), "advice.yaml")
	writeFile(t, advice, out)
	// whatif agrees before anything is applied: nothing observed breaks.
	if proof, err := netpol(t, c, "", "whatif", "-f", advice, "--since", "1h", "--color", "never"); exitCode(err) != 0 {
		t.Errorf("whatif on the advice: exit %d (%v), want 0\n%s", exitCode(err), err, proof)
	}
	set, err := snapshot.LoadPolicyFiles([]string{advice}, s.ns)
	if err != nil {
		t.Fatal(err)
	}
	ctx := framework.Context(t, 2*time.Minute)
	for _, np := range set.Policies {
		if _, err := c.Client.NetworkingV1().NetworkPolicies(np.Namespace).Create(ctx, np, metav1.CreateOptions{}); err != nil {
			t.Fatalf("applying %s: %v", np.Name, err)
		}
	}
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 15*time.Second, true, func(context.Context) (bool, error) {
		return !c.ProbeWithTimeout(t, s.web, time.Second, s.podDB80)[0].OK, nil
	}); err != nil {
		t.Fatalf("the advice is not enforced 15 s after it was applied: web still reaches db:80")
	}
	expect(t, c, s.web, true, s.podDB)
	expect(t, c, s.other, true, s.podDB, s.podDB80)
	expect(t, c, s.web, false, s.podDB80, db8080)
	expect(t, c, s.other, false, db8080)
}
