package conformance_test

import (
	"fmt"

	"github.com/kubectl-netpol/kubectl-netpol/policy/conformance"
)

// A runner builds the cases for its pod addresses, then for every step
// applies the state (or replays Changes on a live cluster), probes every
// (from, to) pair for each Probe, and compares with Probe.Expected.Diff.
func Example() {
	env := conformance.DefaultEnv()
	c, err := conformance.CaseNamed("stacked-policies", env)
	if err != nil {
		panic(err)
	}
	fmt.Println(c.Upstream)
	for i, step := range c.Steps {
		for _, p := range step.Probes {
			fmt.Printf("step %d [%s] probe %s\n", i, step.Description, p)
		}
	}
	fmt.Print(c.Steps[1].Probes[0].Expected)
	fmt.Println(env.PodIPs["x/a"], env.PodIPs["z/a"])
	// Output:
	// NetworkPolicy between server and client should enforce multiple, stacked policies with overlapping podSelectors
	// step 0 [baseline: no policies (upstream waitForHTTPServers)] probe 80/TCP
	// step 0 [baseline: no policies (upstream waitForHTTPServers)] probe 81/TCP
	// step 1 [create policy x/allow-client-a-via-ns-selector] probe 81/TCP
	// step 1 [create policy x/allow-client-a-via-ns-selector] probe 80/TCP
	// step 2 [create policy x/allow-client-a-via-ns-selector-80] probe 80/TCP
	// -   x/a x/b y/a y/b z/a
	// x/a X   .   .   .   .
	// x/b X   .   .   .   .
	// y/a .   .   .   .   .
	// y/b .   .   .   .   .
	// z/a X   .   .   .   .
	// 10.77.1.1 10.77.3.1
}
