//go:build e2e

package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
	"github.com/kubectl-netpol/kubectl-netpol/internal/agentclient"
	"github.com/kubectl-netpol/kubectl-netpol/internal/cli"
	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

// historyConnections is what the agents' history holds of from -> to on
// port, allowed: per node (a cross-node connection is recorded by both).
func historyConnections(t *testing.T, c *framework.Cluster, ns, from, to string, port uint32) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	eachAgent(t, c, func(ctx context.Context, a agentclient.Agent, client flowv1.ObserverClient) {
		var set history.Set
		if err := set.Collect(ctx, client, &flowv1.HistoryRequest{SchemaVersion: history.SchemaVersion,
			Allowlist: []*flowv1.FlowFilter{{SourceNamespace: []string{ns}, DestinationPort: []uint32{port},
				Verdict: []flowv1.Verdict{flowv1.Verdict_VERDICT_ALLOWED}}}}); err != nil {
			t.Fatalf("History on %s: %v", a, err)
		}
		for _, r := range set.Records {
			if r.Key.GetSource().GetPod() == from && r.Key.GetDestination().GetPod() == to {
				out[a.Node] += r.Connections
			}
		}
	})
	return out
}

func exitCode(err error) int {
	var e *cli.ExitError
	if errors.As(err, &e) {
		return e.Code
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestHistoryWhatifLive: real traffic is recorded in the agents' history,
// which survives the agents' restart; whatif on a change that would break an
// observed connection exits 1 and names it, on a harmless change exits 0;
// and once the breaking change is applied, the named connection is really
// dropped while the others still pass.
func TestHistoryWhatifLive(t *testing.T) {
	c := framework.Connect(t)
	installAgent(t, c)
	s := newShop(t, c)
	s.applyPolicy(t, c)

	// Traffic: web -> db:3306 allowed (named by the breaking change below),
	// db -> web:80 allowed (web is not isolated: unaffected), other -> db denied.
	webDB80 := framework.Target{Host: s.web.Status.PodIP, Port: 80, Protocol: "tcp"}
	for range 3 {
		expect(t, c, s.web, true, s.podDB)
		expect(t, c, s.db, true, webDB80)
		expect(t, c, s.other, false, s.podDB)
	}
	var before map[string]uint64
	if err := wait.PollUntilContextTimeout(framework.Context(t, time.Minute), time.Second, 30*time.Second, true, func(context.Context) (bool, error) {
		before = historyConnections(t, c, s.ns, "web", "db", 3306)
		return len(before) > 0, nil
	}); err != nil {
		t.Fatalf("web -> db:3306 never reached the agents' history")
	}
	t.Logf("history before the restart: %v", before)

	// Restart every agent (SIGTERM: each flushes its history, then the new
	// pod reads it back from the node).
	ctx := framework.Context(t, 4*time.Minute)
	old, err := agentclient.Discover(ctx, c.Client, install.DefaultNamespace)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range old {
		if err := c.Client.CoreV1().Pods(a.Namespace).Delete(ctx, a.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	oldNames := map[string]bool{}
	for _, a := range old {
		oldNames[a.Name] = true
	}
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		as, err := agentclient.Discover(ctx, c.Client, install.DefaultNamespace)
		if err != nil {
			return false, nil
		}
		ready := 0
		for _, a := range as {
			if !oldNames[a.Name] && a.Ready {
				ready++
			}
		}
		return ready == len(old), nil
	}); err != nil {
		t.Fatalf("the agents did not come back: %v", err)
	}
	after := historyConnections(t, c, s.ns, "web", "db", 3306)
	for node, n := range before {
		if after[node] < n {
			t.Errorf("node %s: %d connections web -> db in history after the restart, %d before: history lost", node, after[node], n)
		}
	}

	dir := t.TempDir()
	breaking := filepath.Join(dir, "breaking.yaml")
	writeFile(t, breaking, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-policy, namespace: `+s.ns+`}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: admin}}}]
    ports: [{protocol: TCP, port: 3306}]
`)
	harmless := filepath.Join(dir, "harmless.yaml")
	writeFile(t, harmless, `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: other-open, namespace: `+s.ns+`}
spec:
  podSelector: {matchLabels: {app: other}}
  policyTypes: [Ingress]
  ingress: [{}]
`)
	out, err := netpol(t, c, "", "whatif", "-f", breaking, "--since", "1h", "--color", "never")
	if exitCode(err) != 1 {
		t.Fatalf("whatif on the breaking change: exit %d (%v), want 1\n%s", exitCode(err), err, out)
	}
	if !strings.Contains(out, s.ns+"/web") || !strings.Contains(out, s.ns+"/db") || !strings.Contains(out, "TCP/3306") ||
		!strings.Contains(out, "Newly denied (would break): 1") || strings.Contains(out, "PARTIAL") {
		t.Errorf("whatif does not name web -> db:3306 as the one break:\n%s", out)
	}
	out, err = netpol(t, c, "", "whatif", "-f", harmless, "--since", "1h")
	if exitCode(err) != 0 || !strings.Contains(out, "Newly denied (would break): 0") {
		t.Errorf("whatif on the harmless change: exit %d (%v), want 0\n%s", exitCode(err), err, out)
	}

	// Apply the breaking change: what whatif named is dropped, the rest passes.
	pol, err := c.Client.NetworkingV1().NetworkPolicies(s.ns).Get(ctx, "db-policy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pol.Spec.Ingress[0].From[0].PodSelector.MatchLabels = map[string]string{"app": "admin"}
	if _, err := c.Client.NetworkingV1().NetworkPolicies(s.ns).Update(ctx, pol, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return !c.ProbeWithTimeout(t, s.web, time.Second, s.podDB)[0].OK, nil
	}); err != nil {
		t.Fatalf("web -> db:3306 still passes 30 s after the breaking change")
	}
	expect(t, c, s.web, false, s.podDB)
	expect(t, c, s.db, true, webDB80)
	expect(t, c, s.other, false, s.podDB)

	// status shows each node's history.
	out, err = netpol(t, c, "", "status")
	if err != nil || !strings.Contains(out, "HISTORY") || strings.Contains(out, "history over its budget") {
		t.Errorf("status: %v\n%s", err, out)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
