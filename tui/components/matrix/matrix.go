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

// Axes returns the source namespaces (rows) and destination namespaces
// (columns) with flows in the window, busiest first, and the counts.
func (m *Model) Axes() (rows, cols []string, counts map[stats.Pair]stats.Count) {
	counts = m.stats.NSPairs()
	out, in := map[string]uint64{}, map[string]uint64{}
	for k, c := range counts {
		out[k.Src] += c.Total()
		in[k.Dst] += c.Total()
	}
	return busiest(out), busiest(in), counts
}

func busiest(totals map[string]uint64) []string {
	names := make([]string, 0, len(totals))
	for n := range totals {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		if c := cmp.Compare(totals[b], totals[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	return names
}

// View implements common.Component.
func (m *Model) View() string {
	st := m.c.Styles
	rowsNS, colsNS, counts := m.Axes()
	const labelW, cellW = 13, 10
	cols := max((m.width-labelW)/(cellW+1), 1)
	rows := max(m.height-2, 1)
	colNS := colsNS[:min(len(colsNS), cols)]
	rowNS := rowsNS[:min(len(rowsNS), rows)]
	var b strings.Builder
	b.WriteString(st.Title.Render("From ↓ to →") + st.Dim.Render(fmt.Sprintf("  allowed/denied, last %ds", stats.Window)))
	if len(counts) == 0 {
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
			c := counts[stats.Pair{Src: src, Dst: dst}]
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
