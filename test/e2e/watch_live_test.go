//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/internal/cli"
	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

// lockedBuffer is written by the command and read by the test meanwhile.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWatchLiveThroughPortForward runs `kubectl netpol watch -o json
// --follow` in-process against the real cluster: it discovers the agent pod
// (a hostNetwork pod labelled as the agent, in a test namespace given with
// --agent-namespace), reaches the flow.v1.Observer on the node's loopback
// through pods/portforward, streams its flows, warns of version skew, and
// when the agent pod is replaced by one with a new name (and the process
// behind it restarts) reports the node down, finds the new pod and resumes.
// Only the agent binary is stood in for (flow.Hub, the agent's own server,
// in this process); with the real agent, drop --agent-port.
func TestWatchLiveThroughPortForward(t *testing.T) {
	c := framework.Connect(t)
	ns := c.NewNamespace(t, "watchlive")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	hub, srv, port := serveHub(t, "127.0.0.1:0", "v9.9.9-e2e")
	c.StartPod(t, framework.AgentStandInPod(ns, "agent-1", "v9.9.9-e2e"))

	out, errOut := &lockedBuffer{}, &lockedBuffer{}
	cmd := cli.NewCmdNetpol(genericiooptions.IOStreams{In: strings.NewReader(""), Out: out, ErrOut: errOut})
	cmd.SetArgs([]string{"--kubeconfig", c.Kubeconfig, "watch", "-o", "json", "--follow",
		"--agent-namespace", ns, "--agent-port", fmt.Sprint(port), "--to-port", "9001"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()

	// publishUntil publishes a flow to port 9001 (and one to 9002, which
	// the filter sent to the agent must keep out) until watch prints one.
	publishUntil := func(hubNow interface{ Publish(*flowv1.Flow) }, src string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(out.String(), `"source":"`+src+`"`) {
			if time.Now().After(deadline) {
				t.Fatalf("no flow from %s printed; stdout:\n%s\nstderr:\n%s", src, out.String(), errOut.String())
			}
			select {
			case err := <-done:
				t.Fatalf("watch ended: %v; stderr:\n%s", err, errOut.String())
			default:
			}
			for _, port := range []uint32{9001, 9002} {
				hubNow.Publish(&flowv1.Flow{Node: framework.NodeName, Verdict: flowv1.Verdict_VERDICT_DENIED,
					Ip: &flowv1.IP{Source: src, Destination: "10.244.0.10"},
					L4: &flowv1.Layer4{Protocol: flowv1.Protocol_PROTOCOL_TCP, SourcePort: 40000, DestinationPort: port}})
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	publishUntil(hub, "10.244.0.11")

	// The agent pod is replaced: the process ends, the new pod has a new name.
	srv.Stop()
	zero := int64(0)
	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, "agent-1", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	c.StartPod(t, framework.AgentStandInPod(ns, "agent-2", "v9.9.9-e2e"))
	hub2, _, _ := serveHub(t, fmt.Sprintf("127.0.0.1:%d", port), "v9.9.9-e2e")
	publishUntil(hub2, "10.244.0.12")

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("watch: %v", err)
	}
	if strings.Contains(out.String(), `"destinationPort":9002`) {
		t.Error("a flow the --to-port filter excludes was printed")
	}
	stderr := errOut.String()
	t.Logf("stderr:\n%s", stderr)
	for _, want := range []string{
		"warning: version skew on node " + framework.NodeName + ": the agent (v9.9.9-e2e)",
		"warning: node " + framework.NodeName + " unreachable (retrying)",
		"node " + framework.NodeName + ": reconnected",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	if n := strings.Count(stderr, "version skew"); n != 1 {
		t.Errorf("%d skew warnings, want 1 (once per agent version)", n)
	}
}
