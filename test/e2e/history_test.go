//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
	"github.com/kubectl-netpol/kubectl-netpol/internal/agentclient"
	"github.com/kubectl-netpol/kubectl-netpol/internal/cli"
	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
	"github.com/kubectl-netpol/kubectl-netpol/whatif"
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
// which survives the agents' restart and an upgrade to the next version (and
// `watch --since 1h` after it shows what came before from history); whatif on a change that would break an
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
	expectHistoryKept(t, before, historyConnections(t, c, s.ns, "web", "db", 3306), "the restart")

	// Upgrade: the DaemonSet rolled to the agent stamped as the next version
	// (a new image, node by node); each new agent reads the history its
	// predecessor left on the node. The tests after this one get the
	// tree's own agent back.
	upgrade := framework.AgentUpgradeImage(t)
	t.Cleanup(func() { installAgent(t, c) })
	if out, err := netpol(t, c, "", "install", "--image", upgrade, "--timeout", "4m"); err != nil {
		t.Fatalf("kubectl netpol install --image %s: %v\n%s", upgrade, err, out)
	}
	wantVersion := upgrade[strings.LastIndex(upgrade, ":")+1:]
	eachAgent(t, c, func(ctx context.Context, a agentclient.Agent, client flowv1.ObserverClient) {
		st, err := client.Status(ctx, &flowv1.StatusRequest{})
		if err != nil || st.GetVersion() != wantVersion {
			t.Fatalf("agent %s after the upgrade: version %q (%v), want %q", a, st.GetVersion(), err, wantVersion)
		}
	})
	expectHistoryKept(t, before, historyConnections(t, c, s.ns, "web", "db", 3306), "the upgrade")

	// `watch --since 1h` right after the upgrade: the agents' rings start
	// empty, so what came before comes from history (aggregated lines, each
	// node's own with --per-node), then the rings' exact flows (one new
	// connection).
	expect(t, c, s.web, true, s.podDB)
	var fromHistory map[string]uint64
	var fromRing int
	for range 20 {
		fromHistory, fromRing = map[string]uint64{}, 0
		for _, f := range watchFlows(t, c, "--since", "1h", "--per-node", "--from-pod", s.ns+"/web", "--to-pod", s.ns+"/db", "--port", "3306") {
			switch a := f.GetAggregate(); {
			case a != nil && f.GetVerdict() == flowv1.Verdict_VERDICT_ALLOWED:
				fromHistory[f.GetNode()] += a.GetConnections()
			case a == nil && f.GetType() == flowv1.EventType_EVENT_TYPE_NEW:
				fromRing++
			}
		}
		if fromRing > 0 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if fromRing == 0 {
		t.Errorf("watch --since 1h after the upgrade: no web -> db flow from the agents' rings")
	}
	for node, n := range before {
		if fromHistory[node] < n {
			t.Errorf("watch --since 1h after the upgrade: node %s: %d web -> db connections from history, want >= %d", node, fromHistory[node], n)
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

// expectHistoryKept fails for every node whose history holds fewer
// connections than before what.
func expectHistoryKept(t *testing.T, before, after map[string]uint64, what string) {
	t.Helper()
	for node, n := range before {
		if after[node] < n {
			t.Errorf("node %s: %d connections web -> db in history after %s, %d before: history lost", node, after[node], what, n)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestUnusedAndCoverageLive: a known scenario on the cluster. db-policy's
// rule (web -> db:3306) gets traffic while db-admin's rule (admin ->
// db:3306, no such pod) never does: unused lists db-admin's rule and not
// db-policy's. db is isolated with allowing rules, other isolated allowing
// nothing (other-deny), web not isolated: coverage says so per pod, and
// lists db -> web:80 as live exposure (observed traffic into a pod no policy
// isolates), never the traffic into db.
func TestUnusedAndCoverageLive(t *testing.T) {
	runBesideConformance(t)
	c := framework.Connect(t)
	installAgent(t, c)
	s := newShop(t, c)
	s.applyPolicy(t, c)
	ctx := framework.Context(t, 3*time.Minute)
	tcp := corev1.ProtocolTCP
	mysql := intstr.FromInt32(3306)
	var created time.Time
	for _, p := range []*networkingv1.NetworkPolicy{
		{ObjectMeta: metav1.ObjectMeta{Name: "db-admin"}, Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "admin"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &mysql}},
			}},
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "other-deny"}, Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "other"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		}},
	} {
		got, err := c.Client.NetworkingV1().NetworkPolicies(s.ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.CreationTimestamp.After(created) {
			created = got.CreationTimestamp.Time
		}
	}
	// The window starts after every policy exists (creation times are whole
	// seconds): a rule is observed for all of it, so no hit means unused,
	// not "not yet known".
	since := created.Add(2 * time.Second)
	time.Sleep(time.Until(since.Add(time.Second)))

	webDB80 := framework.Target{Host: s.web.Status.PodIP, Port: 80, Protocol: "tcp"}
	for range 3 {
		expect(t, c, s.web, true, s.podDB)
		expect(t, c, s.db, true, webDB80)
		expect(t, c, s.other, false, s.podDB)
	}

	var rep struct {
		Unused []struct {
			Policy, Rule string
			NotYetKnown  bool
		}
	}
	unused := func(policy, rule string) (found, notYetKnown bool) {
		for _, u := range rep.Unused {
			if u.Policy == s.ns+"/"+policy && u.Rule == rule {
				return true, u.NotYetKnown
			}
		}
		return false, false
	}
	// Rule hits reach the agents' counters as the flows are read: poll
	// until db-policy's rule is counted.
	var out string
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 30*time.Second, true, func(context.Context) (bool, error) {
		var err error
		out, err = netpol(t, c, "", "unused", "-n", s.ns, "--since", since.UTC().Format(time.RFC3339), "-o", "json")
		if err != nil {
			return false, err
		}
		rep.Unused = nil
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			return false, err
		}
		used, _ := unused("db-policy", "ingress[0]")
		return !used, nil
	}); err != nil {
		t.Fatalf("unused still lists db-policy ingress[0] (web -> db:3306 got traffic): %v\n%s", err, out)
	}
	if found, notYet := unused("db-admin", "ingress[0]"); !found || notYet {
		t.Errorf("unused: db-admin ingress[0] (never any traffic) listed=%v, not yet known=%v; want listed as unused\n%s", found, notYet, out)
	}
	text, err := netpol(t, c, "", "unused", "-n", s.ns, "--since", since.UTC().Format(time.RFC3339))
	if err != nil || !regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(s.ns)+`/db-admin\s+ingress\[0\]\s+never\s+.*\sunused$`).MatchString(text) {
		t.Errorf("unused (text): %v\n%s", err, text)
	}

	var cov struct {
		Pods []struct {
			Pod             string
			Ingress, Egress whatif.Isolation
			IngressBy       []string
		}
		Exposed []whatif.Exposure
		History string
	}
	out, err = netpol(t, c, "", "coverage", "-n", s.ns, "--since", "1h", "-o", "json")
	if err != nil {
		t.Fatalf("coverage: %v\n%s", err, out)
	}
	if err := json.Unmarshal([]byte(out), &cov); err != nil {
		t.Fatalf("coverage -o json: %v\n%s", err, out)
	}
	want := map[string]whatif.Isolation{"db": whatif.IsolatedAllowing, "other": whatif.IsolatedDenyingAll, "web": whatif.NotIsolated}
	for _, p := range cov.Pods {
		name := strings.TrimPrefix(p.Pod, s.ns+"/")
		if w, ok := want[name]; ok {
			if p.Ingress != w || p.Egress != whatif.NotIsolated {
				t.Errorf("coverage of %s: ingress %q, egress %q; want %q, %q", p.Pod, p.Ingress, p.Egress, w, whatif.NotIsolated)
			}
			delete(want, name)
		}
	}
	if len(want) > 0 {
		t.Errorf("coverage lacks pods %v:\n%s", want, out)
	}
	exposed := false
	for _, x := range cov.Exposed {
		if strings.HasSuffix(x.Destination, "/db") {
			t.Errorf("coverage calls traffic into db (isolated) exposure: %+v", x)
		}
		if x.Source == s.ns+"/db" && x.Destination == s.ns+"/web" && x.Port == 80 && x.Connections >= 3 {
			exposed = true
		}
	}
	if !exposed || !strings.HasPrefix(cov.History, "agents on ") {
		t.Errorf("coverage does not list db -> web:80 (3 connections) as live exposure from the agents' history:\n%s", out)
	}
}
