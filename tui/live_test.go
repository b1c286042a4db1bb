package tui_test

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/colorprofile"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/charmbracelet/x/exp/teatest/v2"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	"github.com/kubectl-netpol/kubectl-netpol/tui"
)

// liveStates is what the live source sends about nodes: both up (one
// agent older than the plugin), then node-b down with its reason, and
// flows lost on the way.
func liveStates() []flow.Batch {
	return []flow.Batch{
		{Nodes: []flow.NodeState{{Node: "node-a", Connected: true, Version: "v0.2.0"}, {Node: "node-b", Connected: true, Version: "v0.1.0"}}},
		{Lost: 5},
		{Nodes: []flow.NodeState{{Node: "node-b", Err: "observing node node-b: rpc error: code = Unavailable desc = error reading from server: EOF"}}},
	}
}

func liveModel(t *testing.T, w, h int) *tui.Model {
	t.Helper()
	m := tui.New(tui.Config{SourceName: "live", Loc: time.UTC, ClientVersion: "v0.2.0"})
	drive(m, tea.WindowSizeMsg{Width: w, Height: h})
	for _, b := range sampleBatches(t) {
		drive(m, tui.BatchMsg(b))
	}
	return m
}

// TestStatusBarLiveNodes: the status bar counts connected nodes, names the
// unreachable one with its reason (cut to fit, counters kept), warns of
// version skew (kept after that node goes down), and the help screen gives
// the full texts.
func TestStatusBarLiveNodes(t *testing.T) {
	m := liveModel(t, 120, 30)
	bs := liveStates()
	drive(m, tui.BatchMsg(bs[0]), tui.BatchMsg(bs[1]))
	bar := statusLine(m)
	for _, want := range []string{"2/2 nodes", "⚠ skew: agent v0.1.0", "lost 5"} {
		if !strings.Contains(bar, want) {
			t.Errorf("status bar %q lacks %q", bar, want)
		}
	}
	drive(m, tui.BatchMsg(bs[2]))
	bar = statusLine(m)
	for _, want := range []string{"1/2 nodes (down: node-b: observing node node-b", "⚠ skew: agent v0.1.0", "lost 5 "} {
		if !strings.Contains(bar, want) {
			t.Errorf("status bar %q lacks %q", bar, want)
		}
	}
	// At 80 columns the reason is cut, the counters stay.
	drive(m, tea.WindowSizeMsg{Width: 80, Height: 24})
	bar = statusLine(m)
	if !strings.Contains(bar, "1/2 nodes") || !strings.HasSuffix(bar, "lost 5 ") || strings.Contains(bar, "EOF") {
		t.Errorf("80-column status bar %q", bar)
	}
	checkScreen(t, m.Render(), 80, 24)

	drive(m, tea.WindowSizeMsg{Width: 120, Height: 40}, key("?"))
	help := ansi.Strip(m.Render())
	for _, want := range []string{
		"version skew: the agent (v0.1.0) is older than this plugin (v0.2.0): run `kubectl netpol install` to upgrade it",
		"node node-b unreachable (retrying): observing node node-b: rpc error",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q", want)
		}
	}

	// Reconnected with the same version as the plugin: no warning left.
	drive(m, key("esc"), tui.BatchMsg{Nodes: []flow.NodeState{{Node: "node-b", Connected: true, Version: "v0.2.0"}}})
	bar = statusLine(m)
	if !strings.Contains(bar, "2/2 nodes") || strings.Contains(bar, "skew") || strings.Contains(bar, "down") {
		t.Errorf("after reconnecting: %q", bar)
	}
}

// statusLine is the status bar row of the rendered screen (second to last).
func statusLine(m *tui.Model) string {
	rows := strings.Split(ansi.Strip(m.Render()), "\n")
	return rows[len(rows)-2]
}

// TestGoldenLive pins the live screen at 80×24 through the real program: a
// node down, an agent of another version, flows lost.
// Regenerate with: go test ./tui -run TestGoldenLive -update
func TestGoldenLive(t *testing.T) {
	m := tui.New(tui.Config{SourceName: "live", Loc: time.UTC, ClientVersion: "v0.2.0"})
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(80, 24),
		teatest.WithProgramOptions(tea.WithColorProfile(colorprofile.ANSI)))
	for _, b := range sampleBatches(t) {
		tm.Send(tui.BatchMsg(b))
	}
	for _, b := range liveStates() {
		tm.Send(tui.BatchMsg(b))
	}
	var out bytes.Buffer
	teatest.WaitFor(t, io.TeeReader(tm.Output(), &out), func(b []byte) bool {
		return bytes.Contains(b, []byte("lost 5")) && bytes.Contains(b, []byte("1/2 nodes"))
	},
		teatest.WithDuration(10*time.Second))
	tm.Send(tea.KeyPressMsg{Code: 'q', Text: "q"})
	final := tm.FinalModel(t, teatest.WithFinalTimeout(10*time.Second)).(*tui.Model)
	frame := final.View().Content
	checkScreen(t, frame, 80, 24)
	golden.RequireEqual(t, []byte(frame))
}
