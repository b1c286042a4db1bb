package flow_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

type cliFlag struct {
	kind  flow.FilterKind
	value string
	not   bool
}

func build(t *testing.T, flags ...cliFlag) *flow.Filter {
	t.Helper()
	var b flow.FilterBuilder
	for _, f := range flags {
		if f.not {
			b.Not()
		}
		if err := b.Add(f.kind, f.value); err != nil {
			t.Fatalf("Add(%v, %q): %v", f.kind, f.value, err)
		}
	}
	filter, err := flow.CompileFilter(b.Allowlist(), b.Denylist())
	if err != nil {
		t.Fatal(err)
	}
	return filter
}

// countMatches returns how many sample flows pass, and checks pred agrees on each.
func countMatches(t *testing.T, f *flow.Filter, pred func(*flowv1.Flow) bool) int {
	t.Helper()
	n := 0
	for _, fl := range sampleFlows() {
		got := f.Match(fl)
		if want := pred(fl); got != want {
			t.Fatalf("Match = %v, want %v for %s", got, want, flow.CompactLine(fl, time.UTC))
		}
		if got {
			n++
		}
	}
	return n
}

func TestFilterSemanticsOnSample(t *testing.T) {
	src := func(f *flowv1.Flow) *flowv1.Endpoint { return f.GetSource() }
	dst := func(f *flowv1.Flow) *flowv1.Endpoint { return f.GetDestination() }
	denied := func(f *flowv1.Flow) bool { return f.GetVerdict() == flowv1.Verdict_VERDICT_DENIED }
	tests := []struct {
		name  string
		flags []cliFlag
		want  func(*flowv1.Flow) bool
	}{
		{"no filter passes all", nil, func(*flowv1.Flow) bool { return true }},
		{"namespace is either side", []cliFlag{{kind: flow.Namespace, value: "kube-system"}},
			func(f *flowv1.Flow) bool {
				return src(f).GetNamespace() == "kube-system" || dst(f).GetNamespace() == "kube-system"
			}},
		{"from-namespace is the source only", []cliFlag{{kind: flow.FromNamespace, value: "payments"}},
			func(f *flowv1.Flow) bool { return src(f).GetNamespace() == "payments" }},
		{"to-namespace AND verdict", []cliFlag{{kind: flow.ToNamespace, value: "shop"}, {kind: flow.Verdict, value: "dropped"}},
			func(f *flowv1.Flow) bool { return dst(f).GetNamespace() == "shop" && denied(f) }},
		{"either side keeps non-directional filters on both variants", []cliFlag{{kind: flow.Namespace, value: "payments"}, {kind: flow.Verdict, value: "allowed"}},
			func(f *flowv1.Flow) bool {
				return (src(f).GetNamespace() == "payments" || dst(f).GetNamespace() == "payments") && !denied(f)
			}},
		{"pod prefix in a namespace", []cliFlag{{kind: flow.Pod, value: "shop/api-"}},
			func(f *flowv1.Flow) bool {
				return strings.HasPrefix(src(f).GetPod(), "api-") || strings.HasPrefix(dst(f).GetPod(), "api-")
			}},
		{"pod prefix in the wrong namespace matches nothing", []cliFlag{{kind: flow.Pod, value: "default/api-"}},
			func(*flowv1.Flow) bool { return false }},
		{"label selector with set syntax", []cliFlag{{kind: flow.ToLabel, value: "app in (db,api),tier!=frontend"}},
			func(f *flowv1.Flow) bool { a := dst(f).GetLabels()["app"]; return a == "db" || a == "api" }},
		{"label never matches an outside address", []cliFlag{{kind: flow.ToLabel, value: "!app"}},
			func(f *flowv1.Flow) bool { return dst(f).GetPod() != "" && dst(f).GetLabels()["app"] == "" }},
		{"ip CIDR either side", []cliFlag{{kind: flow.IP, value: "203.0.113.0/24"}},
			func(f *flowv1.Flow) bool { return f.GetIp().GetDestination() == "203.0.113.10" }},
		{"to-port and protocol", []cliFlag{{kind: flow.ToPort, value: "53"}, {kind: flow.Protocol, value: "udp"}},
			func(f *flowv1.Flow) bool { return f.GetL4().GetDestinationPort() == 53 }},
		{"policy matches allowed_by or isolated_by", []cliFlag{{kind: flow.Policy, value: "shop/db-allow-api"}},
			func(f *flowv1.Flow) bool { return dst(f).GetPod() == "db-0" && src(f).GetPod() != "" }},
		{"policy without namespace", []cliFlag{{kind: flow.Policy, value: "default-deny-egress"}},
			func(f *flowv1.Flow) bool {
				return src(f).GetNamespace() == "payments" && denied(f) && dst(f).GetPod() == ""
			}},
		{"service", []cliFlag{{kind: flow.Service, value: "kube-system/kube-dns"}},
			func(f *flowv1.Flow) bool { return f.GetService().GetName() == "kube-dns" }},
		{"not negates the next filter only", []cliFlag{{kind: flow.Namespace, value: "kube-system", not: true}, {kind: flow.Verdict, value: "denied"}},
			func(f *flowv1.Flow) bool {
				return denied(f) && src(f).GetNamespace() != "kube-system" && dst(f).GetNamespace() != "kube-system"
			}},
		{"two negations AND in the denylist", []cliFlag{{kind: flow.ToNamespace, value: "shop", not: true}, {kind: flow.Verdict, value: "denied", not: true}},
			func(f *flowv1.Flow) bool { return !(dst(f).GetNamespace() == "shop" && denied(f)) }},
		{"reason", []cliFlag{{kind: flow.Reason, value: "not-isolated"}},
			func(f *flowv1.Flow) bool { return f.GetReason() == flowv1.Reason_REASON_NOT_ISOLATED }},
		{"node and event type", []cliFlag{{kind: flow.Node, value: "node-a"}, {kind: flow.Type, value: "end"}},
			func(f *flowv1.Flow) bool {
				return f.GetNode() == "node-a" && f.GetType() == flowv1.EventType_EVENT_TYPE_END
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := countMatches(t, build(t, tt.flags...), tt.want)
			if tt.flags != nil && n == 0 && !strings.Contains(tt.name, "nothing") {
				t.Fatalf("filter matched no sample flow: the case proves nothing")
			}
		})
	}
}

func TestFilterBuilderShape(t *testing.T) {
	var b flow.FilterBuilder
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.Add(flow.FromNamespace, "a"))
	if n := len(b.Allowlist()); n != 1 {
		t.Fatalf("directional filters only: %d allowlist filters, want 1", n)
	}
	must(b.Add(flow.Pod, "web"))
	al := b.Allowlist()
	if len(al) != 2 {
		t.Fatalf("an either-side filter splits into 2 filters, got %d", len(al))
	}
	if got := al[0].GetSourcePod(); len(got) != 1 || got[0] != "web" {
		t.Errorf("left variant source_pod = %v", got)
	}
	if got := al[1].GetDestinationPod(); len(got) != 1 || got[0] != "web" {
		t.Errorf("right variant destination_pod = %v", got)
	}
	for i, f := range al {
		if got := f.GetSourceNamespace(); len(got) != 1 || got[0] != "a" {
			t.Errorf("variant %d lost from-namespace: %v", i, got)
		}
	}
	if b.Denylist() != nil {
		t.Errorf("denylist should be empty")
	}
	b.Not()
	if !b.PendingNot() {
		t.Error("PendingNot false after Not")
	}
}

func TestFilterErrorsNameTheValue(t *testing.T) {
	for _, tc := range []struct {
		kind  flow.FilterKind
		value string
		want  string
	}{
		{flow.Label, "app in (", `label selector "app in ("`},
		{flow.IP, "10.0.0.300", `IP "10.0.0.300": not an IP address or CIDR`},
		{flow.Port, "http", `port "http": want a number from 1 to 65535`},
		{flow.Port, "70000", `port "70000"`},
		{flow.Verdict, "maybe", `unknown verdict "maybe": use one of allowed, audit, denied`},
		{flow.Protocol, "gre", `unknown protocol "gre"`},
		{flow.Policy, "a/b/c", `policy "a/b/c"`},
		{flow.Pod, "/web", `pod "/web"`},
	} {
		var b flow.FilterBuilder
		err := b.Add(tc.kind, tc.value)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Add(%v, %q) = %v, want error containing %q", tc.kind, tc.value, err, tc.want)
		}
	}
	if _, err := flow.CompileFilter([]*flowv1.FlowFilter{{SourceIp: []string{"nope"}}}, nil); err == nil || !strings.Contains(err.Error(), "allowlist filter 0") {
		t.Errorf("CompileFilter error = %v", err)
	}
}

func TestNilFilterPassesAll(t *testing.T) {
	var f *flow.Filter
	if !f.Match(&flowv1.Flow{}) {
		t.Fatal("nil filter must pass")
	}
}

func TestIPv4MappedIPv6Matches(t *testing.T) {
	f, err := flow.CompileFilter([]*flowv1.FlowFilter{{DestinationIp: []string{"10.0.0.0/8"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Match(&flowv1.Flow{Ip: &flowv1.IP{Destination: "::ffff:10.1.2.3"}}) {
		t.Error("IPv4-mapped IPv6 destination should match an IPv4 CIDR")
	}
	if f.Match(&flowv1.Flow{Ip: &flowv1.IP{Destination: "fd00::1"}}) {
		t.Error("IPv6 destination matched an IPv4 CIDR")
	}
}
