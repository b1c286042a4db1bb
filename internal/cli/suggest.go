package cli

import (
	"fmt"
	"sort"
	"strings"
)

// nearMisses returns up to keep candidates closest to s by edit distance,
// keeping only those a typo could explain (distance at most a third of the
// longer word, at least 2) or that contain s as a prefix.
func nearMisses(s string, candidates []string, keep int) []string {
	type scored struct {
		name string
		d    int
	}
	var hits []scored
	for _, c := range candidates {
		d := editDistance(s, c)
		limit := max(2, max(len(s), len(c))/3)
		if d <= limit || (len(s) >= 2 && strings.HasPrefix(c, s)) {
			hits = append(hits, scored{c, d})
		}
	}
	sort.SliceStable(hits, func(i, j int) bool {
		if hits[i].d != hits[j].d {
			return hits[i].d < hits[j].d
		}
		return hits[i].name < hits[j].name
	})
	var out []string
	for i := 0; i < len(hits) && i < keep; i++ {
		out = append(out, hits[i].name)
	}
	return out
}

// suggestion renders near misses as "; did you mean "a" or "b"?", or, when
// nothing is close, lists what exists so the user can pick.
func suggestion(s string, candidates []string, what string) string {
	if m := nearMisses(s, candidates, 3); len(m) > 0 {
		q := make([]string, len(m))
		for i, x := range m {
			q[i] = fmt.Sprintf("%q", x)
		}
		return "; did you mean " + strings.Join(q, " or ") + "?"
	}
	switch n := len(candidates); {
	case n == 0:
		return fmt.Sprintf("; there are no %s", what)
	case n <= 8:
		return fmt.Sprintf("; %s: %s", what, strings.Join(candidates, ", "))
	default:
		return fmt.Sprintf("; %s include %s (and %d more)", what, strings.Join(candidates[:8], ", "), n-8)
	}
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
