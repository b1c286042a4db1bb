// Package rates is the allowed/denied chart: flows per second over a time
// range (1 m, 5 m or 1 h, key r) for a scope (key s) taken from the selected
// flow: the whole cluster, its destination namespace, its destination pod,
// its source→destination pair, or the policy that decided it.
//
// The chart is drawn by asciigraph (github.com/guptarohit/asciigraph): it
// returns a plain string (no Bubble Tea model, so it fits Bubble Tea v2 as
// is), with a value axis, a time axis with formatted ticks and per-series
// characters. ntcharts was looked at first: its newest release (v0.4.0)
// builds on Bubble Tea v1 and lipgloss v1, so it would bring a second copy of
// both and its models do not speak v2's messages.
//
// Allowed is drawn as a line and denied as dots, so the two read apart
// without colour (NO_COLOR); the legend shows both marks.
package rates

import (
	"fmt"
	"math"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/guptarohit/asciigraph"

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
	ScopePolicy
	numScopes
)

// KeyMap is the chart's bindings.
type KeyMap struct{ Scope, Range key.Binding }

// Model is the rates chart.
type Model struct {
	c             *common.Common
	keys          KeyMap
	stats         *stats.Stats
	scope         Scope
	rng           int // index into stats.Ranges
	selected      *flowv1.Flow
	width, height int
}

// New returns a chart over st.
func New(c *common.Common, st *stats.Stats) *Model {
	return &Model{c: c, stats: st, keys: KeyMap{
		Scope: key.NewBinding(key.WithKeys("s"), key.WithHelp("s", "chart cluster/ns/pod/pair/policy")),
		Range: key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "chart range 1m/5m/1h")),
	}}
}

// SetSize implements common.Component.
func (m *Model) SetSize(w, h int) { m.width, m.height = w, h }

// ShortHelp implements common.Component.
func (m *Model) ShortHelp() []key.Binding { return []key.Binding{m.keys.Scope, m.keys.Range} }

// SetSelected sets the flow whose namespace, pod, pair or policy is charted.
func (m *Model) SetSelected(f *flowv1.Flow) { m.selected = f }

// Scope returns the current scope.
func (m *Model) Scope() Scope { return m.scope }

// Range returns the current range.
func (m *Model) Range() stats.Range { return stats.Ranges[m.rng] }

// Update handles the chart's keys and reports whether msg was one.
func (m *Model) Update(msg tea.KeyPressMsg) bool {
	switch {
	case key.Matches(msg, m.keys.Scope):
		m.scope = (m.scope + 1) % numScopes
	case key.Matches(msg, m.keys.Range):
		// Ranges past the live ones (24 h, 7 d) join here once a
		// stats.History serves them.
		m.rng = (m.rng + 1) % len(stats.Ranges)
	default:
		return false
	}
	return true
}

// series returns the series and label of the current scope.
func (m *Model) series() (*stats.Series, string) {
	f := m.selected
	if f == nil || m.scope == ScopeAll {
		return &m.stats.Overall, "cluster"
	}
	src := stats.EndpointKey(f.GetSource(), f.GetIp().GetSource())
	dst := stats.EndpointKey(f.GetDestination(), f.GetIp().GetDestination())
	switch m.scope {
	case ScopeNamespace:
		ns := stats.NamespaceOf(f.GetDestination())
		return m.stats.Namespace(ns), "namespace " + ns
	case ScopePod:
		return m.stats.Pod(dst), "pod " + dst
	case ScopePolicy:
		refs := stats.Deciders(f)
		if len(refs) == 0 {
			return nil, "policy (none decided this flow)"
		}
		k := stats.PolicyKey(refs[0])
		return m.stats.Policy(k), "policy " + k
	default:
		return m.stats.Pair(src, dst), "pair " + src + " → " + dst
	}
}

// Legend names the marks: allowed is a line, denied dots.
const Legend = "── allowed  •• denied"

// View implements common.Component.
func (m *Model) View() string {
	if m.width <= 0 || m.height <= 0 {
		return ""
	}
	st := m.c.Styles
	s, label := m.series()
	r := stats.Ranges[m.rng]
	title := st.Title.Render("Flows/s") + " " + label + st.Dim.Render(" · last "+r.Name+" (r) · ") +
		st.Allowed.Render("──") + " allowed " + st.Denied.Render("••") + " denied"
	buckets := s.Buckets(m.rng, m.stats.Now())
	step := r.Step.Seconds()
	allowed, denied := make([]float64, len(buckets)), make([]float64, len(buckets))
	peak := 0.0
	var sum stats.Count
	for i, c := range buckets {
		allowed[i], denied[i] = float64(c.Allowed)/step, float64(c.Denied)/step
		peak = max(peak, allowed[i], denied[i])
		sum.Add(c)
	}
	rows := m.height - 3 // title, time axis, its labels
	if rows < 2 {
		// Too short for a chart: one line of totals.
		return common.Lines(title+"\n"+totals(sum, r), m.width, m.height)
	}
	yFmt := valueFormatter(peak)
	labelW := max(len(yFmt(0)), len(yFmt(max(peak, 1))))
	plotW := max(m.width-labelW-4, 10)
	span := r.Span()
	// Denied first so the allowed line is drawn over it: where both are
	// zero the baseline reads as a line, not a row of dots.
	chart := asciigraph.PlotMany([][]float64{denied, allowed},
		asciigraph.Height(rows-1), asciigraph.Width(plotW),
		asciigraph.LowerBound(0), asciigraph.UpperBound(max(peak, 1)),
		asciigraph.Offset(2),
		asciigraph.SeriesChars(asciigraph.CreateCharSet("•"), asciigraph.DefaultCharSet),
		asciigraph.SeriesColors(asciigraph.Red, asciigraph.Green),
		asciigraph.YAxisValueFormatter(yFmt),
		asciigraph.XAxisRange(-span.Seconds(), 0),
		asciigraph.XAxisTickCount(ticks(r, plotW)),
		asciigraph.XAxisValueFormatter(func(v float64) string { return agoLabel(v, span) }))
	return common.Lines(title+"\n"+chart, m.width, m.height)
}

func totals(sum stats.Count, r stats.Range) string {
	return fmt.Sprintf("last %s: %d allowed, %d denied", r.Name, sum.Allowed, sum.Denied)
}

// valueFormatter labels the value axis in flows per second, with a decimal
// when the peak is small enough for the steps to need one.
func valueFormatter(peak float64) func(float64) string {
	return func(v float64) string {
		switch {
		case peak >= 10000:
			return fmt.Sprintf("%.0fk/s", v/1000)
		case peak >= 10:
			return fmt.Sprintf("%.0f/s", v)
		}
		return fmt.Sprintf("%.1f/s", v)
	}
}

// ticks picks a tick count that lands on round times (every quarter of
// 1 m or 1 h, every minute of 5 m), fewer when the plot is narrow.
func ticks(r stats.Range, plotW int) int {
	n := 5
	if r.Span() == 5*time.Minute {
		n = 6
	}
	if plotW < 40 {
		n = 3
	}
	return n
}

// agoLabel labels a time-axis tick v seconds before the newest step.
func agoLabel(v float64, span time.Duration) string {
	if math.Abs(v) < 0.5 {
		return "now"
	}
	if span <= time.Minute {
		return fmt.Sprintf("%.0fs", v)
	}
	m := v / 60
	if m == math.Trunc(m) {
		return fmt.Sprintf("%.0fm", m)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1fm", m), ".0m")
}
