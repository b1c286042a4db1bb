package framework

import (
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
)

// AgentStandInPod returns (without creating) a hostNetwork pod labelled as
// an agent pod of the given version, running only pause, on the first node.
// Port-forward to it reaches whatever listens on that node's loopback,
// exactly as for the real agent (which listens on 127.0.0.1): with ServeHub
// in the test process, the CLI's whole live path runs for real except the
// agent binary.
func AgentStandInPod(ns, name, version string) *corev1.Pod {
	zero := int64(0)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
			// Not install.LabelPartOf: uninstall (and its tests) own what carries it.
			install.LabelName: install.AgentName, install.LabelVersion: version,
		}},
		Spec: corev1.PodSpec{
			NodeName:                      NodeName,
			HostNetwork:                   true,
			TerminationGracePeriodSeconds: &zero,
			AutomountServiceAccountToken:  new(bool),
			Containers: []corev1.Container{{
				Name: "pause", Image: "localhost/pause:local", ImagePullPolicy: corev1.PullNever,
			}},
		},
	}
}

// ServeHub serves hub (the agent's own flow.v1.Observer server) on addr of
// the first node's loopback ("127.0.0.1:0" for any port), where the
// port-forward of a stand-in pod lands. It retries while a just-stopped
// server's port is still taken, stops with the test, and returns the server
// and its port.
func ServeHub(tb testing.TB, addr string, hub *flow.Hub) (*grpc.Server, int) {
	tb.Helper()
	return serveObserver(tb, addr, hub)
}

// ServeHubWithHistory is ServeHub that also answers History from store, as
// the agent does.
func ServeHubWithHistory(tb testing.TB, addr string, hub *flow.Hub, store *history.Store) (*grpc.Server, int) {
	tb.Helper()
	return serveObserver(tb, addr, hubWithHistory{hub, store})
}

type hubWithHistory struct {
	*flow.Hub
	store *history.Store
}

func (h hubWithHistory) History(req *flowv1.HistoryRequest, stream grpc.ServerStreamingServer[flowv1.HistoryBatch]) error {
	return h.store.Serve(req, stream.Send)
}

func serveObserver(tb testing.TB, addr string, srv flowv1.ObserverServer) (*grpc.Server, int) {
	tb.Helper()
	var lis net.Listener
	var err error
	for range 100 {
		if lis, err = ListenOnNode(Nodes[0], addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		tb.Fatal(err)
	}
	s := grpc.NewServer()
	flowv1.RegisterObserverServer(s, srv)
	go func() { _ = s.Serve(lis) }()
	tb.Cleanup(s.Stop)
	return s, lis.Addr().(*net.TCPAddr).Port
}
