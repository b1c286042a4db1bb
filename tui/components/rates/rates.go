// Package rates is the allowed/denied chart: flows per second over a time
// range (1 m, 5 m or 1 h, key r; and 24 h, 7 d when a stats.History serves
// them) for a scope (key s) taken from the selected flow: the whole
// cluster, its destination namespace, its destination pod, its
// source→destination pair, or the policy that decided it. History is kept
// by workload, not pod: over 24 h and 7 d the pod and pair scopes are the
// pod's workload and the workload pair. History is read in a command
// (Load), never while drawing: the chart shows the last answer it got.
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
	"github.com/kubectl-netpol/kubectl-netpol/history"
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
	rng           int // index into ranges()
	selected      *flowv1.Flow
	width, height int

	history stats.History
	// loaded holds the history's last answer per scope and long range;
	// loading the requests in flight.
	loaded  map[historyKey]HistoryMsg
	loading map[historyKey]int64
	// now is the clock when no flow has come yet (tests pin it).
	now func() time.Time
}

// historyKey is one scope over one long range.
type historyKey struct{ scope, rng string }

// HistoryMsg is the history's answer for a scope and long range: the
// Points buckets ending with step End (Unix time / the range's step).
type HistoryMsg struct {
	key    historyKey
	End    int64
	Counts []stats.Count
	Err    error
	at     time.Time // when it was asked for
}

// maxLoaded bounds the answers kept (scopes visited).
const maxLoaded = 64

// reload is how old an answer may get before the chart asks again (its
// newest step is still filling).
const reload = time.Minute

// New returns a chart over st.
func New(c *common.Common, st *stats.Stats) *Model {
	m := &Model{c: c, stats: st, now: time.Now, keys: KeyMap{
		Scope: key.NewBinding(key.WithKeys("s"), key.WithHelp("s", "chart cluster/ns/pod/pair/policy")),
		Range: key.NewBinding(key.WithKeys("r")),
	}}
	m.SetHistory(nil)
	return m
}

// SetHistory makes the long ranges (24 h, 7 d) available from h (nil: only
// the live ones).
func (m *Model) SetHistory(h stats.History) {
	m.history, m.loaded, m.loading = h, map[historyKey]HistoryMsg{}, map[historyKey]int64{}
	names := make([]string, 0, len(stats.Ranges)+len(stats.LongRanges))
	for _, r := range m.ranges() {
		names = append(names, r.Name)
	}
	m.keys.Range.SetHelp("r", "chart range "+strings.Join(names, "/"))
	m.rng = min(m.rng, len(names)-1)
}

// SetClock sets the clock used before any flow has come (tests).
func (m *Model) SetClock(now func() time.Time) { m.now = now }

// ranges are the live ranges, then the long ones when a history serves them.
func (m *Model) ranges() []stats.Range {
	rs := append([]stats.Range(nil), stats.Ranges[:]...)
	if m.history != nil {
		rs = append(rs, stats.LongRanges...)
	}
	return rs
}

// long reports whether the current range comes from the history.
func (m *Model) long() bool { return m.rng >= len(stats.Ranges) }

// SetSize implements common.Component.
func (m *Model) SetSize(w, h int) { m.width, m.height = w, h }

// ShortHelp implements common.Component.
func (m *Model) ShortHelp() []key.Binding { return []key.Binding{m.keys.Scope, m.keys.Range} }

// SetSelected sets the flow whose namespace, pod, pair or policy is charted.
func (m *Model) SetSelected(f *flowv1.Flow) { m.selected = f }

// Scope returns the current scope.
func (m *Model) Scope() Scope { return m.scope }

// Range returns the current range.
func (m *Model) Range() stats.Range { return m.ranges()[m.rng] }

// Update handles the chart's keys and reports whether msg was one (a long
// range then wants Load).
func (m *Model) Update(msg tea.KeyPressMsg) bool {
	switch {
	case key.Matches(msg, m.keys.Scope):
		m.scope = (m.scope + 1) % numScopes
	case key.Matches(msg, m.keys.Range):
		m.rng = (m.rng + 1) % len(m.ranges())
	default:
		return false
	}
	return true
}

// end is the newest time the chart shows: the newest flow's, or the clock
// before any flow came.
func (m *Model) end() time.Time {
	if m.stats.Now() > 0 {
		return m.stats.NowTime()
	}
	return m.now()
}

// Load returns the command that reads the history for the current scope
// and long range when the chart has no answer for its newest step yet (nil:
// nothing to read). The root calls it after keys and new flows.
func (m *Model) Load() tea.Cmd {
	if !m.long() || m.history == nil {
		return nil
	}
	r, sc := m.Range(), m.histScope()
	end := m.end()
	step := end.Unix() / int64(r.Step/time.Second)
	k := historyKey{sc.Name, r.Name}
	now := m.now()
	if got, ok := m.loaded[k]; ok && got.End >= step && now.Sub(got.at) < reload {
		return nil
	}
	if _, ok := m.loading[k]; ok {
		return nil
	}
	m.loading[k] = step
	h := m.history
	return func() tea.Msg {
		counts, err := h.Buckets(sc, r, end)
		return HistoryMsg{key: k, End: step, Counts: counts, Err: err, at: now}
	}
}

// SetHistoryResult keeps an answer Load's command brought.
func (m *Model) SetHistoryResult(msg HistoryMsg) {
	delete(m.loading, msg.key)
	if len(m.loaded) >= maxLoaded {
		clear(m.loaded)
	}
	if old, ok := m.loaded[msg.key]; !ok || old.End <= msg.End {
		m.loaded[msg.key] = msg
	}
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

// histScope is the current scope as the history can count it: by
// workload where the live chart counts a pod.
func (m *Model) histScope() stats.Scope {
	f := m.selected
	if f == nil || m.scope == ScopeAll {
		return stats.Scope{Name: "cluster"}
	}
	src := history.EndName(f.GetSource(), f.GetIp().GetSource())
	dst := history.EndName(f.GetDestination(), f.GetIp().GetDestination())
	endsOf := func(f *flowv1.Flow) (string, string) {
		return history.EndName(f.GetSource(), f.GetIp().GetSource()), history.EndName(f.GetDestination(), f.GetIp().GetDestination())
	}
	switch m.scope {
	case ScopeNamespace:
		ns := stats.NamespaceOf(f.GetDestination())
		return stats.Scope{Name: "namespace " + ns, Match: func(f *flowv1.Flow) bool {
			return stats.NamespaceOf(f.GetSource()) == ns || stats.NamespaceOf(f.GetDestination()) == ns
		}}
	case ScopePod:
		return stats.Scope{Name: "workload " + dst, Match: func(f *flowv1.Flow) bool {
			s, d := endsOf(f)
			return s == dst || d == dst
		}}
	case ScopePolicy:
		refs := stats.Deciders(f)
		if len(refs) == 0 {
			return stats.Scope{Name: "policy (none decided this flow)", Match: func(*flowv1.Flow) bool { return false }}
		}
		k := stats.PolicyKey(refs[0])
		return stats.Scope{Name: "policy " + k, Match: func(f *flowv1.Flow) bool {
			for _, r := range stats.Deciders(f) {
				if stats.PolicyKey(r) == k {
					return true
				}
			}
			return false
		}}
	}
	return stats.Scope{Name: "workloads " + src + " → " + dst, Match: func(f *flowv1.Flow) bool {
		s, d := endsOf(f)
		return s == src && d == dst
	}}
}

// Legend names the marks: allowed is a line, denied dots.
const Legend = "── allowed  •• denied"

// View implements common.Component.
func (m *Model) View() string {
	if m.width <= 0 || m.height <= 0 {
		return ""
	}
	st := m.c.Styles
	r := m.Range()
	var buckets []stats.Count
	var label, note string
	if m.long() {
		sc := m.histScope()
		label = sc.Name
		got, ok := m.loaded[historyKey{sc.Name, r.Name}]
		switch {
		case !ok:
			note = "reading the agents' history…"
		case got.Err != nil:
			note = "history: " + got.Err.Error()
		default:
			buckets = got.Counts
		}
		if buckets == nil {
			buckets = make([]stats.Count, stats.Points)
		}
	} else {
		var s *stats.Series
		s, label = m.series()
		buckets = s.Buckets(m.rng, m.stats.Now())
	}
	from := " · last " + r.Name + " (r) · "
	if m.long() {
		from = " · last " + r.Name + " from history (r) · "
	}
	unit, per := rateUnit(r)
	if note != "" {
		// Before the legend: a narrow pane cuts the title's end.
		from += note + " · "
	}
	title := st.Title.Render("Flows/"+unit) + " " + label + st.Dim.Render(from) +
		st.Allowed.Render("──") + " allowed " + st.Denied.Render("••") + " denied"
	if m.stats.WhatIfJudged > 0 {
		title += st.Denied.Render(fmt.Sprintf(" · whatif: %d of %d flows would change", m.stats.WhatIfChanged, m.stats.WhatIfJudged))
	}
	step := r.Step.Seconds() / per
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
	yFmt := valueFormatter(peak, unit)
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

// rateUnit is the unit a range's rates read best in: per second live, per
// minute over a day, per hour over a week (a quiet pair's 7-day rate in
// flows per second would be all zeros).
func rateUnit(r stats.Range) (unit string, seconds float64) {
	switch {
	case r.Span() > 24*time.Hour:
		return "h", 3600
	case r.Span() > time.Hour:
		return "min", 60
	}
	return "s", 1
}

// valueFormatter labels the value axis in flows per unit, with a decimal
// when the peak is small enough for the steps to need one.
func valueFormatter(peak float64, unit string) func(float64) string {
	return func(v float64) string {
		switch {
		case peak >= 10000:
			return fmt.Sprintf("%.0fk/%s", v/1000, unit)
		case peak >= 10:
			return fmt.Sprintf("%.0f/%s", v, unit)
		}
		return fmt.Sprintf("%.1f/%s", v, unit)
	}
}

// ticks picks a tick count that lands on round times (every quarter of
// 1 m or 1 h, every minute of 5 m), fewer when the plot is narrow.
func ticks(r stats.Range, plotW int) int {
	n := 5
	switch r.Span() {
	case 5 * time.Minute:
		n = 6
	case 7 * 24 * time.Hour:
		n = 8 // a tick a day
	}
	if plotW < 40 {
		n = 3
	}
	return n
}

// agoLabel labels a time-axis tick v seconds before the newest step, in
// the range's unit (seconds, minutes, hours, days).
func agoLabel(v float64, span time.Duration) string {
	if math.Abs(v) < 0.5 {
		return "now"
	}
	unit, sec := "m", 60.0
	switch {
	case span <= time.Minute:
		return fmt.Sprintf("%.0fs", v)
	case span > 7*24*time.Hour-time.Second:
		unit, sec = "d", 86400
	case span > time.Hour:
		unit, sec = "h", 3600
	}
	n := v / sec
	if n == math.Trunc(n) {
		return fmt.Sprintf("%.0f%s", n, unit)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f%s", n, unit), ".0"+unit)
}
