//go:build linux

package main

import "testing"

func TestHeapLimit(t *testing.T) {
	for _, tc := range []struct {
		container, gomemlimit string
		want                  int64
		set                   bool
	}{
		{"536870912", "", 429496728, true}, // 512Mi: 80 %
		{"536870912", "300MiB", 0, false},  // the user's GOMEMLIMIT wins
		{"", "", 0, false},                 // no limit
		{"0", "", 0, false},
		{"lots", "", 0, false},
	} {
		got, set := heapLimit(tc.container, tc.gomemlimit)
		if got != tc.want || set != tc.set {
			t.Errorf("heapLimit(%q, %q) = %d, %v; want %d, %v", tc.container, tc.gomemlimit, got, set, tc.want, tc.set)
		}
	}
}
