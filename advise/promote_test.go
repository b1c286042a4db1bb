package advise

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
)

func TestAuditedBy(t *testing.T) {
	pol := func(mode string) *networkingv1.NetworkPolicy {
		p := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "p"}}
		if mode != "" {
			p.Annotations = map[string]string{ModeAnnotation: mode}
		}
		return p
	}
	auditing := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Annotations: map[string]string{ModeAnnotation: ModeAudit}}}
	plain := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}
	for _, c := range []struct {
		pol  *networkingv1.NetworkPolicy
		ns   *corev1.Namespace
		want string
	}{
		{pol(ModeAudit), plain, "the policy"},
		{pol(""), auditing, "namespace shop"},
		{pol(ModeEnforce), auditing, ""},
		{pol(""), plain, ""},
		{pol(""), nil, ""},
	} {
		if got := AuditedBy(c.pol, c.ns); got != c.want {
			t.Errorf("AuditedBy(%v, %v) = %q, want %q", c.pol.Annotations, c.ns, got, c.want)
		}
	}
}

// TestPromotion: an audited policy that would deny an observed connection
// is not safe, and the evidence names the connection and its node; the
// advice for the same history, audited, is safe to promote policy by
// policy.
func TestPromotion(t *testing.T) {
	s := shop()
	since := now.Add(-24 * time.Hour)
	_, _, advice := s.advise(t, Input{Since: since, Namespaces: []string{"shop"}, Ingress: true, Audit: true})
	for _, p := range advice {
		p.Annotations[ModeAnnotation] = ModeAudit // as applied: audited
	}
	port := intstr.FromInt32(8080)
	narrow := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "narrow", Annotations: map[string]string{ModeAnnotation: ModeAudit}},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "api", "app.kubernetes.io/component": "server"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &port}}}}}}
	snap := s.snapshot(append(advice, narrow)...)
	set := s.history(t)

	ev, err := Promotion(snap, "shop", "narrow", set, since)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Safe || len(ev.WouldDeny) != 1 || ev.WouldDeny[0].Source != "monitoring/sts/prometheus" || ev.WouldDeny[0].Port != 9090 ||
		len(ev.Nodes) != 1 || ev.Nodes[0].WouldDeny != 4 {
		t.Errorf("narrow: %+v, want unsafe: prometheus -> api:9090, 4 connections on node-a", ev)
	}
	for _, p := range advice {
		ev, err := Promotion(snap, p.Namespace, p.Name, set, since)
		if err != nil {
			t.Fatal(err)
		}
		if !ev.Safe {
			t.Errorf("%s: advice not safe to promote: %s %+v", p.Name, ev.Why, ev.WouldDeny)
		}
	}
	if _, err := Promotion(snap, "shop", "nope", set, since); err == nil || !strings.Contains(err.Error(), "no NetworkPolicy nope") {
		t.Errorf("absent policy: %v", err)
	}

	// The datapath's own AUDIT records count against the policy they name,
	// even when re-judging finds nothing (e.g. traffic of a pod now gone).
	first := advice[0]
	audited := &flowv1.Flow{Verdict: flowv1.Verdict_VERDICT_AUDIT, Node: "node-a", Audit: &flowv1.Audit{WouldBe: flowv1.Verdict_VERDICT_DENIED,
		IsolatedBy: []*flowv1.PolicyRef{{Namespace: first.Namespace, Name: first.Name}}}}
	other := &flowv1.Flow{Verdict: flowv1.Verdict_VERDICT_AUDIT, Node: "node-a", Audit: &flowv1.Audit{WouldBe: flowv1.Verdict_VERDICT_DENIED,
		IsolatedBy: []*flowv1.PolicyRef{{Namespace: "shop", Name: "someone-else"}}}}
	withAudit := &history.Set{Records: append(slices.Clone(set.Records),
		history.Record{Key: audited, Start: now.Add(-time.Hour), Width: time.Hour, Counters: history.Counters{Connections: 3}},
		history.Record{Key: other, Start: now.Add(-time.Hour), Width: time.Hour, Counters: history.Counters{Connections: 5}},
		history.Record{Key: audited, Start: now.Add(-72 * time.Hour), Width: time.Hour, Counters: history.Counters{Connections: 7}}), // before the window
		Coverage: set.Coverage}
	ev, err = Promotion(snap, first.Namespace, first.Name, withAudit, since)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Safe || ev.AuditedWouldDeny != 3 || !strings.Contains(ev.Source, "reported as AUDIT") {
		t.Errorf("%s with AUDIT records: safe %v, audited would-deny %d (want 3), source %q", first.Name, ev.Safe, ev.AuditedWouldDeny, ev.Source)
	}
}
