//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
	"sigs.k8s.io/yaml"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

// ClusterNetworkPolicies created while the agent runs are enforced on
// real traffic between nodes, in the tiers' order, and attributed in the
// flows and in watch:
//   - an Admin Deny drops web -> db although db-policy (NetworkPolicy)
//     admits web; the drop names the Admin rule with its priority;
//   - an Admin Pass of higher precedence hands web -> db back to
//     NetworkPolicy, which admits it (and still isolates db from other);
//   - a Baseline Deny applies to web, which no NetworkPolicy selects.
func TestAgentEnforcesClusterNetworkPolicies(t *testing.T) {
	runBesideConformance(t)
	c := framework.Connect(t)
	installAgent(t, c)
	s := newShop(t, c)
	s.applyPolicy(t, c)
	expect(t, c, s.web, true, s.podDB)
	cnps := cnpclient.NewForConfigOrDie(c.Config)
	create := func(doc string) {
		t.Helper()
		p := &cnpv1beta1.ClusterNetworkPolicy{}
		if err := yaml.UnmarshalStrict([]byte(strings.ReplaceAll(doc, "NS", s.ns)), p); err != nil {
			t.Fatal(err)
		}
		p.Name = s.ns + "-" + p.Name // cluster-scoped: unique per run
		if _, err := cnps.PolicyV1beta1().ClusterNetworkPolicies().Create(framework.Context(t, time.Minute), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cnps.PolicyV1beta1().ClusterNetworkPolicies().Delete(context.Background(), p.Name, metav1.DeleteOptions{})
		})
	}
	// until polls a probe until it gives want (the agents apply within a
	// second; 15 s bounds a datapath that never enforces).
	until := func(what string, from *corev1.Pod, want bool, to framework.Target) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(framework.Context(t, time.Minute), 200*time.Millisecond, 15*time.Second, true,
			func(context.Context) (bool, error) {
				return c.ProbeWithTimeout(t, from, time.Second, to)[0].OK == want, nil
			}); err != nil {
			t.Fatalf("%s: not so 15 s after the change", what)
		}
	}

	create(`
metadata: {name: deny-db}
spec:
  tier: Admin
  priority: 10
  subject: {pods: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: NS}}, podSelector: {matchLabels: {app: db}}}}
  ingress:
  - {name: deny-all, action: Deny, from: [{namespaces: {}}]}
`)
	until("the Admin Deny drops web -> db, which NetworkPolicy admits", s.web, false, s.podDB)
	name := s.ns + "-deny-db"
	denied := waitFlow(t, c, "web -> db denied by the Admin rule", &flowv1.FlowFilter{
		SourcePod: []string{s.ns + "/web"}, DestinationPod: []string{s.ns + "/db"}, Verdict: []flowv1.Verdict{flowv1.Verdict_VERDICT_DENIED},
		Reason: []flowv1.Reason{flowv1.Reason_REASON_DENIED_BY_RULE}, Policy: []string{"cnp/" + name}})
	if d := denied.GetDeniedBy(); len(d) != 1 || d[0].GetTier() != flowv1.ClusterTier_CLUSTER_TIER_ADMIN || d[0].GetPriority() != 10 ||
		d[0].GetRuleName() != "deny-all" || d[0].RuleIndex == nil || d[0].GetRuleIndex() != 0 ||
		d[0].GetAction() != flowv1.ClusterAction_CLUSTER_ACTION_DENY || denied.GetNode() != s.db.Spec.NodeName {
		t.Errorf("web -> db should be dropped on db's node by Admin %s rule 0 deny-all (prio 10): %s", name, describeFlow(denied))
	}
	out, err := netpol(t, c, "", "watch", "--last", "500", "--policy", "cnp/"+name)
	want := "denied-by Admin cnp " + name + " (prio 10) ingress rule 0 deny-all"
	if err != nil || !strings.Contains(out, want) {
		t.Errorf("watch --policy cnp/%s: %v, lacks %q:\n%s", name, err, want, out)
	}

	create(`
metadata: {name: pass-web}
spec:
  tier: Admin
  priority: 5
  subject: {pods: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: NS}}, podSelector: {matchLabels: {app: db}}}}
  ingress:
  - name: to-networkpolicy
    action: Pass
    from: [{pods: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: NS}}, podSelector: {matchLabels: {app: web}}}}]
`)
	until("the Admin Pass hands web -> db to NetworkPolicy", s.web, true, s.podDB)
	expect(t, c, s.other, false, s.podDB) // still the Admin Deny (no Pass for other)
	allowed := waitFlow(t, c, "web -> db allowed by db-policy after the Pass", &flowv1.FlowFilter{
		SourcePod: []string{s.ns + "/web"}, DestinationPod: []string{s.ns + "/db"}, Verdict: []flowv1.Verdict{flowv1.Verdict_VERDICT_ALLOWED},
		DestinationPort: []uint32{3306}, Type: []flowv1.EventType{flowv1.EventType_EVENT_TYPE_NEW}, Policy: []string{s.ns + "/db-policy"}})
	if a := allowed.GetAllowedBy(); len(a) == 0 || a[len(a)-1].GetName() != "db-policy" {
		t.Errorf("web -> db after the Pass should be allowed by db-policy: %s", describeFlow(allowed))
	}

	// web is selected by no NetworkPolicy: Baseline decides for it.
	webTarget := framework.Target{Host: s.web.Status.PodIP, Port: 80, Protocol: "tcp"}
	expect(t, c, s.other, true, webTarget)
	create(`
metadata: {name: baseline-web}
spec:
  tier: Baseline
  priority: 1
  subject: {pods: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: NS}}, podSelector: {matchLabels: {app: web}}}}
  ingress:
  - name: no-other
    action: Deny
    from: [{pods: {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: NS}}, podSelector: {matchLabels: {app: other}}}}]
`)
	until("the Baseline Deny drops other -> web", s.other, false, webTarget)
	expect(t, c, s.db, true, webTarget)
	base := waitFlow(t, c, "other -> web denied by the Baseline rule", &flowv1.FlowFilter{
		SourcePod: []string{s.ns + "/other"}, DestinationPod: []string{s.ns + "/web"}, Verdict: []flowv1.Verdict{flowv1.Verdict_VERDICT_DENIED}})
	if d := base.GetDeniedBy(); base.GetReason() != flowv1.Reason_REASON_DENIED_BY_RULE || len(d) != 1 ||
		d[0].GetTier() != flowv1.ClusterTier_CLUSTER_TIER_BASELINE || d[0].GetName() != s.ns+"-baseline-web" || d[0].GetRuleName() != "no-other" {
		t.Errorf("other -> web should be dropped by Baseline %s-baseline-web rule no-other: %s", s.ns, describeFlow(base))
	}

	out, err = netpol(t, c, "", "status", "-o", "json")
	if err != nil || !strings.Contains(out, `"clusterPoliciesWatched": true`) {
		t.Errorf("status should report ClusterNetworkPolicies watched: %v\n%s", err, out)
	}
}
