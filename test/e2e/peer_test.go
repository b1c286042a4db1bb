//go:build e2e

package e2e

import (
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

// TestKubeRouterPeer checks the peer of make bench-peers-datapath on the cluster, with real
// packets: kube-router v2.1.0 (network-policy controller only, on every node, the agent
// uninstalled) enforces the benchmark's policies (c reaches a where admitted, not elsewhere);
// while it runs, a pod whose egress a policy admits everywhere (kube-router ACCEPTs it in its
// node's FORWARD) still cannot reach the outside, because the cluster's guard sits in the host's
// firewall, which kube-router never touches; stopped, its rules, chains and ipsets are gone
// from every node (Stop fails otherwise) and c reaches a's unadmitted port again.
func TestKubeRouterPeer(t *testing.T) {
	framework.RequireRoot(t)
	c := framework.Connect(t)
	if !framework.MultiNode() {
		framework.Unavailable(t, "kube-router runs on the multi-node cluster only (make cluster-up NODES=3)")
	}
	framework.KubeRouterBinary(t)
	uninstallAgent(t, c)
	ns := c.NewNamespace(t, "peer")
	ctx := framework.Context(t, 2*time.Minute)
	for _, p := range costPolicies(ns, 10) {
		if _, err := c.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pl := framework.Placements()[len(framework.Placements())-1]
	podA := c.StartProbeOn(t, ns, "a", map[string]string{"app": "a"}, pl.Server)
	podC := c.StartProbeOn(t, ns, "c", map[string]string{"app": "c"}, pl.Client)
	admitted := framework.Target{Host: podA.Status.PodIP, Port: 80, Protocol: "tcp"}
	denied := framework.Target{Host: podA.Status.PodIP, Port: 81, Protocol: "tcp"}
	expectReachability(t, c, podC, denied, true, "no enforcer")

	kr := c.StartKubeRouter(t)
	kr.WaitSynced(t, c, 3*time.Minute)
	c.ExpectReachable(t, podC, admitted)
	expectReachability(t, c, podC, denied, false, "kube-router running")
	kr.ExpectGuardsIntact(t)
	expectPodCannotReachOutside(t, c, func(ns string) {
		all := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "egress-anywhere"},
			Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}}}}}}}
		if _, err := c.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, all, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	})
	kr.ExpectGuardsIntact(t)
	kr.Stop(t)
	if t.Failed() {
		return
	}
	expectReachability(t, c, podC, denied, true, "kube-router stopped and removed")
}
