//go:build linux

package probe

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

func TestDirectionCacheBuildsEachDirectionOnce(t *testing.T) {
	c := newDirectionCache()
	builds := 0
	get := func(entries []policy.Entry, resolved bool) *direction {
		t.Helper()
		d, err := c.get(entries, resolved, func() (*direction, error) {
			builds++
			return buildDirection(entries, resolved)
		})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	a := []policy.Entry{
		{Rule: 7, Identity: 300, Protocol: "TCP", PortMin: 80, PortMax: 80},
		{Rule: 8, CIDR: netip.MustParsePrefix("10.0.0.0/8"), Except: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, Protocol: "UDP", PortMin: 53, PortMax: 53},
	}
	d1 := get(a, false)
	// Another endpoint of the same identity: equal entries, another slice.
	if d2 := get(slices.Clone(a), false); d2 != d1 || builds != 1 {
		t.Fatalf("equal entries: same direction %v, builds %d; want the first, 1", d2 == d1, builds)
	}
	// Any difference is another direction: a rule, an except, resolution.
	b := slices.Clone(a)
	b[1].Except = []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}
	r := []policy.Entry{a[0]} // a resolved direction has no excepts
	if get(b, false) == d1 || get(r, true) == get(r, false) || builds != 4 {
		t.Fatalf("different entries shared a direction (builds %d)", builds)
	}
	// The next Apply reuses what this one built; one that does not ask
	// for it drops it.
	c.done()
	if get(a, false) != d1 || builds != 4 {
		t.Fatalf("the next Apply rebuilt an unchanged direction (builds %d)", builds)
	}
	c.done()
	c.done()
	if get(a, false) == d1 || builds != 5 {
		t.Fatalf("a direction no Apply used was kept (builds %d)", builds)
	}
}
