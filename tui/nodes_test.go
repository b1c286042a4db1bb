package tui_test

import (
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/tui"
	"github.com/kubectl-netpol/kubectl-netpol/tui/stats"
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

// probeFlow is the kubelet on node-a probing a pod on node-a.
func probeFlow(i int) *flowv1.Flow {
	return &flowv1.Flow{Time: timestamppb.New(t0.Add(time.Duration(i) * time.Second)), Node: "node-a",
		Type: flowv1.EventType_EVENT_TYPE_NEW, Verdict: flowv1.Verdict_VERDICT_ALLOWED, Reason: flowv1.Reason_REASON_NOT_SUBJECT,
		Ip:          &flowv1.IP{Source: "10.244.1.1", Destination: "10.244.1.9"},
		L4:          &flowv1.Layer4{Protocol: flowv1.Protocol_PROTOCOL_TCP, SourcePort: uint32(50000 + i), DestinationPort: 8080},
		Source:      &flowv1.Endpoint{NodeName: "node-a", HostNetwork: true},
		Destination: &flowv1.Endpoint{Namespace: "shop", Pod: "web", NodeName: "node-a"}}
}

// crossNode is web (node-a) -> db (node-b), allowed on egress, dropped on ingress.
func crossNode() *flowv1.Flow {
	rule := uint32(0)
	base := func(node string) *flowv1.Flow {
		return &flowv1.Flow{Time: timestamppb.New(t0.Add(time.Minute)), Node: node, Type: flowv1.EventType_EVENT_TYPE_NEW,
			Verdict: flowv1.Verdict_VERDICT_ALLOWED, Reason: flowv1.Reason_REASON_ALLOWED_BY_RULE,
			Ip:          &flowv1.IP{Source: "10.244.1.9", Destination: "10.244.2.7"},
			L4:          &flowv1.Layer4{Protocol: flowv1.Protocol_PROTOCOL_TCP, SourcePort: 41000, DestinationPort: 5432},
			Source:      &flowv1.Endpoint{Namespace: "shop", Pod: "web", NodeName: "node-a", Labels: map[string]string{"app": "web"}},
			Destination: &flowv1.Endpoint{Namespace: "shop", Pod: "db", NodeName: "node-b"}}
	}
	eg := base("node-a")
	eg.Direction = flowv1.TrafficDirection_TRAFFIC_DIRECTION_EGRESS
	eg.AllowedBy = []*flowv1.PolicyRef{{Namespace: "shop", Name: "web-out", Direction: eg.Direction, RuleIndex: &rule}}
	in := base("node-b")
	in.Type, in.Verdict, in.Reason, in.Direction = flowv1.EventType_EVENT_TYPE_DROP, flowv1.Verdict_VERDICT_DENIED,
		flowv1.Reason_REASON_NO_RULE_MATCHED, flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS
	in.IsolatedBy = []*flowv1.PolicyRef{{Namespace: "shop", Name: "db-policy", Direction: in.Direction}}
	return flow.MergePair(in, eg)
}

// Node health checks are hidden by default (the status bar says so), h
// shows them as node/NAME, h hides them again; drops are never hidden.
func TestNodeHealthChecksKey(t *testing.T) {
	m := tui.New(tui.Config{SourceName: "live", Loc: time.UTC})
	drive(m, tea.WindowSizeMsg{Width: 160, Height: 40})
	var flows []*flowv1.Flow
	for i := range 5 {
		flows = append(flows, probeFlow(i))
	}
	deniedProbe := probeFlow(9)
	deniedProbe.Verdict = flowv1.Verdict_VERDICT_DENIED
	flows = append(flows, deniedProbe, crossNode())
	drive(m, tui.BatchMsg(flow.Batch{Flows: flows}))
	if !m.NodeChecksHidden() || m.Table().Len() != 2 || m.Table().Total() != 7 {
		t.Fatalf("default: hidden %v, %d of %d rows shown; want the 5 allowed probes hidden", m.NodeChecksHidden(), m.Table().Len(), m.Table().Total())
	}
	screen := m.Render()
	if !strings.Contains(screen, "node checks hidden (h)") {
		t.Errorf("the status bar does not say node checks are hidden:\n%s", screen)
	}
	drive(m, key("h"))
	if m.NodeChecksHidden() || m.Table().Len() != 7 {
		t.Fatalf("after h: %d rows shown, want all 7", m.Table().Len())
	}
	if screen = m.Render(); !strings.Contains(screen, "node/node-a") || strings.Contains(screen, "node checks hidden") {
		t.Errorf("node traffic does not show as node/NAME:\n%s", screen)
	}
	// The `/` filter combines with hiding.
	drive(m, key("h"), key("/"))
	typeText(m, "port=8080")
	drive(m, key("enter"))
	if m.Table().Len() != 1 {
		t.Errorf("filter port=8080 with checks hidden shows %d rows, want the denied probe", m.Table().Len())
	}
	drive(m, key("?"))
	if screen = m.Render(); !strings.Contains(screen, "hide/show node health checks") {
		t.Errorf("help lacks the h key:\n%s", screen)
	}
}

// A flow merged from two nodes shows both nodes in its row, and the detail
// gives each observation point's verdict and policy.
func TestCrossNodeFlowRowAndDetail(t *testing.T) {
	m := tui.New(tui.Config{SourceName: "live", Loc: time.UTC})
	drive(m, tea.WindowSizeMsg{Width: 160, Height: 40})
	drive(m, tui.BatchMsg(flow.Batch{Flows: []*flowv1.Flow{crossNode()}}))
	screen := m.Render()
	for _, want := range []string{"node-a+n", "shop/web", "shop/db", "DENIED", "shop/db-policy"} {
		if !strings.Contains(screen, want) {
			t.Errorf("row lacks %q:\n%s", want, screen)
		}
	}
	text := m.Detail().Text()
	for _, want := range []string{"Egress on node node-a (the source's node): allowed.", "Allowed by egress rule 0 of NetworkPolicy shop/web-out.",
		"Ingress on node node-b (the destination's node): denied.", "shop/db is isolated for ingress by 1 policy: shop/db-policy.",
		"dropped on node node-b"} {
		if !strings.Contains(text, want) {
			t.Errorf("detail lacks %q:\n%s", want, text)
		}
	}
	drive(m, key("enter"))
	if screen = m.Render(); !strings.Contains(screen, "observed       ingress@node-b DENIED isolated-by shop/db-policy (ingress)") {
		t.Errorf("full detail lacks the observation points:\n%s", screen)
	}
}

// The matrix and rates count node traffic under (nodes), not (world).
func TestNodeTrafficInStats(t *testing.T) {
	p := probeFlow(0)
	if got := stats.NamespaceOf(p.GetSource()); got != stats.Nodes {
		t.Errorf("NamespaceOf(node) = %q, want %q", got, stats.Nodes)
	}
	if got := stats.EndpointKey(p.GetSource(), p.GetIp().GetSource()); got != "node/node-a" {
		t.Errorf("EndpointKey(node) = %q", got)
	}
	if got := stats.NamespaceOf(&flowv1.Endpoint{}); got != stats.Outside {
		t.Errorf("NamespaceOf(world) = %q", got)
	}
}

// A node whose agent says the CNI bypasses it is named in the status bar
// (never implied enforcement), with the detail on the help screen; it stays
// while the node's stream reconnects, and clears when the node enforces.
func TestStatusBarNotEnforcing(t *testing.T) {
	m := tui.New(tui.Config{SourceName: "live", Loc: time.UTC})
	drive(m, tea.WindowSizeMsg{Width: 160, Height: 40})
	drive(m, tui.BatchMsg(flow.Batch{Nodes: []flow.NodeState{
		{Node: "node-a", Connected: true, CNI: "Flannel (vxlan)", Enforcement: "enforcing"},
		{Node: "node-b", Connected: true, CNI: "Cilium (vxlan tunnel)", Enforcement: "not enforcing",
			EnforcementDetail: "Cilium (vxlan tunnel) bypasses netfilter: pods sent 900 packets in the last 10s and the hooks saw 3"},
	}}))
	if screen := m.Render(); !strings.Contains(screen, "⚠ not enforcing: node-b (Cilium (vxlan tunnel))") {
		t.Errorf("status bar lacks the warning:\n%s", screen)
	}
	drive(m, tui.BatchMsg(flow.Batch{Nodes: []flow.NodeState{{Node: "node-b", Err: "connection reset"}}}))
	if screen := m.Render(); !strings.Contains(screen, "not enforcing: node-b") {
		t.Errorf("the warning went with the stream:\n%s", screen)
	}
	drive(m, key("?"))
	if screen := m.Render(); !strings.Contains(screen, "node node-b not enforcing: Cilium (vxlan tunnel) bypasses netfilter") {
		t.Errorf("help lacks the detail:\n%s", screen)
	}
	drive(m, key("?"))
	drive(m, tui.BatchMsg(flow.Batch{Nodes: []flow.NodeState{{Node: "node-b", Connected: true, CNI: "Cilium (vxlan tunnel)", Enforcement: "enforcing"}}}))
	if screen := m.Render(); strings.Contains(screen, "not enforcing") {
		t.Errorf("warning stays after node-b enforces:\n%s", screen)
	}
}
