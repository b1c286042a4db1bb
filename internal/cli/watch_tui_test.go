package cli

import (
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/tui"
	"github.com/kubectl-netpol/kubectl-netpol/tui/components/detail"
)

// driveTUI runs msg through m and, as the program would, the commands it
// returns that yield an explanation (frame ticks are left out).
func driveTUI(t *testing.T, m *tui.Model, msg tea.Msg) {
	t.Helper()
	_, cmd := m.Update(msg)
	var run func(tea.Cmd)
	run = func(cmd tea.Cmd) {
		if cmd == nil {
			return
		}
		done := make(chan tea.Msg, 1)
		go func() { done <- cmd() }()
		select {
		case msg := <-done:
			switch msg := msg.(type) {
			case tea.BatchMsg:
				for _, c := range msg {
					run(c)
				}
			case detail.ExplainedMsg:
				m.Update(msg)
			}
		case <-time.After(5 * time.Second):
			// a frame timer is not needed to drive the model
		}
	}
	run(cmd)
}

// TestGoldenDetailEngine pins the watch TUI's full-screen detail of a
// default-deny drop, explained by the engine explainer against a cluster
// (fake clientset): the isolating policy, its rule and why it did not match,
// the Service. The model is driven directly (teatest's -update flag clashes
// with this package's); the screen is compared without escape sequences.
// Regenerate with: go test ./internal/cli -run TestGoldenDetailEngine -update
func TestGoldenDetailEngine(t *testing.T) {
	client := explainCluster()
	e := newEngineExplainer(func() (kubernetes.Interface, *rest.Config, error) { return client, &rest.Config{}, nil })
	m := tui.New(tui.Config{SourceName: "live", Loc: time.UTC, ClientVersion: "v0.2.0", Explainer: e})
	driveTUI(t, m, tea.WindowSizeMsg{Width: 120, Height: 30})
	driveTUI(t, m, tui.BatchMsg{Flows: []*flowv1.Flow{
		dbFlow("shop", "api", "10.244.0.6", flowv1.Verdict_VERDICT_ALLOWED, flowv1.Reason_REASON_ALLOWED_BY_RULE),
		dbFlow("default", "curl", "10.244.0.5", flowv1.Verdict_VERDICT_DENIED, flowv1.Reason_REASON_NO_RULE_MATCHED),
	}})
	driveTUI(t, m, tea.KeyPressMsg{Code: tea.KeyEnter})
	golden(t, "watch-detail-engine", ansi.Strip(m.Render()))
}
