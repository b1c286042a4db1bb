package policy_test

import (
	"sync"
	"testing"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	"github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

// TestConcurrentUse runs Allowed and Evaluate from several goroutines on a
// fresh Engine (so they race to fill the selector caches) and checks every
// answer against a sequential run on a second Engine. Run with -race.
func TestConcurrentUse(t *testing.T) {
	s := policytest.Synthetic(600, 150, 7)
	ts := traffics(s, 3000)
	ref, err := policy.NewEngine(s)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]bool, len(ts))
	allowed := 0
	for i, tr := range ts {
		want[i] = ref.Evaluate(tr).Allowed
		if want[i] {
			allowed++
		}
	}
	if allowed == 0 || allowed == len(ts) {
		t.Fatalf("degenerate snapshot: %d of %d allowed", allowed, len(ts))
	}
	e, err := policy.NewEngine(s)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for k := range ts {
				i := (k*(g+1) + g) % len(ts)
				var got bool
				if g%2 == 0 {
					got = e.Allowed(ts[i])
				} else {
					got = e.Evaluate(ts[i]).Allowed
				}
				if got != want[i] {
					t.Errorf("goroutine %d traffic %d: %v, sequential engine said %v", g, i, got, want[i])
					return
				}
			}
		})
	}
	wg.Wait()
}
