// Package statusbar is the bottom line: the source (nodes connected, or the
// replayed file), flows per second, flows held, events lost, and the mode
// (following, scrolling, paused) and display filter.
package statusbar

import (
	"fmt"
	"slices"
	"strings"

	"charm.land/bubbles/v2/key"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	"github.com/kubectl-netpol/kubectl-netpol/tui/common"
)

// Model is the status bar.
type Model struct {
	c      *common.Common
	width  int
	source string // e.g. "replay sample.jsonl"
	done   string // why the source ended ("" while running)
	nodes  map[string]flow.NodeState
	// Values set by the root each frame.
	Rate, Held, Shown int
	Lost              uint64
	Mode, Filter      string
}

// New returns a status bar for a source described by source.
func New(c *common.Common, source string) *Model {
	return &Model{c: c, source: source, nodes: map[string]flow.NodeState{}}
}

// SetSize implements common.Component (the bar is one line).
func (m *Model) SetSize(w, _ int) { m.width = w }

// ShortHelp implements common.Component.
func (m *Model) ShortHelp() []key.Binding { return nil }

// UpdateNodes records node stream states.
func (m *Model) UpdateNodes(states []flow.NodeState) {
	for _, s := range states {
		m.nodes[s.Node] = s
	}
}

// SetDone records that the source ended, and why.
func (m *Model) SetDone(why string) { m.done = why }

// Nodes returns "connected/total" and the names of unreachable nodes.
func (m *Model) Nodes() (string, []string) {
	up, down := 0, []string{}
	for n, s := range m.nodes {
		if s.Connected {
			up++
		} else {
			down = append(down, n)
		}
	}
	slices.Sort(down)
	return fmt.Sprintf("%d/%d nodes", up, len(m.nodes)), down
}

// View implements common.Component.
func (m *Model) View() string {
	st := m.c.Styles
	src := m.source
	if len(m.nodes) > 0 {
		n, down := m.Nodes()
		src = n
		if len(down) > 0 {
			src += " (down: " + strings.Join(down, ",") + ")"
		}
	}
	if m.done != "" {
		src += " (" + m.done + ")"
	}
	left := " " + m.Mode + " │ " + src
	if m.Filter != "" {
		left += " │ filter: " + m.Filter
	}
	shown := fmt.Sprintf("%d flows", m.Held)
	if m.Shown != m.Held {
		shown = fmt.Sprintf("%d/%d flows", m.Shown, m.Held)
	}
	right := fmt.Sprintf("%d/s │ %s │ lost %d ", m.Rate, shown, m.Lost)
	gap := m.width - common.Width(left) - common.Width(right)
	if gap < 1 {
		return st.StatusBar.Render(common.Fit(left+" │ "+right, m.width))
	}
	return st.StatusBar.Render(left + strings.Repeat(" ", gap) + right)
}
