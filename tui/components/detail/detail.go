// Package detail is the pane that explains the selected flow: the verdict in
// plain language, the policy and rule that decided it, the isolating
// policies of a default-deny drop, and the Service when one was involved.
// The explanation comes from an Explainer, asked asynchronously.
package detail

import (
	"context"
	"fmt"
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/tui/common"
)

// ExplainedMsg carries an Explainer's answer for one flow.
type ExplainedMsg struct {
	Flow *flowv1.Flow
	Text string
	Err  error
}

// Model is the detail pane.
type Model struct {
	c             *common.Common
	explainer     Explainer
	flow          *flowv1.Flow
	text          string
	err           error
	width, height int
}

// New returns a pane that asks e for explanations.
func New(c *common.Common, e Explainer) *Model {
	if e == nil {
		e = RecordedExplainer{}
	}
	return &Model{c: c, explainer: e}
}

// SetSize implements common.Component.
func (m *Model) SetSize(w, h int) { m.width, m.height = w, h }

// ShortHelp implements common.Component.
func (m *Model) ShortHelp() []key.Binding { return nil }

// SetFlow selects f and returns the command that explains it (nil when unchanged).
func (m *Model) SetFlow(f *flowv1.Flow) tea.Cmd {
	if f == m.flow {
		return nil
	}
	m.flow, m.text, m.err = f, "", nil
	if f == nil {
		return nil
	}
	e := m.explainer
	if in, ok := e.(Instant); ok && in.Instant() {
		m.text, m.err = e.Explain(context.Background(), f)
		return nil
	}
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		text, err := e.Explain(ctx, f)
		return ExplainedMsg{Flow: f, Text: text, Err: err}
	}
}

// Update takes explanations; one for a flow no longer selected is dropped.
func (m *Model) Update(msg ExplainedMsg) {
	if msg.Flow == m.flow {
		m.text, m.err = msg.Text, msg.Err
	}
}

// Text is the current explanation ("" while pending).
func (m *Model) Text() string { return m.text }

// View implements common.Component: the explanation, wrapped.
func (m *Model) View() string {
	return common.Lines(m.render(false), m.width, m.height)
}

// FullView is the full-screen detail: the explanation and every recorded field.
func (m *Model) FullView() string {
	return common.Lines(m.render(true), m.width, m.height)
}

func (m *Model) render(full bool) string {
	st := m.c.Styles
	f := m.flow
	if f == nil {
		return st.Title.Render("Detail") + "\n" + st.Dim.Render("no flow selected")
	}
	var b strings.Builder
	b.WriteString(st.Title.Render("Why") + " " + st.Dim.Render(f.GetTime().AsTime().In(m.c.Loc).Format("15:04:05.000")+" "+flow.NodesString(f)) + "\n")
	switch {
	case m.err != nil:
		b.WriteString(st.Error.Render("explaining: "+m.err.Error()) + "\n")
	case m.text == "":
		b.WriteString(st.Dim.Render("explaining…") + "\n")
	default:
		text := m.text
		head, rest, _ := strings.Cut(text, ":")
		switch {
		case f.GetVerdict() == flowv1.Verdict_VERDICT_AUDIT:
			head = st.Audit.Render(head)
		case flow.Dropped(f):
			head = st.Denied.Render(head)
		default:
			head = st.Allowed.Render(head)
		}
		b.WriteString(lipgloss.Wrap(head+":"+rest, max(m.width, 10), " "))
	}
	if !full {
		return b.String()
	}
	b.WriteString("\n" + st.Header.Render("Recorded") + "\n")
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%-14s %s\n", k, v)
		}
	}
	kv("event", strings.TrimPrefix(f.GetType().String(), "EVENT_TYPE_"))
	why := flow.ReasonName(f.GetReason())
	if f.GetDirection() != flowv1.TrafficDirection_TRAFFIC_DIRECTION_UNSPECIFIED {
		why += ", " + strings.ToLower(flow.DirectionName(f.GetDirection()))
	}
	kv("verdict", flow.VerdictName(f.GetVerdict())+" ("+why+")")
	if a := f.GetAudit(); a != nil {
		would := "would be " + flow.VerdictName(a.GetWouldBe()) + " (" + flow.ReasonName(a.GetReason()) + ")"
		if a.GetRule() != nil {
			would += " by " + flow.PolicyRefString(a.GetRule())
		}
		kv("audit", would)
		for _, r := range a.GetIsolatedBy() {
			kv("would isolate", flow.PolicyRefString(r))
		}
	}
	for _, o := range f.GetObservations() {
		kv("observed", flow.ObservationString(o))
	}
	kv("source", endpointDetail(f.GetSource(), f.GetIp().GetSource(), f.GetL4().GetSourcePort()))
	kv("destination", endpointDetail(f.GetDestination(), f.GetIp().GetDestination(), f.GetL4().GetDestinationPort()))
	if svc := f.GetService(); svc.GetName() != "" {
		kv("service", fmt.Sprintf("%s/%s %s:%d", svc.GetNamespace(), svc.GetName(), svc.GetIp(), svc.GetPort()))
	}
	kv("protocol", strings.TrimSpace(flow.ProtocolName(f.GetL4().GetProtocol())+" "+flow.TCPFlagsString(f.GetL4().GetTcpFlags())))
	for _, g := range []struct {
		k    string
		refs []*flowv1.PolicyRef
	}{{"allowed by", f.GetAllowedBy()}, {"denied by", f.GetDeniedBy()}, {"isolated by", f.GetIsolatedBy()}} {
		for _, r := range g.refs {
			kv(g.k, flow.PolicyRefString(r))
		}
	}
	if f.GetRuleId() != 0 {
		kv("datapath rule", fmt.Sprintf("%d", f.GetRuleId()))
	}
	if f.GetIsReply() {
		kv("reply", "yes")
	}
	if f.GetType() == flowv1.EventType_EVENT_TYPE_END {
		summary := fmt.Sprintf("%d packets, %d bytes", f.GetPackets(), f.GetBytes())
		if d := f.GetDuration(); d != nil {
			summary += fmt.Sprintf(" over %s", d.AsDuration().Round(time.Millisecond))
		}
		kv("summary", summary)
	}
	return b.String()
}

func endpointDetail(ep *flowv1.Endpoint, ip string, port uint32) string {
	s := flow.EndpointString(ep, ip, port)
	if ep.GetPod() != "" {
		s += "  " + ip
		if w := ep.GetWorkload(); w.GetName() != "" {
			s += "  " + w.GetKind() + "/" + w.GetName()
		}
		if l := labelString(ep.GetLabels()); l != "" {
			s += "  {" + l + "}"
		}
	}
	return s
}
