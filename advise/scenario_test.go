package advise

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
	"github.com/kubectl-netpol/kubectl-netpol/internal/snapshot"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
	"github.com/kubectl-netpol/kubectl-netpol/whatif"
)

// workload is one StatefulSet of a scenario with one pod.
type workload struct {
	ns, name string
	labels   map[string]string
	ip       string
	ports    []corev1.ContainerPort
}

// conn is observed traffic: n connections from src to dst (workload names
// or addresses) at t.
type conn struct {
	src, dst string
	proto    flowv1.Protocol
	port     uint32
	n        int
	at       time.Time
	denied   bool
}

type scenario struct {
	workloads []workload
	nodes     map[string]string // address -> node name
	conns     []conn
}

func (s *scenario) find(name string) *workload {
	for i := range s.workloads {
		if s.workloads[i].ns+"/"+s.workloads[i].name == name {
			return &s.workloads[i]
		}
	}
	return nil
}

func (s *scenario) pod(w *workload) *corev1.Pod {
	yes := true
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: w.name + "-0", UID: k8stypes.UID("uid-" + w.ns + "-" + w.name),
		Labels:          merge(w.labels, map[string]string{"controller-revision-hash": w.name + "-5d9f"}),
		OwnerReferences: []metav1.OwnerReference{{Kind: "StatefulSet", Name: w.name, Controller: &yes}}}}
	p.Spec.NodeName = "node-a"
	p.Spec.Containers = []corev1.Container{{Name: "c", Ports: w.ports}}
	p.Status.PodIP = w.ip
	p.Status.PodIPs = []corev1.PodIP{{IP: w.ip}}
	p.Status.Phase = corev1.PodRunning
	return p
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func (s *scenario) endpoint(name string) (*flowv1.Endpoint, string) {
	if w := s.find(name); w != nil {
		return &flowv1.Endpoint{Namespace: w.ns, Pod: w.name + "-0", Labels: merge(w.labels, map[string]string{"controller-revision-hash": w.name + "-5d9f"}),
			Workload: &flowv1.Workload{Kind: "StatefulSet", Name: w.name}, NodeName: "node-a"}, w.ip
	}
	return &flowv1.Endpoint{NodeName: s.nodes[name]}, name
}

// flows are the scenario's connections as the agent reports them.
func (s *scenario) flows() []*flowv1.Flow {
	var out []*flowv1.Flow
	for _, c := range s.conns {
		src, sip := s.endpoint(c.src)
		dst, dip := s.endpoint(c.dst)
		for i := range c.n {
			f := &flowv1.Flow{Time: timestamppb.New(c.at.Add(time.Duration(i) * time.Second)), Node: "node-a", Type: flowv1.EventType_EVENT_TYPE_NEW,
				Verdict: flowv1.Verdict_VERDICT_ALLOWED, Reason: flowv1.Reason_REASON_NOT_ISOLATED, Direction: flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS,
				Ip: &flowv1.IP{Source: sip, Destination: dip}, L4: &flowv1.Layer4{Protocol: c.proto, DestinationPort: c.port, SourcePort: uint32(40000 + i)},
				Source: src, Destination: dst}
			if c.denied {
				f.Verdict, f.Reason = flowv1.Verdict_VERDICT_DENIED, flowv1.Reason_REASON_NO_RULE_MATCHED
			}
			out = append(out, f)
		}
	}
	return out
}

func (s *scenario) history(t testing.TB) *history.Set {
	t.Helper()
	fs := s.flows()
	i := 0
	set, err := history.FromFlows(func() (*flowv1.Flow, error) {
		if i == len(fs) {
			return nil, io.EOF
		}
		i++
		return fs[i-1], nil
	}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func (s *scenario) snapshot(policies ...*networkingv1.NetworkPolicy) *policy.Snapshot {
	snap := &policy.Snapshot{Policies: policies}
	for i := range s.workloads {
		snap.Pods = append(snap.Pods, s.pod(&s.workloads[i]))
	}
	for ip := range s.nodes {
		snap.NodeIPs = append(snap.NodeIPs, netip.MustParseAddr(ip))
	}
	return snap
}

func engine(t testing.TB, snap *policy.Snapshot) *policy.Engine {
	t.Helper()
	e, err := policy.NewEngine(snap)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// advise runs Advise on the scenario and reads its YAML back as the
// project's loader reads files: what a user would apply.
func (s *scenario) advise(t testing.TB, in Input) (*Report, string, []*networkingv1.NetworkPolicy) {
	t.Helper()
	in.History, in.Engine = s.history(t), engine(t, s.snapshot())
	r, err := Advise(in)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteYAML(&b, r); err != nil {
		t.Fatal(err)
	}
	if len(r.Proposals) == 0 {
		return r, b.String(), nil
	}
	path := filepath.Join(t.TempDir(), "advice.yaml")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := snapshot.LoadPolicyFiles([]string{path}, "default")
	if err != nil {
		t.Fatalf("the advice does not load: %v\n%s", err, b.String())
	}
	if len(set.Policies) != len(r.Proposals) {
		t.Fatalf("advice has %d policies, loader read %d\n%s", len(r.Proposals), len(set.Policies), b.String())
	}
	return r, b.String(), enforced(set.Policies)
}

// enforced are the policies as promote leaves them: an audited policy
// changes no verdict, so the proofs judge what it will enforce.
func enforced(pols []*networkingv1.NetworkPolicy) []*networkingv1.NetworkPolicy {
	out := make([]*networkingv1.NetworkPolicy, len(pols))
	for i, p := range pols {
		out[i] = p.DeepCopy()
		delete(out[i].Annotations, ModeAnnotation)
	}
	return out
}

// newlyDenied is what whatif says the policies deny of the scenario's
// history, compared with the scenario without them.
func (s *scenario) newlyDenied(t testing.TB, since time.Time, pols []*networkingv1.NetworkPolicy) []whatif.Change {
	t.Helper()
	rep, err := whatif.Run(whatif.Input{Current: engine(t, s.snapshot()), Proposed: engine(t, s.snapshot(pols...)), History: s.history(t), Since: since})
	if err != nil {
		t.Fatal(err)
	}
	var out []whatif.Change
	for _, c := range rep.NewlyDenied {
		if c.ObservedAllowed > 0 {
			out = append(out, c)
		}
	}
	return out
}

func changes(cs []whatif.Change) string {
	var b bytes.Buffer
	for _, c := range cs {
		fmt.Fprintf(&b, "  %s -> %s %s/%d: %s\n", c.Source, c.Destination, c.Protocol, c.Port, c.Why)
	}
	return b.String()
}

func netipAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
