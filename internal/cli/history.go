package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
	"github.com/kubectl-netpol/kubectl-netpol/internal/agentclient"
	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
)

// agentAccess is how the history verbs reach the agents: the same
// discovery and pods/portforward dialling as watch.
type agentAccess struct {
	// AgentNamespace is where the agent is installed.
	AgentNamespace string
	AgentPort      int
	// KubeClient returns a clientset and its REST config.
	KubeClient func() (kubernetes.Interface, *rest.Config, error)
	// DialAgent connects to an agent pod (default: pods/portforward).
	DialAgent AgentDialer
}

// newAgentAccess reaches the agents with the kubeconfig flags through
// pods/portforward (the agent namespace is set by each verb's flag).
func newAgentAccess(f *Factory) agentAccess {
	return agentAccess{AgentPort: install.AgentGRPCPort, KubeClient: kubeClientFor(f.ConfigFlags)}
}

// eachAgent runs fn once per node with a client of that node's agent, in
// parallel; a node whose agent cannot be reached is returned in
// unreachable with the reason, not as an error (the caller says so).
func (a *agentAccess) eachAgent(ctx context.Context, fn func(ctx context.Context, node string, c flowv1.ObserverClient) error) (unreachable map[string]string, err error) {
	client, cfg, err := a.KubeClient()
	if err != nil {
		return nil, err
	}
	dial := a.DialAgent
	if dial == nil {
		dial = func(ctx context.Context, ag agentclient.Agent) (AgentConn, error) {
			return agentclient.DialPort(ctx, cfg, ag, a.AgentPort)
		}
	}
	agents, err := reachableAgents(ctx, client, a.AgentNamespace)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	unreachable = map[string]string{}
	var wg sync.WaitGroup
	for node, pods := range agentclient.Nodes(agents) {
		wg.Go(func() {
			fail := func(err error) {
				mu.Lock()
				unreachable[node] = err.Error()
				mu.Unlock()
			}
			ag, ok := agentclient.Pick(pods)
			if !ok {
				fail(fmt.Errorf("no running agent pod (%s is %s)", pods[0], pods[0].State()))
				return
			}
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			conn, err := dial(dctx, ag)
			cancel()
			if err != nil {
				fail(err)
				return
			}
			defer conn.Close()
			if err := fn(ctx, node, flowv1.NewObserverClient(conn)); err != nil {
				fail(err)
			}
		})
	}
	wg.Wait()
	return unreachable, nil
}

// collectHistory reads every node's history.
func (a *agentAccess) collectHistory(ctx context.Context, req *flowv1.HistoryRequest) (*history.Set, error) {
	var mu sync.Mutex
	all := &history.Set{}
	unreachable, err := a.eachAgent(ctx, func(ctx context.Context, node string, c flowv1.ObserverClient) error {
		var s history.Set
		if err := s.Collect(ctx, c, req); err != nil {
			return fmt.Errorf("reading its history: %w", err)
		}
		mu.Lock()
		all.Records = append(all.Records, s.Records...)
		all.Coverage = append(all.Coverage, s.Coverage...)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	all.Unreachable = unreachable
	return all, nil
}

// historyFromFile aggregates a `watch -o json` capture into history records.
func historyFromFile(path string) (*history.Set, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening the flows: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, fmt.Errorf("--flows %s is a directory: pass a JSON-lines file written by `kubectl netpol watch -o json`", path)
	}
	r := flow.NewReader(f, path)
	set, err := history.FromFlows(func() (*flowv1.Flow, error) {
		fl, err := r.Next()
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return splitObservations(fl), err
	}, time.Hour)
	if err != nil {
		return nil, err
	}
	return set, nil
}

// splitObservations returns a paired flow (watch's default output) as the
// record of its first observation point: history counts each connection
// once per judging node, and a pair is one connection.
func splitObservations(f *flowv1.Flow) *flowv1.Flow {
	if f == nil || len(f.GetObservations()) == 0 {
		return f
	}
	o := f.GetObservations()[0]
	c := &flowv1.Flow{Time: f.GetTime(), Node: o.GetNode(), Type: f.GetType(), Verdict: f.GetVerdict(), Reason: f.GetReason(),
		Direction: f.GetDirection(), Ip: f.GetIp(), L4: f.GetL4(), Source: f.GetSource(), Destination: f.GetDestination(),
		Service: f.GetService(), AllowedBy: f.GetAllowedBy(), DeniedBy: f.GetDeniedBy(), IsolatedBy: f.GetIsolatedBy(),
		Audit: f.GetAudit(), Packets: f.GetPackets(), Bytes: f.GetBytes()}
	return c
}
