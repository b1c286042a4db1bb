package rates

import (
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"

	"github.com/kubectl-netpol/kubectl-netpol/tui/common"
	"github.com/kubectl-netpol/kubectl-netpol/tui/stats"
	"github.com/kubectl-netpol/kubectl-netpol/tui/styles"
)

// countingHistory answers every step with one allowed flow and counts the calls.
type countingHistory struct{ calls int }

func (h *countingHistory) Buckets(stats.Scope, stats.Range, time.Time) ([]stats.Count, error) {
	h.calls++
	out := make([]stats.Count, stats.Points)
	for i := range out {
		out[i].Allowed = 60
	}
	return out, nil
}

// TestLongRangesLoad: with a history the range key goes 1m, 5m, 1h, 24h,
// 7d and round; a long range asks the history in a command once, keeps the
// answer, and asks again when it is a minute old; without one it stays on
// the live ranges.
func TestLongRangesLoad(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	m := New(&common.Common{Styles: styles.Default(), Loc: time.UTC}, stats.New())
	m.SetClock(func() time.Time { return now })
	m.SetSize(80, 10)
	r := tea.KeyPressMsg{Code: 'r', Text: "r"}
	var names []string
	for range 3 {
		m.Update(r)
		names = append(names, m.Range().Name)
	}
	if strings.Join(names, " ") != "5m 1h 1m" {
		t.Fatalf("without history the ranges go %v", names)
	}
	h := &countingHistory{}
	m.SetHistory(h)
	names = nil
	for range 4 {
		m.Update(r)
		names = append(names, m.Range().Name)
	}
	if strings.Join(names, " ") != "5m 1h 24h 7d" || !strings.Contains(m.keys.Range.Help().Desc, "1m/5m/1h/24h/7d") {
		t.Fatalf("with history the ranges go %v (help %q)", names, m.keys.Range.Help().Desc)
	}
	if !strings.Contains(m.View(), "reading the agents' history") {
		t.Errorf("before the answer:\n%s", m.View())
	}
	cmd := m.Load()
	if cmd == nil || m.Load() != nil {
		t.Fatal("a long range asks the history once per answer")
	}
	m.SetHistoryResult(cmd().(HistoryMsg))
	if v := m.View(); strings.Contains(v, "reading") || !strings.Contains(v, " 21/h┼") {
		t.Errorf("after the answer (60 flows a 2 h 48 min step: 21/h at the axis' top):\n%s", v)
	}
	if m.Load() != nil || h.calls != 1 {
		t.Errorf("asked again with a fresh answer: %d calls", h.calls)
	}
	now = now.Add(2 * time.Minute)
	if cmd := m.Load(); cmd == nil {
		t.Error("an answer a minute old is not asked again")
	}
}
