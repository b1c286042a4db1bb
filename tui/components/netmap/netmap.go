// Package netmap is the TUI's map view: workloads grouped by namespace
// (a tree on the left) and the neighbourhood of the focused one (on the
// right): every edge into and out of it, labelled with its verdict in words
// and its rate, so it reads without colour. The selected edge's newest flow
// is what the detail pane explains.
//
// A map of 100+ workloads stays readable because only the focus's
// neighbourhood is drawn and namespaces are collapsed (all but the focus's
// once there are more than fit); a collapsed namespace can itself be the
// focus, and then its edges are the namespace-level ones.
package netmap

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/internal/flowmap"
	"github.com/kubectl-netpol/kubectl-netpol/tui/common"
	"github.com/kubectl-netpol/kubectl-netpol/tui/stats"
)

// KeyMap is the view's bindings.
type KeyMap struct{ Left, Right, Enter, Follow, Collapse key.Binding }

// treeRow is a namespace (workload "") or a workload of the tree.
type treeRow struct{ ns, workload string }

// Model is the map view.
type Model struct {
	c        *common.Common
	keys     KeyMap
	stats    *stats.Stats
	graph    *flowmap.Graph
	builtAt  int64
	focus    string // a workload, or "ns:NAME" for a namespace
	expanded map[string]bool
	tree     []treeRow
	edges    []*flowmap.Edge
	inCount  int // edges[:inCount] come in, the rest go out
	treeList common.List
	edgeList common.List
	onTree   bool // the tree has the keys (else the edges)
	// pinned is the selected edge's flow as first shown: the detail pane
	// explains it until another edge is selected, not every newer flow.
	pinnedKey [2]string
	pinned    *flowv1.Flow
	width     int
	height    int
}

// New returns a map view over st.
func New(c *common.Common, st *stats.Stats) *Model {
	return &Model{c: c, stats: st, builtAt: -1, expanded: map[string]bool{},
		treeList: common.NewList(), edgeList: common.NewList(),
		keys: KeyMap{
			Left:     key.NewBinding(key.WithKeys("left"), key.WithHelp("←", "map: namespaces")),
			Right:    key.NewBinding(key.WithKeys("right"), key.WithHelp("→", "map: edges")),
			Enter:    key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "focus/expand, or an edge's flows")),
			Follow:   key.NewBinding(key.WithKeys("f"), key.WithHelp("f", "focus the edge's other end")),
			Collapse: key.NewBinding(key.WithKeys("c"), key.WithHelp("c", "collapse/expand namespaces")),
		}}
}

// SetSize implements common.Component.
func (m *Model) SetSize(w, h int) {
	m.width, m.height = w, h
	m.treeList.SetHeight(h - 2)
	m.edgeList.SetHeight(h - 3)
}

// ShortHelp implements common.Component.
func (m *Model) ShortHelp() []key.Binding {
	return []key.Binding{m.keys.Left, m.keys.Right, m.keys.Enter, m.keys.Follow, m.keys.Collapse}
}

// Focus is the focused workload ("ns:NAME" for a namespace).
func (m *Model) Focus() string { m.refresh(); return m.focus }

// SetFocus focuses a workload (or "ns:NAME").
func (m *Model) SetFocus(w string) {
	m.focus = w
	m.builtAt = -1
	m.edgeList.Cursor = 0
}

// Edges is the focus's neighbourhood: edges in, then edges out.
func (m *Model) Edges() []*flowmap.Edge { m.refresh(); return m.edges }

// SelectedEdge is the edge under the cursor (nil: none).
func (m *Model) SelectedEdge() *flowmap.Edge {
	m.refresh()
	if c := m.edgeList.Cursor; c >= 0 && c < len(m.edges) {
		return m.edges[c]
	}
	return nil
}

// SelectedFlow is the flow the detail pane explains: the selected edge's
// newest flow when it was selected.
func (m *Model) SelectedFlow() *flowv1.Flow {
	e := m.SelectedEdge()
	if e == nil {
		return nil
	}
	if k := [2]string{e.From, e.To}; k != m.pinnedKey || m.pinned == nil {
		m.pinnedKey, m.pinned = k, e.Last
	}
	return m.pinned
}

func nsFocus(ns string) string { return "ns:" + ns }

// refresh rebuilds the graph from the counters when a new second arrived
// (at most once a second at any flow rate).
func (m *Model) refresh() {
	now := m.stats.Now()
	if now == m.builtAt {
		return
	}
	m.builtAt = now
	m.graph = m.stats.Map()
	g := m.graph
	if m.focus == "" {
		m.focus = g.Busiest()
	}
	view := g
	focus := m.focus
	if ns, ok := strings.CutPrefix(m.focus, "ns:"); ok {
		view, focus = g.Collapse(), ns
	}
	in, out := view.Neighbours(focus)
	m.edges = append(append(m.edges[:0], in...), out...)
	m.inCount = len(in)
	m.edgeList.SetLen(len(m.edges))

	m.tree = m.tree[:0]
	focusNS := g.Namespace(m.focus)
	many := g.Len() > m.treeList.Height()
	for _, ns := range g.Namespaces() {
		m.tree = append(m.tree, treeRow{ns: ns})
		open, set := m.expanded[ns]
		if !set {
			open = !many || ns == focusNS
		}
		if open {
			for _, w := range g.Workloads(ns) {
				m.tree = append(m.tree, treeRow{ns: ns, workload: w})
			}
		}
	}
	m.treeList.SetLen(len(m.tree))
}

func (m *Model) isOpen(ns string) bool {
	for i, r := range m.tree {
		if r.ns == ns && r.workload == "" {
			return i+1 < len(m.tree) && m.tree[i+1].ns == ns && m.tree[i+1].workload != ""
		}
	}
	return false
}

// treeWidth is the namespace tree's column.
func (m *Model) treeWidth() int { return min(max(m.width/4, 18), 34) }

// Update handles the view's keys and mouse; it reports whether msg was one
// and returns a common.DrillMsg command on Enter on an edge.
func (m *Model) Update(msg tea.Msg) (bool, tea.Cmd) {
	m.refresh()
	switch msg := msg.(type) {
	case tea.KeyPressMsg:
		switch {
		case key.Matches(msg, m.keys.Left):
			m.onTree = true
			return true, nil
		case key.Matches(msg, m.keys.Right):
			m.onTree = false
			return true, nil
		case key.Matches(msg, m.keys.Collapse):
			open := !m.isOpen(m.graph.Namespaces()[0])
			for _, ns := range m.graph.Namespaces() {
				m.expanded[ns] = open
			}
			m.builtAt = -1
			return true, nil
		case key.Matches(msg, m.keys.Follow):
			if e := m.SelectedEdge(); e != nil {
				other := e.From // an edge in: its source
				if m.edgeList.Cursor >= m.inCount {
					other = e.To
				}
				if strings.HasPrefix(m.focus, "ns:") {
					other = nsFocus(other)
				}
				m.SetFocus(other)
			}
			return true, nil
		case key.Matches(msg, m.keys.Enter):
			if m.onTree {
				m.enterTree()
				return true, nil
			}
			if e := m.SelectedEdge(); e != nil {
				filter := common.WorkloadPairFilter(e.From, e.To)
				if strings.HasPrefix(m.focus, "ns:") {
					filter = "from-ns=" + e.From + " to-ns=" + e.To
				}
				return true, func() tea.Msg { return common.DrillMsg{Filter: filter} }
			}
			return true, nil
		}
		if m.onTree {
			return m.treeList.Update(msg, 2), nil
		}
		return m.edgeList.Update(msg, 3), nil
	case tea.MouseClickMsg:
		if msg.X < m.treeWidth() {
			m.onTree = true
			if m.treeList.Update(msg, 2) {
				m.enterTree()
				return true, nil
			}
			return false, nil
		}
		m.onTree = false
		return m.edgeList.Update(msg, 3), nil
	case tea.MouseWheelMsg:
		if msg.X < m.treeWidth() {
			return m.treeList.Update(msg, 2), nil
		}
		return m.edgeList.Update(msg, 3), nil
	}
	return false, nil
}

// enterTree focuses the workload under the tree's cursor, or opens/closes
// its namespace (and focuses the namespace as a whole when closing it).
func (m *Model) enterTree() {
	c := m.treeList.Cursor
	if c < 0 || c >= len(m.tree) {
		return
	}
	r := m.tree[c]
	if r.workload != "" {
		m.SetFocus(r.workload)
		return
	}
	open := m.isOpen(r.ns)
	m.expanded[r.ns] = !open
	if open {
		m.SetFocus(nsFocus(r.ns))
	}
	m.builtAt = -1
}

// EdgeLabel is an edge's label in the view: verdict in words, the count in
// the last minute and its rate, e.g. "DENIED 91 (1.5/s)", or "AUDIT 12
// (0.2/s)" when audited policies would decide every connection otherwise
// ("AUDIT 3 · ALLOWED 12 (0.2/s)" some of them).
func EdgeLabel(c flowmap.Count) string {
	part := func(verdict string, n uint64) string {
		r := float64(n) / stats.Window
		if r < 0.1 {
			return fmt.Sprintf("%s %d (<0.1/s)", verdict, n)
		}
		return fmt.Sprintf("%s %d (%.1f/s)", verdict, n, r)
	}
	audit := ""
	switch {
	case c.Audit > 0 && c.Audit == c.Total():
		// Every connection audited: the shaft says what was enforced.
		return part("AUDIT", c.Audit)
	case c.Audit > 0:
		audit = fmt.Sprintf("AUDIT %d · ", c.Audit)
	}
	switch c.Verdict() {
	case "ALLOWED":
		return audit + part("ALLOWED", c.Allowed)
	case "DENIED":
		return audit + part("DENIED", c.Denied)
	}
	return audit + part("DENIED", c.Denied) + " " + part("ALLOWED", c.Allowed)
}

// View implements common.Component.
func (m *Model) View() string {
	m.refresh()
	st := m.c.Styles
	g := m.graph
	focusName := m.focus
	if ns, ok := strings.CutPrefix(m.focus, "ns:"); ok {
		focusName = "namespace " + ns + " (collapsed)"
	}
	title := st.Title.Render("Map") + " " + focusName + st.Dim.Render(fmt.Sprintf(" · %d workloads in %d namespaces, %d edges · last %ds",
		g.Len(), len(g.Namespaces()), g.NumEdges(), stats.Window))
	if g.Len() == 0 {
		return common.Lines(title+"\n"+st.Dim.Render("no flows in the last minute"), m.width, m.height)
	}
	tw := m.treeWidth()
	left := m.treeView(tw)
	right := m.edgesView(m.width - tw - 1)
	var b strings.Builder
	b.WriteString(common.Fit(title, m.width))
	for i := range m.height - 1 {
		b.WriteString("\n" + common.Fit(left[i], tw) + st.Dim.Render("│") + right[i])
	}
	return common.Lines(b.String(), m.width, m.height)
}

// treeView is the namespace tree, m.height-1 lines.
func (m *Model) treeView(w int) []string {
	st := m.c.Styles
	lines := make([]string, m.height-1)
	hdr := "NAMESPACES (←)"
	if m.onTree {
		hdr = "▸ " + hdr
	}
	lines[0] = st.Header.Render(common.Fit(hdr, w))
	for i := 0; i < m.treeList.Height() && m.treeList.Offset+i < len(m.tree) && i+1 < len(lines); i++ {
		idx := m.treeList.Offset + i
		r := m.tree[idx]
		var s string
		if r.workload == "" {
			mark := "▸"
			if m.isOpen(r.ns) {
				mark = "▾"
			}
			s = fmt.Sprintf("%s %s (%d)", mark, r.ns, len(m.graph.Workloads(r.ns)))
			if m.focus == nsFocus(r.ns) {
				s += " ◆"
			}
		} else {
			name := strings.TrimPrefix(r.workload, r.ns+"/")
			s = "  " + name
			if r.workload == m.focus {
				s = "◆ " + name
			}
		}
		s = common.Fit(s, w)
		if idx == m.treeList.Cursor && m.onTree {
			s = st.Selected.Render(s)
		}
		lines[i+1] = s
	}
	return lines
}

// edgesView is the focus's edges, m.height-1 lines of width w.
func (m *Model) edgesView(w int) []string {
	st := m.c.Styles
	lines := make([]string, m.height-1)
	hdr := fmt.Sprintf("EDGES (→): %d in, %d out", m.inCount, len(m.edges)-m.inCount)
	if !m.onTree {
		hdr = "▸ " + hdr
	}
	lines[0] = st.Header.Render(common.Fit(hdr, w))
	if len(lines) > 1 {
		lines[1] = st.Dim.Render(common.Fit("     SOURCE ── VERDICT rate ──▶ DESTINATION", w))
	}
	arrowW := min(max((w-6)/3, 26), 40)
	endW := max((w-arrowW-6)/2, 8)
	for i := 0; i < m.edgeList.Height() && m.edgeList.Offset+i < len(m.edges) && i+2 < len(lines); i++ {
		idx := m.edgeList.Offset + i
		e := m.edges[idx]
		dir := "in "
		if idx >= m.inCount {
			dir = "out"
		}
		label := EdgeLabel(e.Count)
		shaft, style := "─", st.Allowed
		switch {
		case e.Count.Denied > 0:
			shaft, style = "╳", st.Denied // a blocked line reads as blocked without colour
		case e.Count.Audit > 0:
			shaft, style = "┄", st.Audit // audited policies would decide otherwise
		}
		pad := max(arrowW-len([]rune(label))-4, 2)
		arrow := "─" + label + " " + strings.Repeat(shaft, pad) + "▶"
		styled := style.Render(arrow)
		plain := fmt.Sprintf(" %s %s %s %s", dir, common.Fit(e.From, endW), arrow, e.To)
		var s string
		if idx == m.edgeList.Cursor {
			// A mark as well as reverse video: the selection reads in a
			// screen capture and under NO_COLOR alike.
			plain = "›" + plain[1:]
		}
		if idx == m.edgeList.Cursor && !m.onTree {
			s = st.Selected.Render(common.Fit(plain, w))
		} else {
			s = common.Fit(fmt.Sprintf(" %s %s %s %s", dir, common.Fit(e.From, endW), styled, e.To), w)
		}
		lines[i+2] = s
	}
	return lines
}
