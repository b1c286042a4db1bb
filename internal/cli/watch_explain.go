package cli

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/internal/snapshot"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
	"github.com/kubectl-netpol/kubectl-netpol/tui/components/detail"
)

// explainMaxAge is how long a loaded cluster state answers before the next
// explanation reloads it; explainRetry is how long a failed load is reused
// (an unreachable cluster would otherwise stall every selection).
const (
	explainMaxAge = 5 * time.Second
	explainRetry  = 30 * time.Second
)

// engineExplainer explains a flow in the watch TUI the way `kubectl netpol
// explain` does: the policy engine evaluates the flow's source, destination
// and port against the cluster as it is now (pods, namespaces, policies,
// nodes, loaded at most every explainMaxAge, shared by concurrent callers).
// The detail pane calls it off the UI goroutine. When the cluster cannot be
// read, or the flow cannot be re-evaluated (its pod is gone, ICMP), it says
// so and gives the agent's recorded attribution instead.
type engineExplainer struct {
	kubeClient func() (kubernetes.Interface, *rest.Config, error)
	maxAge     time.Duration
	now        func() time.Time

	mu       sync.Mutex
	st       *clusterState // last good state (nil: none yet)
	loadErr  error         // last failure, reused until maxAge passes
	failedAt time.Time
	loading  chan struct{} // closed when the load in flight ends
}

// clusterState is one load of the cluster, ready for evaluation.
type clusterState struct {
	set      *snapshot.Set
	engine   *policy.Engine
	res      *resolver
	loadedAt time.Time
}

var (
	_ detail.Explainer = (*engineExplainer)(nil)
	_ detail.Instant   = (*engineExplainer)(nil)
)

func newEngineExplainer(kubeClient func() (kubernetes.Interface, *rest.Config, error)) *engineExplainer {
	return &engineExplainer{kubeClient: kubeClient, maxAge: explainMaxAge, now: time.Now}
}

// state returns a cluster state no older than maxAge, loading it when
// needed (one load at a time; callers meanwhile wait for it). When a reload
// fails, an older state is returned with the error.
func (e *engineExplainer) state(ctx context.Context) (*clusterState, error) {
	for {
		e.mu.Lock()
		now := e.now()
		if e.st != nil && now.Sub(e.st.loadedAt) < e.maxAge {
			st := e.st
			e.mu.Unlock()
			return st, nil
		}
		if e.loadErr != nil && now.Sub(e.failedAt) < explainRetry {
			st, err := e.st, e.loadErr
			e.mu.Unlock()
			return st, err
		}
		if wait := e.loading; wait != nil {
			e.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		done := make(chan struct{})
		e.loading = done
		e.mu.Unlock()

		st, err := e.load(ctx)
		e.mu.Lock()
		e.loading = nil
		if err != nil {
			e.loadErr, e.failedAt = err, e.now()
		} else {
			e.st, e.loadErr = st, nil
		}
		e.mu.Unlock()
		close(done)
		if err != nil {
			e.mu.Lock()
			old := e.st
			e.mu.Unlock()
			return old, err
		}
		return st, nil
	}
}

func (e *engineExplainer) load(ctx context.Context) (*clusterState, error) {
	client, rc, err := e.kubeClient()
	if err != nil {
		return nil, err
	}
	live := &snapshot.Live{Client: client}
	if rc != nil && rc.Host != "" {
		// Flows are explained through the same tiers: cluster policies too.
		if live.CNPClient, err = cnpclient.NewForConfig(rc); err != nil {
			return nil, err
		}
	}
	set, err := live.Load(ctx, snapshot.Scope{AllNamespaces: true})
	if err != nil {
		return nil, err
	}
	engine, err := newEngine(set)
	if err != nil {
		return nil, err
	}
	return &clusterState{set: set, engine: engine, res: newResolver(set), loadedAt: e.now()}, nil
}

// Instant implements detail.Instant: with a fresh state (or a fresh
// failure) in hand, explaining is pure computation (well under a
// millisecond), so the pane asks inline and never flickers "explaining…"
// while the user scrolls. The margin keeps the state from expiring between
// this call and Explain's.
func (e *engineExplainer) Instant() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	const margin = time.Second
	return (e.st != nil && now.Sub(e.st.loadedAt) < e.maxAge-margin) ||
		(e.loadErr != nil && now.Sub(e.failedAt) < explainRetry-margin)
}

// Explain implements detail.Explainer.
func (e *engineExplainer) Explain(ctx context.Context, f *flowv1.Flow) (string, error) {
	st, err := e.state(ctx)
	if st == nil {
		return fallback(f, fmt.Sprintf("no cluster to re-evaluate it against (%v)", oneLine(err))), nil
	}
	var b strings.Builder
	if err != nil {
		fmt.Fprintf(&b, "note: cluster state from %s ago: reloading failed (%v)\n", e.now().Sub(st.loadedAt).Round(time.Second), oneLine(err))
	}
	text, why := st.explain(f)
	if why != "" {
		return fallback(f, why), nil
	}
	return text + b.String(), nil
}

// explain re-evaluates f; why says why it cannot ("" when it did).
func (st *clusterState) explain(f *flowv1.Flow) (text, why string) {
	src, why := st.endpoint(f.GetSource(), f.GetIp().GetSource())
	if why != "" {
		return "", why
	}
	dst, why := st.endpoint(f.GetDestination(), f.GetIp().GetDestination())
	if why != "" {
		return "", why
	}
	var proto corev1.Protocol
	switch f.GetL4().GetProtocol() {
	case flowv1.Protocol_PROTOCOL_TCP:
		proto = corev1.ProtocolTCP
	case flowv1.Protocol_PROTOCOL_UDP:
		proto = corev1.ProtocolUDP
	case flowv1.Protocol_PROTOCOL_SCTP:
		proto = corev1.ProtocolSCTP
	default:
		return "", flow.ProtocolName(f.GetL4().GetProtocol()) + " has no ports for NetworkPolicy rules to name"
	}
	port := portSpec{Port: int32(f.GetL4().GetDestinationPort()), Protocol: proto}
	for _, d := range declaredPorts(dst.Pod, proto) {
		if d.Port == port.Port {
			port.Name = d.Name
		}
	}
	x := buildExplanation(st.engine, st.set, src, dst, []portSpec{port}, nil)

	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s → %s on %s", flow.VerdictName(f.GetVerdict()), src, dst, port)
	if svc := f.GetService(); svc.GetName() != "" {
		fmt.Fprintf(&b, ", through Service %s/%s (%s:%d)", svc.GetNamespace(), svc.GetName(), svc.GetIp(), svc.GetPort())
	}
	fmt.Fprintf(&b, " (recorded: %s).\n", strings.ToLower(flow.ReasonName(f.GetReason())))
	for _, o := range f.GetObservations() { // judged on two nodes: what each recorded
		fmt.Fprintf(&b, "Recorded %s.\n", flow.ObservationString(o))
	}
	switch f.GetReason() {
	case flowv1.Reason_REASON_ESTABLISHED:
		b.WriteString("Part of an established connection, which always passes; a new connection now would be:\n")
	case flowv1.Reason_REASON_NOT_SUBJECT:
		b.WriteString("The agent judged it not subject to NetworkPolicy (host network, node or loopback traffic).\n")
	}
	b.WriteString(detail.AuditSentence(f))
	recordedAllowed := !flow.Dropped(f)
	if x.Allowed != recordedAllowed && f.GetReason() != flowv1.Reason_REASON_ESTABLISHED {
		fmt.Fprintf(&b, "The policies now decide otherwise: the cluster changed since the agent recorded this flow at %s.\n",
			f.GetTime().AsTime().Format(time.TimeOnly))
	}
	b.WriteString("\nNow, by the policy engine (as kubectl netpol explain):\n")
	_ = renderExplanation(&b, x, palette{}, st.set)
	return b.String(), ""
}

// endpoint finds the flow's endpoint in the current state: a pod by the
// name recorded with the flow (never by its IP alone, which may have been
// reused since), or an IP outside the pods.
func (st *clusterState) endpoint(ep *flowv1.Endpoint, ip string) (endpoint, string) {
	if ep.GetPod() == "" {
		addr, err := netip.ParseAddr(ip)
		if err != nil {
			return endpoint{}, fmt.Sprintf("the flow records no valid address (%q)", ip)
		}
		return endpoint{Ref: peerRef{Raw: ip, Kind: "IP", IP: addr.Unmap()}, IP: addr.Unmap()}, ""
	}
	ref := peerRef{Raw: ep.GetNamespace() + "/" + ep.GetPod(), Kind: "Pod", Namespace: ep.GetNamespace(), Name: ep.GetPod()}
	e, err := st.res.resolve(ref)
	if err != nil {
		return endpoint{}, fmt.Sprintf("pod %s no longer exists", ref.Raw)
	}
	return e, ""
}

// fallback is the recorded explanation, saying why it is not a re-evaluation.
func fallback(f *flowv1.Flow, why string) string {
	return detail.Explain(f) + "\nThis is the agent's record at the time of the flow, not a re-evaluation: " + why + ".\n"
}

func oneLine(err error) string {
	if err == nil {
		return ""
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
