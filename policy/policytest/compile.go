package policytest

import (
	"testing"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// Compile builds s through c (nil: a fresh Engine, NewEngine) and compiles
// it for node, failing t on an error.
func Compile(t testing.TB, c *policy.Cache, s *policy.Snapshot, node string) *policy.Datapath {
	t.Helper()
	e, err := policy.NewEngineCached(s, c)
	if err != nil {
		t.Fatal(err)
	}
	dp, err := e.Compile(node)
	if err != nil {
		t.Fatal(err)
	}
	return dp
}
