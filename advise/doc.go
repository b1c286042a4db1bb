// Package advise turns recorded connection history (package history) into
// the smallest NetworkPolicies that admit every observed connection of the
// selected workloads and nothing else: one policy per workload and
// direction, selecting on stable labels, each rule a set of peers times a
// set of ports that were all observed together. It also holds the evidence
// behind promoting an audited policy to enforcement (Promotion). Verdicts
// come from package policy only; the proofs (no observed connection denied,
// every rule and peer needed) re-judge the output with package whatif. Pure
// Go: builds on every OS.
package advise
