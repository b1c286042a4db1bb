package tui

import "charm.land/bubbles/v2/key"

// KeyMap is the root's bindings; components publish their own.
type KeyMap struct {
	Help, Filter, Back, Detail, Panel, NodeChecks, Quit key.Binding
	Views, FlowsView, TopView, MapView                  key.Binding
}

// DefaultKeyMap follows k9s habits: ? help, / filter, esc back, q quit.
func DefaultKeyMap() KeyMap {
	return KeyMap{
		Help:   key.NewBinding(key.WithKeys("?"), key.WithHelp("?", "help")),
		Filter: key.NewBinding(key.WithKeys("/"), key.WithHelp("/", "filter")),
		Back:   key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back, clear filter")),
		Detail: key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "why")),
		Panel:  key.NewBinding(key.WithKeys("tab"), key.WithHelp("tab", "panels")),
		// Kubelet probes and other node-to-local-pod traffic: hidden by
		// default (see Config.ShowNodeChecks).
		NodeChecks: key.NewBinding(key.WithKeys("h"), key.WithHelp("h", "hide/show node health checks")),
		Views:      key.NewBinding(key.WithKeys("v"), key.WithHelp("v", "views flows/top/map")),
		FlowsView:  key.NewBinding(key.WithKeys("1"), key.WithHelp("1", "flows")),
		TopView:    key.NewBinding(key.WithKeys("2"), key.WithHelp("2", "top")),
		MapView:    key.NewBinding(key.WithKeys("3"), key.WithHelp("3", "map")),
		Quit:       key.NewBinding(key.WithKeys("q", "ctrl+c"), key.WithHelp("q", "quit")),
	}
}
