// Package common is what the root model shares with every component: styles,
// the time zone, and the helpers for fitting text into cells.
package common

import (
	"strings"
	"time"

	"charm.land/bubbles/v2/key"
	"github.com/charmbracelet/x/ansi"

	"github.com/kubectl-netpol/kubectl-netpol/tui/styles"
)

// Common is passed down to components (never a global).
type Common struct {
	Styles *styles.Styles
	Loc    *time.Location
}

// Component is the contract every pane keeps: it is sized by its parent and
// publishes its key bindings, so the help screen is generated from them.
type Component interface {
	SetSize(width, height int)
	View() string
	ShortHelp() []key.Binding
}

// Fit truncates s to width cells (with an ellipsis) and pads it to exactly width.
func Fit(s string, width int) string {
	if width <= 0 {
		return ""
	}
	w := ansi.StringWidth(s)
	if w > width {
		return ansi.Truncate(s, width, "…")
	}
	return s + strings.Repeat(" ", width-w)
}

// Lines makes s exactly height lines of exactly width cells.
func Lines(s string, width, height int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > height {
		lines = lines[:height]
	}
	for i := range lines {
		lines[i] = Fit(lines[i], width)
	}
	for len(lines) < height {
		lines = append(lines, strings.Repeat(" ", max(width, 0)))
	}
	return strings.Join(lines, "\n")
}

// Width is the display width of s in cells.
func Width(s string) int { return ansi.StringWidth(s) }

// DrillMsg asks the root to show the flows table filtered on Filter (a `/`
// expression, so the drill-down is visible and editable).
type DrillMsg struct{ Filter string }

// WorkloadPairFilter is the `/` filter of the flows between two workloads
// as stats.WorkloadKey names them.
func WorkloadPairFilter(src, dst string) string {
	return "from-workload=" + src + " to-workload=" + dst
}
