// Package peers benchmarks the policy engine against np-guard/netpol-analyzer
// on the same in-memory synthetic snapshot (policytest.Synthetic), in the
// same run: load, one query, 10k queries and retained memory; and `check -f`
// end to end, both tools reading the same YAML file and answering the same
// 10k items (BenchmarkCheckFiles, TestCheckFilesAgree). It is a
// separate Go module so the peer never enters the product's go.mod; run it
// with `make bench-peers` (figures: docs/perf.md).
//
// github.com/np-guard/models, a dependency of netpol-analyzer, is not in the
// public checksum database, so `GONOSUMDB=github.com/np-guard/models` is
// needed when resolving modules; bench/peers/go.sum pins its hashes.
package peers
