package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/internal/agentclient"
	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
)

// The live path with every part real except the API server and the
// port-forward: agent pods in a fake clientset, and real gRPC servers
// (flow.Hub, the agent's own Observer) on loopback behind the injected
// dialer. Port-forward itself is tested against the real cluster in
// test/e2e (agentclient_test.go, watch_live_test.go).

// fakeAgent is one agent pod's server.
type fakeAgent struct {
	hub     *flow.Hub
	srv     *grpc.Server
	addr    string
	lost    atomic.Uint64
	version string
	// enforcement is the bypass self-check's state the agent reports ("": none).
	enforcement atomic.Value
}

func startAgent(t *testing.T, version string) *fakeAgent {
	t.Helper()
	a := &fakeAgent{version: version}
	a.hub = flow.NewHub(1024, func(context.Context) (*flowv1.StatusResponse, error) {
		st := &flowv1.StatusResponse{Version: a.version, EventsLost: a.lost.Load()}
		if e, _ := a.enforcement.Load().(string); e != "" {
			st.Cni = &flowv1.CNI{Name: "Cilium", Mode: "vxlan tunnel", Coverage: "none"}
			st.Enforcement = &flowv1.Enforcement{State: e, Detail: "Cilium (vxlan tunnel) bypasses netfilter"}
		}
		return st, nil
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.addr = lis.Addr().String()
	a.srv = grpc.NewServer()
	flowv1.RegisterObserverServer(a.srv, a.hub)
	go func() { _ = a.srv.Serve(lis) }()
	t.Cleanup(a.srv.Stop)
	return a
}

func livePod(name, node string, ready bool) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: install.DefaultNamespace, Name: name, Labels: map[string]string{install.LabelName: install.AgentName},
			CreationTimestamp: metav1.Now()},
		Spec:   corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
}

// liveRig is a cluster of fake agent pods, each backed by a real server.
type liveRig struct {
	client *fake.Clientset
	mu     sync.Mutex
	agents map[string]*fakeAgent // by pod name
	dialed []string
}

func (r *liveRig) set(pod string, a *fakeAgent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.agents[pod] = a
}

func (r *liveRig) dial(_ context.Context, ag agentclient.Agent) (AgentConn, error) {
	r.mu.Lock()
	a := r.agents[ag.Name]
	r.dialed = append(r.dialed, ag.Name)
	r.mu.Unlock()
	if a == nil {
		return nil, errors.New("no server for pod " + ag.Name)
	}
	return grpc.NewClient("passthrough:///"+a.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// allowPortForward makes the fake API server answer access reviews: allowed or not.
func allowPortForward(c *fake.Clientset, allowed bool) *fake.Clientset {
	c.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview).DeepCopy()
		ra := r.Spec.ResourceAttributes
		r.Status.Allowed = allowed && ra.Verb == "create" && ra.Resource == "pods" && ra.Subresource == "portforward"
		if !r.Status.Allowed {
			r.Status.Reason = "no RBAC policy matched"
		}
		return true, r, nil
	})
	return c
}

func (r *liveRig) options(t *testing.T) (*WatchOptions, *syncBuffer, *syncBuffer) {
	out, errOut := &syncBuffer{}, &syncBuffer{}
	o := NewWatchOptions(genericclioptions.NewConfigFlags(true), genericiooptions.IOStreams{In: strings.NewReader(""), Out: out, ErrOut: errOut})
	o.IsTerminal = func(any) bool { return false }
	o.KubeClient = func() (kubernetes.Interface, *rest.Config, error) { return r.client, &rest.Config{}, nil }
	o.DialAgent = r.dial
	o.ClientVersion = "v0.2.0"
	o.StatusEvery = 50 * time.Millisecond
	return o, out, errOut
}

// syncBuffer is a bytes.Buffer safe for a writer and a polling reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func runLive(t *testing.T, ctx context.Context, o *WatchOptions, args ...string) error {
	t.Helper()
	cmd := newCmdWatch(o)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	cmd.SetArgs(args)
	return cmd.ExecuteContext(ctx)
}

func liveFlow(node string, port uint32, verdict flowv1.Verdict) *flowv1.Flow {
	return &flowv1.Flow{Node: node, Verdict: verdict, Time: timestamppb.New(time.Date(2026, 11, 25, 14, 0, 0, int(port)*1000, time.UTC)),
		Source:      &flowv1.Endpoint{Namespace: "shop", Pod: "web"},
		Destination: &flowv1.Endpoint{Namespace: "shop", Pod: "db-0"},
		Ip:          &flowv1.IP{Source: "10.244.1.2", Destination: "10.244.1.3"},
		L4:          &flowv1.Layer4{Protocol: flowv1.Protocol_PROTOCOL_TCP, SourcePort: 40000, DestinationPort: port}}
}

// TestWatchLiveOneShot: a one-shot watch asks every node's agent for its last
// flows (filters sent to the source), merges them, and warns once on stderr
// about an agent of another version.
func TestWatchLiveOneShot(t *testing.T) {
	a, b := startAgent(t, "v0.2.0"), startAgent(t, "v0.1.0")
	for i := range 30 {
		a.hub.Publish(liveFlow("node-a", uint32(1000+i), flowv1.Verdict_VERDICT_DENIED))
		b.hub.Publish(liveFlow("node-b", uint32(2000+i), flowv1.Verdict_VERDICT_ALLOWED))
	}
	r := &liveRig{client: allowPortForward(fake.NewClientset(livePod("agent-a", "node-a", true), livePod("agent-b", "node-b", true)), true),
		agents: map[string]*fakeAgent{"agent-a": a, "agent-b": b}}
	o, out, errOut := r.options(t)
	if err := runLive(t, context.Background(), o, "-o", "json", "--verdict", "denied"); err != nil {
		t.Fatal(err)
	}
	got := lines(out.String())
	if len(got) != defaultLast {
		t.Fatalf("%d flows, want the last %d denied ones:\n%s", len(got), defaultLast, out.String())
	}
	for _, l := range got {
		if !strings.Contains(l, `"node":"node-a"`) {
			t.Fatalf("node-b allowed only; got %s", l)
		}
	}
	if !strings.Contains(got[len(got)-1], `"destinationPort":1029`) {
		t.Fatalf("last line is not the newest flow: %s", got[len(got)-1])
	}
	// --last N is the newest N of all nodes, in time order (ports encode
	// the times: node-a 1000+i, node-b 2000+i, so node-b's are newer).
	o2, out2, _ := r.options(t)
	if err := runLive(t, context.Background(), o2, "-o", "json", "--last", "5", "--from-pod", "shop/web"); err != nil {
		t.Fatal(err)
	}
	got2 := lines(out2.String())
	if len(got2) != 5 {
		t.Fatalf("--last 5 over two nodes printed %d flows:\n%s", len(got2), out2.String())
	}
	for i, l := range got2 {
		if want := fmt.Sprintf(`"destinationPort":%d`, 2025+i); !strings.Contains(l, want) {
			t.Fatalf("line %d = %s, want %s (the newest 5 overall, oldest first)", i, l, want)
		}
	}

	warn := errOut.String()
	if strings.Count(warn, "version skew") != 1 || !strings.Contains(warn, "node node-b") || !strings.Contains(warn, "the agent (v0.1.0) is older than this plugin (v0.2.0)") {
		t.Fatalf("stderr = %q, want one skew warning for node-b", warn)
	}
}

// TestWatchLiveReconnectsToReplacedPod: node-a's agent pod is replaced (a
// DaemonSet restart gives it a new name and a new process); the follow shows
// the node down, finds the new pod, and streams from it. Lost-flow counters
// of the agents reach the consumer as Batch.Lost. A node that joins later
// is streamed from too.
func TestWatchLiveReconnectsToReplacedPod(t *testing.T) {
	a1, b := startAgent(t, "v0.2.0"), startAgent(t, "v0.2.0")
	r := &liveRig{client: allowPortForward(fake.NewClientset(livePod("agent-a-1", "node-a", true), livePod("agent-b", "node-b", true)), true),
		agents: map[string]*fakeAgent{"agent-a-1": a1, "agent-b": b}}
	o, _, _ := r.options(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	src, err := o.LiveSource(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	l := src.(*liveNodes)
	l.MinBackoff, l.MaxBackoff, l.DiscoverEvery = 20*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond

	var mu sync.Mutex
	var events []string
	var lost uint64
	changed := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- src.Observe(ctx, &flowv1.ObserveRequest{Follow: true}, func(bt flow.Batch) error {
			mu.Lock()
			for _, n := range bt.Nodes {
				if n.Connected {
					events = append(events, "up "+n.Node+" "+n.Version)
				} else {
					events = append(events, "down "+n.Node)
				}
			}
			for _, f := range bt.Flows {
				events = append(events, "flow "+f.GetNode())
			}
			lost += bt.Lost
			mu.Unlock()
			select {
			case changed <- struct{}{}:
			default:
			}
			return nil
		})
	}()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.After(15 * time.Second)
		for {
			mu.Lock()
			ok := cond()
			mu.Unlock()
			if ok {
				return
			}
			select {
			case <-changed:
			case <-time.After(20 * time.Millisecond):
			case <-deadline:
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("no %s; events %v", what, events)
			}
		}
	}
	has := func(e string) func() bool {
		return func() bool {
			for _, x := range events {
				if x == e {
					return true
				}
			}
			return false
		}
	}
	waitFor("node-a up with its version", has("up node-a v0.2.0"))
	waitFor("node-b up", has("up node-b v0.2.0"))
	// Flows published before the stream subscribed are history: keep
	// publishing until one arrives.
	publishUntil := func(a *fakeAgent, node string) {
		t.Helper()
		waitFor("a flow from "+node, func() bool {
			a.hub.Publish(liveFlow(node, 80, flowv1.Verdict_VERDICT_ALLOWED))
			return has("flow " + node)()
		})
	}
	publishUntil(a1, "node-a")
	publishUntil(b, "node-b")

	b.lost.Store(7)
	waitFor("7 lost flows from node-b's Status", func() bool { return lost == 7 })

	// Replace node-a's pod: the old process ends, a new pod with a new name serves.
	a2 := startAgent(t, "v0.2.0")
	r.set("agent-a-2", a2)
	if err := r.client.CoreV1().Pods(install.DefaultNamespace).Delete(ctx, "agent-a-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.client.CoreV1().Pods(install.DefaultNamespace).Create(ctx, livePod("agent-a-2", "node-a", true), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	a1.srv.Stop()
	waitFor("node-a down", has("down node-a"))
	mu.Lock()
	events = nil
	mu.Unlock()
	waitFor("node-a up again", has("up node-a v0.2.0"))
	publishUntil(a2, "node-a")
	r.mu.Lock()
	dialed := strings.Join(r.dialed, ",")
	r.mu.Unlock()
	if !strings.Contains(dialed, "agent-a-2") {
		t.Fatalf("dialed %s, never the replacement pod", dialed)
	}

	// A node joining the cluster later is picked up by the periodic discovery.
	c := startAgent(t, "v0.2.0")
	r.set("agent-c", c)
	if _, err := r.client.CoreV1().Pods(install.DefaultNamespace).Create(ctx, livePod("agent-c", "node-c", true), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("node-c up", has("up node-c v0.2.0"))
	publishUntil(c, "node-c")

	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Observe ended with %v", err)
	}
}

// TestWatchNoCluster: without a kubeconfig, watch says what to do, naming
// --input-file (not explain's -f).
func TestWatchNoCluster(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	empty := t.TempDir() + "/kubeconfig"
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	flags := genericclioptions.NewConfigFlags(true)
	flags.KubeConfig = &empty
	o := NewWatchOptions(flags, genericiooptions.IOStreams{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard})
	o.IsTerminal = func(any) bool { return false }
	err := runLive(t, context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "no kubeconfig found") || !strings.Contains(err.Error(), "--input-file FILE") ||
		strings.Contains(err.Error(), "-f FILE") {
		t.Fatalf("err = %v", err)
	}
}

// TestWatchLiveErrors: no agent installed, a namespace without agents, and
// an unreachable node reported on stderr while the others stream.
func TestWatchLiveErrors(t *testing.T) {
	r := &liveRig{client: allowPortForward(fake.NewClientset(livePod("agent-a", "node-a", true)), true), agents: map[string]*fakeAgent{}}
	o, _, _ := r.options(t)
	err := runLive(t, context.Background(), o, "--agent-namespace", "elsewhere")
	if !errors.Is(err, ErrNoAgent) || !strings.Contains(err.Error(), "namespace elsewhere") || !strings.Contains(err.Error(), "kubectl netpol install") {
		t.Fatalf("no agent in the namespace: %v", err)
	}

	// RBAC denies pods/portforward: one clear error before any dial.
	r = &liveRig{client: allowPortForward(fake.NewClientset(livePod("agent-a", "node-a", true)), false), agents: map[string]*fakeAgent{}}
	o, _, _ = r.options(t)
	err = runLive(t, context.Background(), o, "-o", "compact")
	if err == nil || !strings.Contains(err.Error(), "verb create on resource pods/portforward in namespace "+install.DefaultNamespace) || len(r.dialed) != 0 {
		t.Fatalf("no pods/portforward: %v (dialed %v)", err, r.dialed)
	}

	// node-a has a pod but nothing answers: the one-shot reports it and fails.
	a := startAgent(t, "v0.2.0")
	a.hub.Publish(liveFlow("node-b", 80, flowv1.Verdict_VERDICT_DENIED))
	r = &liveRig{client: allowPortForward(fake.NewClientset(livePod("agent-a", "node-a", true), livePod("agent-b", "node-b", true)), true),
		agents: map[string]*fakeAgent{"agent-b": a}}
	o, out, errOut := r.options(t)
	err = runLive(t, context.Background(), o, "-o", "compact")
	if err == nil || !strings.Contains(err.Error(), "no server for pod agent-a") {
		t.Fatalf("err = %v, want node-a's failure", err)
	}
	if len(lines(out.String())) != 1 || !strings.Contains(errOut.String(), "node node-a unreachable") {
		t.Fatalf("stdout %q, stderr %q", out.String(), errOut.String())
	}
}

// TestWatchLivePairsCrossNodeRecords: web on node-a connects to db on
// node-b; node-a's agent reports the egress record (allowed, with the
// Service), node-b's the ingress drop. watch prints one flow with both
// observation points and the dropping policy; --per-node prints both records.
func TestWatchLivePairsCrossNodeRecords(t *testing.T) {
	a, b := startAgent(t, "v0.2.0"), startAgent(t, "v0.2.0")
	rule := uint32(0)
	rec := func(node string) *flowv1.Flow {
		f := liveFlow(node, 5432, flowv1.Verdict_VERDICT_ALLOWED)
		f.Source.NodeName, f.Destination.NodeName = "node-a", "node-b"
		f.Ip.Destination = "10.244.2.7"
		return f
	}
	eg := rec("node-a")
	eg.Type, eg.Reason, eg.Direction = flowv1.EventType_EVENT_TYPE_NEW, flowv1.Reason_REASON_ALLOWED_BY_RULE, flowv1.TrafficDirection_TRAFFIC_DIRECTION_EGRESS
	eg.AllowedBy = []*flowv1.PolicyRef{{Kind: "NetworkPolicy", Namespace: "shop", Name: "web-out", Direction: flowv1.TrafficDirection_TRAFFIC_DIRECTION_EGRESS, RuleIndex: &rule}}
	eg.Service = &flowv1.Service{Namespace: "shop", Name: "db", Ip: "10.96.0.9", Port: 5432}
	in := rec("node-b")
	in.Time = timestamppb.New(eg.Time.AsTime().Add(300 * time.Microsecond))
	in.Type, in.Verdict, in.Reason, in.Direction = flowv1.EventType_EVENT_TYPE_DROP, flowv1.Verdict_VERDICT_DENIED, flowv1.Reason_REASON_NO_RULE_MATCHED, flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS
	in.IsolatedBy = []*flowv1.PolicyRef{{Kind: "NetworkPolicy", Namespace: "shop", Name: "db-policy", Direction: flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS}}
	// A flow node-b saw alone: the kubelet probing db from node-b's cni0.
	probe := liveFlow("node-b", 8080, flowv1.Verdict_VERDICT_ALLOWED)
	probe.Source = &flowv1.Endpoint{NodeName: "node-b", HostNetwork: true}
	probe.Ip.Source = "10.244.2.1"
	a.hub.Publish(eg)
	b.hub.Publish(in)
	b.hub.Publish(probe)
	r := &liveRig{client: allowPortForward(fake.NewClientset(livePod("agent-a", "node-a", true), livePod("agent-b", "node-b", true)), true),
		agents: map[string]*fakeAgent{"agent-a": a, "agent-b": b}}

	o, out, _ := r.options(t)
	if err := runLive(t, context.Background(), o, "-o", "compact"); err != nil {
		t.Fatal(err)
	}
	got := lines(out.String())
	if len(got) != 2 {
		t.Fatalf("%d lines, want the pair once and the probe:\n%s", len(got), out.String())
	}
	for _, want := range []string{"node-a+node-b shop/web:40000 -> shop/db-0:5432 (svc shop/db)", "DENIED NO_RULE_MATCHED",
		"egress@node-a allowed-by shop/web-out (egress rule 0); ingress@node-b DENIED isolated-by shop/db-policy (ingress)"} {
		if !strings.Contains(got[0], want) {
			t.Errorf("paired line lacks %q:\n%s", want, got[0])
		}
	}
	if !strings.Contains(got[1], "node-b node/node-b:40000 -> shop/db-0:8080") {
		t.Errorf("the probe does not show its node: %s", got[1])
	}

	o, out, _ = r.options(t)
	if err := runLive(t, context.Background(), o, "-o", "json"); err != nil {
		t.Fatal(err)
	}
	if got := lines(out.String()); len(got) != 2 || !strings.Contains(got[0], `"observations":[{"node":"node-a"`) ||
		!strings.Contains(got[1], `"nodeName":"node-b"`) {
		t.Errorf("json:\n%s", out.String())
	}

	o, out, _ = r.options(t)
	if err := runLive(t, context.Background(), o, "-o", "compact", "--per-node"); err != nil {
		t.Fatal(err)
	}
	if got := lines(out.String()); len(got) != 3 || strings.Contains(out.String(), "+") {
		t.Errorf("--per-node printed:\n%s", out.String())
	}
}

// TestWatchLiveEnforcementChange: the node's CNI and enforcement state come
// with its stream, and a change the Status poll sees reaches the consumer.
func TestWatchLiveEnforcementChange(t *testing.T) {
	a := startAgent(t, "v0.2.0")
	a.enforcement.Store("enforcing")
	r := &liveRig{agents: map[string]*fakeAgent{"agent-a": a}}
	s := &agentSource{node: "node-a", dial: r.dial, statusEvery: 20 * time.Millisecond,
		find: func(context.Context) (agentclient.Agent, error) {
			return agentclient.Agent{Namespace: install.DefaultNamespace, Name: "agent-a", Node: "node-a"}, nil
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	states := make(chan flow.NodeState, 16)
	go s.Observe(ctx, &flowv1.ObserveRequest{Follow: true}, func(b flow.Batch) error {
		for _, n := range b.Nodes {
			states <- n
		}
		return nil
	})
	next := func() flow.NodeState {
		select {
		case n := <-states:
			return n
		case <-ctx.Done():
			t.Fatal("no node state")
		}
		return flow.NodeState{}
	}
	if n := next(); !n.Connected || n.Enforcement != "enforcing" || n.CNI != "Cilium (vxlan tunnel)" {
		t.Fatalf("first state = %+v", n)
	}
	a.enforcement.Store("not enforcing")
	if n := next(); n.Enforcement != "not enforcing" || n.EnforcementDetail == "" || n.Version != "v0.2.0" {
		t.Errorf("after the change: %+v", n)
	}
}
