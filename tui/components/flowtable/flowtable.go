// Package flowtable is the TUI's flows table: a bounded ring of recent flows,
// a display filter, a cursor that follows the tail until the user scrolls,
// pause/resume, and rows coloured by verdict. Only visible rows are rendered,
// so the cost of a frame does not grow with the ring.
package flowtable

import (
	"fmt"
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/tui/common"
)

// DefaultCapacity is how many flows the table keeps.
const DefaultCapacity = 10000

// KeyMap is the table's bindings.
type KeyMap struct {
	Up, Down, PageUp, PageDown, Top, Follow, Pause key.Binding
}

// DefaultKeyMap returns the table's default bindings.
func DefaultKeyMap() KeyMap {
	l := common.DefaultListKeys() // every list moves alike
	return KeyMap{
		Up: l.Up, Down: l.Down, PageUp: l.PageUp, PageDown: l.PageDown,
		Top:    key.NewBinding(key.WithKeys("home", "g"), key.WithHelp("g", "oldest")),
		Follow: key.NewBinding(key.WithKeys("end", "G"), key.WithHelp("G", "follow tail")),
		Pause:  key.NewBinding(key.WithKeys("space", "p"), key.WithHelp("space", "pause/resume")),
	}
}

// Model is the flows table.
type Model struct {
	c      *common.Common
	keys   KeyMap
	all    ring // every flow received, newest last
	view   ring // the flows passing the display filter
	match  func(*flowv1.Flow) bool
	cursor int // index into view
	offset int // first visible row
	follow bool
	paused bool
	// heldBack counts flows received while paused (shown on resume).
	heldBack      int
	width, height int
}

// New returns an empty table keeping capacity flows.
func New(c *common.Common, capacity int) *Model {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	return &Model{c: c, keys: DefaultKeyMap(), all: newRing(capacity), view: newRing(capacity), follow: true}
}

// SetSize implements common.Component.
func (m *Model) SetSize(w, h int) {
	m.width, m.height = w, h
	m.clamp()
}

// ShortHelp implements common.Component.
func (m *Model) ShortHelp() []key.Binding {
	return []key.Binding{m.keys.Up, m.keys.Down, m.keys.PageUp, m.keys.PageDown, m.keys.Top, m.keys.Follow, m.keys.Pause}
}

// Append adds a batch of flows. While paused the display is frozen: flows
// still enter the ring and appear on resume.
func (m *Model) Append(flows []*flowv1.Flow) {
	for _, f := range flows {
		m.all.push(f)
		if m.paused {
			m.heldBack++
			continue
		}
		if m.match == nil || m.match(f) {
			if m.view.push(f) && m.cursor > 0 {
				m.cursor-- // the row under the cursor moved up by one
			}
		}
	}
	if m.follow {
		m.cursor = m.view.len() - 1
	}
	m.clamp()
}

// SetFilter sets the display filter (nil: show all) and rebuilds the view
// from the ring.
func (m *Model) SetFilter(match func(*flowv1.Flow) bool) {
	m.match = match
	m.rebuild()
}

func (m *Model) rebuild() {
	sel := m.Selected()
	m.view.reset()
	newCursor := -1
	for i := range m.all.len() {
		f := m.all.at(i)
		if m.match == nil || m.match(f) {
			m.view.push(f)
			if f == sel {
				newCursor = m.view.len() - 1
			}
		}
	}
	if m.follow || newCursor < 0 {
		m.cursor = m.view.len() - 1
	} else {
		m.cursor = newCursor
	}
	m.clamp()
}

// TogglePause freezes or resumes the display.
func (m *Model) TogglePause() {
	m.paused = !m.paused
	if !m.paused {
		m.heldBack = 0
		m.rebuild()
	}
}

// Paused reports whether the display is frozen, and how many flows arrived since.
func (m *Model) Paused() (bool, int) { return m.paused, m.heldBack }

// Following reports whether the cursor follows the newest flow.
func (m *Model) Following() bool { return m.follow }

// Len is the number of rows shown (after the display filter), and Total the flows held.
func (m *Model) Len() int   { return m.view.len() }
func (m *Model) Total() int { return m.all.len() }

// Selected returns the flow under the cursor, or nil.
func (m *Model) Selected() *flowv1.Flow {
	if m.view.len() == 0 || m.cursor < 0 {
		return nil
	}
	return m.view.at(m.cursor)
}

// Update handles the table's keys and reports whether msg was one.
func (m *Model) Update(msg tea.KeyPressMsg) bool {
	rows := max(m.height-1, 1)
	switch {
	case key.Matches(msg, m.keys.Up):
		m.move(-1)
	case key.Matches(msg, m.keys.Down):
		m.move(1)
	case key.Matches(msg, m.keys.PageUp):
		m.move(-rows)
	case key.Matches(msg, m.keys.PageDown):
		m.move(rows)
	case key.Matches(msg, m.keys.Top):
		m.follow = false
		m.cursor = 0
		m.clamp()
	case key.Matches(msg, m.keys.Follow):
		m.follow = true
		m.cursor = m.view.len() - 1
		m.clamp()
	case key.Matches(msg, m.keys.Pause):
		m.TogglePause()
	default:
		return false
	}
	return true
}

func (m *Model) move(d int) {
	m.cursor += d
	m.follow = m.cursor >= m.view.len()-1
	m.clamp()
}

// clamp keeps the cursor in range and visible.
func (m *Model) clamp() {
	n := m.view.len()
	m.cursor = min(max(m.cursor, 0), max(n-1, 0))
	rows := max(m.height-1, 1)
	if m.cursor < m.offset {
		m.offset = m.cursor
	}
	if m.cursor >= m.offset+rows {
		m.offset = m.cursor - rows + 1
	}
	m.offset = min(max(m.offset, 0), max(n-rows, 0))
}

// column is one table column: a title, a width, and a cell renderer.
type column struct {
	title string
	width int
	cell  func(*flowv1.Flow) string
}

func (m *Model) columns() []column {
	loc := m.c.Loc
	timeCol := column{"TIME", 12, func(f *flowv1.Flow) string { return f.GetTime().AsTime().In(loc).Format("15:04:05.000") }}
	src := column{"SOURCE", 0, func(f *flowv1.Flow) string { return endpoint(f.GetSource(), f.GetIp().GetSource()) }}
	dst := column{"DESTINATION", 0, func(f *flowv1.Flow) string { return endpoint(f.GetDestination(), f.GetIp().GetDestination()) }}
	port := column{"PORT", 14, func(f *flowv1.Flow) string {
		s := fmt.Sprintf("%d/%s", f.GetL4().GetDestinationPort(), flow.ProtocolName(f.GetL4().GetProtocol()))
		if n := f.GetConnections(); n > 1 {
			s += fmt.Sprintf(" x%d", n) // a kernel aggregate of repeats
		}
		return s
	}}
	verdict := column{"VERDICT", 7, nil} // styled separately
	node := column{"NODE", 8, func(f *flowv1.Flow) string { return flow.NodesString(f) }}
	svc := column{"SERVICE", 0, func(f *flowv1.Flow) string { return flow.ServiceString(f.GetService()) }}
	reason := column{"REASON", 15, func(f *flowv1.Flow) string { return flow.ReasonName(f.GetReason()) }}
	policy := column{"POLICY", 0, func(f *flowv1.Flow) string { return policyCell(f) }}
	var cols []column
	var flex []int
	switch {
	case m.width >= 160:
		cols = []column{timeCol, node, src, dst, svc, port, verdict, reason, policy}
		flex = []int{2, 3, 4, 8}
	case m.width >= 110:
		cols = []column{timeCol, node, src, dst, svc, port, verdict, reason}
		flex = []int{2, 3, 4}
	default:
		cols = []column{timeCol, src, dst, port, verdict}
		flex = []int{1, 2}
	}
	fixed := len(cols) - 1 // one space between columns
	for _, c := range cols {
		fixed += c.width
	}
	free := max(m.width-fixed, len(flex)*4)
	for i, idx := range flex {
		w := free / len(flex)
		if i < free%len(flex) {
			w++
		}
		cols[idx].width = w
	}
	return cols
}

func endpoint(ep *flowv1.Endpoint, ip string) string { return flow.EndpointName(ep, ip) }

func policyCell(f *flowv1.Flow) string {
	for _, refs := range [][]*flowv1.PolicyRef{f.GetAllowedBy(), f.GetDeniedBy(), f.GetIsolatedBy()} {
		if len(refs) > 0 {
			s := refs[0].GetNamespace() + "/" + refs[0].GetName()
			if len(refs) > 1 {
				s += fmt.Sprintf(" +%d", len(refs)-1)
			}
			return s
		}
	}
	return ""
}

// View implements common.Component.
func (m *Model) View() string {
	if m.width <= 0 || m.height <= 0 {
		return ""
	}
	st := m.c.Styles
	cols := m.columns()
	var b strings.Builder
	hdr := make([]string, len(cols))
	for i, c := range cols {
		hdr[i] = common.Fit(c.title, c.width)
	}
	b.WriteString(st.Header.Render(common.Fit(strings.Join(hdr, " "), m.width)))
	rows := m.height - 1
	if m.view.len() == 0 {
		b.WriteString("\n")
		msg := "waiting for flows…"
		if m.match != nil && m.all.len() > 0 {
			msg = fmt.Sprintf("no flow matches the filter (%d held)", m.all.len())
		}
		return common.Lines(b.String()+st.Dim.Render(msg), m.width, m.height)
	}
	cells := make([]string, len(cols))
	for r := 0; r < rows; r++ {
		i := m.offset + r
		b.WriteByte('\n')
		if i >= m.view.len() {
			b.WriteString(strings.Repeat(" ", m.width))
			continue
		}
		f := m.view.at(i)
		denied := flow.Dropped(f)
		audited := f.GetVerdict() == flowv1.Verdict_VERDICT_AUDIT
		verdictIdx := -1
		for j, c := range cols {
			if c.cell == nil {
				verdictIdx = j
				v := flow.VerdictName(f.GetVerdict())
				if w := f.GetWhatif(); w.GetChanged() {
					// watch --whatif: the verdict the proposal would give.
					v += ">" + flow.VerdictName(w.GetVerdict())
					denied, audited = w.GetVerdict() == flowv1.Verdict_VERDICT_DENIED, false
				}
				cells[j] = common.Fit(v, c.width)
				continue
			}
			cells[j] = common.Fit(c.cell(f), c.width)
		}
		if i == m.cursor {
			b.WriteString(st.Selected.Render(common.Fit(strings.Join(cells, " "), m.width)))
			continue
		}
		if verdictIdx >= 0 {
			if f.GetWhatif().GetChanged() {
				cells[verdictIdx] = st.Selected.Render(cells[verdictIdx])
			} else if audited {
				cells[verdictIdx] = st.Audit.Render(cells[verdictIdx])
			} else if denied {
				cells[verdictIdx] = st.Denied.Render(cells[verdictIdx])
			} else {
				cells[verdictIdx] = st.Allowed.Render(cells[verdictIdx])
			}
		}
		b.WriteString(common.Fit(strings.Join(cells, " "), m.width))
	}
	return b.String()
}

// Mouse selects the clicked row (below the header) and scrolls with the
// wheel; it reports whether the cursor moved.
func (m *Model) Mouse(msg tea.MouseMsg) bool {
	switch msg := msg.(type) {
	case tea.MouseWheelMsg:
		d := common.WheelDelta(msg)
		if d != 0 {
			m.move(d)
		}
		return d != 0
	case tea.MouseClickMsg:
		i := m.offset + msg.Y - 1
		if msg.Button != tea.MouseLeft || msg.Y < 1 || i >= m.view.len() {
			return false
		}
		m.cursor = i
		m.follow = m.cursor >= m.view.len()-1
		m.clamp()
		return true
	}
	return false
}
