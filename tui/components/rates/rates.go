// Package rates draws allowed/denied flows per second over the last minute
// as two sparklines on one scale, for the whole cluster or for the scope of
// the selected flow: its destination namespace, its destination pod, or its
// source→destination pair. (ntcharts has no release for Bubble Tea v2, so the
// bars are drawn here with block characters.)
package rates

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/tui/common"
	"github.com/kubectl-netpol/kubectl-netpol/tui/stats"
)

// Scope is what the chart counts.
type Scope int

// Scopes, cycled by the Scope key.
const (
	ScopeAll Scope = iota
	ScopeNamespace
	ScopePod
	ScopePair
	numScopes
)

// KeyMap is the chart's bindings.
type KeyMap struct{ Scope key.Binding }

// Model is the rates chart.
type Model struct {
	c             *common.Common
	keys          KeyMap
	stats         *stats.Stats
	scope         Scope
	selected      *flowv1.Flow
	width, height int
}

// New returns a chart over st.
func New(c *common.Common, st *stats.Stats) *Model {
	return &Model{c: c, stats: st, keys: KeyMap{
		Scope: key.NewBinding(key.WithKeys("s"), key.WithHelp("s", "rates of all/ns/pod/pair")),
	}}
}

// SetSize implements common.Component.
func (m *Model) SetSize(w, h int) { m.width, m.height = w, h }

// ShortHelp implements common.Component.
func (m *Model) ShortHelp() []key.Binding { return []key.Binding{m.keys.Scope} }

// SetSelected sets the flow whose namespace, pod or pair is charted.
func (m *Model) SetSelected(f *flowv1.Flow) { m.selected = f }

// Scope returns the current scope.
func (m *Model) Scope() Scope { return m.scope }

// Update handles the chart's keys and reports whether msg was one.
func (m *Model) Update(msg tea.KeyPressMsg) bool {
	if key.Matches(msg, m.keys.Scope) {
		m.scope = (m.scope + 1) % numScopes
		return true
	}
	return false
}

// series returns the series and label of the current scope.
func (m *Model) series() (*stats.Series, string) {
	f := m.selected
	if f == nil || m.scope == ScopeAll {
		return &m.stats.Overall, "all flows"
	}
	src := stats.EndpointKey(f.GetSource(), f.GetIp().GetSource())
	dst := stats.EndpointKey(f.GetDestination(), f.GetIp().GetDestination())
	switch m.scope {
	case ScopeNamespace:
		ns := stats.NamespaceOf(f.GetDestination())
		return m.stats.Namespace(ns), "namespace " + ns
	case ScopePod:
		return m.stats.Pod(dst), "pod " + dst
	default:
		return m.stats.Pair(src, dst), src + " → " + dst
	}
}

// Spark renders counts as block characters scaled to peak.
func Spark(counts []uint64, peak uint64) string {
	const levels = " ▁▂▃▄▅▆▇█"
	lv := []rune(levels)
	var b strings.Builder
	for _, c := range counts {
		i := 0
		if c > 0 && peak > 0 {
			i = 1 + int(c*uint64(len(lv)-2)/peak)
		}
		b.WriteRune(lv[min(i, len(lv)-1)])
	}
	return b.String()
}

// View implements common.Component.
func (m *Model) View() string {
	st := m.c.Styles
	s, label := m.series()
	const labelW = 9 // "denied  " + space
	n := min(stats.Window, max(m.width-labelW-8, 1))
	now := m.stats.Now()
	counts := s.Last(now, n)
	allowed := make([]uint64, n)
	denied := make([]uint64, n)
	var peak uint64
	for i, c := range counts {
		allowed[i], denied[i] = c.Allowed, c.Denied
		peak = max(peak, c.Allowed, c.Denied)
	}
	sum := s.Sum(now)
	lines := []string{
		st.Title.Render("Rates/s") + " " + label,
		fmt.Sprintf("%-8s %s %s", "allowed", st.Allowed.Render(Spark(allowed, peak)), fmtRate(allowed)),
		fmt.Sprintf("%-8s %s %s", "denied", st.Denied.Render(Spark(denied, peak)), fmtRate(denied)),
		st.Dim.Render(fmt.Sprintf("%-8s %-*s", "", n, fmt.Sprintf("-%ds  peak %d/s", n, peak))),
		fmt.Sprintf("last %ds: %d allowed, %d denied", stats.Window, sum.Allowed, sum.Denied),
	}
	if m.stats.WhatIfJudged > 0 {
		lines = append(lines, st.Denied.Render(fmt.Sprintf("whatif: %d of %d flows would change", m.stats.WhatIfChanged, m.stats.WhatIfJudged)))
	}
	return common.Lines(strings.Join(lines, "\n"), m.width, m.height)
}

// fmtRate is the last complete second's count (the newest second may still be filling).
func fmtRate(c []uint64) string {
	if len(c) < 2 {
		return ""
	}
	return fmt.Sprintf("%d", c[len(c)-2])
}
