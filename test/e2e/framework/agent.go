package framework

import (
	"context"
	"fmt"
	"os"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
)

// AgentImage is the agent image imported into the cluster's containerd,
// which `make e2e` (hack/e2e.sh) passes as NETPOL_AGENT_IMAGE.
func AgentImage(t testing.TB) string {
	t.Helper()
	return imageFromEnv(t, "NETPOL_AGENT_IMAGE", "it builds the agent image and imports it into the cluster")
}

// AgentUpgradeImage is the same agent stamped as the next version
// (VERSION-upgrade), imported beside AgentImage by `make e2e`
// (NETPOL_AGENT_UPGRADE_IMAGE): the upgrade tests roll the DaemonSet to it.
func AgentUpgradeImage(t testing.TB) string {
	t.Helper()
	return imageFromEnv(t, "NETPOL_AGENT_UPGRADE_IMAGE", "it builds the agent stamped as the next version")
}

func imageFromEnv(t testing.TB, env, what string) string {
	t.Helper()
	img := os.Getenv(env)
	if img == "" {
		Unavailable(t, "%s is not set: run through `make e2e` (%s)", env, what)
	}
	return img
}

// ExpectAgentsNeverRestarted fails t when an agent container restarted or
// was killed (OOM, crash) since its pod started: a restart mid-benchmark
// makes enforcement look late or absent for seconds.
func (c *Cluster) ExpectAgentsNeverRestarted(t testing.TB) {
	t.Helper()
	pods, err := c.Client.CoreV1().Pods(install.DefaultNamespace).List(context.Background(),
		metav1.ListOptions{LabelSelector: install.AgentSelector})
	if err != nil {
		t.Fatalf("listing the agent pods: %v", err)
	}
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.RestartCount == 0 {
				continue
			}
			why := ""
			if term := cs.LastTerminationState.Terminated; term != nil {
				why = fmt.Sprintf(": last exit %s (code %d)", term.Reason, term.ExitCode)
			}
			t.Errorf("agent %s on node %s restarted %d times%s", p.Name, p.Spec.NodeName, cs.RestartCount, why)
		}
	}
}
