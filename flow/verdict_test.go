package flow

import (
	"testing"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// TestEnforced: an AUDIT flow's packets followed the opposite of what the
// audited policies would decide; other verdicts are what they say.
func TestEnforced(t *testing.T) {
	for _, tc := range []struct {
		f    *flowv1.Flow
		want flowv1.Verdict
	}{
		{&flowv1.Flow{Verdict: flowv1.Verdict_VERDICT_ALLOWED}, flowv1.Verdict_VERDICT_ALLOWED},
		{&flowv1.Flow{Verdict: flowv1.Verdict_VERDICT_DENIED}, flowv1.Verdict_VERDICT_DENIED},
		{&flowv1.Flow{Verdict: flowv1.Verdict_VERDICT_AUDIT, Audit: &flowv1.Audit{WouldBe: flowv1.Verdict_VERDICT_DENIED}}, flowv1.Verdict_VERDICT_ALLOWED},
		{&flowv1.Flow{Verdict: flowv1.Verdict_VERDICT_AUDIT, Audit: &flowv1.Audit{WouldBe: flowv1.Verdict_VERDICT_ALLOWED}}, flowv1.Verdict_VERDICT_DENIED},
	} {
		if got := Enforced(tc.f); got != tc.want || Dropped(tc.f) != (tc.want == flowv1.Verdict_VERDICT_DENIED) {
			t.Errorf("Enforced(%v) = %v, want %v", tc.f, got, tc.want)
		}
	}
}
