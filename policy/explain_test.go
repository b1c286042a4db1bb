package policy_test

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	. "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

// shop is a small app: web/frontend-1 talks to db/mysql-0.
func shop(policies ...*networkingv1.NetworkPolicy) *policy.Snapshot {
	return &policy.Snapshot{
		Namespaces: []*corev1.Namespace{Namespace("web"), Namespace("db", "team=db", "env=prod")},
		Pods: []*corev1.Pod{
			Pod("web", "frontend-1", WithLabels("app=web"), WithIP("10.1.0.1")),
			Pod("db", "mysql-0", WithLabels("app=db", "env=prod"), WithIP("10.2.0.1"), WithPort("mysql", 3306, "")),
			Pod("db", "api-0", WithLabels("app=api", "debug=true"), WithIP("10.2.0.2")),
			Pod("db", "pending", WithLabels("app=web")),
			Pod("kube-system", "node-agent", HostNetwork(), WithIP("172.31.0.10")),
		},
		NodeIPs:  []netip.Addr{Addr("172.31.0.10")},
		Policies: policies,
	}
}

func TestExplanations(t *testing.T) {
	dbPolicy := Policy("db", "db-policy", Selecting(Sel("app=db")),
		IngressRule(Peers(PodPeer(Sel("app=web"))), Port(tcp, 3306)))
	cases := []struct {
		name      string
		policies  []*networkingv1.NetworkPolicy
		src, dst  string
		proto     corev1.Protocol
		port      int32
		egress    bool // explain the egress side instead of ingress
		summary   string
		messages  []string // each must be the message of some mismatch
		warnings  []policy.WarningCode
		allowedBy []policy.RuleMatch
	}{
		{
			name: "podSelector alone names the policy's namespace", policies: []*networkingv1.NetworkPolicy{dbPolicy},
			src: "web/frontend-1", dst: "db/mysql-0", proto: tcp, port: 3306,
			summary:  "db/db-policy selects pod db/mysql-0 (podSelector app=db) for Ingress; its only ingress rule does not match",
			messages: []string{`pod web/frontend-1 is in namespace "web"; peer 0 selects pods app=web in namespace "db" (podSelector alone means the policy's own namespace)`},
		},
		{
			name: "wrong port and wrong label", policies: []*networkingv1.NetworkPolicy{dbPolicy},
			src: "db/api-0", dst: "db/mysql-0", proto: tcp, port: 5432,
			messages: []string{
				`peer 0 selects pods app=web in namespace "db"; pod db/api-0 has app=api, not app=web (podSelector app=web)`,
				"port 5432/TCP is not 3306/TCP",
			},
		},
		{
			name: "namespace lacks a label",
			policies: []*networkingv1.NetworkPolicy{Policy("db", "p", Selecting(Sel("app=db")),
				IngressRule(Peers(NSPeer(Sel("team=db")), PodNSPeer(Sel("app=web"), Sel("env=prod")))))},
			src: "web/frontend-1", dst: "db/mysql-0", proto: tcp, port: 3306,
			messages: []string{
				`peer 0 selects all pods in namespaces team=db; namespace "web" lacks label team (namespaceSelector team=db)`,
				`peer 1 selects pods app=web in namespaces env=prod; namespace "web" lacks label env (namespaceSelector env=prod)`,
			},
		},
		{
			name:     "a selector wanting an empty value",
			policies: []*networkingv1.NetworkPolicy{Policy("web", "p", IngressRule(Peers(NSPeer(Sel("env=")))))},
			src:      "db/api-0", dst: "web/frontend-1", proto: tcp, port: 80,
			messages: []string{`peer 0 selects all pods in namespaces env=; namespace "db" has env=prod, not an empty env (namespaceSelector env=)`},
		},
		{
			name: "NotIn and DoesNotExist say which value excluded the pod",
			policies: []*networkingv1.NetworkPolicy{Policy("db", "p", Selecting(Sel("app=db")),
				IngressRule(Peers(PodPeer(Expr("app", metav1.LabelSelectorOpNotIn, "api", "web")), PodPeer(Expr("debug", metav1.LabelSelectorOpDoesNotExist)))))},
			src: "db/api-0", dst: "db/mysql-0", proto: tcp, port: 3306,
			messages: []string{
				`peer 0 selects pods app notin (api,web) in namespace "db"; pod db/api-0 has app=api, which app notin (api, web) excludes (podSelector app notin (api,web))`,
				`peer 1 selects pods !debug in namespace "db"; pod db/api-0 has label debug (=true), which must be absent (podSelector !debug)`,
			},
		},
		{
			name: "named port not declared by the destination",
			policies: []*networkingv1.NetworkPolicy{Policy("db", "p", Selecting(Sel("app=db")),
				IngressRule(nil, NamedPort("http", ""), NamedPort("mysql", udp), NamedPort("mysql", "")))},
			src: "web/frontend-1", dst: "db/mysql-0", proto: tcp, port: 3307,
			messages: []string{
				`named port "http" is not declared by db/mysql-0 for TCP`,
				`port 3307/TCP is not named port "mysql"/UDP`,
				`named port "mysql" is 3306/TCP on db/mysql-0, not 3307`,
			},
			warnings: []policy.WarningCode{policy.WarnNamedPortAbsent},
		},
		{
			name: "named port toward an IP and ipBlock except",
			policies: []*networkingv1.NetworkPolicy{Policy("web", "out", Selecting(Sel()), Types(networkingv1.PolicyTypeEgress),
				EgressRule(Peers(IPPeer("192.0.2.0/24", "192.0.2.0/28")), NamedPort("https", "")),
				EgressRule(Peers(PodPeer(Sel())), ProtoOnly(udp)))},
			src: "web/frontend-1", dst: "192.0.2.5", proto: tcp, port: 443, egress: true,
			summary: "web/out selects pod web/frontend-1 (podSelector {}, every pod in web) for Egress; none of its 2 egress rules matches",
			messages: []string{
				"peer 0 selects ipBlock 192.0.2.0/24 except 192.0.2.0/28; 192.0.2.5 is in the excepted 192.0.2.0/28",
				`named port "https" never matches traffic to an IP (192.0.2.5 is not a pod)`,
				`peer 0 selects all pods in namespace "web"; 192.0.2.5 is not a pod (only ipBlock peers match addresses outside the pod network)`,
				"port 443/TCP is not any UDP port",
			},
		},
		{
			name: "no rules: denies all ingress", policies: []*networkingv1.NetworkPolicy{Policy("db", "deny-all")},
			src: "web/frontend-1", dst: "db/mysql-0", proto: tcp, port: 3306,
			summary: "db/deny-all selects pod db/mysql-0 (podSelector {}, every pod in db) for Ingress and has no ingress rules: denies all ingress",
		},
		{
			name: "every allowing rule, peer and port is named",
			policies: []*networkingv1.NetworkPolicy{
				Policy("db", "a", Selecting(Sel("app=db")), IngressRule(Peers(PodPeer(Sel("app=zzz")), NSPeer(Sel()))), IngressRule(nil, Port(udp, 1), Port(tcp, 3306))),
				Policy("db", "b", Selecting(Sel("app=db")), IngressRule(nil)),
			},
			src: "web/frontend-1", dst: "db/mysql-0", proto: tcp, port: 3306,
			summary: "db/a selects pod db/mysql-0 (podSelector app=db) for Ingress; its ingress rules 0, 1 allow this traffic",
			allowedBy: []policy.RuleMatch{
				{Rule: policy.RuleRef{Policy: policy.PolicyRef{Kind: "NetworkPolicy", Namespace: "db", Name: "a"}, Direction: policy.Ingress, Index: 0}, Peer: 1, Port: -1},
				{Rule: policy.RuleRef{Policy: policy.PolicyRef{Kind: "NetworkPolicy", Namespace: "db", Name: "a"}, Direction: policy.Ingress, Index: 1}, Peer: -1, Port: 1},
				{Rule: policy.RuleRef{Policy: policy.PolicyRef{Kind: "NetworkPolicy", Namespace: "db", Name: "b"}, Direction: policy.Ingress, Index: 0}, Peer: -1, Port: -1},
			},
		},
		{
			name: "hostNetwork source, node address", policies: []*networkingv1.NetworkPolicy{dbPolicy},
			src: "kube-system/node-agent", dst: "db/mysql-0", proto: sctp, port: 3306,
			warnings: []policy.WarningCode{policy.WarnHostNetwork, policy.WarnNodeTraffic, policy.WarnSCTP},
		},
		{
			name: "pod without IP and loopback", policies: []*networkingv1.NetworkPolicy{dbPolicy},
			src: "db/pending", dst: "db/pending", proto: tcp, port: 80,
			warnings: []policy.WarningCode{policy.WarnNoPodIP, policy.WarnLoopback},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := shop(tc.policies...)
			e, err := policy.NewEngine(s)
			if err != nil {
				t.Fatal(err)
			}
			tr := policy.Traffic{Src: peer(t, s, tc.src), Dst: peer(t, s, tc.dst), Protocol: tc.proto, Port: tc.port}
			d := e.Evaluate(tr)
			checkInvariants(t, e, tr, d)
			dd := d.Ingress
			if tc.egress {
				dd = d.Egress
			}
			var got []string
			for _, pe := range dd.Policies {
				for _, r := range pe.Rules {
					for _, m := range r.Mismatches {
						got = append(got, m.Message)
					}
				}
			}
			for _, want := range tc.messages {
				if !slices.Contains(got, want) {
					t.Errorf("no mismatch message\n  %s\namong\n  %s", want, strings.Join(got, "\n  "))
				}
			}
			if tc.summary != "" && (len(dd.Policies) == 0 || dd.Policies[0].Summary != tc.summary) {
				t.Errorf("summary:\n got %q\nwant %q", summaries(dd), tc.summary)
			}
			var codes []policy.WarningCode
			for _, w := range d.Warnings {
				codes = append(codes, w.Code)
			}
			for _, want := range tc.warnings {
				if !slices.Contains(codes, want) {
					t.Errorf("no %s warning in %v", want, d.Warnings)
				}
			}
			if tc.allowedBy != nil && !slices.Equal(dd.AllowedBy, tc.allowedBy) {
				t.Errorf("allowedBy:\n got %+v\nwant %+v", dd.AllowedBy, tc.allowedBy)
			}
		})
	}
}

func summaries(dd policy.DirectionDecision) []string {
	var out []string
	for _, pe := range dd.Policies {
		out = append(out, pe.Summary)
	}
	return out
}

func TestNoRulesRendersAsEmptyList(t *testing.T) {
	s := shop(Policy("db", "deny-all"))
	e, err := policy.NewEngine(s)
	if err != nil {
		t.Fatal(err)
	}
	d := e.Evaluate(policy.Traffic{Src: peer(t, s, "web/frontend-1"), Dst: peer(t, s, "db/mysql-0"), Port: 3306})
	if d.Allowed || d.Ingress.Reason != policy.ReasonNoRuleMatched {
		t.Fatalf("deny-all allowed traffic: %+v", d.Ingress)
	}
	b, err := json.Marshal(d.Ingress.Policies)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"rules":[]`) {
		t.Errorf("a policy without rules must marshal rules as [], got %s", b)
	}
}

func TestResolvePort(t *testing.T) {
	pod := Pod("db", "mysql-0", WithPort("mysql", 3306, ""), WithPort("dns", 53, udp), WithPort("dup", 1, tcp), WithPort("dup", 2, tcp))
	always := corev1.ContainerRestartPolicyAlways
	pod.Spec.InitContainers = []corev1.Container{{Name: "sidecar", RestartPolicy: &always, Ports: []corev1.ContainerPort{{Name: "proxy", ContainerPort: 15001}}}}
	cases := []struct {
		name    string
		proto   corev1.Protocol
		want    int32
		warn    policy.WarningCode
		wantErr string
	}{
		{"mysql", "", 3306, "", ""},
		{"dns", udp, 53, "", ""},
		{"proxy", tcp, 15001, "", ""},
		{"dup", tcp, 1, policy.WarnNamedPortAmbiguous, ""},
		{"dns", tcp, 0, "", `pod db/mysql-0 does not declare port "dns" for TCP`},
		{"http", tcp, 0, "", `does not declare port "http"`},
	}
	for _, tc := range cases {
		got, warns, err := policy.ResolvePort(pod, tc.name, tc.proto)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s/%s: error %v, want %q", tc.name, tc.proto, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s/%s: got %d, %v; want %d", tc.name, tc.proto, got, err, tc.want)
		}
		if (tc.warn == "") != (len(warns) == 0) || (len(warns) > 0 && warns[0].Code != tc.warn) {
			t.Errorf("%s/%s: warnings %v, want %q", tc.name, tc.proto, warns, tc.warn)
		}
	}
}
