//go:build linux

package agent

import (
	"context"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"sigs.k8s.io/yaml"

	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/kubectl-netpol/kubectl-netpol/internal/apiservertest"
	"github.com/kubectl-netpol/kubectl-netpol/internal/cnpcrd"
)

// TestClusterPoliciesFollowTheCRD runs the agent's cluster view against a
// real kube-apiserver: it starts without the ClusterNetworkPolicy CRD (no
// policies, nothing followed), picks policies up once the CRD is installed
// later, recompiles on a spec change but not on a status write, and drops
// them when the CRD is deleted - all without a restart.
func TestClusterPoliciesFollowTheCRD(t *testing.T) {
	cfg := apiservertest.Start(t)
	ctx := t.Context()
	kube := kubernetes.NewForConfigOrDie(cfg)
	cnps := cnpclient.NewForConfigOrDie(cfg)
	c := NewCluster(kube)
	c.WatchClusterPolicies(cnps, metadata.NewForConfigOrDie(cfg))
	changes := make(chan string, 100)
	if err := c.OnChange(func(kind string) {
		if kind == "clusternetworkpolicy" {
			changes <- kind
		}
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	started := time.Now()
	if !c.Start(stop) {
		t.Fatal("caches did not sync")
	}
	if d := time.Since(started); d > 10*time.Second {
		t.Errorf("Start waited %v without the CRD: its absence must count as known", d)
	}
	names := func() []string {
		t.Helper()
		s, err := c.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range s.ClusterPolicies {
			out = append(out, p.Name)
		}
		slices.Sort(out)
		return out
	}
	if got := names(); len(got) != 0 {
		t.Fatalf("without the CRD: %v", got)
	}
	if n, watched, lastErr := c.ClusterPolicies(); n != 0 || watched || lastErr != "" {
		t.Fatalf("without the CRD: %d policies, watched %v, error %q", n, watched, lastErr)
	}

	crd, err := cnpcrd.CRD(cnpcrd.Experimental)
	if err != nil {
		t.Fatal(err)
	}
	if err := apiservertest.InstallCRD(ctx, cfg, crd); err != nil {
		t.Fatal(err)
	}
	created := createCNP(ctx, t, cnps, denyMonitoring)
	waitFor(t, 30*time.Second, "the policy created after the CRD appeared", func() bool { return slices.Equal(names(), []string{"deny-monitoring"}) })
	if n, watched, _ := c.ClusterPolicies(); n != 1 || !watched {
		t.Errorf("with the CRD: %d policies, watched %v", n, watched)
	}
	// Settle: the CRD's own status updates (Established) can restart the
	// policy informer once more, and its sync notifies; wait for a second
	// without any notification.
	for quiet := false; !quiet; {
		select {
		case <-changes:
		case <-time.After(time.Second):
			quiet = true
		}
	}

	// A status write (what the agents themselves do) is no policy change.
	created.Status.Conditions = []metav1.Condition{{Type: "Enforced", Status: metav1.ConditionTrue, Reason: "Test", LastTransitionTime: metav1.Now()}}
	if _, err := cnps.PolicyV1beta1().ClusterNetworkPolicies().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// ... whereas a spec change is, and arrives after it (one watch).
	setPriority(ctx, t, cnps, "deny-monitoring", 20)
	waitFor(t, 30*time.Second, "the spec change", func() bool {
		s, _ := c.Snapshot()
		return len(s.ClusterPolicies) == 1 && s.ClusterPolicies[0].Spec.Priority == 20
	})
	time.Sleep(200 * time.Millisecond) // let any stray notification arrive
	if n := len(drain(changes)); n != 1 {
		t.Errorf("%d change notifications for a status write and a spec change, want 1 (the spec change)", n)
	}

	dyn := dynamic.NewForConfigOrDie(cfg)
	crdRes := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	if err := dyn.Resource(crdRes).Delete(ctx, ClusterPolicyCRD, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the policies dropped with their CRD", func() bool {
		n, watched, _ := c.ClusterPolicies()
		return len(names()) == 0 && n == 0 && !watched
	})

	// Installed again: followed again.
	waitFor(t, 30*time.Second, "the CRD gone", func() bool {
		_, err := dyn.Resource(crdRes).Get(ctx, ClusterPolicyCRD, metav1.GetOptions{})
		return err != nil
	})
	if err := apiservertest.InstallCRD(ctx, cfg, crd); err != nil {
		t.Fatal(err)
	}
	createCNP(ctx, t, cnps, `
metadata: {name: baseline-default-deny}
spec:
  tier: Baseline
  priority: 1
  subject: {namespaces: {}}
  ingress: [{name: deny, action: Deny, from: [{namespaces: {}}]}]
`)
	waitFor(t, 30*time.Second, "the policy of the reinstalled CRD", func() bool { return slices.Equal(names(), []string{"baseline-default-deny"}) })

	// A restarted agent: its first snapshot, right after Start, already
	// holds the policies (never a first apply without the cluster's Denys).
	restarted := NewCluster(kube)
	restarted.WatchClusterPolicies(cnps, metadata.NewForConfigOrDie(cfg))
	if !restarted.Start(stop) {
		t.Fatal("caches did not sync")
	}
	if s, err := restarted.Snapshot(); err != nil || len(s.ClusterPolicies) != 1 {
		t.Fatalf("the first snapshot after Start: %v, %d cluster policies, want 1", err, len(s.ClusterPolicies))
	}
}

// denyMonitoring is the example: an Admin Deny of all ingress to
// the monitoring namespace.
const denyMonitoring = `
metadata: {name: deny-monitoring}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}
  ingress: [{name: deny-all, action: Deny, from: [{namespaces: {}}]}]
`

// setPriority changes a policy's spec (a new generation).
func setPriority(ctx context.Context, t *testing.T, cnps cnpclient.Interface, name string, prio int32) {
	t.Helper()
	cur, err := cnps.PolicyV1beta1().ClusterNetworkPolicies().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec.Priority = prio
	if _, err := cnps.PolicyV1beta1().ClusterNetworkPolicies().Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func createCNP(ctx context.Context, t *testing.T, cnps cnpclient.Interface, doc string) *cnpv1beta1.ClusterNetworkPolicy {
	t.Helper()
	p := &cnpv1beta1.ClusterNetworkPolicy{}
	if err := yaml.UnmarshalStrict([]byte(doc), p); err != nil {
		t.Fatal(err)
	}
	out, err := cnps.PolicyV1beta1().ClusterNetworkPolicies().Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func drain(ch chan string) []string {
	var out []string
	for {
		select {
		case v := <-ch:
			out = append(out, v)
		default:
			return out
		}
	}
}
