// Package matrix draws the namespace × namespace table of allowed/denied
// flow counts in the stats window: who talks to whom, and what is refused.
package matrix

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"charm.land/bubbles/v2/key"

	"github.com/kubectl-netpol/kubectl-netpol/tui/common"
	"github.com/kubectl-netpol/kubectl-netpol/tui/stats"
)

// Model is the matrix.
type Model struct {
	c             *common.Common
	stats         *stats.Stats
	width, height int
}

// New returns a matrix over st.
func New(c *common.Common, st *stats.Stats) *Model { return &Model{c: c, stats: st} }

// SetSize implements common.Component.
func (m *Model) SetSize(w, h int) { m.width, m.height = w, h }

// ShortHelp implements common.Component.
func (m *Model) ShortHelp() []key.Binding { return nil }

// Namespaces returns the namespaces to show, busiest first.
func (m *Model) Namespaces() []string {
	now := m.stats.Now()
	nss := m.stats.Namespaces()
	slices.SortFunc(nss, func(a, b string) int {
		ta, tb := m.stats.Namespace(a).Sum(now).Total(), m.stats.Namespace(b).Sum(now).Total()
		if c := cmp.Compare(tb, ta); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	return nss
}

// View implements common.Component.
func (m *Model) View() string {
	st := m.c.Styles
	now := m.stats.Now()
	nss := m.Namespaces()
	const labelW, cellW = 13, 10
	cols := max((m.width-labelW)/(cellW+1), 1)
	rows := max(m.height-2, 1)
	colNS := nss[:min(len(nss), cols)]
	rowNS := nss[:min(len(nss), rows)]
	var b strings.Builder
	b.WriteString(st.Title.Render("From ↓ to →") + st.Dim.Render(fmt.Sprintf("  allowed/denied, last %ds", stats.Window)))
	if len(nss) == 0 {
		b.WriteString("\n" + st.Dim.Render("no flows yet"))
		return common.Lines(b.String(), m.width, m.height)
	}
	b.WriteString("\n" + strings.Repeat(" ", labelW))
	for _, ns := range colNS {
		b.WriteString(" " + st.Header.Render(common.Fit(ns, cellW)))
	}
	for _, src := range rowNS {
		b.WriteString("\n" + common.Fit(src, labelW))
		for _, dst := range colNS {
			c := m.stats.NSPair(src, dst).Sum(now)
			b.WriteByte(' ')
			switch {
			case c.Total() == 0:
				b.WriteString(st.Dim.Render(common.Fit("·", cellW)))
			case c.Denied > 0:
				b.WriteString(common.Fit(fmt.Sprintf("%d/", c.Allowed)+st.Denied.Render(fmt.Sprintf("%d", c.Denied)), cellW))
			default:
				b.WriteString(common.Fit(st.Allowed.Render(fmt.Sprintf("%d", c.Allowed))+"/0", cellW))
			}
		}
	}
	return common.Lines(b.String(), m.width, m.height)
}
