//go:build linux

package agent

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-netpol/kubectl-netpol/flow"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
	pt "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
	"github.com/kubectl-netpol/kubectl-netpol/probe"
)

// TestAttributeResolvedDirections reads the rule IDs of resolved directions
// (ClusterNetworkPolicy tiers, audited policies) the way the compiler
// writes them: a Deny entry's drop names the CNP rule with its tier,
// priority, name and action (not the NetworkPolicies that also isolate the
// pod); RuleIsolated names the isolating NetworkPolicies; RuleNotIsolated
// reads "not isolated"; an audited entry gives verdict AUDIT with the
// would-be outcome.
func TestAttributeResolvedDirections(t *testing.T) {
	np := policy.PolicyRef{Kind: policy.KindNetworkPolicy, Namespace: "monitoring", Name: "allow-web"}
	audited := policy.PolicyRef{Kind: policy.KindNetworkPolicy, Namespace: "monitoring", Name: "default-deny"}
	cnp := func(name string, tier policy.Tier, prio int32, idx int, rule string, action policy.ClusterAction) *policy.ClusterRuleRef {
		return &policy.ClusterRuleRef{Policy: policy.PolicyRef{Kind: policy.KindClusterNetworkPolicy, Name: name}, Tier: tier,
			Priority: prio, Direction: policy.Ingress, Index: idx, Name: rule, Action: action}
	}
	denyRule := policy.CompiledRule{ID: 20, Cluster: cnp("deny-monitoring", policy.TierAdmin, 10, 0, "deny-all", policy.ActionDeny)}
	dp := &policy.Datapath{
		Endpoints: []policy.Endpoint{{ID: 7, Namespace: "monitoring", Name: "prometheus",
			Ingress: policy.EndpointPolicy{Resolved: true, Isolated: true, IsolatedBy: []policy.PolicyRef{np}}}},
		Rules: []policy.CompiledRule{
			{ID: policy.RuleNotIsolated, Audit: &policy.AuditDecision{IsolatedBy: []policy.PolicyRef{audited}}},
			{ID: 16, Rule: policy.RuleRef{Policy: np, Direction: policy.Ingress, Index: 1}, Peer: 0, Port: -1,
				Audit: &policy.AuditDecision{Rule: &denyRule}},
			denyRule,
			{ID: 21, Cluster: cnp("baseline-open", policy.TierBaseline, 3, 2, "", policy.ActionAccept)},
		},
	}
	event := func(verdict uint8, ingressRule uint32) *probe.Event {
		return &probe.Event{Version: probe.EventVersion, Type: probe.EventNewFlow, Verdict: verdict,
			Direction: probe.DirIngress, DstEndpoint: 7, IngressRule: ingressRule}
	}
	drop := func(rule uint32) *probe.Event {
		ev := event(probe.VerdictDrop, rule)
		ev.Type = probe.EventDrop
		return ev
	}
	for _, tc := range []struct {
		name string
		ev   *probe.Event
		want string // the attribution as Flow fields
	}{
		{"admin deny", drop(20 | policy.RuleDeny),
			`verdict:VERDICT_DENIED reason:REASON_DENIED_BY_RULE direction:TRAFFIC_DIRECTION_INGRESS ` +
				`denied_by:{kind:"ClusterNetworkPolicy" name:"deny-monitoring" direction:TRAFFIC_DIRECTION_INGRESS rule_index:0 tier:CLUSTER_TIER_ADMIN priority:10 rule_name:"deny-all" action:CLUSTER_ACTION_DENY}`},
		{"networkpolicy default deny", drop(policy.RuleIsolated | policy.RuleDeny),
			`verdict:VERDICT_DENIED reason:REASON_NO_RULE_MATCHED direction:TRAFFIC_DIRECTION_INGRESS ` +
				`isolated_by:{kind:"NetworkPolicy" namespace:"monitoring" name:"allow-web" direction:TRAFFIC_DIRECTION_INGRESS}`},
		{"not isolated", event(probe.VerdictAllow, policy.RuleNotIsolated),
			`verdict:VERDICT_ALLOWED reason:REASON_NOT_ISOLATED direction:TRAFFIC_DIRECTION_INGRESS`},
		{"baseline accept", event(probe.VerdictAllow, 21),
			`verdict:VERDICT_ALLOWED reason:REASON_ALLOWED_BY_RULE direction:TRAFFIC_DIRECTION_INGRESS ` +
				`allowed_by:{kind:"ClusterNetworkPolicy" name:"baseline-open" direction:TRAFFIC_DIRECTION_INGRESS rule_index:2 tier:CLUSTER_TIER_BASELINE priority:3 action:CLUSTER_ACTION_ACCEPT}`},
		{"audited: would be denied by a rule", event(probe.VerdictAllow, 16|policy.RuleAudit),
			`verdict:VERDICT_AUDIT reason:REASON_ALLOWED_BY_RULE direction:TRAFFIC_DIRECTION_INGRESS ` +
				`allowed_by:{kind:"NetworkPolicy" namespace:"monitoring" name:"allow-web" direction:TRAFFIC_DIRECTION_INGRESS rule_index:1} ` +
				`audit:{would_be:VERDICT_DENIED reason:REASON_DENIED_BY_RULE rule:{kind:"ClusterNetworkPolicy" name:"deny-monitoring" direction:TRAFFIC_DIRECTION_INGRESS rule_index:0 tier:CLUSTER_TIER_ADMIN priority:10 rule_name:"deny-all" action:CLUSTER_ACTION_DENY}}`},
		{"audited: would be a default deny", event(probe.VerdictAllow, policy.RuleNotIsolated|policy.RuleAudit),
			`verdict:VERDICT_AUDIT reason:REASON_NOT_ISOLATED direction:TRAFFIC_DIRECTION_INGRESS ` +
				`audit:{would_be:VERDICT_DENIED reason:REASON_NO_RULE_MATCHED isolated_by:{kind:"NetworkPolicy" namespace:"monitoring" name:"default-deny" direction:TRAFFIC_DIRECTION_INGRESS}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &flowv1.Flow{}
			judge(f, tc.ev, attribute(dp, tc.ev))
			f.Type = 0 // the event's type, not what is tested here
			want := &flowv1.Flow{}
			if err := prototext.Unmarshal([]byte(tc.want), want); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(f, want) {
				t.Errorf("got  %s\nwant %s", prototext.Format(f), prototext.Format(want))
			}
		})
	}
}

// TestAttributeCompiledClusterPolicy attributes with what the compiler
// writes for a real ClusterNetworkPolicy: the Admin Deny rule's ID, with
// the deny flag, on the pod's ingress, names the policy's rule even though
// a NetworkPolicy allows the peer.
func TestAttributeCompiledClusterPolicy(t *testing.T) {
	web := onNode(pt.Pod("web", "frontend", pt.WithLabels("app=web"), pt.WithIP("10.0.0.6")))
	prom := onNode(pt.Pod("monitoring", "prometheus", pt.WithLabels("app=prometheus"), pt.WithIP("10.0.0.5")))
	allow := pt.Policy("monitoring", "allow-all", pt.Selecting(pt.Sel()), pt.IngressRule(pt.Peers(pt.NSPeer(pt.Sel()))))
	deny := &cnpv1beta1.ClusterNetworkPolicy{}
	if err := yaml.UnmarshalStrict([]byte(denyMonitoring), deny); err != nil {
		t.Fatal(err)
	}
	snap := &policy.Snapshot{Pods: []*corev1.Pod{web, prom}, Namespaces: []*corev1.Namespace{pt.Namespace("web"), pt.Namespace("monitoring")},
		Policies: []*networkingv1.NetworkPolicy{allow}, ClusterPolicies: []*cnpv1beta1.ClusterNetworkPolicy{deny}}
	dp, err := policy.Compile(snap, "n1")
	if err != nil {
		t.Fatal(err)
	}
	var ep *policy.Endpoint
	for i := range dp.Endpoints {
		if dp.Endpoints[i].Name == "prometheus" {
			ep = &dp.Endpoints[i]
		}
	}
	var webIdentity uint32
	for _, id := range dp.Identities {
		if id.Namespace == "web" {
			webIdentity = id.ID
		}
	}
	if ep == nil || !ep.Ingress.Resolved || webIdentity == 0 {
		t.Fatalf("compiled: prometheus %+v, web identity %d", ep, webIdentity)
	}
	var rule uint32
	for _, e := range ep.Ingress.Entries {
		if e.Identity == webIdentity {
			rule = e.Rule
		}
	}
	if rule&policy.RuleDeny == 0 {
		t.Fatalf("web's entry on prometheus's ingress is %#x, want a deny", rule)
	}
	ev := &probe.Event{Version: probe.EventVersion, Type: probe.EventDrop, Verdict: probe.VerdictDrop,
		Direction: probe.DirIngress, DstEndpoint: ep.ID, IngressRule: rule}
	f := &flowv1.Flow{}
	judge(f, ev, attribute(dp, ev))
	d := f.GetDeniedBy()
	if f.GetReason() != flowv1.Reason_REASON_DENIED_BY_RULE || len(d) != 1 || d[0].GetName() != "deny-monitoring" ||
		d[0].GetTier() != flowv1.ClusterTier_CLUSTER_TIER_ADMIN || d[0].GetPriority() != 10 || d[0].GetRuleName() != "deny-all" ||
		d[0].GetAction() != flowv1.ClusterAction_CLUSTER_ACTION_DENY || d[0].RuleIndex == nil || d[0].GetRuleIndex() != 0 || len(f.GetIsolatedBy()) != 0 {
		t.Errorf("drop attribution: %s", prototext.Format(f))
	}
	if got := flow.PolicySummary(f); !strings.Contains(got, "deny-monitoring") {
		t.Errorf("summary %q does not name the policy", got)
	}
}
