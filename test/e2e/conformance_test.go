//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/internal/snapshot"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
	"github.com/kubectl-netpol/kubectl-netpol/policy/conformance"
	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

const (
	// confAttemptTimeout bounds one connection attempt. Denied TCP attempts
	// last this long (the agent drops the SYN), allowed ones take
	// milliseconds.
	confAttemptTimeout = time.Second
	// confConverge is how long a probe's table may take to match after the
	// agent applied the change (kube-proxy, conntrack of a previous case).
	// A wrong verdict that persists this long fails the case.
	confConverge = 12 * time.Second
	// confApplyWait bounds the wait for the agents to apply a change.
	confApplyWait = 15 * time.Second
)

// TestConformanceOnCluster runs the upstream NetworkPolicy e2e cases
// (policy/conformance) on the real cluster with the agent enforcing: real
// NetworkPolicies through the API server, real traffic between netprobe pods.
//
// The model is upstream's, built once and reused by every case as upstream
// does: namespaces x, y and z (unique names, mapped through the conformance
// Env so the cases' kubernetes.io/metadata.name selectors name them), pods a,
// b and c in each serving TCP and UDP on 80 and 81 and labelled pod=<name>,
// and a ClusterIP Service in front of each pod. Each case's steps are
// replayed as upstream takes them (create/update/delete policies, label
// namespaces and pods); after each step the agents' Status must show an
// apply, then every (from, to) pair of the case's pods is probed and must
// equal the case's expected table; the policy engine on the live snapshot
// must give the same table, and for one denied cell per probe the agent's
// DROP flow must name the policies the engine says isolate the deciding side.
// Between cases every policy is deleted and every label restored.
//
// Probes go to the Service's ClusterIP, as upstream's probe.go does (its
// comment notes the DNS name would do too). Not the DNS name: the cases carry
// no DNS egress rules, so through DNS a case isolating egress would fail on
// name resolution, not on the policy under test. The ClusterIP keeps what
// matters: the packet leaves the client for a Service address, and policy
// must apply after kube-proxy's DNAT to the backend pod, for pod selectors
// and ipBlocks alike.
//
// SCTP cases are not run: this kernel has no SCTP sockets.
func TestConformanceOnCluster(t *testing.T) {
	t.Parallel() // beside the tests that call runBesideConformance
	c := framework.Connect(t)
	installAgent(t, c)
	began := time.Now()
	m := newConfModel(t, c)
	t.Logf("model ready in %s: %v", time.Since(began).Round(time.Millisecond), m.env.NamespaceNames)

	cases, err := conformance.Cases(m.env)
	if err != nil {
		t.Fatal(err)
	}
	var summary []string
	ran := 0
	for _, cs := range cases {
		if probesSCTP(cs) {
			summary = append(summary, fmt.Sprintf("%-45s not run: this kernel has no SCTP sockets", cs.Name))
			continue
		}
		ran++
		caseStart := time.Now()
		m.spent = map[string]time.Duration{}
		ok := t.Run(cs.Name, func(t *testing.T) { m.run(t, cs) })
		verdict := "PASS"
		if !ok {
			verdict = "FAIL"
		}
		var phases []string
		for _, ph := range []string{"apply", "engine", "traffic", "drop", "reset"} {
			phases = append(phases, fmt.Sprintf("%s %s", ph, m.spent[ph].Round(10*time.Millisecond)))
		}
		summary = append(summary, fmt.Sprintf("%-45s %s  %s (%s)", cs.Name, verdict, time.Since(caseStart).Round(time.Millisecond), strings.Join(phases, ", ")))
	}
	t.Logf("%d of %d upstream cases run in %s (%d probed tables, %d drop attributions checked):\n%s",
		ran, len(cases), time.Since(began).Round(time.Second), m.probes, m.drops, strings.Join(summary, "\n"))
	if ran == 0 {
		t.Fatal("no conformance case ran")
	}
}

func probesSCTP(cs conformance.Case) bool {
	for _, st := range cs.Steps {
		for _, p := range st.Probes {
			if p.Protocol == corev1.ProtocolSCTP {
				return true
			}
		}
	}
	return false
}

// confModel is the upstream model on the cluster.
type confModel struct {
	c   *framework.Cluster
	env conformance.Env
	// pods are the running server pods, services their ClusterIPs.
	pods     map[conformance.PodRef]*corev1.Pod
	services map[conformance.PodRef]string
	// nsLabels and podLabels are the labels at creation, restored between cases.
	nsLabels  map[string]map[string]string
	podLabels map[conformance.PodRef]map[string]string
	// lastWrite is when the last write to the API server of apply or
	// reset began (zero: nothing written).
	lastWrite time.Time
	// probes and drops count what was checked, for the summary.
	probes, drops int
	// spent is the current case's time by phase, for the summary.
	spent map[string]time.Duration
}

// timed adds the time since start to the current case's phase.
func (m *confModel) timed(phase string, start time.Time) {
	m.spent[phase] += time.Since(start)
}

func newConfModel(t *testing.T, c *framework.Cluster) *confModel {
	t.Helper()
	full := conformance.FullModel()
	m := &confModel{
		c:         c,
		env:       conformance.Env{PodIPs: conformance.PodIPs{}, NamespaceNames: map[string]string{}},
		pods:      map[conformance.PodRef]*corev1.Pod{},
		services:  map[conformance.PodRef]string{},
		nsLabels:  map[string]map[string]string{},
		podLabels: map[conformance.PodRef]map[string]string{},
		spent:     map[string]time.Duration{},
	}
	for _, ns := range full.Namespaces {
		m.env.NamespaceNames[ns] = c.NewNamespace(t, "conf-"+ns)
	}
	ctx := framework.Context(t, 3*time.Minute)
	for _, ref := range full.Pods {
		ns := m.env.Namespace(ref.Namespace())
		labels := map[string]string{conformance.PodLabelKey: ref.Name()}
		pod := framework.ProbePod(ns, ref.Name(), labels)
		// Every pod of a namespace-less model is "a", "b" or "c": replies name
		// the namespace too, so a reply proves which backend answered.
		pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "POD_NAME", Value: ns + "/" + ref.Name()}}
		// On several nodes, a on the first, b on the second, c on the third (or the first): every
		// case then has cells on one node (x/a -> y/a) and across nodes (x/a -> x/b).
		pod.Spec.NodeName = framework.Nodes[int(ref.Name()[0]-'a')%len(framework.Nodes)].Name
		if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating pod %s: %v", ref, err)
		}
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: ref.Name()},
			Spec:       corev1.ServiceSpec{Selector: maps.Clone(labels)},
		}
		for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP} {
			for _, port := range full.Ports {
				svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{
					Name: conformance.PortName(port, proto), Port: port, TargetPort: intstr.FromInt32(port), Protocol: proto})
			}
		}
		created, err := c.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating service for %s: %v", ref, err)
		}
		m.services[ref] = created.Spec.ClusterIP
	}
	for _, ref := range full.Pods {
		ns := m.env.Namespace(ref.Namespace())
		pod := c.WaitPodReady(t, ns, ref.Name())
		ip, err := netip.ParseAddr(pod.Status.PodIP)
		if err != nil {
			t.Fatalf("pod %s has no IP: %q", ref, pod.Status.PodIP)
		}
		m.pods[ref], m.env.PodIPs[ref] = pod, ip
		m.podLabels[ref] = maps.Clone(pod.Labels)
	}
	for logical, name := range m.env.NamespaceNames {
		ns, err := c.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m.nsLabels[logical] = ns.Labels
	}
	// kube-proxy must have programmed all nine Services before any case:
	// wait (longer than a case would) for the full mesh on both protocols.
	for _, p := range []conformance.Probe{
		{Port: 80, Protocol: corev1.ProtocolTCP, Expected: conformance.NewTruthTable(full.Pods, true)},
		{Port: 81, Protocol: corev1.ProtocolUDP, Expected: conformance.NewTruthTable(full.Pods, true)},
	} {
		if _, _, diff := m.converge(t, full.Pods, p, time.Minute); diff != "" {
			t.Fatalf("before any policy, %s between the model's Services is not fully open:\n%s", p, diff)
		}
	}
	return m
}

// run replays one case and resets the model afterwards.
func (m *confModel) run(t *testing.T, cs conformance.Case) {
	defer m.reset(t)
	t.Logf("upstream: %s", cs.Upstream)
	for si, st := range cs.Steps {
		if len(st.Changes) > 0 {
			m.apply(t, st.Changes)
			t.Logf("step %d: %s", si, st.Description)
		}
		for _, p := range st.Probes {
			m.check(t, cs, si, p)
		}
	}
}

// apply makes a step's changes through the API server, then waits for
// every agent to apply a datapath after them.
func (m *confModel) apply(t *testing.T, changes []conformance.Change) {
	t.Helper()
	defer m.timed("apply", time.Now())
	ctx := framework.Context(t, time.Minute)
	m.lastWrite = time.Time{}
	for _, ch := range changes {
		var err error
		switch ch.Kind {
		case conformance.CreatePolicy:
			m.lastWrite = time.Now()
			_, err = m.c.Client.NetworkingV1().NetworkPolicies(ch.Policy.Namespace).Create(ctx, ch.Policy.DeepCopy(), metav1.CreateOptions{})
		case conformance.UpdatePolicy:
			var cur *networkingv1.NetworkPolicy
			cur, err = m.c.Client.NetworkingV1().NetworkPolicies(ch.Policy.Namespace).Get(ctx, ch.Policy.Name, metav1.GetOptions{})
			if err == nil {
				cur.Spec = *ch.Policy.Spec.DeepCopy()
				m.lastWrite = time.Now()
				_, err = m.c.Client.NetworkingV1().NetworkPolicies(ch.Policy.Namespace).Update(ctx, cur, metav1.UpdateOptions{})
			}
		case conformance.DeleteAllPolicies:
			err = m.deletePolicies(ctx)
		case conformance.LabelNamespace:
			err = m.setNamespaceLabels(ctx, ch.Namespace, ch.Labels, false)
		case conformance.LabelPod:
			err = m.setPodLabels(ctx, ch.Pod, ch.Labels, false)
		default:
			err = fmt.Errorf("unknown change kind %q", ch.Kind)
		}
		if err != nil {
			t.Fatalf("%s: %v", ch, err)
		}
	}
	m.waitApplied(t)
}

// waitApplied waits for the agents to apply after the last write, if any.
func (m *confModel) waitApplied(t *testing.T) {
	t.Helper()
	if !m.lastWrite.IsZero() {
		waitApplied(t, m.c, m.lastWrite)
	}
}

// reset deletes the case's policies and restores every label, and waits
// for the agents to apply that; the next case's baseline probe checks it.
func (m *confModel) reset(t *testing.T) {
	defer m.timed("reset", time.Now())
	ctx := framework.Context(t, time.Minute)
	m.lastWrite = time.Time{}
	if err := m.deletePolicies(ctx); err != nil {
		t.Errorf("reset: %v", err)
	}
	for logical := range m.nsLabels {
		if err := m.setNamespaceLabels(ctx, logical, nil, true); err != nil {
			t.Errorf("reset: %v", err)
		}
	}
	for ref := range m.podLabels {
		if err := m.setPodLabels(ctx, ref, nil, true); err != nil {
			t.Errorf("reset: %v", err)
		}
	}
	m.waitApplied(t)
}

func (m *confModel) deletePolicies(ctx context.Context) error {
	for _, ns := range m.env.NamespaceNames {
		// Deleting nothing changes nothing the agents would apply.
		list, err := m.c.Client.NetworkingV1().NetworkPolicies(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("listing the policies of %s: %w", ns, err)
		}
		if len(list.Items) == 0 {
			continue
		}
		m.lastWrite = time.Now()
		if err := m.c.Client.NetworkingV1().NetworkPolicies(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			return fmt.Errorf("deleting the policies of %s: %w", ns, err)
		}
	}
	return nil
}

// setNamespaceLabels adds labels to a logical namespace, or (restore) puts
// back its labels at creation; unchanged labels cost no write.
func (m *confModel) setNamespaceLabels(ctx context.Context, logical string, add map[string]string, restore bool) error {
	name := m.env.Namespace(logical)
	ns, err := m.c.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("namespace %s: %w", name, err)
	}
	want := withLabels(ns.Labels, add, m.nsLabels[logical], restore)
	if maps.Equal(want, ns.Labels) {
		return nil
	}
	ns.Labels = want
	m.lastWrite = time.Now()
	if _, err := m.c.Client.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("labelling namespace %s: %w", name, err)
	}
	return nil
}

func (m *confModel) setPodLabels(ctx context.Context, ref conformance.PodRef, add map[string]string, restore bool) error {
	ns := m.env.Namespace(ref.Namespace())
	pod, err := m.c.Client.CoreV1().Pods(ns).Get(ctx, ref.Name(), metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("pod %s: %w", ref, err)
	}
	want := withLabels(pod.Labels, add, m.podLabels[ref], restore)
	if maps.Equal(want, pod.Labels) {
		return nil
	}
	pod.Labels = want
	m.lastWrite = time.Now()
	if _, err := m.c.Client.CoreV1().Pods(ns).Update(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("labelling pod %s/%s: %w", ns, ref.Name(), err)
	}
	return nil
}

func withLabels(cur, add, original map[string]string, restore bool) map[string]string {
	if restore {
		return maps.Clone(original)
	}
	out := maps.Clone(cur)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, add)
	return out
}

// check validates one probe of step si: the engine on the live snapshot,
// the traffic, and the attribution of one drop.
func (m *confModel) check(t *testing.T, cs conformance.Case, si int, p conformance.Probe) {
	t.Helper()
	m.probes++
	st := cs.Steps[si]
	what := fmt.Sprintf("step %d %s", si, p)
	engineStart := time.Now()
	eng, livePods := m.liveEngine(t)
	engineTable := conformance.EmptyTruthTable(cs.Model.Pods)
	decisions := map[conformance.Cell]policy.Decision{}
	for _, from := range cs.Model.Pods {
		for _, to := range cs.Model.Pods {
			d := eng.Evaluate(policy.Traffic{Src: policy.Peer{Pod: livePods[from]}, Dst: policy.Peer{Pod: livePods[to]},
				Protocol: p.Protocol, Port: p.Port})
			engineTable.Set(from, to, d.Allowed)
			decisions[conformance.Cell{From: from, To: to}] = d
		}
	}
	if diff := p.Expected.Diff(engineTable); diff != "" {
		t.Errorf("%s: the policy engine on the live snapshot disagrees with upstream: %s", what, diff)
	}

	since := time.Now()
	m.timed("engine", engineStart)
	attempts, took, diff := m.converge(t, cs.Model.Pods, p, confConverge)
	m.timed("traffic", since)
	if diff != "" {
		t.Errorf("%s: real traffic disagrees with upstream (and the engine) after %d attempts over %s: %s",
			what, attempts, took.Round(time.Millisecond), diff)
		return
	}
	t.Logf("%s: %d cells as expected (%d attempts, %s)", what, len(cs.Model.Pods)*(len(cs.Model.Pods)-1), attempts, took.Round(time.Millisecond))

	// Attribution: the first denied cell's DROP flow names the isolating policies.
	for _, from := range cs.Model.Pods {
		for _, to := range cs.Model.Pods {
			d := decisions[conformance.Cell{From: from, To: to}]
			if from == to || d.Allowed {
				continue
			}
			dropStart := time.Now()
			m.checkDropFlow(t, what, st, from, to, p, d, since)
			m.timed("drop", dropStart)
			return
		}
	}
}

// converge probes the table until it equals p.Expected or limit passes,
// and returns the last diff ("" on success). A wrong verdict is never
// accepted: only a table equal to the expectation ends the loop early.
func (m *confModel) converge(t *testing.T, pods []conformance.PodRef, p conformance.Probe, limit time.Duration) (attempts int, took time.Duration, diff string) {
	t.Helper()
	start := time.Now()
	for {
		attempts++
		observed, errs := m.probeTable(t, pods, p)
		diff = p.Expected.Diff(observed)
		if diff == "" {
			return attempts, time.Since(start), ""
		}
		if time.Since(start) > limit {
			var notes []string
			for _, cell := range p.Expected.Mismatches(observed) {
				want, _ := p.Expected.Get(cell.From, cell.To)
				notes = append(notes, fmt.Sprintf("  %s -> %s: want allowed=%v, probe says %s", cell.From, cell.To, want, errs[cell]))
			}
			return attempts, time.Since(start), diff + "wrong cells:\n" + strings.Join(notes, "\n")
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// probeTable connects from every pod to every other pod's Service on p's
// port and protocol: one exec per source, all sources at once. It returns
// the observed table and, per cell, what the probe reported.
func (m *confModel) probeTable(t *testing.T, pods []conformance.PodRef, p conformance.Probe) (*conformance.TruthTable, map[conformance.Cell]string) {
	t.Helper()
	observed := conformance.EmptyTruthTable(pods)
	notes := map[conformance.Cell]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failures []string
	for _, from := range pods {
		var to []conformance.PodRef
		var targets []framework.Target
		for _, dst := range pods {
			if dst == from {
				continue // upstream ignores loopback cells
			}
			to = append(to, dst)
			targets = append(targets, framework.Target{Host: m.services[dst], Port: int(p.Port), Protocol: strings.ToLower(string(p.Protocol))})
		}
		wg.Go(func() {
			rs, err := m.exec(m.pods[from], targets)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failures = append(failures, fmt.Sprintf("probe from %s: %v", from, err))
				return
			}
			for i, r := range rs {
				cell := conformance.Cell{From: from, To: to[i]}
				wantReply := "pong " + m.env.Namespace(to[i].Namespace()) + "/" + to[i].Name()
				switch {
				case r.OK && strings.TrimSpace(r.Reply) == wantReply:
					observed.Set(from, to[i], true)
					notes[cell] = fmt.Sprintf("connected to %s in %.1fms", targets[i], r.Ms)
				case r.OK:
					// Answered by the wrong pod: neither allowed nor denied.
					notes[cell] = fmt.Sprintf("%s answered %q, want %q", targets[i], r.Reply, wantReply)
				default:
					observed.Set(from, to[i], false)
					notes[cell] = fmt.Sprintf("%s: %s", targets[i], r.Error)
				}
			}
		})
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("probing %s: %s", p, strings.Join(failures, "; "))
	}
	return observed, notes
}

// exec runs one `netprobe connect` for all targets. framework.Probe fails
// the test on error, which only the test's goroutine may do.
func (m *confModel) exec(from *corev1.Pod, targets []framework.Target) ([]framework.ProbeResult, error) {
	args := []string{"/netprobe", "connect", "-timeout", confAttemptTimeout.String()}
	for _, tg := range targets {
		args = append(args, tg.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(len(targets))*confAttemptTimeout+30*time.Second)
	defer cancel()
	stdout, stderr, err := m.c.Exec(ctx, from, args...)
	rs, perr := framework.ParseProbeResults(stdout)
	if perr != nil || len(rs) != len(targets) {
		return nil, fmt.Errorf("exec in %s/%s: %v, stderr %q, parse error %v, %d results for %d targets", from.Namespace, from.Name, err, stderr, perr, len(rs), len(targets))
	}
	return rs, nil
}

// liveEngine builds the policy engine on the cluster as it is now, the way
// `kubectl netpol explain` does, and returns the model's pods in it.
func (m *confModel) liveEngine(t *testing.T) (*policy.Engine, map[conformance.PodRef]*corev1.Pod) {
	t.Helper()
	ctx := framework.Context(t, 30*time.Second)
	set, err := (&snapshot.Live{Client: m.c.Client}).Load(ctx, snapshot.Scope{Namespaces: slices.Collect(maps.Values(m.env.NamespaceNames))})
	if err != nil {
		t.Fatalf("loading the live snapshot: %v", err)
	}
	eng, err := policy.NewEngine(set.Snapshot())
	if err != nil {
		t.Fatalf("engine on the live snapshot: %v", err)
	}
	pods := map[conformance.PodRef]*corev1.Pod{}
	for ref := range m.pods {
		ns := m.env.Namespace(ref.Namespace())
		i := slices.IndexFunc(set.Pods, func(p *corev1.Pod) bool { return p.Namespace == ns && p.Name == ref.Name() })
		if i < 0 {
			t.Fatalf("pod %s/%s is not in the live snapshot", ns, ref.Name())
		}
		pods[ref] = set.Pods[i]
	}
	return eng, pods
}

// checkDropFlow waits for the agent's DROP flow of from -> to since the probe
// began and compares its attribution with the engine's decision d, whose
// isolating policies must be policies of the step.
func (m *confModel) checkDropFlow(t *testing.T, what string, st conformance.Step, from, to conformance.PodRef, p conformance.Probe, d policy.Decision, since time.Time) {
	t.Helper()
	m.drops++
	side, isolated := d.Ingress, to
	wantDir := flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS
	if !d.Egress.Allowed {
		side, isolated, wantDir = d.Egress, from, flowv1.TrafficDirection_TRAFFIC_DIRECTION_EGRESS
	}
	var want []string
	for _, r := range side.IsolatedBy {
		want = append(want, r.Namespace+"/"+r.Name)
		if !slices.ContainsFunc(st.Policies, func(p *networkingv1.NetworkPolicy) bool { return p.Namespace == r.Namespace && p.Name == r.Name }) {
			t.Errorf("%s: the engine says %s isolates %s, which is not a policy of this step", what, r.Namespace+"/"+r.Name, isolated)
		}
	}
	if len(want) == 0 {
		t.Errorf("%s: the engine denies %s -> %s without naming an isolating policy", what, from, to)
	}
	slices.Sort(want)
	src := m.env.Namespace(from.Namespace()) + "/" + from.Name()
	dst := m.env.Namespace(to.Namespace()) + "/" + to.Name()
	filter := &flowv1.FlowFilter{
		SourcePod: []string{src}, DestinationPod: []string{dst}, DestinationPort: []uint32{uint32(p.Port)},
		Verdict: []flowv1.Verdict{flowv1.Verdict_VERDICT_DENIED},
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		fs := observe(t, m.c, &flowv1.ObserveRequest{Since: timestamppb.New(since), Allowlist: []*flowv1.FlowFilter{filter}})
		if len(fs) > 0 {
			f := fs[len(fs)-1]
			var got []string
			for _, r := range f.GetIsolatedBy() {
				got = append(got, r.GetNamespace()+"/"+r.GetName())
			}
			slices.Sort(got)
			if f.GetType() != flowv1.EventType_EVENT_TYPE_DROP || f.GetDirection() != wantDir || !slices.Equal(got, want) {
				t.Errorf("%s: drop %s -> %s attributed to %s isolated by %v, the engine says %s isolated by %v\n%s",
					what, src, dst, f.GetDirection(), got, wantDir, want, describeFlow(f))
			}
			if f.GetService().GetIp() != m.services[to] && !m.serviceSeenAtSource(t, from, to, f, since) {
				t.Errorf("%s: drop %s -> %s should name the Service %s: %s", what, src, dst, m.services[to], describeFlow(f))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: no DROP flow for the denied %s -> %s in the agents' history", what, src, dst)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// serviceSeenAtSource: a drop at ingress on another node than the client's cannot name the
// Service (kube-proxy DNATed on the client's node); the client's node must have recorded the
// connection with it.
func (m *confModel) serviceSeenAtSource(t *testing.T, from, to conformance.PodRef, drop *flowv1.Flow, since time.Time) bool {
	t.Helper()
	srcNode := m.pods[from].Spec.NodeName
	if drop.GetNode() == srcNode || drop.GetDirection() != flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS {
		return false
	}
	// An aggregate is published at the agent's next reading (1 s).
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if m.sourceRecorded(t, from, to, drop, since) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// sourceRecorded says whether the source node has a record of drop's
// connection naming the Service of to.
func (m *confModel) sourceRecorded(t *testing.T, from, to conformance.PodRef, drop *flowv1.Flow, since time.Time) bool {
	t.Helper()
	srcNode := m.pods[from].Spec.NodeName
	fs := observe(t, m.c, &flowv1.ObserveRequest{Since: timestamppb.New(since), Allowlist: []*flowv1.FlowFilter{{
		SourcePod: []string{m.env.Namespace(from.Namespace()) + "/" + from.Name()},
		Service:   []string{m.env.Namespace(to.Namespace()) + "/" + to.Name()},
	}}})
	for _, f := range fs {
		// The connection's own record, or (a key answered within the last
		// two seconds: docs/watch.md) the source node's kernel aggregate
		// that counted it, without its port.
		sport := f.GetL4().GetSourcePort()
		if f.GetNode() == srcNode && f.GetService().GetIp() == m.services[to] &&
			(sport == drop.GetL4().GetSourcePort() || sport == 0 && f.GetConnections() > 0) {
			return true
		}
	}
	return false
}

// waitApplied waits until every agent finished an apply after changed (when
// the last write began: an apply can finish before the API server's answer
// reaches the test), so that the agents have most likely applied the change
// before it is probed. An apply that began just before the write, or one
// caused by another test, also counts: this is a lower bound, and the
// probe's convergence loop does the rest.
func waitApplied(t *testing.T, c *framework.Cluster, changed time.Time) {
	t.Helper()
	ctx := framework.Context(t, confApplyWait+10*time.Second)
	deadline := time.Now().Add(confApplyWait)
	var last string
	for {
		pending, err := pendingApplies(ctx, c, changed)
		if err == nil && len(pending) == 0 {
			return
		}
		if err != nil {
			last = err.Error()
		} else {
			last = strings.Join(pending, "; ")
		}
		if time.Now().After(deadline) {
			t.Errorf("agents did not apply within %s of a change: %s", confApplyWait, last)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pendingApplies names the ready agents whose last apply did not end after
// changed, over the kept connections (agentConns); a connection that fails
// is dropped, so the next call dials its agent again.
func pendingApplies(ctx context.Context, c *framework.Cluster, changed time.Time) ([]string, error) {
	agents, err := readyAgents(ctx, c)
	if err != nil {
		return nil, err
	}
	if len(agents) == 0 {
		return nil, fmt.Errorf("no ready agent pod")
	}
	var pending []string
	for _, ag := range agents {
		conn, err := agentConns.get(ctx, c, ag)
		if err != nil {
			return nil, fmt.Errorf("dialling agent %s: %w", ag, err)
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := flowv1.NewObserverClient(conn).Status(rctx, &flowv1.StatusRequest{})
		cancel()
		if err != nil {
			agentConns.drop(ag)
			return nil, fmt.Errorf("Status of %s: %w", ag, err)
		}
		if st.GetLastApplyError() != "" {
			return nil, fmt.Errorf("agent %s: last apply failed: %s", ag, st.GetLastApplyError())
		}
		if !st.GetLastApply().AsTime().After(changed) {
			pending = append(pending, fmt.Sprintf("agent %s last applied at %s", ag, st.GetLastApply().AsTime().Format(time.RFC3339Nano)))
		}
	}
	return pending, nil
}
