package tui_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/tui"
	"github.com/kubectl-netpol/kubectl-netpol/tui/components/rates"
	"github.com/kubectl-netpol/kubectl-netpol/tui/components/top"
)

// TestChartScopesAndRanges: s walks the scopes up to the deciding policy,
// r the ranges; the title says both, and the time axis is in the range's unit.
func TestChartScopesAndRanges(t *testing.T) {
	m, _ := loaded(t, 100, 30)
	drive(m, key("tab"))
	for range 4 {
		drive(m, key("s"))
	}
	if m.Rates().Scope() != rates.ScopePolicy {
		t.Fatalf("scope %v after 4 s", m.Rates().Scope())
	}
	screen := ansi.Strip(m.Render())
	if !strings.Contains(screen, "Flows/s policy shop/db-allow-api") {
		t.Fatalf("policy scope should name the policy that decided the selected flow:\n%s", screen)
	}
	drive(m, key("r"))
	screen = ansi.Strip(m.Render())
	if m.Rates().Range().Name != "5m" || !strings.Contains(screen, "last 5m") || !strings.Contains(screen, "-4m") {
		t.Fatalf("r should switch to 5 minutes with minute ticks:\n%s", screen)
	}
	drive(m, key("r"))
	if screen = ansi.Strip(m.Render()); !strings.Contains(screen, "last 1h") || !strings.Contains(screen, "-45m") {
		t.Fatalf("r again should switch to 1 hour:\n%s", screen)
	}
	// The value axis is in flows per second.
	if !strings.Contains(screen, "/s┤") && !strings.Contains(screen, "/s┼") {
		t.Fatalf("value axis lacks its unit:\n%s", screen)
	}
}

// TestTopSortAndDrill: the top view ranks rules by denies (then allows with
// o), Enter shows the flows table filtered on the row.
func TestTopSortAndDrill(t *testing.T) {
	m, _ := loaded(t, 160, 40)
	drive(m, key("2"))
	rows := m.Top().Rows()
	if len(rows) == 0 || rows[0].Name != "shop/default-deny-ingress (ingress)" || rows[0].Count.Denied != 141 {
		t.Fatalf("top rule by denies: %+v", rows)
	}
	drive(m, key("o"))
	if m.Top().SortBy() != top.ByAllowed || m.Top().Rows()[0].Count.Allowed < m.Top().Rows()[1].Count.Allowed {
		t.Fatalf("o should sort by allowed: %+v", m.Top().Rows()[:2])
	}
	drive(m, key("o"), key("o"), key("t"))
	rows = m.Top().Rows()
	if m.Top().Kind() != top.Policies || rows[0].Name != "shop/default-deny-ingress" || rows[0].Filter != "policy=shop/default-deny-ingress" {
		t.Fatalf("t should list policies by denies: %+v", rows[:2])
	}
	drive(m, key("t"))
	rows = m.Top().Rows()
	if m.Top().Kind() != top.Pairs || rows[0].Name != "monitoring/prometheus → shop/api" {
		t.Fatalf("t again should list workload pairs by denies: %+v", rows[:2])
	}
	drive(m, key("enter"))
	if m.CurrentView() != tui.ViewFlows {
		t.Fatal("enter should show the flows")
	}
	if m.Table().Len() != 91 {
		t.Fatalf("drilled table shows %d flows, want prometheus→api's 91", m.Table().Len())
	}
	if !strings.Contains(ansi.Strip(m.Render()), "filter: from-workload=monitoring/prometheus to-workload=shop/api") {
		t.Fatal("the drill-down filter should be shown (and editable with /)")
	}
}

// TestMapFocusEdgesAndDetail: the map focuses the busiest workload, lists
// its edges in and out labelled in words, explains the selected edge like
// a flow, follows an edge with f, and Enter drills into its flows.
func TestMapFocusEdgesAndDetail(t *testing.T) {
	m, _ := loaded(t, 160, 40)
	drive(m, key("3"))
	if got := m.Map().Focus(); got != "shop/api" {
		t.Fatalf("focus %q, want the busiest workload shop/api", got)
	}
	screen := ansi.Strip(m.Render())
	for _, want := range []string{"EDGES (→): 4 in, 3 out", "monitoring/prometheus", "─DENIED 91 (1.5/s) ╳", "─ALLOWED 77 (1.3/s) ─", "shop/db"} {
		if !strings.Contains(screen, want) {
			t.Fatalf("map lacks %q:\n%s", want, screen)
		}
	}
	drive(m, key("j")) // the second edge in: prometheus → api, denied
	e := m.Map().SelectedEdge()
	if e.From != "monitoring/prometheus" || e.To != "shop/api" {
		t.Fatalf("selected edge %s → %s", e.From, e.To)
	}
	if !strings.Contains(m.Detail().Text(), "monitoring/prometheus-0 is not allowed") && !strings.Contains(m.Detail().Text(), "isolated for ingress") {
		t.Fatalf("the detail pane should explain the edge's flow:\n%s", m.Detail().Text())
	}
	drive(m, key("f"))
	if got := m.Map().Focus(); got != "monitoring/prometheus" {
		t.Fatalf("f should focus the edge's other end, got %q", got)
	}
	drive(m, key("enter"))
	if m.CurrentView() != tui.ViewFlows || m.Table().Len() != 91 {
		t.Fatalf("enter on an edge should show its 91 flows, view %v, %d rows", m.CurrentView(), m.Table().Len())
	}
}

// TestMapManyWorkloads: with 150 workloads in 15 namespaces the tree
// collapses every namespace but the focus's, the neighbourhood shows only
// the focus's edges, and a collapsed namespace can be focused as a whole.
func TestMapManyWorkloads(t *testing.T) {
	m := tui.New(tui.Config{Loc: time.UTC})
	drive(m, tea.WindowSizeMsg{Width: 100, Height: 30})
	base := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	var flows []*flowv1.Flow
	ep := func(ns, w int) *flowv1.Endpoint {
		return &flowv1.Endpoint{Namespace: fmt.Sprintf("ns-%02d", ns), Pod: fmt.Sprintf("w%02d-abc", w),
			Workload: &flowv1.Workload{Kind: "Deployment", Name: fmt.Sprintf("w%02d", w)}}
	}
	for i := range 3000 {
		src, dst := ep(i%15, i%10), ep((i/15)%15, (i/7)%10)
		v := flowv1.Verdict_VERDICT_ALLOWED
		if i%5 == 0 {
			v = flowv1.Verdict_VERDICT_DENIED
		}
		flows = append(flows, &flowv1.Flow{Time: timestamppb.New(base.Add(time.Duration(i) * 10 * time.Millisecond)),
			Type: flowv1.EventType_EVENT_TYPE_NEW, Verdict: v, Source: src, Destination: dst,
			L4: &flowv1.Layer4{Protocol: flowv1.Protocol_PROTOCOL_TCP, DestinationPort: 80}})
	}
	drive(m, tui.BatchMsg(flow.Batch{Flows: flows}), key("3"))
	screen := ansi.Strip(m.Render())
	checkScreen(t, m.Render(), 100, 30)
	if !strings.Contains(screen, "150 workloads in 15 namespaces") {
		t.Fatalf("map title:\n%s", screen)
	}
	focusNS, _, _ := strings.Cut(m.Map().Focus(), "/")
	if open := strings.Count(screen, "▾ "); open != 1 || !strings.Contains(screen, "▾ "+focusNS) {
		t.Fatalf("want only the focus's namespace %s open, %d open:\n%s", focusNS, open, screen)
	}
	// Focus a collapsed namespace: its edges are namespace to namespace.
	drive(m, key("left"), key("enter"))
	if !strings.HasPrefix(m.Map().Focus(), "ns:") {
		t.Fatalf("enter on a collapsed namespace should focus it, focus %q", m.Map().Focus())
	}
	for _, e := range m.Map().Edges() {
		if strings.Contains(e.From, "/") || strings.Contains(e.To, "/") {
			t.Fatalf("namespace focus shows workload edge %s → %s", e.From, e.To)
		}
	}
	if !strings.Contains(ansi.Strip(m.Render()), "(collapsed)") {
		t.Fatal("the title should say the focus is a collapsed namespace")
	}
}

// TestMouse: a click selects a table row, the wheel scrolls, and a click in
// the map's tree focuses a workload.
func TestMouse(t *testing.T) {
	m, _ := loaded(t, 80, 24)
	drive(m, tea.MouseClickMsg{X: 5, Y: 3, Button: tea.MouseLeft})
	if m.Table().Following() {
		t.Fatal("a click on a row should leave follow mode")
	}
	sel := m.Selected()
	drive(m, tea.MouseWheelMsg{X: 5, Y: 3, Button: tea.MouseWheelUp})
	if m.Selected() == sel {
		t.Fatal("the wheel should move the selection")
	}
	drive(m, key("3"))
	screen := strings.Split(ansi.Strip(m.Render()), "\n")
	row := -1
	for i, l := range screen {
		if strings.HasPrefix(strings.TrimSpace(l), "curl") {
			row = i
		}
	}
	if row < 0 {
		t.Fatalf("no curl in the tree:\n%s", strings.Join(screen, "\n"))
	}
	drive(m, tea.MouseClickMsg{X: 3, Y: row, Button: tea.MouseLeft})
	if got := m.Map().Focus(); got != "default/curl" {
		t.Fatalf("a click on curl should focus default/curl, got %q", got)
	}
}

// TestViewsResize: every view fills the screen exactly at every size from
// 80×24 up, through the narrow/wide switch, and after shrinking back.
func TestViewsResize(t *testing.T) {
	m, _ := loaded(t, 80, 24)
	for _, view := range []string{"1", "2", "3"} {
		drive(m, key(view))
		for range 3 { // each bottom panel: detail, chart, matrix
			for _, size := range [][2]int{{80, 24}, {100, 30}, {119, 35}, {120, 36}, {200, 60}, {81, 25}} {
				drive(m, tea.WindowSizeMsg{Width: size[0], Height: size[1]})
				checkScreen(t, m.Render(), size[0], size[1])
			}
			drive(m, key("tab"))
		}
	}
}
