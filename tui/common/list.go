package common

import (
	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
)

// ListKeys are the bindings of a scrolling list.
type ListKeys struct{ Up, Down, PageUp, PageDown key.Binding }

// ShortHelp lists the bindings for the help screen.
func (k ListKeys) ShortHelp() []key.Binding { return []key.Binding{k.Up, k.Down, k.PageUp, k.PageDown} }

// DefaultListKeys are the flows table's movement keys, so every list moves alike.
func DefaultListKeys() ListKeys {
	return ListKeys{
		Up:       key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑/k", "up")),
		Down:     key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓/j", "down")),
		PageUp:   key.NewBinding(key.WithKeys("pgup", "ctrl+u"), key.WithHelp("pgup", "page up")),
		PageDown: key.NewBinding(key.WithKeys("pgdown", "ctrl+d"), key.WithHelp("pgdn", "page down")),
	}
}

// List is the cursor and scroll offset of a list of rows drawn top-down:
// keys, the mouse wheel and clicks move it.
type List struct {
	Keys           ListKeys
	Cursor, Offset int
	n, height      int
}

// NewList returns an empty list with the default keys.
func NewList() List { return List{Keys: DefaultListKeys()} }

// SetLen sets the number of rows.
func (l *List) SetLen(n int) { l.n = n; l.Clamp() }

// SetHeight sets how many rows are visible.
func (l *List) SetHeight(h int) { l.height = max(h, 1); l.Clamp() }

// Height is how many rows are visible.
func (l *List) Height() int { return max(l.height, 1) }

// Len is the number of rows.
func (l *List) Len() int { return l.n }

// Move moves the cursor by d rows.
func (l *List) Move(d int) { l.Cursor += d; l.Clamp() }

// Clamp keeps the cursor in range and visible.
func (l *List) Clamp() {
	l.Cursor = min(max(l.Cursor, 0), max(l.n-1, 0))
	h := l.Height()
	if l.Cursor < l.Offset {
		l.Offset = l.Cursor
	}
	if l.Cursor >= l.Offset+h {
		l.Offset = l.Cursor - h + 1
	}
	l.Offset = min(max(l.Offset, 0), max(l.n-h, 0))
}

// Update moves the list for movement keys, the wheel, and a left click on
// a row (top is the screen line of the first visible row, relative to the
// component); it reports whether msg moved it.
func (l *List) Update(msg tea.Msg, top int) bool {
	switch msg := msg.(type) {
	case tea.KeyPressMsg:
		switch {
		case key.Matches(msg, l.Keys.Up):
			l.Move(-1)
		case key.Matches(msg, l.Keys.Down):
			l.Move(1)
		case key.Matches(msg, l.Keys.PageUp):
			l.Move(-l.Height())
		case key.Matches(msg, l.Keys.PageDown):
			l.Move(l.Height())
		default:
			return false
		}
		return true
	case tea.MouseWheelMsg:
		d := WheelDelta(msg)
		l.Move(d)
		return d != 0
	case tea.MouseClickMsg:
		row := msg.Y - top
		if msg.Button != tea.MouseLeft || row < 0 || row >= l.Height() || l.Offset+row >= l.n {
			return false
		}
		l.Cursor = l.Offset + row
		l.Clamp()
		return true
	}
	return false
}

// WheelDelta is the rows a wheel event scrolls: -1 up, 1 down, 0 sideways.
func WheelDelta(msg tea.MouseWheelMsg) int {
	switch msg.Button {
	case tea.MouseWheelUp:
		return -1
	case tea.MouseWheelDown:
		return 1
	}
	return 0
}
