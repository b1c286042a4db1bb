package cli

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// statusServer is a real gRPC Observer server on loopback answering Status
// with a fixed response.
type statusServer struct {
	flowv1.UnimplementedObserverServer
	resp *flowv1.StatusResponse
}

func (s *statusServer) Status(context.Context, *flowv1.StatusRequest) (*flowv1.StatusResponse, error) {
	return s.resp, nil
}

// serveStatus starts a server for resp and returns its address.
func serveStatus(t *testing.T, resp *flowv1.StatusResponse) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	flowv1.RegisterObserverServer(srv, &statusServer{resp: resp})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// addrDialer dials, for each pod name, the address in addrs over real gRPC;
// a pod without an address fails as an unreachable port-forward would.
func addrDialer(addrs map[string]string) statusDialer {
	return func(ctx context.Context, pod *corev1.Pod) (flowv1.ObserverClient, io.Closer, error) {
		addr, ok := addrs[pod.Name]
		if !ok {
			return nil, nil, errors.New("port-forward to pod " + pod.Namespace + "/" + pod.Name + ": error upgrading connection: pods \"" + pod.Name + "\" is forbidden")
		}
		cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, nil, err
		}
		return flowv1.NewObserverClient(cc), cc, nil
	}
}

func statusPod(name, node, ver string, ready bool, tweak ...func(*corev1.Pod)) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: install.DefaultNamespace, Name: name, Labels: map[string]string{
			install.LabelName: install.AgentName, install.LabelPartOf: install.PartOf, install.LabelVersion: ver}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "agent", Image: "example.test/agent:" + ver}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "agent", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}},
	}
	for _, tw := range tweak {
		tw(p)
	}
	return p
}

func runStatus(t *testing.T, objs []runtime.Object, dial statusDialer, args ...string) (string, error) {
	t.Helper()
	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	f := offlineFactory(t)
	o := &StatusOptions{IOStreams: streams, factory: f, ClientVersion: "v0.2.0", Dial: dial, Now: func() time.Time { return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) },
		agentClients: agentClients{Kube: fake.NewClientset(objs...)}}
	root := agentRoot(f, newCmdStatus(o))
	root.SetArgs(append([]string{"status"}, args...))
	err := root.Execute()
	return out.String(), err
}

// statusCluster is four nodes: a healthy agent of this version; an older
// agent with a full map, a failed node check, lost events and a failed
// apply; a pod stuck pulling its image; and a ready pod whose port-forward
// is refused.
func statusCluster(t *testing.T) ([]runtime.Object, statusDialer) {
	healthy := serveStatus(t, &flowv1.StatusResponse{
		Version: "v0.2.0", Node: "node-a", Ready: true, EndpointsEnforced: 12, Policies: 3,
		Maps:              []*flowv1.MapUsage{{Name: "endpoints", Entries: 12, MaxEntries: 65536}, {Name: "rules", Entries: 300, MaxEntries: 1000}},
		Checks:            []*flowv1.NodeCheck{{Name: "bridge-nf-call-iptables", Ok: true, Detail: "1"}},
		Uptime:            durationpb.New(90 * time.Minute),
		LastApply:         timestamppb.New(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)),
		FlowsSeen:         5000,
		RingCapacity:      4096,
		EventsLost:        0,
		EventsRateLimited: 0,
		Cni:               &flowv1.CNI{Name: "Calico", Mode: "iptables", Coverage: "full", EnforcesPolicy: true, Evidence: []string{"link tunl0 (ipip)"}},
		Enforcement:       &flowv1.Enforcement{State: "enforcing", Detail: "the hooks saw the traffic of all 3 pods that carried traffic in the last 10s", ActivePods: 3},
		History: &flowv1.HistoryCoverage{Node: "node-a", Oldest: timestamppb.New(time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)),
			Records: 5000, Keys: 400, MemoryBytes: 16 << 20, MemoryBudgetBytes: 64 << 20},
	})
	troubled := serveStatus(t, &flowv1.StatusResponse{
		Version: "v0.1.0", Node: "node-b", Ready: false, EndpointsEnforced: 40, Policies: 7, ClusterPolicies: 2, ClusterPoliciesWatched: true, DomainNamePolicies: []string{"egress-allowlist"},
		Maps:              []*flowv1.MapUsage{{Name: "rules", Entries: 995, MaxEntries: 1000}},
		Checks:            []*flowv1.NodeCheck{{Name: "bridge-nf-call-iptables", Ok: false, Detail: "net.bridge.bridge-nf-call-iptables is 0: run sysctl -w net.bridge.bridge-nf-call-iptables=1"}, {Name: "bpffs", Ok: true}},
		EventsLost:        17,
		EventsRateLimited: 4,
		LastApplyError:    "rules map full",
		Cni:               &flowv1.CNI{Name: "Cilium", Mode: "vxlan tunnel", Coverage: "none"},
		Enforcement: &flowv1.Enforcement{State: "not enforcing", ActivePods: 2, BypassingPods: 2, Bypassing: []string{"shop/web-0", "shop/db-0"},
			Detail:  "Cilium (vxlan tunnel) bypasses netfilter: pods sent 4000 packets in the last 10s and the hooks saw 12; 2 of 2 pods with traffic were never seen (shop/web-0, shop/db-0)",
			Checked: timestamppb.New(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))},
		History: &flowv1.HistoryCoverage{Node: "node-b", Oldest: timestamppb.New(time.Date(2026, 11, 25, 10, 30, 0, 0, time.UTC)),
			Records: 90000, MemoryBytes: 63 << 20, MemoryBudgetBytes: 64 << 20, DroppedRecords: 1200, DroppedConnections: 56000},
	})
	objs := []runtime.Object{
		statusPod("agent-a", "node-a", "v0.2.0", true),
		statusPod("agent-b", "node-b", "v0.1.0", false),
		statusPod("agent-c", "node-c", "v0.2.0", false, func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodPending
			p.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "no such image"}}
		}),
		statusPod("agent-d", "node-d", "v0.2.0", true),
		// The agent exits at start-up: its fatal error is the termination message.
		statusPod("agent-e", "node-e", "v0.2.0", false, func(p *corev1.Pod) {
			p.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
			p.Status.ContainerStatuses[0].LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 1, Reason: "Error", Message: "loading eBPF objects: kernel lacks BPF_LINK_TYPE_NETFILTER (Linux 6.4 or later needed)\nmore"}}
		}),
		// Another pod on node-a being replaced: status asks the ready one.
		statusPod("agent-a-old", "node-a", "v0.1.0", true, func(p *corev1.Pod) { now := metav1.Now(); p.DeletionTimestamp = &now }),
		// Killed for memory: no message, the exit says it.
		statusPod("agent-f", "node-f", "v0.2.0", false, func(p *corev1.Pod) {
			p.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
			p.Status.ContainerStatuses[0].LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}}
		}),
		// Seven nodes want an agent, six have one.
		&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: install.DefaultNamespace, Name: install.AgentName},
			Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 7}},
		// Not an agent: ignored.
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: install.DefaultNamespace, Name: "web", Labels: map[string]string{"app": "web"}}},
		// Audit mode: a policy's annotation, a namespace's, and a policy
		// enforced in an auditing namespace.
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Annotations: map[string]string{policy.ModeAnnotation: policy.ModeAudit}}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "lockdown", Annotations: map[string]string{policy.ModeAnnotation: policy.ModeAudit}}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-only"}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "dns", Annotations: map[string]string{policy.ModeAnnotation: policy.ModeEnforce}}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "enforced"}},
	}
	return objs, addrDialer(map[string]string{"agent-a": healthy, "agent-b": troubled, "agent-a-old": troubled})
}

func TestStatusTable(t *testing.T) {
	objs, dial := statusCluster(t)
	out, err := runStatus(t, objs, dial)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "status_table", out)
}

func TestStatusJSON(t *testing.T) {
	objs, dial := statusCluster(t)
	out, err := runStatus(t, objs, dial, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var r statusReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if r.Namespace != install.DefaultNamespace || r.ClientVersion != "v0.2.0" || r.Desired != 7 || len(r.Nodes) != 6 {
		t.Fatalf("report = %+v", r)
	}
	a, b, c, d, e, f := r.Nodes[0], r.Nodes[1], r.Nodes[2], r.Nodes[3], r.Nodes[4], r.Nodes[5]
	if a.Pod != "agent-a" || !a.PodReady || a.Agent == nil || !a.Agent.Ready || a.Agent.EndpointsEnforced != 12 || a.Skew != "" ||
		a.Agent.Uptime != "1h30m0s" || a.Agent.LastApply == nil || len(a.Agent.Maps) != 2 || a.Agent.Maps[1].Pressure != 30 {
		t.Errorf("node-a = %+v agent %+v", a, a.Agent)
	}
	if b.Agent == nil || b.Agent.Ready || b.Agent.EventsLost != 17 || b.Agent.Maps[0].Pressure != 99.5 || b.Agent.LastApplyError != "rules map full" ||
		!strings.Contains(b.Skew, "older than this plugin") || b.Agent.Checks[0].OK {
		t.Errorf("node-b = %+v agent %+v", b, b.Agent)
	}
	if a.Agent.CNI == nil || a.Agent.CNI.Name != "Calico" || !a.Agent.CNI.EnforcesPolicy || a.Agent.Enforcement == nil || a.Agent.Enforcement.State != "enforcing" {
		t.Errorf("node-a CNI %+v enforcement %+v", a.Agent.CNI, a.Agent.Enforcement)
	}
	if e := b.Agent.Enforcement; e == nil || e.State != "not enforcing" || e.BypassingPods != 2 || e.Checked == nil || b.Agent.CNI.Coverage != "none" {
		t.Errorf("node-b enforcement %+v", e)
	}
	if c.Agent != nil || c.PodState != "pending (ImagePullBackOff)" || !strings.Contains(c.Error, "agent pod agent-c is pending (ImagePullBackOff)") {
		t.Errorf("node-c = %+v", c)
	}
	if d.Agent != nil || !strings.Contains(d.Error, "cannot reach the agent: port-forward to pod netpol-system/agent-d") {
		t.Errorf("node-d = %+v", d)
	}
	if e.Agent != nil || e.Error != "agent pod agent-e is pending (CrashLoopBackOff: loading eBPF objects: kernel lacks BPF_LINK_TYPE_NETFILTER (Linux 6.4 or later needed))" {
		t.Errorf("node-e = %+v", e)
	}
	if f.Error != "agent pod agent-f is pending (CrashLoopBackOff); last exit: OOMKilled, exit code 137" {
		t.Errorf("node-f = %+v", f)
	}
	if want := []string{"db/lockdown", "shop/web-only (namespace shop)"}; strings.Join(r.Audited, ",") != strings.Join(want, ",") {
		t.Errorf("audited = %q, want %q", r.Audited, want)
	}
}

func TestStatusYAML(t *testing.T) {
	objs, dial := statusCluster(t)
	out, err := runStatus(t, objs, dial, "-o", "yaml")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "namespace: netpol-system\n", "  node: node-a\n", "pressurePercent: 99.5\n", "state: not enforcing\n", "name: Cilium\n")
}

func TestStatusNotInstalled(t *testing.T) {
	_, err := runStatus(t, nil, addrDialer(nil))
	if err == nil || !strings.Contains(err.Error(), "not installed in namespace netpol-system") || !strings.Contains(err.Error(), "kubectl netpol install") {
		t.Errorf("err = %v", err)
	}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: install.DefaultNamespace, Name: install.AgentName}}
	_, err = runStatus(t, []runtime.Object{ds}, addrDialer(nil))
	if err == nil || !strings.Contains(err.Error(), "exists but has no pods") {
		t.Errorf("err = %v", err)
	}
}

// TestStatusNodeWithoutBPFFS: a node whose preflight init container fails
// shows its message (bpffs missing, and the fix) in the node's row.
func TestStatusNodeWithoutBPFFS(t *testing.T) {
	msg := "bpffs is not mounted at /sys/fs/bpf on node node-b: mount it on the node (`mount -t bpf bpffs /sys/fs/bpf`, " +
		"or enable systemd's sys-fs-bpf.mount), or reinstall with `kubectl netpol install --mount-bpffs`"
	objs := []runtime.Object{
		statusPod("agent-b", "node-b", "v0.2.0", false, func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodPending
			p.Status.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: install.PreflightContainer, RestartCount: 4,
				State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", Message: msg}}}}
		}),
		&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: install.DefaultNamespace, Name: install.AgentName},
			Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 1}},
	}
	out, err := runStatus(t, objs, addrDialer(nil))
	t.Logf("status:\n%s (err %v)", out, err)
	if want := "node-b: agent pod agent-b is pending (Init:CrashLoopBackOff: " + msg + ")"; !strings.Contains(out, want) {
		t.Errorf("status lacks\n  %s", want)
	}
	out, _ = runStatus(t, objs, addrDialer(nil), "-o", "json")
	var r statusReport
	if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.Nodes) != 1 || r.Nodes[0].PodState != "pending (Init:CrashLoopBackOff: "+msg+")" {
		t.Errorf("JSON report = %+v (%v)", r, err)
	}
}
