package conformance

import (
	"fmt"
	"strings"
)

// Cell is one ordered pair of a TruthTable: a connection from From to To.
type Cell struct{ From, To PodRef }

// Loopback reports whether the cell is a pod connecting to itself.
func (c Cell) Loopback() bool { return c.From == c.To }

// TruthTable says, for every ordered pair of pods, whether a connection is
// allowed. Rows are sources, columns destinations, as upstream prints it.
// Cells never set are unknown ("?").
type TruthTable struct {
	Pods   []PodRef
	values map[Cell]bool
}

// NewTruthTable returns a table over pods with every cell set to allowed.
func NewTruthTable(pods []PodRef, allowed bool) *TruthTable {
	tt := EmptyTruthTable(pods)
	for _, from := range pods {
		for _, to := range pods {
			tt.values[Cell{from, to}] = allowed
		}
	}
	return tt
}

// EmptyTruthTable returns a table over pods with every cell unknown, for
// recording observations.
func EmptyTruthTable(pods []PodRef) *TruthTable {
	return &TruthTable{Pods: pods, values: make(map[Cell]bool, len(pods)*len(pods))}
}

// Get returns the value of from→to and whether it is set.
func (tt *TruthTable) Get(from, to PodRef) (allowed, ok bool) {
	allowed, ok = tt.values[Cell{from, to}]
	return allowed, ok
}

// Set sets from→to. Pods outside the table are a programming error in a case
// definition and panic, as upstream fails the test.
func (tt *TruthTable) Set(from, to PodRef, allowed bool) {
	tt.mustHave(from)
	tt.mustHave(to)
	tt.values[Cell{from, to}] = allowed
}

func (tt *TruthTable) mustHave(p PodRef) {
	for _, q := range tt.Pods {
		if q == p {
			return
		}
	}
	panic(fmt.Sprintf("conformance: pod %s is not in the truth table %v", p, tt.Pods))
}

// Peer selects pods of a TruthTable: an empty Namespace or Pod matches any.
type Peer struct{ Namespace, Pod string }

// Matches reports whether p selects ref.
func (p Peer) Matches(ref PodRef) bool {
	return (p.Namespace == "" || p.Namespace == ref.Namespace()) && (p.Pod == "" || p.Pod == ref.Name())
}

// ExpectPeer sets every cell whose source matches from and destination matches to.
func (tt *TruthTable) ExpectPeer(from, to Peer, allowed bool) {
	for _, f := range tt.Pods {
		for _, t := range tt.Pods {
			if from.Matches(f) && to.Matches(t) {
				tt.values[Cell{f, t}] = allowed
			}
		}
	}
}

// ExpectAllIngress sets every connection into pod.
func (tt *TruthTable) ExpectAllIngress(pod PodRef, allowed bool) {
	tt.mustHave(pod)
	tt.ExpectPeer(Peer{}, Peer{Namespace: pod.Namespace(), Pod: pod.Name()}, allowed)
}

// ExpectAllEgress sets every connection out of pod.
func (tt *TruthTable) ExpectAllEgress(pod PodRef, allowed bool) {
	tt.mustHave(pod)
	tt.ExpectPeer(Peer{Namespace: pod.Namespace(), Pod: pod.Name()}, Peer{}, allowed)
}

// Mismatches lists, row by row, the cells where observed differs from tt or
// is unknown. Loopback cells are skipped, as upstream skips them.
func (tt *TruthTable) Mismatches(observed *TruthTable) []Cell {
	var out []Cell
	for _, from := range tt.Pods {
		for _, to := range tt.Pods {
			c := Cell{from, to}
			if c.Loopback() {
				continue
			}
			want, _ := tt.values[c]
			got, ok := observed.values[c]
			if !ok || got != want {
				out = append(out, c)
			}
		}
	}
	return out
}

// String renders the table as upstream prints it: rows are sources, columns
// destinations, "." allowed, "X" denied, "?" unknown.
func (tt *TruthTable) String() string {
	return tt.grid(func(c Cell) string {
		v, ok := tt.values[c]
		switch {
		case !ok:
			return "?"
		case v:
			return "."
		default:
			return "X"
		}
	})
}

// Diff returns "" when observed agrees with tt on every non-loopback cell;
// otherwise the expected and observed grids and a comparison grid where "X"
// marks a wrong cell and "-" an ignored loopback cell.
func (tt *TruthTable) Diff(observed *TruthTable) string {
	wrong := tt.Mismatches(observed)
	if len(wrong) == 0 {
		return ""
	}
	bad := make(map[Cell]bool, len(wrong))
	for _, c := range wrong {
		bad[c] = true
	}
	comparison := tt.grid(func(c Cell) string {
		switch {
		case c.Loopback():
			return "-"
		case bad[c]:
			return "X"
		default:
			return "."
		}
	})
	return fmt.Sprintf("%d wrong cells\nexpected:\n%sobserved:\n%scomparison (X = wrong, - = loopback, ignored):\n%s",
		len(wrong), tt, observed, comparison)
}

func (tt *TruthTable) grid(mark func(Cell) string) string {
	width := 1
	for _, p := range tt.Pods {
		width = max(width, len(p))
	}
	var b strings.Builder
	row := func(first string, cell func(to PodRef) string) {
		line := fmt.Sprintf("%-*s", width, first)
		for _, to := range tt.Pods {
			line += fmt.Sprintf(" %-*s", width, cell(to))
		}
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	row("-", func(to PodRef) string { return string(to) })
	for _, from := range tt.Pods {
		row(string(from), func(to PodRef) string { return mark(Cell{from, to}) })
	}
	return b.String()
}
