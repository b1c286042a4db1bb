// Package statusbar is the bottom line: the source (nodes connected and the
// unreachable ones, or the replayed file), a client/agent version skew
// warning, the nodes whose agent is not (or partially) enforcing because
// the CNI's datapath bypasses it, flows per second, flows held, events lost, and the mode
// (following, scrolling, paused) and display filter. When the line is too
// narrow the node part (with an unreachable node's reason) is cut first.
package statusbar

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"charm.land/bubbles/v2/key"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	"github.com/kubectl-netpol/kubectl-netpol/internal/version"
	"github.com/kubectl-netpol/kubectl-netpol/tui/common"
)

// Model is the status bar.
type Model struct {
	c      *common.Common
	width  int
	source string // e.g. "replay sample.jsonl"
	done   string // why the source ended ("" while running)
	nodes  map[string]flow.NodeState
	// clientVersion is the plugin's version, compared with each agent's.
	clientVersion string
	// Values set by the root each frame.
	Rate, Held, Shown int
	Lost              uint64
	Mode, Filter      string
	// NodeChecksHidden says node health checks are hidden from the table
	// (shown when some are, so a user knows where they went).
	NodeChecksHidden bool
}

// New returns a status bar for a source described by source; agents whose
// version differs from clientVersion ("" to not compare) raise a warning.
func New(c *common.Common, source, clientVersion string) *Model {
	return &Model{c: c, source: source, clientVersion: clientVersion, nodes: map[string]flow.NodeState{}}
}

// SetSize implements common.Component (the bar is one line).
func (m *Model) SetSize(w, _ int) { m.width = w }

// ShortHelp implements common.Component.
func (m *Model) ShortHelp() []key.Binding { return nil }

// UpdateNodes records node stream states. A node that goes down keeps the
// agent version it last reported, so the skew warning does not flicker.
func (m *Model) UpdateNodes(states []flow.NodeState) {
	for _, s := range states {
		if s.Version == "" {
			s.Version = m.nodes[s.Node].Version
		}
		if s.Enforcement == "" {
			old := m.nodes[s.Node]
			s.CNI, s.Enforcement, s.EnforcementDetail = old.CNI, old.Enforcement, old.EnforcementDetail
		}
		m.nodes[s.Node] = s
	}
}

// Skew is the version skew warning: short for the bar, naming the first
// agent version (by node name) that differs from the plugin's, and
// version.Skew's advice (shown on the help screen); "" when none.
func (m *Model) Skew() (short, advice string) {
	if m.clientVersion == "" {
		return "", ""
	}
	names := slices.Sorted(maps.Keys(m.nodes))
	for _, n := range names {
		v := m.nodes[n].Version
		if v == "" {
			continue
		}
		if advice := version.Skew(m.clientVersion, v); advice != "" {
			return fmt.Sprintf("skew: agent %s", v), advice
		}
	}
	return "", ""
}

// Unenforced returns a short warning naming the nodes whose agent says pod
// traffic bypasses it (not, or partially, enforcing); "" when none.
func (m *Model) Unenforced() string {
	var not, partly []string
	for _, n := range slices.Sorted(maps.Keys(m.nodes)) {
		switch m.nodes[n].Enforcement {
		case "not enforcing":
			not = append(not, n)
		case "partially enforcing":
			partly = append(partly, n)
		}
	}
	say := func(state string, nodes []string) string {
		if len(nodes) == 1 {
			return fmt.Sprintf("%s: %s (%s)", state, nodes[0], m.nodes[nodes[0]].CNI)
		}
		return fmt.Sprintf("%s: %d nodes", state, len(nodes))
	}
	var parts []string
	if len(not) > 0 {
		parts = append(parts, say("not enforcing", not))
	}
	if len(partly) > 0 {
		parts = append(parts, say("partially enforcing", partly))
	}
	return strings.Join(parts, ", ")
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

// Notes are the full texts the bar can only abbreviate: the skew advice and
// every unreachable node with its reason, for the help screen.
func (m *Model) Notes() []string {
	var out []string
	if _, advice := m.Skew(); advice != "" {
		out = append(out, "version skew: "+advice)
	}
	_, down := m.Nodes()
	for _, n := range down {
		out = append(out, fmt.Sprintf("node %s unreachable (retrying): %s", n, m.nodes[n].Err))
	}
	for _, n := range slices.Sorted(maps.Keys(m.nodes)) {
		if s := m.nodes[n]; s.Enforcement != "" && s.Enforcement != "enforcing" {
			out = append(out, fmt.Sprintf("node %s %s: %s", n, s.Enforcement, s.EnforcementDetail))
		}
	}
	return out
}

// Down returns why node is unreachable ("" when it is connected or unknown).
func (m *Model) Down(node string) string {
	if s, ok := m.nodes[node]; ok && !s.Connected {
		return s.Err
	}
	return ""
}

// View implements common.Component.
func (m *Model) View() string {
	st := m.c.Styles
	src := m.source
	if len(m.nodes) > 0 {
		n, down := m.Nodes()
		src = n
		switch {
		case len(down) == 1:
			src += " (down: " + down[0] + ": " + m.nodes[down[0]].Err + ")"
		case len(down) > 1:
			src += " (down: " + strings.Join(down, ",") + ")"
		}
	}
	if m.done != "" {
		src += " (" + m.done + ")"
	}
	head := " " + m.Mode + " │ "
	if skew, _ := m.Skew(); skew != "" {
		head += "⚠ " + skew + " │ "
	}
	// Never implied enforcement: a node whose CNI takes pod traffic past
	// the agent says so before anything else.
	if w := m.Unenforced(); w != "" {
		head += "⚠ " + w + " │ "
	}
	tail := ""
	if m.Filter != "" {
		tail = " │ filter: " + m.Filter
	}
	shown := fmt.Sprintf("%d flows", m.Held)
	if m.Shown != m.Held {
		shown = fmt.Sprintf("%d/%d flows", m.Shown, m.Held)
	}
	right := fmt.Sprintf("%d/s │ %s │ lost %d ", m.Rate, shown, m.Lost)
	// The source part (long when a node is down, with the reason) gives way
	// first; if the rest still does not fit, the line is cut at the end.
	if room := m.width - common.Width(head+tail+right) - 1; common.Width(src) > room && room >= 12 {
		src = common.Fit(src, room)
	}
	left := head + src + tail
	gap := m.width - common.Width(left) - common.Width(right)
	// Where node health checks went, when there is room for it.
	if hint := " │ node checks hidden (h)"; m.NodeChecksHidden && m.Shown != m.Held && gap > common.Width(hint) {
		left += hint
		gap -= common.Width(hint)
	}
	if gap < 1 {
		return st.StatusBar.Render(common.Fit(left+" │ "+right, m.width))
	}
	return st.StatusBar.Render(left + strings.Repeat(" ", gap) + right)
}
