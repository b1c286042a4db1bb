package flow

import flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"

// EnforcedVerdict is the verdict the packets followed: v itself, or for
// VERDICT_AUDIT the opposite of what enforcing the audited policies would
// decide (audit.would_be).
func EnforcedVerdict(v flowv1.Verdict, audit *flowv1.Audit) flowv1.Verdict {
	if v != flowv1.Verdict_VERDICT_AUDIT {
		return v
	}
	if audit.GetWouldBe() == flowv1.Verdict_VERDICT_ALLOWED {
		return flowv1.Verdict_VERDICT_DENIED
	}
	return flowv1.Verdict_VERDICT_ALLOWED
}

// Enforced is f's EnforcedVerdict.
func Enforced(f *flowv1.Flow) flowv1.Verdict { return EnforcedVerdict(f.GetVerdict(), f.GetAudit()) }

// Dropped reports whether f's packets were dropped (a DENIED flow, or an
// AUDIT one that audited policies would allow).
func Dropped(f *flowv1.Flow) bool { return Enforced(f) == flowv1.Verdict_VERDICT_DENIED }

// Connections is how many connections f stands for: one, or a kernel
// aggregate's count (Flow.connections).
func Connections(f *flowv1.Flow) uint64 { return max(f.GetConnections(), 1) }
