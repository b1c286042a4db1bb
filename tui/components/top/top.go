// Package top is the "top" view: the policy rules that decided the most
// flows in the last minute, or the policies, or the workload pairs, as rates,
// sortable by denied, allowed or all flows. Enter on a row asks the root to
// show the flows table filtered on that row (a `/` filter expression, so the
// drill-down is visible and editable).
package top

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/kubectl-netpol/kubectl-netpol/tui/common"
	"github.com/kubectl-netpol/kubectl-netpol/tui/stats"
)

// Kind is what the rows are.
type Kind int

// Kinds, switched by the Kind key.
const (
	Rules Kind = iota
	Policies
	Pairs
	numKinds
)

// Sort is the column rows are ordered by (descending).
type Sort int

// Sorts, cycled by the Sort key.
const (
	ByDenied Sort = iota
	ByAllowed
	ByTotal
	numSorts
)

var sortNames = [numSorts]string{"denied", "allowed", "all"}

// Row is one line: what it counts, the last minute's counts, and the `/`
// filter that shows its flows.
type Row struct {
	Name   string
	Count  stats.Count
	Filter string
}

// KeyMap is the view's bindings.
type KeyMap struct{ Kind, Sort, Drill key.Binding }

// Model is the top view.
type Model struct {
	c             *common.Common
	keys          KeyMap
	stats         *stats.Stats
	kind          Kind
	sort          Sort
	list          common.List
	rows          []Row
	builtAt       int64 // stats.Now() when rows were built (-1: rebuild)
	width, height int
}

// New returns a top view over st.
func New(c *common.Common, st *stats.Stats) *Model {
	return &Model{c: c, stats: st, builtAt: -1, list: common.NewList(), keys: KeyMap{
		Kind:  key.NewBinding(key.WithKeys("t"), key.WithHelp("t", "top rules/policies/pairs")),
		Sort:  key.NewBinding(key.WithKeys("o"), key.WithHelp("o", "sort denied/allowed/all")),
		Drill: key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "show these flows")),
	}}
}

// SetSize implements common.Component.
func (m *Model) SetSize(w, h int) {
	m.width, m.height = w, h
	m.list.SetHeight(h - 2) // title and header
}

// ShortHelp implements common.Component.
func (m *Model) ShortHelp() []key.Binding {
	return append([]key.Binding{m.keys.Kind, m.keys.Sort, m.keys.Drill}, m.list.Keys.ShortHelp()...)
}

// Kind and SortBy report the current choice.
func (m *Model) Kind() Kind   { return m.kind }
func (m *Model) SortBy() Sort { return m.sort }

// Update handles the view's keys and mouse; it reports whether msg was one
// and returns a common.DrillMsg command on Enter.
func (m *Model) Update(msg tea.Msg) (bool, tea.Cmd) {
	m.refresh()
	if k, ok := msg.(tea.KeyPressMsg); ok {
		switch {
		case key.Matches(k, m.keys.Kind):
			m.kind = (m.kind + 1) % numKinds
			m.builtAt = -1
			m.list.Cursor = 0
			return true, nil
		case key.Matches(k, m.keys.Sort):
			m.sort = (m.sort + 1) % numSorts
			m.builtAt = -1
			return true, nil
		case key.Matches(k, m.keys.Drill):
			if r, ok := m.Selected(); ok {
				return true, func() tea.Msg { return common.DrillMsg{Filter: r.Filter} }
			}
			return true, nil
		}
	}
	return m.list.Update(msg, 2), nil // rows start under the title and header
}

// Selected is the row under the cursor.
func (m *Model) Selected() (Row, bool) {
	m.refresh()
	if m.list.Cursor < 0 || m.list.Cursor >= len(m.rows) {
		return Row{}, false
	}
	return m.rows[m.list.Cursor], true
}

// Rows returns the rows in order.
func (m *Model) Rows() []Row { m.refresh(); return m.rows }

// refresh rebuilds the rows when a new second arrived or the choice changed
// (at most once a second at any flow rate).
func (m *Model) refresh() {
	now := m.stats.Now()
	if now == m.builtAt {
		return
	}
	m.builtAt = now
	var sel string
	if m.list.Cursor >= 0 && m.list.Cursor < len(m.rows) {
		sel = m.rows[m.list.Cursor].Name
	}
	m.rows = m.rows[:0]
	switch m.kind {
	case Rules:
		for r, c := range m.stats.Rules() {
			m.rows = append(m.rows, Row{Name: r.Name, Count: c, Filter: "policy=" + r.Policy})
		}
	case Policies:
		for p, c := range m.stats.Policies() {
			m.rows = append(m.rows, Row{Name: p, Count: c, Filter: "policy=" + p})
		}
	case Pairs:
		for p, c := range m.stats.WorkloadPairs() {
			m.rows = append(m.rows, Row{Name: p.Src + " → " + p.Dst, Count: c, Filter: common.WorkloadPairFilter(p.Src, p.Dst)})
		}
	}
	by := func(c stats.Count) uint64 {
		switch m.sort {
		case ByAllowed:
			return c.Allowed
		case ByTotal:
			return c.Total()
		}
		return c.Denied
	}
	slices.SortFunc(m.rows, func(a, b Row) int {
		if c := cmp.Compare(by(b.Count), by(a.Count)); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	m.list.SetLen(len(m.rows))
	if i := slices.IndexFunc(m.rows, func(r Row) bool { return r.Name == sel }); i >= 0 && sel != "" {
		m.list.Cursor = i // the same row stays selected as the order changes
	}
	m.list.Clamp()
}

// View implements common.Component.
func (m *Model) View() string {
	m.refresh()
	st := m.c.Styles
	what := "policy rules"
	first := "POLICY RULE (decided the flows)"
	switch m.kind {
	case Policies:
		what, first = "policies", "POLICY (decided the flows)"
	case Pairs:
		what, first = "workload pairs", "SOURCE → DESTINATION WORKLOAD"
	}
	var b strings.Builder
	b.WriteString(st.Title.Render("Top "+what) + st.Dim.Render(fmt.Sprintf(" · last %ds · sorted by %s/s (o) · t: rules/policies/pairs · enter: flows", stats.Window, sortNames[m.sort])))
	const numW = 10
	nameW := max(m.width-4*(numW+1), 10)
	hdr := []string{common.Fit(first, nameW)}
	for i, h := range []string{"DENIED/s", "ALLOWED/s", "DENIED", "ALLOWED"} {
		if i < 2 && Sort(i) == m.sort {
			h = "▼" + h
		}
		hdr = append(hdr, fmt.Sprintf("%*s", numW, h))
	}
	b.WriteString("\n" + st.Header.Render(common.Fit(strings.Join(hdr, " "), m.width)))
	if len(m.rows) == 0 {
		b.WriteString("\n" + st.Dim.Render("no flows in the last minute"))
		return common.Lines(b.String(), m.width, m.height)
	}
	for i := m.list.Offset; i < min(len(m.rows), m.list.Offset+m.list.Height()); i++ {
		r := m.rows[i]
		den := fmt.Sprintf("%*.1f", numW, float64(r.Count.Denied)/stats.Window)
		alw := fmt.Sprintf("%*.1f", numW, float64(r.Count.Allowed)/stats.Window)
		line := common.Fit(r.Name, nameW) + " " + den + " " + alw + " " + fmt.Sprintf("%*d %*d", numW, r.Count.Denied, numW, r.Count.Allowed)
		b.WriteByte('\n')
		if i == m.list.Cursor {
			b.WriteString(st.Selected.Render(common.Fit(line, m.width)))
			continue
		}
		if r.Count.Denied > 0 {
			line = common.Fit(r.Name, nameW) + " " + st.Denied.Render(den) + " " + alw + " " + fmt.Sprintf("%*d %*d", numW, r.Count.Denied, numW, r.Count.Allowed)
		}
		b.WriteString(common.Fit(line, m.width))
	}
	return common.Lines(b.String(), m.width, m.height)
}
