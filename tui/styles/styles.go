// Package styles holds the TUI's lipgloss styles in one place. Meaning never
// rests on colour alone (verdicts are words, the selection is reversed), so
// the screen reads the same under NO_COLOR, where Bubble Tea strips colours.
package styles

import "charm.land/lipgloss/v2"

// Styles is every style the components draw with.
type Styles struct {
	Title, Header, Dim, Selected, Allowed, Denied, Audit, Key, Error, Border, StatusBar, Badge lipgloss.Style
}

// Default returns the styles for a dark or light terminal alike (ANSI 16 colours).
func Default() *Styles {
	return &Styles{
		Title:    lipgloss.NewStyle().Bold(true),
		Header:   lipgloss.NewStyle().Bold(true),
		Dim:      lipgloss.NewStyle().Faint(true),
		Selected: lipgloss.NewStyle().Reverse(true),
		Allowed:  lipgloss.NewStyle().Foreground(lipgloss.Color("2")),
		Denied:   lipgloss.NewStyle().Foreground(lipgloss.Color("1")).Bold(true),
		// AUDIT: audited policies would decide otherwise (the word, and a
		// dotted shaft on the map, say it without colour).
		Audit:     lipgloss.NewStyle().Foreground(lipgloss.Color("5")),
		Key:       lipgloss.NewStyle().Bold(true),
		Error:     lipgloss.NewStyle().Foreground(lipgloss.Color("1")),
		Border:    lipgloss.NewStyle().Border(lipgloss.NormalBorder()).BorderForeground(lipgloss.Color("8")),
		StatusBar: lipgloss.NewStyle().Reverse(true),
		Badge:     lipgloss.NewStyle().Bold(true).Reverse(true),
	}
}
