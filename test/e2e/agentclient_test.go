//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/internal/agentclient"
	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

// TestPortForwardDialsPodPorts: through the real API server and kubelet, one
// port-forward connection carries two concurrent TCP connections to the
// netprobe server's ports, and a closed port is reported with the kubelet's
// reason.
func TestPortForwardDialsPodPorts(t *testing.T) {
	runBesideConformance(t)
	c := framework.Connect(t)
	ns := c.NewNamespace(t, "portforward")
	c.StartProbe(t, ns, "server", map[string]string{"app": "server"})
	ctx := framework.Context(t, 60*time.Second)

	pf, err := agentclient.OpenPortForward(ctx, c.Config, ns, "server")
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	errc := make(chan error, 2)
	for _, port := range []int{80, 81} {
		go func() {
			conn, err := pf.DialPort(ctx, port)
			if err != nil {
				errc <- err
				return
			}
			defer conn.Close()
			if _, err := conn.Write([]byte("ping\n")); err != nil {
				errc <- err
				return
			}
			line, err := bufio.NewReader(conn).ReadString('\n')
			if strings.TrimSpace(line) != "pong server" {
				errc <- errors.Join(errors.New("port "+conn.RemoteAddr().String()+" replied "+line), err)
				return
			}
			errc <- nil
		}()
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}

	// Nothing listens on port 9: the kubelet's error becomes the Read error.
	conn, err := pf.DialPort(ctx, 9)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = conn.Write([]byte("ping\n"))
	_, err = io.ReadAll(conn)
	if err == nil || !strings.Contains(err.Error(), "port 9") || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("reading from a closed port: err = %v, want the kubelet's connection refused for port 9", err)
	}
	t.Logf("closed port: %v", err)

	// The same connection still serves after a failed stream.
	conn2, err := pf.DialPort(ctx, 80)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	conn2.Write([]byte("ping\n"))
	if line, _ := bufio.NewReader(conn2).ReadString('\n'); strings.TrimSpace(line) != "pong server" {
		t.Fatalf("after a failed stream, port 80 replied %q", line)
	}
}

// serveHub serves a flow.Hub reporting version on addr of the node's loopback.
func serveHub(tb testing.TB, addr, version string) (*flow.Hub, *grpc.Server, int) {
	tb.Helper()
	hub := flow.NewHub(1024, func(context.Context) (*flowv1.StatusResponse, error) {
		return &flowv1.StatusResponse{Node: framework.NodeName, Version: version, EventsLost: 3}, nil
	})
	s, port := framework.ServeHub(tb, addr, hub)
	return hub, s, port
}

// TestAgentClientGRPCThroughPortForward: Discover finds a hostNetwork pod
// labelled as the agent; Dial runs gRPC (Status, a history query, a
// followed stream) through the real API server's pods/portforward to a
// flow.v1.Observer on the node's loopback.
func TestAgentClientGRPCThroughPortForward(t *testing.T) {
	runBesideConformance(t)
	c := framework.Connect(t)
	ns := c.NewNamespace(t, "agentclient")
	ctx := framework.Context(t, 90*time.Second)

	if _, err := agentclient.Discover(ctx, c.Client, ns); !errors.Is(err, agentclient.ErrNotInstalled) || !strings.Contains(err.Error(), ns) {
		t.Fatalf("Discover in an empty namespace: %v, want ErrNotInstalled naming %s", err, ns)
	}

	hub, srv, port := serveHub(t, "127.0.0.1:0", "v9.9.9-e2e")
	for i := range 5 {
		hub.Publish(&flowv1.Flow{Node: framework.NodeName, Verdict: flowv1.Verdict_VERDICT_DENIED,
			Ip: &flowv1.IP{Source: "10.244.0.9", Destination: "10.244.0.10"},
			L4: &flowv1.Layer4{Protocol: flowv1.Protocol_PROTOCOL_TCP, SourcePort: uint32(40000 + i), DestinationPort: 80}})
	}
	c.StartPod(t, framework.AgentStandInPod(ns, "agent-a", "v9.9.9-e2e"))

	agents, err := agentclient.Discover(ctx, c.Client, ns)
	if err != nil {
		t.Fatal(err)
	}
	if len(agents) != 1 || agents[0].Name != "agent-a" || agents[0].Node != framework.NodeName || !agents[0].Ready || agents[0].Version != "v9.9.9-e2e" {
		t.Fatalf("Discover = %+v", agents)
	}
	if a, ok := agentclient.Pick(agents); !ok || a.Name != "agent-a" {
		t.Fatalf("Pick = %+v, %v", a, ok)
	}

	conn, err := agentclient.DialPort(ctx, c.Config, agents[0], port)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := flowv1.NewObserverClient(conn)
	st, err := client.Status(ctx, &flowv1.StatusRequest{})
	if err != nil {
		t.Fatalf("Status through port-forward: %v", err)
	}
	if st.GetVersion() != "v9.9.9-e2e" || st.GetEventsLost() != 3 {
		t.Fatalf("Status = %v", st)
	}

	// History, then a followed stream, through ClientSource as watch uses it.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan *flowv1.Flow, 100)
	done := make(chan error, 1)
	go func() {
		done <- (&flow.ClientSource{Client: client, Node: framework.NodeName}).Observe(sctx,
			&flowv1.ObserveRequest{Follow: true, Last: 3}, func(b flow.Batch) error {
				for _, f := range b.Flows {
					got <- f
				}
				return nil
			})
	}()
	for i := range 3 {
		select {
		case f := <-got:
			if want := uint32(40002 + i); f.GetL4().GetSourcePort() != want {
				t.Fatalf("history flow %d has source port %d, want %d", i, f.GetL4().GetSourcePort(), want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("history flow %d never arrived", i)
		}
	}
	// A flow published once the stream has subscribed arrives live.
	live := &flowv1.Flow{Node: framework.NodeName, Verdict: flowv1.Verdict_VERDICT_ALLOWED, L4: &flowv1.Layer4{DestinationPort: 8080}}
	deadline := time.After(20 * time.Second)
	for arrived := false; !arrived; {
		hub.Publish(live)
		select {
		case f := <-got:
			if f.GetL4().GetDestinationPort() != 8080 {
				t.Fatalf("live flow = %v", f)
			}
			arrived = true
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatal("the live flow never arrived")
		}
	}
	// The agent going away (its process ends with its pod) ends the stream
	// with an error instead of leaving it hanging.
	srv.Stop()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the stream ended without an error when the agent stopped")
		}
		t.Logf("after the agent stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the stream did not end after the agent stopped")
	}
}

// TestAgentClientNeedsRBAC: a user who may list pods but not create
// pods/portforward finds the agents and gets an error naming the missing
// permission; a user who may not list pods is told so.
func TestAgentClientNeedsRBAC(t *testing.T) {
	runBesideConformance(t)
	c := framework.Connect(t)
	ns := c.NewNamespace(t, "agentrbac")
	ctx := framework.Context(t, 90*time.Second)
	c.StartPod(t, framework.AgentStandInPod(ns, "agent-a", "v9.9.9-e2e"))
	const user = "netpol-e2e-viewer"
	if _, err := c.Client.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "list-pods"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "list-pods"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "list-pods"},
		Subjects:   []rbacv1.Subject{{Kind: "User", Name: user}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	viewer := rest.CopyConfig(c.Config)
	viewer.Impersonate = rest.ImpersonationConfig{UserName: user}
	vc, err := kubernetes.NewForConfig(viewer)
	if err != nil {
		t.Fatal(err)
	}
	var agents []agentclient.Agent
	// The binding takes effect once the RBAC cache has it.
	for deadline := time.Now().Add(20 * time.Second); ; {
		if agents, err = agentclient.Discover(ctx, vc, ns); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil || len(agents) != 1 {
		t.Fatalf("Discover as %s: %v, %+v", user, err, agents)
	}
	_, err = agentclient.Dial(ctx, viewer, agents[0])
	if err == nil || !strings.Contains(err.Error(), "pods/portforward") || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("Dial without pods/portforward: %v, want an error naming pods/portforward", err)
	}
	t.Logf("without pods/portforward: %v", err)

	// watch checks the permission up front (SelfSubjectAccessReview) and says which.
	_, err = netpol(t, c, "", "--as", user, "watch", "-o", "compact", "--agent-namespace", ns)
	if err == nil || !strings.Contains(err.Error(), "verb create on resource pods/portforward in namespace "+ns) {
		t.Fatalf("watch without pods/portforward: %v", err)
	}
	t.Logf("watch without pods/portforward: %v", err)

	_, err = agentclient.Discover(ctx, vc, "kube-system")
	if err == nil || !strings.Contains(err.Error(), "list pods") || !strings.Contains(err.Error(), "kube-system") {
		t.Fatalf("Discover without list pods: %v, want an error naming list pods in kube-system", err)
	}
}
