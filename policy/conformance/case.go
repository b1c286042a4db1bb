package conformance

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// UpstreamSource is where the cases come from.
const UpstreamSource = "k8s.io/kubernetes@v1.37.2 test/e2e/network/netpol/network_policy.go"

// Case is one upstream connectivity test.
type Case struct {
	// Name is short and unique, usable as a subtest name: "default-deny-ingress",
	// "udp/enforce-ports".
	Name string
	// Upstream is the upstream test's ginkgo context and It text, to find it in UpstreamSource.
	Upstream string
	Model    Model
	Steps    []Step
}

// Step is the state validated at one point of a case, and what is probed then.
type Step struct {
	// Description lists what the case did to reach this state, in order.
	Description string
	// Changes are the actions upstream takes, in order, to go from the
	// previous step's state to this one: what a runner on a live cluster
	// replays (step 0, the baseline, has none).
	Changes []Change
	// Policies are every NetworkPolicy in force, namespaces set.
	Policies []*networkingv1.NetworkPolicy
	// NamespaceLabels are labels added (by logical namespace) to the
	// kubernetes.io/metadata.name label the API server sets.
	NamespaceLabels map[string]map[string]string
	// PodLabels are labels added to a pod's pod=<name> label.
	PodLabels map[PodRef]map[string]string
	// Probes are validated one after the other against this state.
	Probes []Probe
}

// ChangeKind is an action an upstream case takes between validations.
type ChangeKind string

const (
	CreatePolicy      ChangeKind = "CreatePolicy"
	UpdatePolicy      ChangeKind = "UpdatePolicy"      // replaces the policy of the same namespace/name
	DeleteAllPolicies ChangeKind = "DeleteAllPolicies" // in every namespace of the model
	LabelNamespace    ChangeKind = "LabelNamespace"    // adds Labels to Namespace
	LabelPod          ChangeKind = "LabelPod"          // adds Labels to Pod
)

// Change is one action of a case.
type Change struct {
	Kind ChangeKind
	// Policy is set for CreatePolicy and UpdatePolicy, its namespace the real one.
	Policy *networkingv1.NetworkPolicy
	// Namespace is the logical namespace of LabelNamespace.
	Namespace string
	// Pod is the pod of LabelPod.
	Pod    PodRef
	Labels map[string]string
}

// String is the change in a few words: "create policy x/deny-all".
func (c Change) String() string {
	switch c.Kind {
	case CreatePolicy, UpdatePolicy:
		verb := map[ChangeKind]string{CreatePolicy: "create", UpdatePolicy: "update"}[c.Kind]
		return fmt.Sprintf("%s policy %s/%s", verb, c.Policy.Namespace, c.Policy.Name)
	case DeleteAllPolicies:
		return "delete all policies"
	case LabelNamespace:
		return fmt.Sprintf("label namespace %s %s", c.Namespace, labelList(c.Labels))
	case LabelPod:
		return fmt.Sprintf("label pod %s %s", c.Pod, labelList(c.Labels))
	}
	return string(c.Kind)
}

func labelList(m map[string]string) string {
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		kv = append(kv, k+"="+m[k])
	}
	return strings.Join(kv, ",")
}

// Probe is one upstream ValidateOrFail: connect from every pod of the model
// to every pod on Port/Protocol, and compare with Expected.
type Probe struct {
	Port     int32
	Protocol corev1.Protocol
	Expected *TruthTable
}

// String is "80/TCP".
func (p Probe) String() string { return fmt.Sprintf("%d/%s", p.Port, p.Protocol) }

// Namespaces returns x, y and z as they are at step i.
func (c *Case) Namespaces(i int, env Env) []*corev1.Namespace {
	var out []*corev1.Namespace
	for _, ns := range c.Model.Namespaces {
		out = append(out, env.NamespaceObject(ns, c.Steps[i].NamespaceLabels[ns]))
	}
	return out
}

// Pods returns the model's pods as they are at step i, with their Env addresses.
func (c *Case) Pods(i int, env Env) []*corev1.Pod {
	var out []*corev1.Pod
	for _, ref := range c.Model.Pods {
		out = append(out, env.PodObject(c.Model, ref, c.Steps[i].PodLabels[ref]))
	}
	return out
}

// Snapshot is the whole state of step i for the policy engine: namespaces,
// pods with their Env addresses, and copies of the step's policies. Every
// model pod must have an address in env.
func (c *Case) Snapshot(i int, env Env) (*policy.Snapshot, error) {
	if i < 0 || i >= len(c.Steps) {
		return nil, fmt.Errorf("case %s has %d steps, not step %d", c.Name, len(c.Steps), i)
	}
	for _, ref := range c.Model.Pods {
		if !env.PodIPs[ref].IsValid() {
			return nil, fmt.Errorf("case %s: no IP for pod %s in the Env: use AssignPodIPs or DefaultEnv", c.Name, ref)
		}
	}
	snap := &policy.Snapshot{Namespaces: c.Namespaces(i, env), Pods: c.Pods(i, env)}
	for _, p := range c.Steps[i].Policies {
		snap.Policies = append(snap.Policies, p.DeepCopy())
	}
	return snap, nil
}

// builder ports an upstream test imperatively, the way upstream writes it:
// mutations (create/update a policy, label a namespace or pod) change the
// state; validate records a probe, starting a new Step when the state changed
// since the last one.
type builder struct {
	c       Case
	env     Env
	state   Step
	changes []Change
	dirty   bool
	err     error
}

func newCase(env Env, name, upstream string, protocols []corev1.Protocol, ports []int32, pods ...string) *builder {
	m := Model{Namespaces: slices.Clone(modelNamespaces), Ports: ports, Protocols: protocols}
	for _, p := range pods {
		m.Pods = append(m.Pods, PodRef(p))
	}
	b := &builder{c: Case{Name: name, Upstream: upstream, Model: m}, env: env}
	// Upstream's initializeCluster waits until every server answers on every
	// port and protocol of the model before any policy exists.
	b.dirty = true
	for _, proto := range protocols {
		for _, port := range ports {
			b.validate(port, proto, b.reach())
		}
	}
	return b
}

// ns is the real name of a logical namespace.
func (b *builder) ns(logical string) string { return b.env.Namespace(logical) }

// reach starts an expectation: everything allowed, as NewReachability(pods, true).
func (b *builder) reach() *TruthTable { return NewTruthTable(b.c.Model.Pods, true) }

func (b *builder) changed(c Change) {
	if !b.dirty {
		b.changes = nil
	}
	b.changes = append(b.changes, c)
	b.dirty = true
}

// create adds a policy in a logical namespace.
func (b *builder) create(logicalNS string, p *networkingv1.NetworkPolicy) {
	p = p.DeepCopy()
	p.Namespace = b.ns(logicalNS)
	b.state.Policies = append(b.state.Policies, p)
	b.changed(Change{Kind: CreatePolicy, Policy: p})
}

// update replaces the policy of the same namespace and name.
func (b *builder) update(logicalNS string, p *networkingv1.NetworkPolicy) {
	p = p.DeepCopy()
	p.Namespace = b.ns(logicalNS)
	i := slices.IndexFunc(b.state.Policies, func(q *networkingv1.NetworkPolicy) bool {
		return q.Namespace == p.Namespace && q.Name == p.Name
	})
	if i < 0 {
		panic(fmt.Sprintf("conformance: case %s updates policy %s/%s, which does not exist", b.c.Name, logicalNS, p.Name))
	}
	b.state.Policies[i] = p
	b.changed(Change{Kind: UpdatePolicy, Policy: p})
}

// deleteAllPolicies is upstream's cleanNetworkPolicies.
func (b *builder) deleteAllPolicies() {
	b.state.Policies = nil
	b.changed(Change{Kind: DeleteAllPolicies})
}

func (b *builder) addNamespaceLabel(logicalNS, key, value string) {
	b.state.NamespaceLabels = cloneLabels(b.state.NamespaceLabels)
	b.state.NamespaceLabels[logicalNS] = withLabel(b.state.NamespaceLabels[logicalNS], key, value)
	b.changed(Change{Kind: LabelNamespace, Namespace: logicalNS, Labels: map[string]string{key: value}})
}

func (b *builder) addPodLabels(pod string, labels map[string]string) {
	b.state.PodLabels = cloneLabels(b.state.PodLabels)
	ref := PodRef(pod)
	for k, v := range labels {
		b.state.PodLabels[ref] = withLabel(b.state.PodLabels[ref], k, v)
	}
	b.changed(Change{Kind: LabelPod, Pod: ref, Labels: maps.Clone(labels)})
}

// validate is upstream's ValidateOrFail.
func (b *builder) validate(port int32, proto corev1.Protocol, expected *TruthTable) {
	if b.dirty {
		desc := "baseline: no policies (upstream waitForHTTPServers)"
		if len(b.c.Steps) > 0 {
			var parts []string
			for _, c := range b.changes {
				parts = append(parts, c.String())
			}
			desc = strings.Join(parts, "; ")
		}
		b.c.Steps = append(b.c.Steps, Step{
			Description:     desc,
			Changes:         b.changes,
			Policies:        slices.Clone(b.state.Policies),
			NamespaceLabels: b.state.NamespaceLabels,
			PodLabels:       b.state.PodLabels,
		})
		b.dirty = false
	}
	last := &b.c.Steps[len(b.c.Steps)-1]
	last.Probes = append(last.Probes, Probe{Port: port, Protocol: proto, Expected: expected})
}

// ip is the Env address of a model pod, for the ipBlock cases.
func (b *builder) ip(pod string) netip.Addr {
	ip := b.env.PodIPs[PodRef(pod)]
	if !ip.IsValid() && b.err == nil {
		b.err = fmt.Errorf("case %s builds an ipBlock from the IP of pod %s, which the Env does not have", b.c.Name, pod)
	}
	return ip
}

func (b *builder) done() (Case, error) { return b.c, b.err }

// cloneLabels copies a label map of maps, so a Step never shares maps with a later one.
func cloneLabels[K comparable](m map[K]map[string]string) map[K]map[string]string {
	out := make(map[K]map[string]string, len(m))
	for k, v := range m {
		out[k] = maps.Clone(v)
	}
	return out
}

func withLabel(m map[string]string, key, value string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	m[key] = value
	return m
}
