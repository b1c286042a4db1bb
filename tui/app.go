package tui

import (
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/help"
	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/tui/common"
	"github.com/kubectl-netpol/kubectl-netpol/tui/components/detail"
	"github.com/kubectl-netpol/kubectl-netpol/tui/components/flowtable"
	"github.com/kubectl-netpol/kubectl-netpol/tui/components/matrix"
	"github.com/kubectl-netpol/kubectl-netpol/tui/components/netmap"
	"github.com/kubectl-netpol/kubectl-netpol/tui/components/rates"
	"github.com/kubectl-netpol/kubectl-netpol/tui/components/statusbar"
	"github.com/kubectl-netpol/kubectl-netpol/tui/components/top"
	"github.com/kubectl-netpol/kubectl-netpol/tui/stats"
	"github.com/kubectl-netpol/kubectl-netpol/tui/styles"
)

// BatchMsg delivers a batch of flows from the Source.
type BatchMsg flow.Batch

// SourceDoneMsg says the Source ended (Err nil: a replay reached its end).
type SourceDoneMsg struct{ Err error }

// frameMsg paces redraws caused by data to at most FPS a second.
type frameMsg struct{}

// FPS caps redraws caused by incoming flows; keys redraw at once.
const FPS = 30

// state drives View.
type state int

const (
	stateMain   state = iota
	stateFilter       // typing a `/` filter
	stateHelp         // full-screen help
	stateDetail       // full-screen explanation of the selected flow
)

// panel is what the bottom pane shows (when the terminal is narrow, one at a time).
type panel int

const (
	panelDetail panel = iota
	panelRates
	panelMatrix
	numPanels
)

var panelNames = [numPanels]string{"Detail", "Chart", "Matrix"}

// View is what the main area shows (keys 1, 2, 3; v cycles).
type View int

// Views.
const (
	ViewFlows View = iota
	ViewTop
	ViewMap
	numViews
)

// Config configures the root model.
type Config struct {
	// SourceName describes the flows' origin in the status bar, e.g. "replay capture.jsonl".
	SourceName string
	// Capacity is how many flows the table keeps (default flowtable.DefaultCapacity).
	Capacity int
	// Explainer explains the selected flow (default detail.RecordedExplainer).
	Explainer detail.Explainer
	// Loc is the time zone for times (default local).
	Loc *time.Location
	// ShowNodeChecks shows allowed traffic from a node to its own pods
	// (kubelet probes) from the start; by default it is hidden (key h
	// toggles) because policy never restricts it and on a quiet cluster it
	// is most rows. Drops are never hidden.
	ShowNodeChecks bool
	// ClientVersion is the plugin's version: an agent reporting another
	// raises a skew warning in the status bar ("" to not compare).
	ClientVersion string
	// History serves the chart's 24 h and 7 d ranges (the agents' connection
	// history); nil offers the live ranges only.
	History stats.History
}

// Model is the root of the watch TUI.
type Model struct {
	c      *common.Common
	keys   KeyMap
	state  state
	view   View
	panel  panel
	width  int
	height int

	stats  *stats.Stats
	table  *flowtable.Model
	rates  *rates.Model
	matrix *matrix.Model
	top    *top.Model
	netmap *netmap.Model
	detail *detail.Model
	status *statusbar.Model
	help   help.Model
	input  textinput.Model

	filter    string
	filterErr error
	userMatch func(*flowv1.Flow) bool // the `/` filter (nil: all)
	hideNode  bool                    // hide node health checks
	lost      uint64

	// Frame pacing: data marks the frame stale; a frameMsg or a key renders it.
	stale, fresh, tickPending bool
	frame                     string
}

// New returns the root model.
func New(cfg Config) *Model {
	loc := cfg.Loc
	if loc == nil {
		loc = time.Local
	}
	c := &common.Common{Styles: styles.Default(), Loc: loc}
	st := stats.New()
	in := textinput.New()
	in.Prompt = "/"
	in.Placeholder = FilterHelp
	m := &Model{
		c: c, keys: DefaultKeyMap(), stats: st,
		table:    flowtable.New(c, cfg.Capacity),
		rates:    rates.New(c, st),
		matrix:   matrix.New(c, st),
		top:      top.New(c, st),
		netmap:   netmap.New(c, st),
		detail:   detail.New(c, cfg.Explainer),
		status:   statusbar.New(c, cfg.SourceName, cfg.ClientVersion),
		help:     help.New(),
		input:    in,
		fresh:    true,
		hideNode: !cfg.ShowNodeChecks,
	}
	m.rates.SetHistory(cfg.History)
	m.applyFilter()
	return m
}

// Init implements tea.Model.
func (m *Model) Init() tea.Cmd { return nil }

// Update implements tea.Model: the root handles its own messages, then
// delegates to the component that owns the rest, and batches their commands.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	var cmds []tea.Cmd
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		m.layout()
		m.fresh = true
	case BatchMsg:
		m.ingest(flow.Batch(msg))
		cmds = append(cmds, m.selectionChanged(), m.scheduleFrame())
	case SourceDoneMsg:
		why := "done"
		if msg.Err != nil {
			why = "stopped: " + msg.Err.Error()
		}
		m.status.SetDone(why)
		m.fresh = true
	case frameMsg:
		m.tickPending = false
		if m.stale {
			m.stale, m.fresh = false, true
		}
	case detail.ExplainedMsg:
		m.detail.Update(msg)
		m.fresh = true
	case rates.HistoryMsg:
		m.rates.SetHistoryResult(msg)
		m.fresh = true
	case common.DrillMsg:
		m.drill(msg.Filter)
		m.fresh = true
		cmds = append(cmds, m.selectionChanged())
	case tea.MouseMsg:
		if m.handleMouse(msg) {
			m.fresh = true
			cmds = append(cmds, m.selectionChanged())
		}
	case tea.KeyPressMsg:
		m.fresh = true
		if cmd, quit := m.handleKey(msg); quit {
			return m, tea.Quit
		} else if cmd != nil {
			cmds = append(cmds, cmd)
		}
	}
	return m, tea.Batch(cmds...)
}

func (m *Model) ingest(b flow.Batch) {
	for _, f := range b.Flows {
		m.stats.Add(f)
	}
	m.table.Append(b.Flows)
	m.status.UpdateNodes(b.Nodes)
	m.lost += b.Lost
	m.stale = true
}

func (m *Model) scheduleFrame() tea.Cmd {
	if m.tickPending {
		return nil
	}
	m.tickPending = true
	return tea.Tick(time.Second/FPS, func(time.Time) tea.Msg { return frameMsg{} })
}

// selectionChanged points the detail pane and the chart's scope at the
// selected flow: the table's, or in the map the selected edge's newest.
func (m *Model) selectionChanged() tea.Cmd {
	sel := m.selectedFlow()
	m.rates.SetSelected(sel)
	return tea.Batch(m.detail.SetFlow(sel), m.rates.Load())
}

func (m *Model) selectedFlow() *flowv1.Flow {
	switch m.view {
	case ViewMap:
		if f := m.netmap.SelectedFlow(); f != nil {
			return f
		}
	case ViewTop:
		if r, ok := m.top.Selected(); ok && m.top.Kind() == top.Pairs {
			src, dst, _ := strings.Cut(r.Name, " → ")
			if f := m.stats.LastFlow(src, dst); f != nil {
				return f
			}
		}
	}
	return m.table.Selected()
}

// drill shows the flows table filtered on filter (from the top or the map view).
func (m *Model) drill(filter string) {
	match, err := ParseFilter(filter)
	if err != nil {
		m.filterErr = err
		return
	}
	m.filter, m.userMatch, m.filterErr = filter, match, nil
	m.applyFilter()
	m.view = ViewFlows
}

// handleMouse sends clicks and the wheel in the main area to the view
// shown there; it reports whether anything moved.
func (m *Model) handleMouse(msg tea.MouseMsg) bool {
	if m.state != stateMain || msg.Mouse().Y >= m.mainHeight() {
		return false
	}
	switch m.view {
	case ViewTop:
		moved, _ := m.top.Update(msg)
		return moved
	case ViewMap:
		moved, _ := m.netmap.Update(msg)
		return moved
	}
	return m.table.Mouse(msg)
}

func (m *Model) handleKey(msg tea.KeyPressMsg) (tea.Cmd, bool) {
	if msg.String() == "ctrl+c" {
		return nil, true
	}
	switch m.state {
	case stateFilter:
		switch msg.String() {
		case "enter":
			match, err := ParseFilter(m.input.Value())
			if err != nil {
				m.filterErr = err
				return nil, false
			}
			m.filter, m.filterErr = strings.TrimSpace(m.input.Value()), nil
			m.userMatch = match
			m.applyFilter()
			m.input.Blur()
			m.state = stateMain
			return m.selectionChanged(), false
		case "esc":
			m.input.Blur()
			m.filterErr = nil
			m.state = stateMain
			return nil, false
		}
		var cmd tea.Cmd
		m.input, cmd = m.input.Update(msg)
		return cmd, false
	case stateHelp, stateDetail:
		switch {
		case key.Matches(msg, m.keys.Quit):
			return nil, true
		case key.Matches(msg, m.keys.Back), key.Matches(msg, m.keys.Help) && m.state == stateHelp,
			key.Matches(msg, m.keys.Detail) && m.state == stateDetail:
			m.state = stateMain
		}
		return nil, false
	}
	switch {
	case key.Matches(msg, m.keys.Quit):
		return nil, true
	case key.Matches(msg, m.keys.Help):
		m.state = stateHelp
	case key.Matches(msg, m.keys.Filter):
		m.state = stateFilter
		m.input.SetValue(m.filter)
		m.input.CursorEnd()
		return m.input.Focus(), false
	case key.Matches(msg, m.keys.Back):
		if m.filter != "" {
			m.filter, m.userMatch = "", nil
			m.applyFilter()
			return m.selectionChanged(), false
		}
	case key.Matches(msg, m.keys.NodeChecks):
		m.hideNode = !m.hideNode
		m.applyFilter()
		return m.selectionChanged(), false
	case key.Matches(msg, m.keys.Views):
		m.view = (m.view + 1) % numViews
		return m.selectionChanged(), false
	case key.Matches(msg, m.keys.FlowsView), key.Matches(msg, m.keys.TopView), key.Matches(msg, m.keys.MapView):
		m.view = View(strings.Index("123", msg.String()))
		return m.selectionChanged(), false
	case key.Matches(msg, m.keys.Detail) && m.view == ViewFlows:
		if m.table.Selected() != nil {
			m.state = stateDetail
		}
	case key.Matches(msg, m.keys.Panel):
		m.panel = (m.panel + 1) % numPanels
		if m.wide() && m.panel == panelDetail {
			m.panel = panelRates // the detail is always shown beside when wide
		}
		m.layout()
	case m.view == ViewTop:
		if ok, cmd := m.top.Update(msg); ok {
			return tea.Batch(cmd, m.selectionChanged()), false
		}
		if m.rates.Update(msg) {
			return m.rates.Load(), false
		}
	case m.view == ViewMap:
		if ok, cmd := m.netmap.Update(msg); ok {
			return tea.Batch(cmd, m.selectionChanged()), false
		}
		if m.rates.Update(msg) {
			return m.rates.Load(), false
		}
	case m.rates.Update(msg):
		return m.rates.Load(), false
	case m.table.Update(msg):
		return m.selectionChanged(), false
	}
	return nil, false
}

// applyFilter gives the table the `/` filter and, when hidden, the node
// health checks taken out.
func (m *Model) applyFilter() {
	user, hide := m.userMatch, m.hideNode
	switch {
	case !hide:
		m.table.SetFilter(user)
	case user == nil:
		m.table.SetFilter(func(f *flowv1.Flow) bool { return !flow.IsNodeHealthCheck(f) })
	default:
		m.table.SetFilter(func(f *flowv1.Flow) bool { return !flow.IsNodeHealthCheck(f) && user(f) })
	}
}

// NodeChecksHidden reports whether node health checks are hidden.
func (m *Model) NodeChecksHidden() bool { return m.hideNode }

// wide terminals show the detail and a chart side by side.
func (m *Model) wide() bool { return m.width >= 120 }

// mainHeight is the height of the main area (flows, top or map).
func (m *Model) mainHeight() int { return max(m.height-2-m.panelHeight(), 1) }

// panelHeight is the bottom pane's height (0: too short to show it).
func (m *Model) panelHeight() int {
	switch {
	case m.height < 16:
		return 0
	case m.height <= 30:
		return 8
	default:
		return m.height / 3
	}
}

// layout sizes every component for the current terminal.
func (m *Model) layout() {
	w, ph := m.width, m.panelHeight()
	m.table.SetSize(w, m.mainHeight())
	m.top.SetSize(w, m.mainHeight())
	m.netmap.SetSize(w, m.mainHeight())
	inner := max(ph-1, 0) // one line for the pane's tab header
	if m.wide() {
		left := w / 2
		m.detail.SetSize(left-1, inner)
		m.rates.SetSize(w-left-1, inner)
		m.matrix.SetSize(w-left-1, inner)
	} else {
		m.detail.SetSize(w, inner)
		m.rates.SetSize(w, inner)
		m.matrix.SetSize(w, inner)
	}
	m.status.SetSize(w, 1)
	m.help.SetWidth(w)
	m.input.SetWidth(max(w-2, 1))
}

// View implements tea.Model. Frames caused by data are rendered at most FPS
// times a second; between them the previous frame is returned as is.
func (m *Model) View() tea.View {
	if m.fresh || m.frame == "" {
		m.frame = m.render()
		m.fresh = false
	}
	v := tea.NewView(m.frame)
	v.AltScreen = true
	v.MouseMode = tea.MouseModeCellMotion
	v.WindowTitle = "kubectl netpol watch"
	return v
}

func (m *Model) render() string {
	if m.width <= 0 || m.height <= 0 {
		return "starting…"
	}
	st := m.c.Styles
	switch m.state {
	case stateHelp:
		agents := ""
		if notes := m.status.Notes(); len(notes) > 0 {
			agents = st.Title.Render("Agents") + "\n" + lipgloss.Wrap(strings.Join(notes, "\n"), m.width, " ") + "\n\n"
		}
		return common.Lines(st.Title.Render("kubectl netpol watch — keys")+"\n\n"+
			m.fullHelp()+"\n\n"+agents+
			st.Title.Render("Filter (/)")+"\n"+lipgloss.Wrap(FilterHelp, m.width, " ")+"\n\n"+st.Dim.Render("esc or ? to go back"), m.width, m.height)
	case stateDetail:
		m.detail.SetSize(m.width, m.height-1)
		out := m.detail.FullView() + "\n" + st.Dim.Render(common.Fit("esc back · q quit", m.width))
		m.layout() // restore the pane size
		return out
	}
	paused, held := m.table.Paused()
	switch {
	case paused:
		m.status.Mode = fmt.Sprintf("PAUSED +%d", held)
	case m.table.Following():
		m.status.Mode = "FOLLOW"
	default:
		m.status.Mode = "SCROLL"
	}
	m.status.Rate = int(m.stats.Rate())
	m.status.Held, m.status.Shown = m.table.Total(), m.table.Len()
	m.status.Lost = m.lost
	m.status.Filter = m.filter
	m.status.NodeChecksHidden = m.hideNode

	var main string
	switch m.view {
	case ViewTop:
		main = m.top.View()
	case ViewMap:
		main = m.netmap.View()
	default:
		main = m.table.View()
	}
	parts := []string{main}
	if m.panelHeight() > 0 {
		parts = append(parts, m.panelView())
	}
	parts = append(parts, m.status.View())
	if m.state == stateFilter {
		line := m.input.View()
		if m.filterErr != nil {
			line = st.Error.Render("filter: " + m.filterErr.Error())
		}
		parts = append(parts, common.Fit(line, m.width))
	} else {
		parts = append(parts, common.Fit(m.help.ShortHelpView(m.shortHelp()), m.width))
	}
	return strings.Join(parts, "\n")
}

func (m *Model) panelView() string {
	st := m.c.Styles
	tabs := func(active panel, choices ...panel) string {
		var b strings.Builder
		for _, p := range choices {
			name := " " + panelNames[p] + " "
			if p == active {
				b.WriteString(st.Badge.Render(name))
			} else {
				b.WriteString(st.Dim.Render(name))
			}
		}
		return b.String()
	}
	body := func(p panel) string {
		switch p {
		case panelRates:
			return m.rates.View()
		case panelMatrix:
			return m.matrix.View()
		}
		return m.detail.View()
	}
	if !m.wide() {
		return common.Fit("─"+tabs(m.panel, panelDetail, panelRates, panelMatrix)+st.Dim.Render(" tab ─"), m.width) + "\n" + body(m.panel)
	}
	right := m.panel
	if right == panelDetail {
		right = panelRates
	}
	left := m.width / 2
	header := common.Fit("─"+tabs(panelDetail, panelDetail), left) + common.Fit("─"+tabs(right, panelRates, panelMatrix)+st.Dim.Render(" tab ─"), m.width-left)
	l := strings.Split(body(panelDetail), "\n")
	r := strings.Split(body(right), "\n")
	var b strings.Builder
	b.WriteString(header)
	for i := range max(len(l), len(r)) {
		b.WriteByte('\n')
		var ls, rs string
		if i < len(l) {
			ls = l[i]
		}
		if i < len(r) {
			rs = r[i]
		}
		b.WriteString(common.Fit(ls, left-1) + st.Dim.Render("│") + common.Fit(rs, m.width-left))
	}
	return b.String()
}

func (m *Model) shortHelp() []key.Binding {
	k := m.keys
	switch m.view {
	case ViewTop:
		return []key.Binding{k.Help, k.Views, m.top.ShortHelp()[0], m.top.ShortHelp()[1], m.top.ShortHelp()[2], k.Panel, k.Quit}
	case ViewMap:
		return []key.Binding{k.Help, k.Views, m.netmap.ShortHelp()[2], m.netmap.ShortHelp()[3], k.Panel, k.Quit}
	}
	return []key.Binding{k.Help, k.Filter, k.Detail, k.Views, k.Panel, m.rates.ShortHelp()[1], k.Quit}
}

// fullHelp lays the binding groups out in rows of columns that fit the width.
func (m *Model) fullHelp() string {
	groups := m.helpGroups()
	perRow := max(min(m.width/40, len(groups)), 1)
	var rows []string
	for i := 0; i < len(groups); i += perRow {
		rows = append(rows, m.help.FullHelpView(groups[i:min(i+perRow, len(groups))]))
	}
	return strings.Join(rows, "\n\n")
}

// helpGroups is every binding, grouped by component, for the `?` screen.
func (m *Model) helpGroups() [][]key.Binding {
	k := m.keys
	return [][]key.Binding{
		{k.Help, k.Filter, k.Back, k.Detail, k.Panel, k.Views, k.FlowsView, k.TopView, k.MapView, k.NodeChecks, k.Quit},
		append(m.table.ShortHelp(), m.rates.ShortHelp()...),
		m.top.ShortHelp(),
		m.netmap.ShortHelp(),
	}
}

// Table, Rates, Detail, Stats expose the components to tests and the benchmark.
func (m *Model) Table() *flowtable.Model { return m.table }
func (m *Model) Rates() *rates.Model     { return m.rates }
func (m *Model) Top() *top.Model         { return m.top }
func (m *Model) Map() *netmap.Model      { return m.netmap }

// View is the view the main area shows.
func (m *Model) CurrentView() View     { return m.view }
func (m *Model) Detail() *detail.Model { return m.detail }
func (m *Model) Stats() *stats.Stats   { return m.stats }

// Selected is the flow under the cursor.
func (m *Model) Selected() *flowv1.Flow { return m.table.Selected() }

// Render renders a frame now (benchmarks and tests; View paces itself).
func (m *Model) Render() string { return m.render() }
