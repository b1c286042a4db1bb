package framework

import (
	"os"
	"testing"
)

// AgentImage is the agent image imported into the cluster's containerd,
// which `make e2e` (hack/e2e.sh) passes as NETPOL_AGENT_IMAGE.
func AgentImage(t testing.TB) string {
	t.Helper()
	img := os.Getenv("NETPOL_AGENT_IMAGE")
	if img == "" {
		Unavailable(t, "NETPOL_AGENT_IMAGE is not set: run through `make e2e` (it builds the agent image and imports it into the cluster)")
	}
	return img
}
