package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/internal/agentclient"
)

// AgentConn is a gRPC connection to one agent pod (an *agentclient.Conn
// through pods/portforward; tests dial in-process servers).
type AgentConn interface {
	grpc.ClientConnInterface
	io.Closer
}

// AgentDialer connects to one agent pod.
type AgentDialer func(ctx context.Context, a agentclient.Agent) (AgentConn, error)

// noAgentError is ErrNoAgent with what was looked for.
type noAgentError struct{ cause error }

func (e *noAgentError) Error() string {
	return fmt.Sprintf("%v: live flows come from the netpol agent on every node; "+
		"install it with `kubectl netpol install` (or pass --agent-namespace if it is installed elsewhere), "+
		"or look at a saved capture with `kubectl netpol watch --input-file FILE`", e.cause)
}

func (e *noAgentError) Is(target error) bool { return target == ErrNoAgent }
func (e *noAgentError) Unwrap() error        { return e.cause }

// liveSource finds the agent pods and returns the source of every node's
// flows: each node's stream reconnects by itself (finding the node's current
// agent pod again), and a followed watch picks up nodes that join later.
func liveSource(ctx context.Context, client kubernetes.Interface, namespace string, dial AgentDialer, statusEvery time.Duration) (*liveNodes, error) {
	agents, err := agentclient.Discover(ctx, client, namespace)
	if errors.Is(err, agentclient.ErrNotInstalled) {
		return nil, &noAgentError{cause: err}
	}
	if err != nil {
		return nil, err
	}
	if err := canPortForward(ctx, client, agents[0].Namespace); err != nil {
		return nil, err
	}
	nodes := agentclient.Nodes(agents)
	if len(nodes) == 0 {
		return nil, &noAgentError{cause: fmt.Errorf("the %d netpol agent pods in namespace %s are not scheduled on any node yet", len(agents), agents[0].Namespace)}
	}
	l := &liveNodes{client: client, namespace: namespace, dial: dial, statusEvery: statusEvery, DiscoverEvery: 30 * time.Second}
	for node := range nodes {
		l.initial = append(l.initial, node)
	}
	return l, nil
}

// canPortForward asks the API server (SelfSubjectAccessReview) whether the
// user may create pods/portforward in namespace, so that a missing
// permission is one clear error up front rather than every node retrying
// "forbidden" forever. When the review itself fails, dialling will tell.
func canPortForward(ctx context.Context, client kubernetes.Interface, namespace string) error {
	review, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: namespace, Verb: "create", Resource: "pods", Subresource: "portforward",
		}},
	}, metav1.CreateOptions{})
	if err != nil || review.Status.Allowed {
		return nil
	}
	why := ""
	if r := review.Status.Reason; r != "" {
		why = " (" + r + ")"
	}
	return fmt.Errorf("you may not reach the netpol agents: live flows travel through pods/portforward, and RBAC denies you "+
		"verb create on resource pods/portforward in namespace %s%s; ask for a Role granting it (kubectl port-forward needs the same), "+
		"or replay a saved capture with --input-file FILE", namespace, why)
}

// liveNodes is the live flow.Source: a flow.Merge of one agentSource per
// node, and, when following, a discovery every DiscoverEvery that starts a
// merge for nodes seen since (a node added to the cluster, or one whose
// agent pod was not scheduled yet). Batches of all merges reach emit one at
// a time.
type liveNodes struct {
	client      kubernetes.Interface
	namespace   string
	dial        AgentDialer
	statusEvery time.Duration
	initial     []string

	DiscoverEvery          time.Duration
	MinBackoff, MaxBackoff time.Duration // flow.Merge's, 0 for its defaults
}

var _ flow.Source = (*liveNodes)(nil)

func (l *liveNodes) merge(nodes []string) *flow.Merge {
	m := &flow.Merge{Sources: map[string]flow.Source{}, MinBackoff: l.MinBackoff, MaxBackoff: l.MaxBackoff}
	for _, node := range nodes {
		m.Sources[node] = &agentSource{
			node: node,
			find: func(ctx context.Context) (agentclient.Agent, error) {
				pods, err := agentclient.DiscoverOnNode(ctx, l.client, l.namespace, node)
				if err != nil {
					return agentclient.Agent{}, err
				}
				a, ok := agentclient.Pick(pods)
				if !ok {
					return a, fmt.Errorf("no running agent pod on node %s (%s is %s)", node, pods[0], pods[0].State())
				}
				return a, nil
			},
			dial:        l.dial,
			statusEvery: l.statusEvery,
		}
	}
	return m
}

// Observe implements flow.Source.
func (l *liveNodes) Observe(ctx context.Context, req *flowv1.ObserveRequest, emit func(flow.Batch) error) error {
	if !req.GetFollow() {
		return l.oneShot(ctx, req, emit)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var emitErr error
	serialEmit := func(b flow.Batch) error {
		mu.Lock()
		defer mu.Unlock()
		if emitErr == nil {
			if emitErr = emit(b); emitErr != nil {
				cancel()
			}
		}
		return emitErr
	}
	var wg sync.WaitGroup
	known := map[string]bool{}
	start := func(nodes []string) {
		for _, n := range nodes {
			known[n] = true
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = l.merge(nodes).Observe(ctx, req, serialEmit) // a followed merge ends only with ctx
		}()
	}
	start(l.initial)
	every := l.DiscoverEvery
	if every <= 0 {
		every = 30 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-t.C:
			agents, err := agentclient.Discover(ctx, l.client, l.namespace)
			if err != nil {
				continue // the nodes already known report their own trouble
			}
			var added []string
			for node := range agentclient.Nodes(agents) {
				if !known[node] {
					added = append(added, node)
				}
			}
			if len(added) > 0 {
				start(added)
			}
		}
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if emitErr != nil {
		return emitErr
	}
	return ctx.Err()
}

// oneShot answers a query that does not follow: every node's matching
// flows, in time order across nodes, and with --last N the newest N of them
// all (each agent returns its own last N), as hubble observe does.
func (l *liveNodes) oneShot(ctx context.Context, req *flowv1.ObserveRequest, emit func(flow.Batch) error) error {
	var flows []*flowv1.Flow
	err := l.merge(l.initial).Observe(ctx, req, func(b flow.Batch) error {
		flows = append(flows, b.Flows...)
		if len(b.Nodes) > 0 || b.Lost > 0 {
			return emit(flow.Batch{Nodes: b.Nodes, Lost: b.Lost})
		}
		return nil
	})
	slices.SortStableFunc(flows, func(a, b *flowv1.Flow) int {
		return a.GetTime().AsTime().Compare(b.GetTime().AsTime())
	})
	if n := req.GetLast(); n > 0 && uint64(len(flows)) > n {
		flows = flows[uint64(len(flows))-n:]
	}
	for len(flows) > 0 {
		k := min(len(flows), flow.BatchSize)
		if eerr := emit(flow.Batch{Flows: flows[:k]}); eerr != nil {
			return eerr
		}
		flows = flows[k:]
	}
	return err
}

// agentSource streams one node's flows. Each Observe (Merge calls it again
// after a failure, with back-off) finds the node's agent pod anew, dials
// it, reads its Status for the version and the flows it lost, and streams.
// While streaming it polls Status every statusEvery and reports flows lost
// since the previous poll (kernel ring full, rate-limited, or dropped for
// this slow client). emit may be called from two goroutines (the stream and
// the poller), so an agentSource must run under Merge, which serialises it.
type agentSource struct {
	node        string
	find        func(context.Context) (agentclient.Agent, error)
	dial        AgentDialer
	statusEvery time.Duration
}

func lostCount(st *flowv1.StatusResponse) uint64 {
	return st.GetEventsLost() + st.GetEventsRateLimited() + st.GetFlowsDroppedSlowClients()
}

func (s *agentSource) Observe(ctx context.Context, req *flowv1.ObserveRequest, emit func(flow.Batch) error) error {
	a, err := s.find(ctx)
	if err != nil {
		return err
	}
	conn, err := s.dial(ctx, a)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := flowv1.NewObserverClient(conn)
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	st, err := client.Status(sctx, &flowv1.StatusRequest{})
	cancel()
	if err != nil {
		return fmt.Errorf("agent %s on node %s: status: %w", a, s.node, err)
	}
	version := st.GetVersion()
	withVersion := func(b flow.Batch) error {
		for i := range b.Nodes {
			if b.Nodes[i].Connected {
				b.Nodes[i].Version = version
				setEnforcement(&b.Nodes[i], st)
			}
		}
		return emit(b)
	}
	ctx, cancel = context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if req.GetFollow() && s.statusEvery > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.pollLost(ctx, client, st, emit)
		}()
	}
	err = (&flow.ClientSource{Client: client, Node: s.node}).Observe(ctx, req, withVersion)
	cancel()
	wg.Wait()
	return err
}

// setEnforcement copies the agent's CNI and bypass self-check into n.
func setEnforcement(n *flow.NodeState, st *flowv1.StatusResponse) {
	if c := st.GetCni(); c != nil {
		n.CNI = c.GetName()
		if n.CNI == "" {
			n.CNI = "unknown"
		} else if c.GetMode() != "" {
			n.CNI += " (" + c.GetMode() + ")"
		}
	}
	n.Enforcement, n.EnforcementDetail = st.GetEnforcement().GetState(), st.GetEnforcement().GetDetail()
}

// pollLost reports the growth of the agent's lost-flow counters, and a
// change of its enforcement state.
func (s *agentSource) pollLost(ctx context.Context, client flowv1.ObserverClient, first *flowv1.StatusResponse, emit func(flow.Batch) error) {
	last, state := lostCount(first), first.GetEnforcement().GetState()
	t := time.NewTicker(s.statusEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sctx, cancel := context.WithTimeout(ctx, s.statusEvery)
		st, err := client.Status(sctx, &flowv1.StatusRequest{})
		cancel()
		if err != nil {
			continue // the stream notices a dead agent; a slow Status is not fatal
		}
		cur := lostCount(st)
		var b flow.Batch
		if cur > last {
			b.Lost = cur - last
		}
		if e := st.GetEnforcement().GetState(); e != state {
			n := flow.NodeState{Node: s.node, Connected: true, Version: st.GetVersion()}
			setEnforcement(&n, st)
			b.Nodes, state = []flow.NodeState{n}, e
		}
		if (b.Lost > 0 || b.Nodes != nil) && emit(b) != nil {
			return
		}
		last = cur
	}
}
