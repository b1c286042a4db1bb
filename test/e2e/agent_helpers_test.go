//go:build e2e

package e2e

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/connectivity"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/internal/agentclient"
	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

// installMu: parallel tests install the same agent one after the other (two
// installs at once would both create the namespace and the RBAC objects).
var installMu sync.Mutex

// runBesideConformance marks a test that can run while the upstream
// conformance cases run (TestConformanceOnCluster, ~5 min, mostly waiting
// on denied connections' timeouts): it works in namespaces of its own, on
// the default agent (installed by installAgent, never reinstalled with other
// flags, restarted or removed), and asserts nothing about traffic or objects
// outside them. Go runs parallel tests after every other test of the
// package; these take turns among themselves (besideConformance), so at
// most two tests run at once, and the conformance cases overlap the rest
// instead of adding to them. hack/e2e.sh sets -parallel above the number of
// such tests, so the conformance test never waits for a slot.
func runBesideConformance(t *testing.T) {
	t.Parallel()
	besideConformance <- struct{}{}
	t.Cleanup(func() { <-besideConformance })
}

var besideConformance = make(chan struct{}, 1)

// installAgent runs `kubectl netpol install --image $NETPOL_AGENT_IMAGE` and
// waits for the agent on every node. Install is idempotent, so every test
// that needs enforcement calls it; the agent stays for the next test.
func installAgent(t *testing.T, c *framework.Cluster) {
	t.Helper()
	installMu.Lock()
	defer installMu.Unlock()
	out, err := netpol(t, c, "", "install", "--image", framework.AgentImage(t), "--timeout", "3m")
	if err != nil {
		t.Fatalf("kubectl netpol install: %v\n%s", err, out)
	}
}

// observe asks every agent for the flows req selects (not following) and
// returns them.
func observe(t *testing.T, c *framework.Cluster, req *flowv1.ObserveRequest) []*flowv1.Flow {
	t.Helper()
	var flows []*flowv1.Flow
	eachAgent(t, c, func(ctx context.Context, a agentclient.Agent, client flowv1.ObserverClient) {
		s, err := client.Observe(ctx, req)
		if err != nil {
			t.Fatalf("Observe on %s: %v", a, err)
		}
		for {
			f, err := s.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("Observe on %s: %v", a, err)
			}
			flows = append(flows, f)
		}
	})
	return flows
}

// eachAgent calls fn with a client of every ready agent, in turn.
func eachAgent(t *testing.T, c *framework.Cluster, fn func(context.Context, agentclient.Agent, flowv1.ObserverClient)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ready, err := readyAgents(ctx, c)
	if err != nil {
		t.Fatalf("finding the agents: %v", err)
	}
	for _, a := range ready {
		conn, err := agentConns.get(ctx, c, a)
		if err != nil {
			t.Fatalf("dialling agent %s: %v", a, err)
		}
		fn(ctx, a, flowv1.NewObserverClient(conn))
	}
}

// readyAgents lists the agent pods that are ready and not being deleted,
// and closes the kept connections to any other.
func readyAgents(ctx context.Context, c *framework.Cluster) ([]agentclient.Agent, error) {
	agents, err := agentclient.Discover(ctx, c.Client, install.DefaultNamespace)
	if err != nil {
		return nil, err
	}
	var ready []agentclient.Agent
	for _, a := range agents {
		if a.Ready && !a.Deleting {
			ready = append(ready, a)
		}
	}
	agentConns.forget(ready)
	return ready, nil
}

// agentConns keeps one gRPC connection per agent pod for the whole run:
// dialling goes through pods/portforward, ~1 s per agent here, and tests
// that poll the agents (waitFlow, the conformance cases' drop attributions)
// spent most of their time dialling. A connection whose pod is gone (its
// port-forward ended, or the pod is no longer a ready agent) is closed and
// dialled again.
var agentConns = &connPool{byPod: map[string]*agentclient.Conn{}}

type connPool struct {
	mu    sync.Mutex
	byPod map[string]*agentclient.Conn
}

func (p *connPool) get(ctx context.Context, c *framework.Cluster, a agentclient.Agent) (*agentclient.Conn, error) {
	key := a.Namespace + "/" + a.Name
	p.mu.Lock()
	defer p.mu.Unlock()
	if conn, ok := p.byPod[key]; ok {
		select {
		case <-conn.Done():
		default:
			// An agent container that restarted in its pod leaves gRPC in
			// its reconnect backoff: dial afresh rather than wait it out.
			if st := conn.GetState(); st != connectivity.TransientFailure && st != connectivity.Shutdown {
				return conn, nil
			}
		}
		conn.Close()
		delete(p.byPod, key)
	}
	conn, err := agentclient.Dial(ctx, c.Config, a)
	if err != nil {
		return nil, err
	}
	p.byPod[key] = conn
	return conn, nil
}

// drop closes the connection to a's pod, if any: the next get dials again.
func (p *connPool) drop(a agentclient.Agent) {
	key := a.Namespace + "/" + a.Name
	p.mu.Lock()
	defer p.mu.Unlock()
	if conn, ok := p.byPod[key]; ok {
		conn.Close()
		delete(p.byPod, key)
	}
}

// forget closes the connections to pods that are not among ready.
func (p *connPool) forget(ready []agentclient.Agent) {
	keep := map[string]bool{}
	for _, a := range ready {
		keep[a.Namespace+"/"+a.Name] = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for key, conn := range p.byPod {
		if !keep[key] {
			conn.Close()
			delete(p.byPod, key)
		}
	}
}

// waitFlow polls the agents until a flow matching filter shows up.
func waitFlow(t *testing.T, c *framework.Cluster, what string, filter *flowv1.FlowFilter) *flowv1.Flow {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		fs := observe(t, c, &flowv1.ObserveRequest{Allowlist: []*flowv1.FlowFilter{filter}})
		if len(fs) > 0 {
			return fs[len(fs)-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no flow for %s in the agents' history", what)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// describeFlow is one line for failure messages.
func describeFlow(f *flowv1.Flow) string {
	return flow.CompactLine(f, time.UTC) + "  " + flow.PolicySummary(f)
}
