package tui_test

import (
	"context"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"google.golang.org/protobuf/proto"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/tui"
	"github.com/kubectl-netpol/kubectl-netpol/tui/common"
	"github.com/kubectl-netpol/kubectl-netpol/tui/components/detail"
	"github.com/kubectl-netpol/kubectl-netpol/tui/components/rates"
)

const sampleCapture = "../testdata/flows/sample.jsonl"

// sampleBatches reads the sample capture as the FileSource delivers it.
func sampleBatches(t testing.TB) []flow.Batch {
	t.Helper()
	var out []flow.Batch
	err := (&flow.FileSource{Path: sampleCapture}).Observe(context.Background(), &flowv1.ObserveRequest{}, func(b flow.Batch) error {
		out = append(out, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func allFlows(bs []flow.Batch) []*flowv1.Flow {
	var all []*flowv1.Flow
	for _, b := range bs {
		all = append(all, b.Flows...)
	}
	return all
}

// shown is what the table shows by default: all but node health checks.
func shown(all []*flowv1.Flow) []*flowv1.Flow {
	var out []*flowv1.Flow
	for _, f := range all {
		if !flow.IsNodeHealthCheck(f) {
			out = append(out, f)
		}
	}
	return out
}

// key builds a key press as the terminal sends it.
func key(s string) tea.KeyPressMsg {
	switch s {
	case "enter":
		return tea.KeyPressMsg{Code: tea.KeyEnter}
	case "esc":
		return tea.KeyPressMsg{Code: tea.KeyEscape}
	case "tab":
		return tea.KeyPressMsg{Code: tea.KeyTab}
	case "space":
		return tea.KeyPressMsg{Code: tea.KeySpace, Text: " "}
	case "up":
		return tea.KeyPressMsg{Code: tea.KeyUp}
	case "ctrl+c":
		return tea.KeyPressMsg{Code: 'c', Mod: tea.ModCtrl}
	}
	r := []rune(s)[0]
	return tea.KeyPressMsg{Code: r, Text: s}
}

// drive sends msgs and runs the commands they return that finish at once
// (explanations), feeding their messages back, as the program would.
func drive(m *tui.Model, msgs ...tea.Msg) {
	for _, msg := range msgs {
		_, cmd := m.Update(msg)
		runCmd(m, cmd)
	}
}

func runCmd(m *tui.Model, cmd tea.Cmd) {
	if cmd == nil {
		return
	}
	done := make(chan tea.Msg, 1)
	go func() { done <- cmd() }()
	var msg tea.Msg
	select {
	case msg = <-done:
	case <-time.After(20 * time.Millisecond):
		return // a timer (frame pacing): not needed to drive the model
	}
	switch msg := msg.(type) {
	case tea.BatchMsg:
		for _, c := range msg {
			runCmd(m, c)
		}
	case detail.ExplainedMsg:
		m.Update(msg)
	case common.DrillMsg:
		drive(m, msg)
	}
}

func typeText(m *tui.Model, s string) {
	for _, r := range s {
		drive(m, key(string(r)))
	}
}

func loaded(t *testing.T, w, h int) (*tui.Model, []*flowv1.Flow) {
	t.Helper()
	bs := sampleBatches(t)
	m := tui.New(tui.Config{SourceName: "replay sample.jsonl", Loc: time.UTC})
	drive(m, tea.WindowSizeMsg{Width: w, Height: h})
	for _, b := range bs {
		drive(m, tui.BatchMsg(b))
	}
	drive(m, tui.SourceDoneMsg{})
	return m, allFlows(bs)
}

// checkScreen asserts the frame fills exactly w×h cells.
func checkScreen(t *testing.T, screen string, w, h int) {
	t.Helper()
	lines := strings.Split(screen, "\n")
	if len(lines) != h {
		t.Fatalf("%d lines, want %d", len(lines), h)
	}
	for i, l := range lines {
		if got := ansi.StringWidth(l); got != w {
			t.Fatalf("line %d is %d cells wide, want %d: %q", i, got, w, ansi.Strip(l))
		}
	}
}

func TestFollowScrollAndSizes(t *testing.T) {
	for _, size := range [][2]int{{80, 24}, {120, 40}, {200, 60}, {60, 12}} {
		m, all := loaded(t, size[0], size[1])
		all = shown(all)
		checkScreen(t, m.Render(), size[0], size[1])
		if m.Selected() != all[len(all)-1] || !m.Table().Following() {
			t.Fatalf("%v: should follow the newest flow", size)
		}
	}
	m, all := loaded(t, 80, 24)
	all = shown(all)
	drive(m, key("k"), key("k"))
	if m.Table().Following() || m.Selected() != all[len(all)-3] {
		t.Fatal("k k should select the third newest and stop following")
	}
	if !strings.Contains(ansi.Strip(m.Render()), " SCROLL ") {
		t.Error("status bar should say SCROLL")
	}
	drive(m, key("g"))
	if m.Selected() != all[0] {
		t.Error("g should select the oldest")
	}
	drive(m, key("G"))
	if m.Selected() != all[len(all)-1] || !m.Table().Following() {
		t.Error("G should follow the tail again")
	}
}

func TestRingIsBounded(t *testing.T) {
	bs := sampleBatches(t)
	all := allFlows(bs)
	m := tui.New(tui.Config{Capacity: 100, Loc: time.UTC})
	drive(m, tea.WindowSizeMsg{Width: 80, Height: 24})
	for _, b := range bs {
		drive(m, tui.BatchMsg(b))
	}
	if m.Table().Total() != 100 || m.Table().Len() != 100 {
		t.Fatalf("held %d/%d, want 100", m.Table().Len(), m.Table().Total())
	}
	drive(m, key("g"))
	if m.Selected() != all[len(all)-100] {
		t.Fatal("the oldest held flow should be the 100th newest")
	}
	// Scrolled back, the selection stays on the same flow while new ones evict older ones.
	for range 50 {
		drive(m, key("j"))
	}
	sel := m.Selected()
	drive(m, tui.BatchMsg(flow.Batch{Flows: all[:10]}))
	if m.Selected() != sel {
		t.Fatal("the selected flow changed when older flows were evicted")
	}
}

func TestPauseResume(t *testing.T) {
	bs := sampleBatches(t)
	all := shown(allFlows(bs))
	m := tui.New(tui.Config{Loc: time.UTC})
	drive(m, tea.WindowSizeMsg{Width: 80, Height: 24}, tui.BatchMsg(flow.Batch{Flows: all[:100]}))
	drive(m, key("space"))
	drive(m, tui.BatchMsg(flow.Batch{Flows: all[100:150]}))
	if m.Table().Len() != 100 {
		t.Fatalf("paused table shows %d rows, want 100", m.Table().Len())
	}
	if !strings.Contains(ansi.Strip(m.Render()), "PAUSED +50") {
		t.Error("status bar should say PAUSED +50")
	}
	drive(m, key("space"))
	if m.Table().Len() != 150 || m.Selected() != all[149] {
		t.Fatalf("resumed table shows %d rows, want 150 following the tail", m.Table().Len())
	}
}

func TestFilter(t *testing.T) {
	m, all := loaded(t, 80, 24)
	drive(m, key("/"))
	typeText(m, "verdict=denied to-ns=shop")
	drive(m, key("enter"))
	want := 0
	for _, f := range all {
		if f.GetVerdict() == flowv1.Verdict_VERDICT_DENIED && f.GetDestination().GetNamespace() == "shop" {
			want++
		}
	}
	if m.Table().Len() != want || want == 0 {
		t.Fatalf("filter shows %d rows, want %d", m.Table().Len(), want)
	}
	screen := ansi.Strip(m.Render())
	if !strings.Contains(screen, "filter: verdict=denied to-ns=shop") {
		t.Error("status bar should show the filter")
	}
	for _, l := range strings.Split(screen, "\n")[1:14] {
		if !strings.Contains(l, "DENIED") {
			t.Fatalf("row %q is not a drop", l)
		}
	}
	// Free text and negation.
	drive(m, key("/"))
	for range 30 {
		drive(m, tea.KeyPressMsg{Code: tea.KeyBackspace})
	}
	typeText(m, "prometheus !ns=payments")
	drive(m, key("enter"))
	if sel := m.Selected(); sel == nil || sel.GetSource().GetPod() != "prometheus-0" {
		t.Fatalf("free-text filter selected %v", sel)
	}
	// A bad term is reported and not applied.
	before := m.Table().Len()
	drive(m, key("/"))
	typeText(m, " port=http")
	drive(m, key("enter"))
	if !strings.Contains(ansi.Strip(m.Render()), `filter: port "http": want a number`) {
		t.Fatalf("bad filter not reported:\n%s", ansi.Strip(m.Render()))
	}
	drive(m, key("esc"))
	if m.Table().Len() != before {
		t.Fatal("a rejected filter changed the table")
	}
	drive(m, key("esc")) // esc on the main screen clears the filter
	if m.Table().Len() != len(shown(all)) {
		t.Fatalf("esc should clear the filter: %d rows", m.Table().Len())
	}
}

func TestDetailExplainsDefaultDenyDrop(t *testing.T) {
	m, _ := loaded(t, 120, 40)
	drive(m, key("/"))
	typeText(m, "from-pod=default/curl to-pod=shop/db")
	drive(m, key("enter"))
	text := m.Detail().Text()
	for _, want := range []string{
		"DENIED: default/curl → shop/db-0 on TCP 5432, through Service shop/db (10.96.40.9:5432).",
		"shop/db-0 is isolated for ingress by 2 policies: shop/default-deny-ingress, shop/db-allow-api.",
		"No ingress rule of them allows default/curl on TCP 5432, so the packet was dropped on node node-b.",
		"add an ingress rule selecting pods with run=curl in namespace default",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("explanation lacks %q:\n%s", want, text)
		}
	}
	drive(m, key("enter"))
	full := ansi.Strip(m.Render())
	for _, want := range []string{"isolated by    shop/default-deny-ingress (ingress)", "service        shop/db 10.96.40.9:5432", "{run=curl}"} {
		if !strings.Contains(full, want) {
			t.Errorf("full detail lacks %q:\n%s", want, full)
		}
	}
	drive(m, key("esc"))
	if strings.Contains(ansi.Strip(m.Render()), "Recorded") {
		t.Error("esc should leave the full detail")
	}
}

func TestExplainAllowedAndNotIsolated(t *testing.T) {
	for _, tc := range []struct{ filter, want string }{
		{"to-pod=shop/db verdict=allowed", "Allowed by ingress rule 0 of NetworkPolicy shop/db-allow-api."},
		{"to-ns=kube-system", "No NetworkPolicy selects kube-system/coredns-6f6b679f8f-9qz7w for ingress and no ClusterNetworkPolicy rule decided, so all ingress traffic is allowed."},
		{"from-ns=payments to-ip=203.0.113.10", "payments/worker-84d5c-7h2lp is isolated for egress by 2 policies"},
	} {
		m, _ := loaded(t, 80, 24)
		drive(m, key("/"))
		typeText(m, tc.filter)
		drive(m, key("enter"))
		if !strings.Contains(m.Detail().Text(), tc.want) {
			t.Errorf("%s: explanation lacks %q:\n%s", tc.filter, tc.want, m.Detail().Text())
		}
	}
}

func TestRatesScopeAndMatrix(t *testing.T) {
	m, _ := loaded(t, 80, 24)
	drive(m, key("tab")) // rates
	screen := ansi.Strip(m.Render())
	if !strings.Contains(screen, "Flows/s cluster") || !strings.Contains(screen, "last 1m") || !strings.Contains(screen, "-45s") {
		t.Fatalf("rates pane missing:\n%s", screen)
	}
	drive(m, key("s"))
	if m.Rates().Scope() != rates.ScopeNamespace {
		t.Fatal("s should scope the rates to the namespace")
	}
	sel := m.Selected()
	if !strings.Contains(ansi.Strip(m.Render()), "Flows/s namespace "+sel.GetDestination().GetNamespace()) {
		t.Fatal("rates title should name the namespace")
	}
	drive(m, key("s"), key("s"))
	if !strings.Contains(ansi.Strip(m.Render()), "→") {
		t.Fatal("pair scope should name the pair")
	}
	drive(m, key("tab")) // matrix
	screen = ansi.Strip(m.Render())
	for _, want := range []string{"From ↓ to →", "monitoring    0/91", "payments      0/19"} {
		if !strings.Contains(screen, want) {
			t.Fatalf("matrix lacks %q:\n%s", want, screen)
		}
	}
}

func TestHelpIsGeneratedFromBindings(t *testing.T) {
	m, _ := loaded(t, 100, 30)
	drive(m, key("?"))
	screen := ansi.Strip(m.Render())
	for _, want := range []string{"help", "filter", "back, clear filter", "why", "panels", "quit", "up", "down", "page up", "oldest", "follow tail", "pause/resume",
		"chart cluster/ns/pod/pair/policy", "chart range 1m/5m/1h", "views flows/top/map", "top rules/policies/pairs", "sort denied/allowed/all", "focus the edge's other end", "collapse/expand namespaces"} {
		if !strings.Contains(screen, want) {
			t.Errorf("help lacks %q", want)
		}
	}
	drive(m, key("esc"))
	if strings.Contains(ansi.Strip(m.Render()), "keys") {
		t.Error("esc should leave help")
	}
	for _, k := range []string{"q", "ctrl+c"} {
		_, cmd := m.Update(key(k))
		if cmd == nil {
			t.Fatalf("%s returned no command", k)
		}
		if _, ok := cmd().(tea.QuitMsg); !ok {
			t.Fatalf("%s should quit", k)
		}
	}
}

func TestFramePacing(t *testing.T) {
	m, all := loaded(t, 80, 24)
	first := m.View().Content
	// Data alone does not redraw until the frame tick…
	m.Update(tui.BatchMsg(flow.Batch{Flows: all[:5]}))
	if m.View().Content != first {
		t.Fatal("a batch redrew before the frame tick")
	}
	// …a key does at once.
	m.Update(key("k"))
	if m.View().Content == first {
		t.Fatal("a key did not redraw")
	}
}

// slowExplainer answers asynchronously, like the engine-based explainer of the live path.
type slowExplainer struct{ calls chan *flowv1.Flow }

func (e slowExplainer) Explain(_ context.Context, f *flowv1.Flow) (string, error) {
	e.calls <- f
	return "engine says: " + f.GetDestination().GetPod(), nil
}

func TestAsyncExplainer(t *testing.T) {
	e := slowExplainer{calls: make(chan *flowv1.Flow, 100)}
	all := allFlows(sampleBatches(t))
	m := tui.New(tui.Config{Explainer: e, Loc: time.UTC})
	m.Update(tea.WindowSizeMsg{Width: 80, Height: 24})
	_, cmd := m.Update(tui.BatchMsg(flow.Batch{Flows: all[:10]}))
	if !strings.Contains(ansi.Strip(m.Render()), "explaining…") {
		t.Fatal("the pane should say it is explaining while the explainer runs")
	}
	_, cmd2 := m.Update(key("k")) // the selection moves before the first answer arrives
	answers := map[*flowv1.Flow]tea.Msg{}
	for _, c := range []tea.Cmd{cmd, cmd2} {
		for _, msg := range flatten(c) {
			if em, ok := msg.(detail.ExplainedMsg); ok {
				answers[em.Flow] = em
			}
		}
	}
	// The stale answer (for all[9]) must not replace the current one (all[8]).
	m.Update(answers[all[8]])
	m.Update(answers[all[9]])
	if got, want := m.Detail().Text(), "engine says: "+all[8].GetDestination().GetPod(); got != want {
		t.Fatalf("detail = %q, want %q", got, want)
	}
}

// flatten runs cmd and the commands of a batch, returning the messages that
// come back at once (timers are left alone).
func flatten(cmd tea.Cmd) []tea.Msg {
	if cmd == nil {
		return nil
	}
	done := make(chan tea.Msg, 1)
	go func() { done <- cmd() }()
	select {
	case msg := <-done:
		if b, ok := msg.(tea.BatchMsg); ok {
			var out []tea.Msg
			for _, c := range b {
				out = append(out, flatten(c)...)
			}
			return out
		}
		return []tea.Msg{msg}
	case <-time.After(50 * time.Millisecond):
		return nil
	}
}

// TestAggregateShowsItsConnections: a kernel aggregate's row says how many
// connections it stands for in the PORT column; a single connection's does
// not.
func TestAggregateShowsItsConnections(t *testing.T) {
	all := shown(allFlows(sampleBatches(t)))
	var single *flowv1.Flow
	for _, f := range all {
		if f.GetL4().GetProtocol() == flowv1.Protocol_PROTOCOL_TCP && f.GetVerdict() == flowv1.Verdict_VERDICT_ALLOWED {
			single = f
			break
		}
	}
	if single == nil {
		t.Fatal("the sample has no allowed TCP flow")
	}
	agg := proto.Clone(single).(*flowv1.Flow)
	agg.Connections = 19
	agg.L4.DestinationPort = 5432
	single = proto.Clone(single).(*flowv1.Flow)
	single.L4.DestinationPort = 5433
	single.Connections = 1
	for _, w := range []int{80, 120, 200} {
		m := tui.New(tui.Config{SourceName: "test", Loc: time.UTC})
		drive(m, tea.WindowSizeMsg{Width: w, Height: 20})
		drive(m, tui.BatchMsg(flow.Batch{Flows: []*flowv1.Flow{agg, single}}))
		screen := ansi.Strip(m.Render())
		checkScreen(t, m.Render(), w, 20)
		if !strings.Contains(screen, "5432/TCP x19") {
			t.Errorf("width %d: the aggregate's row should show 5432/TCP x19:\n%s", w, screen)
		}
		if !strings.Contains(screen, "5433/TCP") || strings.Contains(screen, "5433/TCP x") {
			t.Errorf("width %d: a single connection's row should show 5433/TCP alone:\n%s", w, screen)
		}
	}
}
