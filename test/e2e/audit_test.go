//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

// An audited default deny for web, through the installed agents on real
// cross-node traffic: it changes no packet (other -> web still connects),
// the agents report the connection as AUDIT, would be denied, naming the
// policy; status lists it; promote refuses on that evidence, and with
// --force enforces it, after which other -> web is dropped while
// web -> db:3306 (another policy's business) still passes.
func TestAuditModeLive(t *testing.T) {
	runBesideConformance(t)
	c := framework.Connect(t)
	installAgent(t, c)
	s := newShop(t, c)
	s.applyPolicy(t, c)
	webTarget := framework.Target{Host: s.web.Status.PodIP, Port: 80, Protocol: "tcp"}
	expect(t, c, s.other, true, webTarget)

	_, err := c.Client.NetworkingV1().NetworkPolicies(s.ns).Create(framework.Context(t, time.Minute), &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "lockdown", Annotations: map[string]string{policy.ModeAnnotation: policy.ModeAudit}},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Connect until the agents report it as audited (they apply within a
	// second); every attempt must connect: audit never drops.
	var audited *flowv1.Flow
	deadline := time.Now().Add(20 * time.Second)
	for audited == nil {
		expect(t, c, s.other, true, webTarget)
		fs := observe(t, c, &flowv1.ObserveRequest{Allowlist: []*flowv1.FlowFilter{{
			SourcePod: []string{s.ns + "/other"}, DestinationPod: []string{s.ns + "/web"}, Verdict: []flowv1.Verdict{flowv1.Verdict_VERDICT_AUDIT}}}})
		if len(fs) > 0 {
			audited = fs[len(fs)-1]
		} else if time.Now().After(deadline) {
			t.Fatal("no AUDIT flow for other -> web 20 s after the audited policy was created")
		}
	}
	a := audited.GetAudit()
	named := false
	for _, r := range a.GetIsolatedBy() {
		named = named || (r.GetNamespace() == s.ns && r.GetName() == "lockdown")
	}
	if a.GetWouldBe() != flowv1.Verdict_VERDICT_DENIED || !named || audited.GetNode() != s.web.Spec.NodeName {
		t.Errorf("other -> web should be AUDIT on web's node, would be denied by %s/lockdown's isolation: %s (audit %v)", s.ns, describeFlow(audited), a)
	}
	expect(t, c, s.web, true, s.podDB) // db-policy's allowance is untouched

	out, err := netpol(t, c, "", "status")
	if err != nil || !strings.Contains(out, s.ns+"/lockdown") {
		t.Errorf("status should list %s/lockdown as audited: %v\n%s", s.ns, err, out)
	}
	out, err = netpol(t, c, "", "watch", "--last", "500", "--verdict", "audit")
	if err != nil || !strings.Contains(out, "AUDIT") || !strings.Contains(out, s.ns+"/other") {
		t.Errorf("watch --verdict audit should show other -> web: %v\n%s", err, out)
	}

	// The evidence speaks against enforcing: promote refuses, then --force.
	if out, err = netpol(t, c, "", "promote", s.ns+"/lockdown", "--since", "1h"); err == nil || !strings.Contains(out, "Refused") {
		t.Errorf("promote should refuse while other -> web would be denied: %v\n%s", err, out)
	}
	if out, err = netpol(t, c, "", "promote", s.ns+"/lockdown", "--since", "1h", "--force"); err != nil {
		t.Fatalf("promote --force: %v\n%s", err, out)
	}
	np, err := c.Client.NetworkingV1().NetworkPolicies(s.ns).Get(framework.Context(t, time.Minute), "lockdown", metav1.GetOptions{})
	if err != nil || np.Annotations[policy.ModeAnnotation] != policy.ModeEnforce {
		t.Fatalf("after promote --force the policy should say %s=%s: %v %v", policy.ModeAnnotation, policy.ModeEnforce, err, np.GetAnnotations())
	}
	if err := wait.PollUntilContextTimeout(framework.Context(t, time.Minute), 200*time.Millisecond, 15*time.Second, true,
		func(context.Context) (bool, error) {
			return !c.ProbeWithTimeout(t, s.other, time.Second, webTarget)[0].OK, nil
		}); err != nil {
		t.Fatal("other -> web still connects 15 s after the promotion")
	}
	expect(t, c, s.web, true, s.podDB)
}
