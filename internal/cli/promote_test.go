package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-netpol/kubectl-netpol/advise"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/internal/apiservertest"
	"github.com/kubectl-netpol/kubectl-netpol/internal/snapshot"
)

// TestPromoteRealAPIServer: promote against a real kube-apiserver and a
// history file. A policy that would deny an observed connection is refused
// (exit 1) with the evidence per node and the connection named, and stays
// audited; one that admits everything observed is annotated enforce; an
// auditing namespace's policy is overridden the same way; --force promotes
// and says what breaks; enforced or absent policies and an empty history
// are errors or refusals that say why.
func TestPromoteRealAPIServer(t *testing.T) {
	cfg := apiservertest.Start(t)
	ctx := t.Context()
	kube := kubernetes.NewForConfigOrDie(cfg)
	f := NewFactory(genericclioptions.NewConfigFlags(false))
	f.NewClient = func() (kubernetes.Interface, snapshot.Cluster, error) {
		return kube, snapshot.Cluster{Context: "apiservertest", Server: cfg.Host}, nil
	}
	f.NewCNPClient = nil

	for _, ns := range []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "staging", Annotations: map[string]string{advise.ModeAnnotation: advise.ModeAudit}}}} {
		if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// No controller-manager here: pods need their namespace's default account.
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "default"}}
		if _, err := kube.CoreV1().ServiceAccounts(ns.Name).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range [][2]string{{"shop", "frontend"}, {"shop", "api"}, {"shop", "other"}, {"staging", "app"}} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p[0], Name: p[1] + "-0", Labels: map[string]string{"app": p[1]}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.invalid/c:1"}}}}
		if _, err := kube.CoreV1().Pods(p[0]).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	audit := map[string]string{advise.ModeAnnotation: advise.ModeAudit}
	allowAPI := func(name string, ann map[string]string, from ...[2]any) *networkingv1.NetworkPolicy {
		np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Annotations: ann},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}
		for _, fr := range from {
			port := intstr.FromInt32(fr[1].(int32))
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fr[0].(string)}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &port}}})
		}
		return np
	}
	pols := []*networkingv1.NetworkPolicy{
		allowAPI("api-narrow", audit, [2]any{"frontend", int32(8080)}),
		allowAPI("api-ok", audit, [2]any{"frontend", int32(8080)}, [2]any{"other", int32(9090)}),
		allowAPI("api-forced", audit, [2]any{"frontend", int32(8080)}),
		allowAPI("enforced", nil, [2]any{"frontend", int32(8080)}, [2]any{"other", int32(9090)}),
		{ObjectMeta: metav1.ObjectMeta{Namespace: "staging", Name: "deny-all"}, Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}},
	}
	// Enforced, but selecting another pod: additive rules elsewhere would
	// hide what the audited policies deny.
	pols[3].Spec.PodSelector.MatchLabels["app"] = "frontend"
	for _, np := range pols {
		if _, err := kube.NetworkingV1().NetworkPolicies(np.Namespace).Create(ctx, np, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	capture := writeCapture(t, []captured{
		{"node-a", "frontend-0", "api-0", 8080, 5},
		{"node-b", "other-0", "api-0", 9090, 2},
	})
	mode := func(ns, name string) string {
		np, err := kube.NetworkingV1().NetworkPolicies(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return np.Annotations[advise.ModeAnnotation]
	}

	// Completion offers the audited policies (the namespace's too), not the enforced.
	out, _, err := run(t, f, "", "__complete", "promote", "")
	if err != nil || !strings.Contains(out, "shop/api-narrow") || !strings.Contains(out, "staging/deny-all") || strings.Contains(out, "shop/enforced") {
		t.Errorf("completion: %v\n%s", err, out)
	}

	out, _, err = run(t, f, "", "promote", "shop/api-narrow", "--flows", capture)
	if exitCode(err) != promoteRefused {
		t.Fatalf("api-narrow: exit %d (%v), want refused\n%s", exitCode(err), err, out)
	}
	for _, want := range []string{"audited (annotation netpol.kubectl.io/mode: audit on the policy)", "2 node(s)", "node-a  0", "node-b  2",
		"Would deny (1):", "shop/other-0", "shop/api-0", "TCP/9090", "Refused: enforced, the policy would deny 1 observed connection"} {
		if !strings.Contains(out, want) {
			t.Errorf("api-narrow: output lacks %q:\n%s", want, out)
		}
	}
	if m := mode("shop", "api-narrow"); m != advise.ModeAudit {
		t.Errorf("refused policy's mode is %q, want it left audit", m)
	}

	// Before api-ok is enforced: it would then admit what api-forced denies.
	out, _, err = run(t, f, "", "promote", "shop/api-forced", "--flows", capture, "--force")
	if exitCode(err) != 0 || !strings.Contains(out, "Promoted with --force") || !strings.Contains(out, "TCP/9090") || mode("shop", "api-forced") != advise.ModeEnforce {
		t.Errorf("--force: exit %d, mode %q, output:\n%s", exitCode(err), mode("shop", "api-forced"), out)
	}

	out, _, err = run(t, f, "", "promote", "shop/api-ok", "--flows", capture, "--dry-run")
	if exitCode(err) != 0 || !strings.Contains(out, "Dry run: shop/api-ok would be promoted") || mode("shop", "api-ok") != advise.ModeAudit {
		t.Errorf("dry run: exit %d, mode %q, output:\n%s", exitCode(err), mode("shop", "api-ok"), out)
	}
	out, _, err = run(t, f, "", "promote", "shop/api-ok", "--flows", capture)
	if exitCode(err) != 0 || !strings.Contains(out, "Promoted: shop/api-ok") || mode("shop", "api-ok") != advise.ModeEnforce {
		t.Errorf("api-ok: exit %d, mode %q, output:\n%s", exitCode(err), mode("shop", "api-ok"), out)
	}

	out, _, err = run(t, f, "", "promote", "staging/deny-all", "--flows", capture, "-o", "json")
	if exitCode(err) != 0 || !strings.Contains(out, `"auditedBy": "namespace staging"`) || !strings.Contains(out, `"promoted": true`) || mode("staging", "deny-all") != advise.ModeEnforce {
		t.Errorf("namespace-audited: exit %d, mode %q, output:\n%s", exitCode(err), mode("staging", "deny-all"), out)
	}

	empty := filepath.Join(t.TempDir(), "empty.jsonl")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err = run(t, f, "", "promote", "shop/api-narrow", "--flows", empty)
	if exitCode(err) != promoteRefused || !strings.Contains(out, "no connection history in the window") {
		t.Errorf("empty history: exit %d, output:\n%s", exitCode(err), out)
	}
	for _, c := range []struct{ arg, want string }{
		{"shop/enforced", "enforced already"},
		{"shop/nope", "no NetworkPolicy nope in namespace shop"},
		{"nope", "NAMESPACE/NAME"},
	} {
		_, _, err := run(t, f, "", "promote", c.arg, "--flows", capture)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("promote %s: error %v, want one containing %q", c.arg, err, c.want)
		}
	}
}

type captured struct {
	node, src, dst string
	port           uint32
	n              int
}

// writeCapture writes new allowed connections in namespace shop as
// `watch -o json` does, one JSON flow per line.
func writeCapture(t *testing.T, cs []captured) string {
	t.Helper()
	var b strings.Builder
	at := time.Now().Add(-time.Hour)
	for _, c := range cs {
		for i := range c.n {
			ep := func(pod string) *flowv1.Endpoint {
				return &flowv1.Endpoint{Namespace: "shop", Pod: pod, Labels: map[string]string{"app": strings.TrimSuffix(pod, "-0")}}
			}
			f := &flowv1.Flow{Time: timestamppb.New(at.Add(time.Duration(i) * time.Second)), Node: c.node, Type: flowv1.EventType_EVENT_TYPE_NEW,
				Verdict: flowv1.Verdict_VERDICT_ALLOWED, Reason: flowv1.Reason_REASON_NOT_ISOLATED, Direction: flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS,
				L4:     &flowv1.Layer4{Protocol: flowv1.Protocol_PROTOCOL_TCP, SourcePort: uint32(40000 + i), DestinationPort: c.port},
				Source: ep(c.src), Destination: ep(c.dst)}
			line, err := protojson.Marshal(f)
			if err != nil {
				t.Fatal(err)
			}
			b.Write(line)
			b.WriteByte('\n')
		}
	}
	path := filepath.Join(t.TempDir(), "capture.jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
