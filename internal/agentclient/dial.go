package agentclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/streaming/pkg/httpstream"

	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
)

// PortForward is one pods/portforward connection to a pod through the API
// server. DialPort opens a new TCP connection to a port of the pod (its
// loopback, for a hostNetwork pod the node's) as a stream of it.
type PortForward struct {
	pod    string // namespace/name, for messages
	conn   httpstream.Connection
	nextID atomic.Int64
}

// OpenPortForward opens a port-forward connection to pod namespace/name: the
// websocket tunnel first, SPDY when the API server does not upgrade to it
// (as kubectl port-forward does). A missing RBAC permission is an error
// naming the verb and resource.
func OpenPortForward(ctx context.Context, cfg *rest.Config, namespace, name string) (*PortForward, error) {
	pod := namespace + "/" + name
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("port-forward to pod %s: %w", pod, err)
	}
	u := client.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(name).SubResource("portforward").URL()
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("port-forward to pod %s: %w", pod, err)
	}
	dialer := spdy.NewDialerForStreaming(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	if ws, err := portforward.NewSPDYOverWebsocketDialerForStreaming(u, cfg); err == nil {
		dialer = portforward.NewFallbackDialerForStreaming(ws, dialer, func(err error) bool {
			return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
		})
	}
	type result struct {
		conn httpstream.Connection
		err  error
	}
	done := make(chan result, 1)
	go func() {
		conn, _, err := dialer.Dial(portforward.PortForwardProtocolV1Name)
		done <- result{conn, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, portForwardError(pod, namespace, r.err)
		}
		return &PortForward{pod: pod, conn: r.conn}, nil
	case <-ctx.Done():
		go func() { // the dial has no context: close what it yields
			if r := <-done; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, fmt.Errorf("port-forward to pod %s: %w", pod, ctx.Err())
	}
}

// portForwardError names the permission when the API server refused it.
func portForwardError(pod, namespace string, err error) error {
	msg := strings.ToLower(err.Error())
	if strings.Contains(msg, "forbidden") || strings.Contains(msg, "cannot create resource") || strings.Contains(msg, "cannot get resource") {
		return fmt.Errorf("port-forward to pod %s: forbidden: reaching the netpol agents needs RBAC verbs create and get "+
			"on resource pods/portforward in namespace %s (as for kubectl port-forward): %w", pod, namespace, err)
	}
	return fmt.Errorf("port-forward to pod %s: %w", pod, err)
}

// Done is closed when the port-forward connection ends (the pod went away,
// the API server closed it, or Close).
func (p *PortForward) Done() <-chan bool { return p.conn.CloseChan() }

// Close ends the connection and every stream in it.
func (p *PortForward) Close() error { return p.conn.Close() }

// DialPort opens a connection to port on the pod's loopback: an error and a
// data stream with the same request ID, as kubectl port-forward creates per
// accepted connection. The data stream is the returned net.Conn; what the
// kubelet reports on the error stream (e.g. connection refused) becomes the
// error of the Read that finds the stream closed.
func (p *PortForward) DialPort(ctx context.Context, port int) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case <-p.conn.CloseChan():
		return nil, fmt.Errorf("port-forward to pod %s: connection closed", p.pod)
	default:
	}
	id := strconv.FormatInt(p.nextID.Add(1)-1, 10)
	h := http.Header{}
	h.Set(corev1.StreamType, corev1.StreamTypeError)
	h.Set(corev1.PortHeader, strconv.Itoa(port))
	h.Set(corev1.PortForwardRequestIDHeader, id)
	errStream, err := p.conn.CreateStream(h)
	if err != nil {
		return nil, fmt.Errorf("port-forward to pod %s port %d: creating the error stream: %w", p.pod, port, err)
	}
	errStream.Close() // nothing is written to it
	h.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := p.conn.CreateStream(h)
	if err != nil {
		p.conn.RemoveStreams(errStream)
		return nil, fmt.Errorf("port-forward to pod %s port %d: creating the data stream: %w", p.pod, port, err)
	}
	c := &streamConn{pf: p, port: port, data: data, errStream: errStream, remoteErr: make(chan struct{})}
	go c.readErrorStream()
	return c, nil
}

// streamConn is a port-forward data stream as a net.Conn.
type streamConn struct {
	pf        *PortForward
	port      int
	data      httpstream.Stream
	errStream httpstream.Stream

	remoteErr chan struct{} // closed once the error stream is read
	errMsg    error
	closeOnce sync.Once
}

var _ net.Conn = (*streamConn)(nil)

func (c *streamConn) readErrorStream() {
	defer close(c.remoteErr)
	msg, err := io.ReadAll(c.errStream)
	switch {
	case len(msg) > 0:
		c.errMsg = fmt.Errorf("port-forward to pod %s port %d: %s", c.pf.pod, c.port, strings.TrimSpace(string(msg)))
	case err != nil:
		c.errMsg = fmt.Errorf("port-forward to pod %s port %d: reading the error stream: %w", c.pf.pod, c.port, err)
	}
}

// remoteError waits briefly for the kubelet's account of why the data
// stream ended; nil when it reported nothing.
func (c *streamConn) remoteError() error {
	select {
	case <-c.remoteErr:
		return c.errMsg
	case <-time.After(time.Second):
		return nil
	}
}

func (c *streamConn) Read(b []byte) (int, error) {
	n, err := c.data.Read(b)
	if err != nil && n == 0 {
		if rerr := c.remoteError(); rerr != nil {
			return 0, rerr
		}
	}
	return n, err
}

func (c *streamConn) Write(b []byte) (int, error) { return c.data.Write(b) }

func (c *streamConn) Close() error {
	c.closeOnce.Do(func() {
		c.data.Close()
		_ = c.data.Reset() // discard unsent data so the connection is not blocked
		c.pf.conn.RemoveStreams(c.errStream, c.data)
	})
	return nil
}

// portForwardAddr names the pod port for LocalAddr and RemoteAddr.
type portForwardAddr string

func (a portForwardAddr) Network() string { return "portforward" }
func (a portForwardAddr) String() string  { return string(a) }

func (c *streamConn) LocalAddr() net.Addr { return portForwardAddr("local") }
func (c *streamConn) RemoteAddr() net.Addr {
	return portForwardAddr(c.pf.pod + ":" + strconv.Itoa(c.port))
}

// Deadlines are not supported by port-forward streams; gRPC does not need
// them (it bounds calls with contexts and keepalives).
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }

// Conn is a gRPC connection to one agent through its port-forward. It is a
// grpc.ClientConnInterface (flowv1.NewObserverClient(conn)); Close closes
// both the gRPC connection and the port-forward.
type Conn struct {
	*grpc.ClientConn
	Agent Agent
	pf    *PortForward
}

// Done is closed when the port-forward underneath ends (the pod is gone).
func (c *Conn) Done() <-chan bool { return c.pf.Done() }

// Close implements io.Closer.
func (c *Conn) Close() error {
	err := c.ClientConn.Close()
	return errors.Join(err, c.pf.Close())
}

// Dial connects to agent's gRPC port (install.AgentGRPCPort) through
// pods/portforward. See DialPort to use another port.
func Dial(ctx context.Context, cfg *rest.Config, agent Agent) (*Conn, error) {
	return DialPort(ctx, cfg, agent, install.AgentGRPCPort)
}

// DialPort connects gRPC to port on agent's pod through one port-forward
// connection; gRPC's own reconnects open new streams in it. The transport
// is plaintext gRPC inside the API server's TLS connection: the hop from
// the kubelet to the pod stays on the node.
func DialPort(ctx context.Context, cfg *rest.Config, agent Agent, port int) (*Conn, error) {
	pf, err := OpenPortForward(ctx, cfg, agent.Namespace, agent.Name)
	if err != nil {
		return nil, err
	}
	cc, err := grpc.NewClient("passthrough:///"+agent.Name,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return pf.DialPort(ctx, port)
		}))
	if err != nil {
		pf.Close()
		return nil, fmt.Errorf("gRPC to agent %s: %w", agent, err)
	}
	return &Conn{ClientConn: cc, Agent: agent, pf: pf}, nil
}
