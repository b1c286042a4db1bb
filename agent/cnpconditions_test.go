//go:build linux

package agent

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/kubectl-netpol/kubectl-netpol/internal/apiservertest"
	"github.com/kubectl-netpol/kubectl-netpol/internal/cnpcrd"
	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
)

func TestEnforcedCondition(t *testing.T) {
	p := &cnpv1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "deny-monitoring", Generation: 3}}
	nodes := []string{"a", "b", "c", "d", "e", "f", "g"}
	all := map[string]nodeReport{}
	for _, n := range nodes {
		all[n] = nodeReport{Applied: []string{"deny-monitoring@3", "other@1"}}
	}
	enforcedCondition := func(p *cnpv1beta1.ClusterNetworkPolicy, nodes []string, reports map[string]nodeReport) metav1.Condition {
		return enforcedCondition(p, nodes, reports, enforcedCounts(nodes, reports))
	}
	if c := enforcedCondition(p, nodes, all); c.Status != metav1.ConditionTrue || c.Reason != "EnforcedOnAllNodes" || c.ObservedGeneration != 3 {
		t.Errorf("every node at generation 3: %+v", c)
	}
	lag := map[string]nodeReport{"a": all["a"], "b": {Applied: []string{"deny-monitoring@2"}}}
	c := enforcedCondition(p, nodes, lag)
	if c.Status != metav1.ConditionFalse || c.Reason != "Pending" || c.Message != "not yet enforced on 6 of 7 nodes: b, c, d, e, f and 1 more" {
		t.Errorf("lagging nodes: %+v", c)
	}
	failed := map[string]nodeReport{"a": all["a"], "b": {Applied: []string{"deny-monitoring@2"}, Error: "compiling: rules map full\nmore"}}
	c = enforcedCondition(p, []string{"a", "b"}, failed)
	if c.Status != metav1.ConditionFalse || c.Reason != "ApplyFailed" || !strings.Contains(c.Message, "b (compiling: rules map full)") {
		t.Errorf("failed node: %+v", c)
	}
	p.Spec.Egress = []cnpv1beta1.ClusterNetworkPolicyEgressRule{{To: []cnpv1beta1.ClusterNetworkPolicyEgressPeer{{DomainNames: []cnpv1beta1.DomainName{"*.example.com"}}}}}
	if c := enforcedCondition(p, nodes, all); c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "domainNames peers are not enforced") {
		t.Errorf("domainNames: %+v", c)
	}
}

// TestClusterPolicyStatusRealAPIServer: the nodes' report Leases and the
// elected writer against a real kube-apiserver: the condition follows the
// reports (Pending until every node enforces the generation, then True),
// a spec change makes it Pending again, and nothing is written while
// nothing changes.
func TestClusterPolicyStatusRealAPIServer(t *testing.T) {
	cfg := apiservertest.Start(t)
	ctx := t.Context()
	kube := kubernetes.NewForConfigOrDie(cfg)
	cnps := cnpclient.NewForConfigOrDie(cfg)
	crd, err := cnpcrd.CRD(cnpcrd.Experimental)
	if err != nil {
		t.Fatal(err)
	}
	if err := apiservertest.InstallCRD(ctx, cfg, crd); err != nil {
		t.Fatal(err)
	}
	const ns = "netpol-system"
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// No controller manager: the namespace's default ServiceAccount, by hand.
	if _, err := kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// n1 and n2 run the agent; n3 (say, a kwok node) does not and never reports.
	for _, n := range []string{"n1", "n2", "n3"} {
		if _, err := kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if n == "n3" {
			continue
		}
		agent := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "netpol-agent-" + n, Labels: map[string]string{install.LabelName: install.AgentName}},
			Spec: corev1.PodSpec{NodeName: n, Containers: []corev1.Container{{Name: "agent", Image: "agent"}}}}
		if _, err := kube.CoreV1().Pods(ns).Create(ctx, agent, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	createCNP(ctx, t, cnps, denyMonitoring)
	c := NewCluster(kube)
	c.WatchClusterPolicies(cnps, metadata.NewForConfigOrDie(cfg))
	w := newStatusWriter(kube, cnps, ns, c)
	w.interval = 50 * time.Millisecond
	if err := c.OnChange(func(kind string) {
		if kind == "clusternetworkpolicy" || kind == "node" {
			w.poke()
		}
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	if !c.Start(stop) {
		t.Fatal("caches did not sync")
	}
	go func() { _ = leadStatus(ctx, w, "n1") }()
	reporters := map[string]*nodeReporter{}
	for _, n := range []string{"n1", "n2"} {
		reporters[n] = newNodeReporter(kube, ns, n)
		go reporters[n].run(ctx)
	}
	snapshotPolicies := func() []*cnpv1beta1.ClusterNetworkPolicy {
		s, err := c.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		return s.ClusterPolicies
	}
	condition := func() (*metav1.Condition, string) {
		p, err := cnps.PolicyV1beta1().ClusterNetworkPolicies().Get(ctx, "deny-monitoring", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return meta.FindStatusCondition(p.Status.Conditions, ConditionEnforced), p.ResourceVersion
	}
	waitCondition := func(what string, ok func(*metav1.Condition) bool) {
		t.Helper()
		waitFor(t, 30*time.Second, what, func() bool { c, _ := condition(); return c != nil && ok(c) })
	}

	waitFor(t, 30*time.Second, "the policy in the cache", func() bool { return len(snapshotPolicies()) == 1 })
	reporters["n1"].report(snapshotPolicies(), nil)
	waitCondition("Pending on n2", func(c *metav1.Condition) bool {
		return c.Status == metav1.ConditionFalse && c.Reason == "Pending" && c.Message == "not yet enforced on 1 of 2 nodes: n2"
	})
	reporters["n2"].report(snapshotPolicies(), nil)
	waitCondition("True on both", func(c *metav1.Condition) bool { return c.Status == metav1.ConditionTrue && c.ObservedGeneration == 1 })

	// Nothing changes: nothing is written, however often asked.
	_, rv := condition()
	for range 5 {
		reporters["n1"].report(snapshotPolicies(), nil)
		w.poke()
		time.Sleep(100 * time.Millisecond)
	}
	if _, now := condition(); now != rv {
		t.Errorf("the policy was written (resourceVersion %s -> %s) though no condition changed", rv, now)
	}

	// A new generation is pending until the nodes report it.
	setPriority(ctx, t, cnps, "deny-monitoring", 20)
	waitCondition("Pending for generation 2", func(c *metav1.Condition) bool {
		return c.Status == metav1.ConditionFalse && c.ObservedGeneration == 2 && strings.Contains(c.Message, "2 of 2 nodes")
	})
	waitFor(t, 30*time.Second, "generation 2 in the cache", func() bool {
		ps := snapshotPolicies()
		return len(ps) == 1 && ps[0].Generation == 2
	})
	reporters["n1"].report(snapshotPolicies(), nil)
	reporters["n2"].report(nil, context.DeadlineExceeded)
	waitCondition("ApplyFailed on n2", func(c *metav1.Condition) bool {
		return c.Reason == "ApplyFailed" && strings.Contains(c.Message, "n2 (context deadline exceeded)")
	})
	reporters["n2"].report(snapshotPolicies(), nil)
	waitCondition("True for generation 2", func(c *metav1.Condition) bool { return c.Status == metav1.ConditionTrue && c.ObservedGeneration == 2 })
}

// BenchmarkEnforcedConditions: the status writer's pass over 1,000
// ClusterNetworkPolicies and 1,000 nodes' reports (each listing every
// policy), the conditions only, no API calls.
func BenchmarkEnforcedConditions(b *testing.B) {
	const nPolicies, nNodes = 1000, 1000
	var policies []*cnpv1beta1.ClusterNetworkPolicy
	var applied []string
	for i := range nPolicies {
		p := &cnpv1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "policy-" + strconv.Itoa(i), Generation: 1}}
		policies = append(policies, p)
		applied = append(applied, policyVersion(p))
	}
	var nodes []string
	raw := map[string]nodeReport{}
	for i := range nNodes {
		n := "node-" + strconv.Itoa(i)
		nodes = append(nodes, n)
		raw[n] = nodeReport{Applied: applied}
	}
	b.ReportAllocs()
	for b.Loop() {
		counts := enforcedCounts(nodes, raw)
		for _, p := range policies {
			if c := enforcedCondition(p, nodes, raw, counts); c.Status != metav1.ConditionTrue {
				b.Fatal(c)
			}
		}
	}
}
