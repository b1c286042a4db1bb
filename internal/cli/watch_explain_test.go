package cli

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

func explainCluster() *fake.Clientset {
	ns := func(name string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/metadata.name": name}}}
	}
	pod := func(ns, name, ip string, labels map[string]string, ports ...corev1.ContainerPort) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
			Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: ports}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip}}
	}
	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(5432)
	return fake.NewClientset(ns("shop"), ns("default"),
		pod("default", "curl", "10.244.0.5", map[string]string{"app": "curl"}),
		pod("shop", "api", "10.244.0.6", map[string]string{"app": "api"}),
		pod("shop", "db-0", "10.244.0.7", map[string]string{"app": "db"}, corev1.ContainerPort{Name: "pg", ContainerPort: 5432}),
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db-allow-api"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
				}},
			}},
	)
}

func dbFlow(srcNS, srcPod, srcIP string, verdict flowv1.Verdict, reason flowv1.Reason) *flowv1.Flow {
	return &flowv1.Flow{
		Time: timestamppb.New(time.Date(2026, 11, 25, 14, 0, 1, 0, time.UTC)), Node: "node-a",
		Verdict: verdict, Reason: reason, Direction: flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS,
		Source:      &flowv1.Endpoint{Namespace: srcNS, Pod: srcPod, Labels: map[string]string{"app": srcPod}},
		Destination: &flowv1.Endpoint{Namespace: "shop", Pod: "db-0", Labels: map[string]string{"app": "db"}},
		Ip:          &flowv1.IP{Source: srcIP, Destination: "10.244.0.7"},
		L4:          &flowv1.Layer4{Protocol: flowv1.Protocol_PROTOCOL_TCP, SourcePort: 40000, DestinationPort: 5432},
		Service:     &flowv1.Service{Namespace: "shop", Name: "db", Ip: "10.96.0.20", Port: 5432},
		IsolatedBy:  []*flowv1.PolicyRef{{Namespace: "shop", Name: "db-allow-api"}},
	}
}

// TestEngineExplainer: the detail pane's explanation is explain's, computed
// now: a default-deny drop names the isolating policy and why its rule did
// not match, and the Service; a flow the policies now decide otherwise says
// so; a vanished pod and no cluster fall back to the record, saying so.
func TestEngineExplainer(t *testing.T) {
	client := explainCluster()
	var loads atomic.Int32
	e := newEngineExplainer(func() (kubernetes.Interface, *rest.Config, error) {
		loads.Add(1)
		return client, &rest.Config{}, nil
	})
	now := time.Date(2026, 11, 25, 15, 0, 0, 0, time.UTC)
	e.now = func() time.Time { return now }
	ctx := context.Background()
	if e.Instant() {
		t.Fatal("Instant before anything was loaded: the pane would load on the UI goroutine")
	}

	drop, err := e.Explain(ctx, dbFlow("default", "curl", "10.244.0.5", flowv1.Verdict_VERDICT_DENIED, flowv1.Reason_REASON_NO_RULE_MATCHED))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("drop:\n%s", drop)
	for _, want := range []string{
		"DENIED: default/curl → shop/db-0 on 5432/TCP (pg), through Service shop/db (10.96.0.20:5432)",
		"Now, by the policy engine",
		"ingress to shop/db-0: denied (isolated for Ingress and no rule allows this traffic)",
		"db-allow-api",
		"ingress[0].from[0]:",
	} {
		if !strings.Contains(drop, want) {
			t.Errorf("drop explanation lacks %q", want)
		}
	}
	if strings.Contains(drop, "decide otherwise") || strings.Contains(drop, "not a re-evaluation") {
		t.Error("a drop the policies still make was reported as changed or not re-evaluated")
	}

	// api → db is allowed now: a recorded drop of it means the cluster changed.
	changed, _ := e.Explain(ctx, dbFlow("shop", "api", "10.244.0.6", flowv1.Verdict_VERDICT_DENIED, flowv1.Reason_REASON_NO_RULE_MATCHED))
	if !strings.Contains(changed, "The policies now decide otherwise") || !strings.Contains(changed, "allowed by shop/db-allow-api ingress[0]") {
		t.Errorf("changed verdict:\n%s", changed)
	}
	if !e.Instant() {
		t.Error("not Instant with a fresh state")
	}
	if n := loads.Load(); n != 1 {
		t.Fatalf("%d loads for two explanations within %s, want 1", n, explainMaxAge)
	}

	// A pod gone since: the record, and why.
	gone, _ := e.Explain(ctx, dbFlow("default", "old-job", "10.244.0.99", flowv1.Verdict_VERDICT_DENIED, flowv1.Reason_REASON_NO_RULE_MATCHED))
	if !strings.Contains(gone, "not a re-evaluation: pod default/old-job no longer exists") || !strings.Contains(gone, "isolated for ingress by 1 policy: shop/db-allow-api") {
		t.Errorf("vanished pod:\n%s", gone)
	}

	// After maxAge the state is reloaded: a policy deleted meanwhile is gone.
	if err := client.NetworkingV1().NetworkPolicies("shop").Delete(ctx, "db-allow-api", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(explainMaxAge)
	if e.Instant() {
		t.Error("Instant with a state due for reloading")
	}
	open, _ := e.Explain(ctx, dbFlow("default", "curl", "10.244.0.5", flowv1.Verdict_VERDICT_DENIED, flowv1.Reason_REASON_NO_RULE_MATCHED))
	if loads.Load() != 2 || !strings.Contains(open, "The policies now decide otherwise") || !strings.Contains(open, "no NetworkPolicy selects shop/db-0 for Ingress") {
		t.Errorf("after reload (%d loads):\n%s", loads.Load(), open)
	}

	// No cluster (a replay on a laptop): the recorded attribution, saying so.
	offline := newEngineExplainer(func() (kubernetes.Interface, *rest.Config, error) {
		return nil, nil, errors.New("no cluster to talk to: no kubeconfig found\nmore")
	})
	rec, err := offline.Explain(ctx, dbFlow("default", "curl", "10.244.0.5", flowv1.Verdict_VERDICT_DENIED, flowv1.Reason_REASON_NO_RULE_MATCHED))
	if err != nil || !strings.Contains(rec, "isolated for ingress by 1 policy: shop/db-allow-api") ||
		!strings.Contains(rec, "not a re-evaluation: no cluster to re-evaluate it against (no cluster to talk to: no kubeconfig found)") {
		t.Errorf("offline (%v):\n%s", err, rec)
	}
}

// TestEngineExplainerNodesAndPairs: traffic from another node's flannel.1
// address is node traffic for the engine too (the agent's rule, shared),
// and a flow paired from two nodes shows what each node recorded.
func TestEngineExplainerNodesAndPairs(t *testing.T) {
	client := explainCluster()
	ctx := context.Background()
	if _, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-b"},
		Spec:   corev1.NodeSpec{PodCIDR: "10.244.2.0/24", PodCIDRs: []string{"10.244.2.0/24"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.250.0.3"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e := newEngineExplainer(func() (kubernetes.Interface, *rest.Config, error) { return client, &rest.Config{}, nil })
	fromNode := dbFlow("", "", "10.244.2.0", flowv1.Verdict_VERDICT_ALLOWED, flowv1.Reason_REASON_NOT_SUBJECT)
	fromNode.Source = &flowv1.Endpoint{NodeName: "node-b", HostNetwork: true}
	fromNode.IsolatedBy, fromNode.Service = nil, nil
	text, err := e.Explain(ctx, fromNode)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "10.244.2.0 is a node address") || strings.Contains(text, "decide otherwise") {
		t.Errorf("node traffic:\n%s", text)
	}

	paired := dbFlow("shop", "api", "10.244.0.6", flowv1.Verdict_VERDICT_ALLOWED, flowv1.Reason_REASON_ALLOWED_BY_RULE)
	paired.IsolatedBy = nil
	rule := uint32(0)
	paired.Observations = []*flowv1.Observation{
		{Node: "node-a", Direction: flowv1.TrafficDirection_TRAFFIC_DIRECTION_EGRESS, Verdict: flowv1.Verdict_VERDICT_ALLOWED, Reason: flowv1.Reason_REASON_NOT_ISOLATED},
		{Node: "node-b", Direction: flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS, Verdict: flowv1.Verdict_VERDICT_ALLOWED, Reason: flowv1.Reason_REASON_ALLOWED_BY_RULE,
			AllowedBy: []*flowv1.PolicyRef{{Namespace: "shop", Name: "db-allow-api", Direction: flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS, RuleIndex: &rule}}},
	}
	text, _ = e.Explain(ctx, paired)
	for _, want := range []string{"Recorded egress@node-a ALLOWED NOT_ISOLATED.", "Recorded ingress@node-b allowed-by shop/db-allow-api (ingress rule 0)."} {
		if !strings.Contains(text, want) {
			t.Errorf("paired flow lacks %q:\n%s", want, text)
		}
	}
}
