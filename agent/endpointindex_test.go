//go:build linux

package agent

import (
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	pt "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

// TestEndpointIndexFollowsDatapaths checks the flow-end index across
// applied datapaths: a policy change (the same identity list) keeps its
// address map once built and takes the new endpoints; a pod change drops
// it, and the next look-up gives the new pod's identity.
func TestEndpointIndexFollowsDatapaths(t *testing.T) {
	onNode := func(p *corev1.Pod) *corev1.Pod { p.Spec.NodeName = "n1"; p.ResourceVersion = "1"; return p }
	db := onNode(pt.Pod("shop", "db", pt.WithLabels("app=db"), pt.WithIP("10.0.0.5")))
	web := onNode(pt.Pod("shop", "web", pt.WithLabels("app=web"), pt.WithIP("10.0.0.6")))
	ns := pt.Namespace("shop")
	ns.ResourceVersion = "1"
	pol := pt.Policy("shop", "db", pt.Selecting(pt.Sel("app=db")), pt.IngressRule(pt.Peers(pt.PodPeer(pt.Sel("app=web")))))
	pol.ResourceVersion = "1"
	cache := policy.NewCache()
	compile := func(s *policy.Snapshot) *policy.Datapath { return pt.Compile(t, cache, s, "n1") }
	dp1 := compile(&policy.Snapshot{Namespaces: []*corev1.Namespace{ns}, Pods: []*corev1.Pod{db, web}})
	var x endpointIndex
	x.use(dp1)
	x.identityOf(netip.MustParseAddr("10.0.0.5")) // builds the address map
	kept := reflect.ValueOf(x.identity).Pointer()
	dp2 := compile(&policy.Snapshot{Namespaces: []*corev1.Namespace{ns}, Pods: []*corev1.Pod{db, web}, Policies: []*networkingv1.NetworkPolicy{pol}})
	x.use(dp2)
	if reflect.ValueOf(x.identity).Pointer() != kept {
		t.Errorf("a policy change built the address map again")
	}
	if ep := x.local[netip.MustParseAddr("10.0.0.5")]; ep == nil || !ep.Ingress.Isolated {
		t.Errorf("the local endpoint is not the new datapath's: %+v", ep)
	}
	cache2 := onNode(pt.Pod("shop", "cache", pt.WithLabels("app=cache"), pt.WithIP("10.0.0.7")))
	dp3 := compile(&policy.Snapshot{Namespaces: []*corev1.Namespace{ns}, Pods: []*corev1.Pod{db, web, cache2}, Policies: []*networkingv1.NetworkPolicy{pol}})
	x.use(dp3)
	want := uint32(0)
	for _, id := range dp3.Identities {
		if id.Labels["app"] == "cache" {
			want = id.ID
		}
	}
	if got := x.identityOf(netip.MustParseAddr("10.0.0.7")); want == 0 || got != want {
		t.Errorf("the new pod's address has identity %d, want %d", got, want)
	}
}
