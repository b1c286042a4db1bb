package conformance

import (
	"bytes"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// The ClusterNetworkPolicy cases: sigs.k8s.io/network-policy-api v0.3.0's
// conformance suite (package conformance/tests) as engine data. Its
// manifests (the model in base/manifests.yaml and each test's policies)
// are read from the module, which the build already depends on; the steps
// and expected verdicts are in cnpcases.go.

// CNPUpstreamSource is where the ClusterNetworkPolicy cases come from.
const CNPUpstreamSource = "sigs.k8s.io/network-policy-api@v0.3.0 conformance/tests"

// CNPNamespacePrefix is prepended to the short namespace names of the cases.
const CNPNamespacePrefix = "network-policy-conformance-"

// CNPCase is one upstream ClusterNetworkPolicy conformance test.
type CNPCase struct {
	// Name is upstream's ShortName, e.g. "CNPAdminTierEgressTCP".
	Name string
	// Features are upstream's (suite.Support...).
	Features []string
	// Manifests are the test's policy files, relative to the module's conformance/.
	Manifests []string
	Steps     []CNPStep
}

// CNPStep is one upstream t.Run: its actions in order. State carries over
// from step to step, as upstream's does (patches are not undone).
type CNPStep struct {
	Name    string
	Actions []CNPAction
}

// CNPActionKind is what one action does.
type CNPActionKind string

const (
	// CNPProbe connects From -> To's pod IP on Protocol/Port and expects Allowed.
	CNPProbe CNPActionKind = "Probe"
	// CNPReorderRules sets the policy's Direction rules to old[Order[i]] at i.
	CNPReorderRules CNPActionKind = "ReorderRules"
	// CNPSetAction sets the action of rule Index.
	CNPSetAction CNPActionKind = "SetAction"
	// CNPSetNamedPort replaces the protocols of rule Index with the named port Value.
	CNPSetNamedPort CNPActionKind = "SetNamedPort"
	// CNPSetPriority sets spec.priority.
	CNPSetPriority CNPActionKind = "SetPriority"
	// CNPPodLabel sets (Value != "") or removes the conformance-role label of pod From.
	CNPPodLabel CNPActionKind = "PodLabel"
	// CNPNamespaceLabels replaces the labels of Namespace (short name) with Labels.
	CNPNamespaceLabels CNPActionKind = "NamespaceLabels"
	// CNPPrependNetworksRule puts first in the policy's egress a rule named
	// Value with Action to the addresses of Pods (/32 or /128).
	CNPPrependNetworksRule CNPActionKind = "PrependNetworksRule"
	// CNPDeletePolicy deletes the NetworkPolicy Namespace/Policy.
	CNPDeletePolicy CNPActionKind = "DeletePolicy"
)

// CNPAction is one step of a case. Pods are "short-namespace/pod".
type CNPAction struct {
	Kind      CNPActionKind
	From, To  string
	Protocol  corev1.Protocol
	Port      int32
	Allowed   bool
	Policy    string
	Namespace string
	Direction policy.Direction
	Order     []int
	Index     int
	Action    policy.ClusterAction
	Priority  int32
	Value     string
	Labels    map[string]string
	Pods      []string
}

func probe(from, to, proto string, port int32, allowed bool) CNPAction {
	return CNPAction{Kind: CNPProbe, From: from, To: to, Protocol: corev1.Protocol(proto), Port: port, Allowed: allowed}
}
func reorder(pol string, d policy.Direction, order ...int) CNPAction {
	return CNPAction{Kind: CNPReorderRules, Policy: pol, Direction: d, Order: order}
}
func setAction(pol string, d policy.Direction, i int, a policy.ClusterAction) CNPAction {
	return CNPAction{Kind: CNPSetAction, Policy: pol, Direction: d, Index: i, Action: a}
}
func setPriority(pol string, p int32) CNPAction {
	return CNPAction{Kind: CNPSetPriority, Policy: pol, Priority: p}
}
func namespaceLabels(ns string, kv ...string) CNPAction {
	l := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		l[kv[i]] = kv[i+1]
	}
	return CNPAction{Kind: CNPNamespaceLabels, Namespace: ns, Labels: l}
}
func prependNetworksRule(pol, name string, a policy.ClusterAction, pods ...string) CNPAction {
	return CNPAction{Kind: CNPPrependNetworksRule, Policy: pol, Value: name, Action: a, Pods: pods}
}
func podLabel(pod, value string) CNPAction {
	return CNPAction{Kind: CNPPodLabel, From: pod, Value: value}
}
func deletePolicy(ns, name string) CNPAction {
	return CNPAction{Kind: CNPDeletePolicy, Namespace: ns, Policy: name}
}

// CNPRoleLabel is the pod label the pod-selector cases set and remove.
const CNPRoleLabel = "conformance-role"

// CNPCases returns the ported cases.
func CNPCases() []CNPCase { return slices.Clone(cnpCases) }

// CNPWorld is the state of a case while it runs: the model's namespaces and
// pods (with addresses) and the policies in force.
type CNPWorld struct {
	Namespaces      []*corev1.Namespace
	Pods            []*corev1.Pod
	Policies        []*networkingv1.NetworkPolicy
	ClusterPolicies []*cnpv1beta1.ClusterNetworkPolicy
	// Nodes carry the hostNetwork pods (upstream's "centaur"), one each.
	Nodes []*corev1.Node
}

// NewCNPWorld reads the model (base/manifests.yaml: namespaces and the
// StatefulSets' pods -0 and -1 with the controller's labels, hostNetwork
// ones left out) and the case's
// manifests from the module's conformance directory (moduleDir/conformance),
// giving pods addresses in podCIDR in model order.
func NewCNPWorld(moduleDir string, c *CNPCase, podCIDR netip.Prefix) (*CNPWorld, error) {
	base := filepath.Join(moduleDir, "conformance")
	w := &CNPWorld{}
	ip := podCIDR.Masked().Addr().Next()
	err := eachDoc(filepath.Join(base, "base", "manifests.yaml"), func(kind string, doc []byte) error {
		switch kind {
		case "Namespace":
			ns := &corev1.Namespace{}
			if err := yaml.Unmarshal(doc, ns); err != nil {
				return err
			}
			w.Namespaces = append(w.Namespaces, ns)
		case "StatefulSet":
			ss := &appsv1.StatefulSet{}
			if err := yaml.Unmarshal(doc, ss); err != nil {
				return err
			}
			for i := range int(*ss.Spec.Replicas) {
				p := &corev1.Pod{ObjectMeta: *ss.Spec.Template.ObjectMeta.DeepCopy(), Spec: *ss.Spec.Template.Spec.DeepCopy()}
				p.Name, p.Namespace = fmt.Sprintf("%s-%d", ss.Name, i), ss.Namespace
				if p.Spec.HostNetwork {
					// A hostNetwork pod has its node's address: one node each.
					node := w.node(i, podCIDR.Addr().Is4())
					p.Spec.NodeName = node.Name
					addr := node.Status.Addresses[0].Address
					p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: addr, PodIPs: []corev1.PodIP{{IP: addr}}}
					p.Labels[appsv1.StatefulSetPodNameLabel] = p.Name
					w.Pods = append(w.Pods, p)
					continue
				}
				// The labels the StatefulSet controller adds (policies select by pod name).
				p.Labels[appsv1.StatefulSetPodNameLabel] = p.Name
				p.Labels[appsv1.PodIndexLabel] = fmt.Sprint(i)
				p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip.String(), PodIPs: []corev1.PodIP{{IP: ip.String()}}}
				ip = ip.Next()
				w.Pods = append(w.Pods, p)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, m := range c.Manifests {
		err := eachDoc(filepath.Join(base, m), func(kind string, doc []byte) error {
			switch kind {
			case "ClusterNetworkPolicy":
				p := &cnpv1beta1.ClusterNetworkPolicy{}
				if err := yaml.UnmarshalStrict(doc, p); err != nil {
					return err
				}
				w.ClusterPolicies = append(w.ClusterPolicies, p)
			case "NetworkPolicy":
				p := &networkingv1.NetworkPolicy{}
				if err := yaml.UnmarshalStrict(doc, p); err != nil {
					return err
				}
				w.Policies = append(w.Policies, p)
			default:
				return fmt.Errorf("unexpected kind %q", kind)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return w, nil
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// CNPHostNetworkPorts are the host ports upstream's suite gives its
// hostNetwork pods by default (34345 and up); the manifests are templates.
var CNPHostNetworkPorts = []int{34345, 34346, 34347, 34348, 34349, 34350, 34351, 34352}

func eachDoc(path string, fn func(kind string, doc []byte) error) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	tmpl, err := template.New(filepath.Base(path)).Parse(string(raw))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var data strings.Builder
	if err := tmpl.Execute(&data, struct{ HostNetworkPorts []int }{CNPHostNetworkPorts}); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, doc := range docSep.Split(data.String(), -1) {
		var tm struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if tm.Kind == "" {
			continue
		}
		if err := fn(tm.Kind, bytes.TrimSpace([]byte(doc))); err != nil {
			return fmt.Errorf("%s: %s: %w", path, tm.Kind, err)
		}
	}
	return nil
}

// node returns model node i, created with an InternalIP in 172.18.0.0/24
// (or fc00:18::/64) and the labels a kubelet sets.
func (w *CNPWorld) node(i int, v4 bool) *corev1.Node {
	for len(w.Nodes) <= i {
		n := len(w.Nodes)
		ip := netip.MustParseAddr("fc00:18::1")
		if v4 {
			ip = netip.MustParseAddr("172.18.0.1")
		}
		for range n {
			ip = ip.Next()
		}
		name := fmt.Sprintf("node-%d", n)
		w.Nodes = append(w.Nodes, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelOSStable: "linux", corev1.LabelHostname: name}},
			Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip.String()}}},
		})
	}
	return w.Nodes[i]
}

// Pod returns the pod "short-namespace/name", or nil.
func (w *CNPWorld) Pod(short string) *corev1.Pod {
	ns, name, _ := strings.Cut(short, "/")
	for _, p := range w.Pods {
		if p.Namespace == CNPNamespacePrefix+ns && p.Name == name {
			return p
		}
	}
	return nil
}

// Snapshot is the engine's view of the current state (the objects are shared).
func (w *CNPWorld) Snapshot() *policy.Snapshot {
	return &policy.Snapshot{Namespaces: w.Namespaces, Pods: w.Pods, Policies: w.Policies, ClusterPolicies: w.ClusterPolicies, Nodes: w.Nodes}
}

// Run performs the case's steps on w: every action but probes is applied,
// and probe gets each probe with its pods; changed is true for the first
// probe after the state changed (so callers rebuild what they derive from
// it). The first error stops the run, named by its step.
func (w *CNPWorld) Run(c *CNPCase, probe func(a CNPAction, src, dst *corev1.Pod, changed bool) error) error {
	changed := true
	for _, st := range c.Steps {
		for _, a := range st.Actions {
			if a.Kind != CNPProbe {
				if err := w.Apply(a); err != nil {
					return fmt.Errorf("%s: %w", st.Name, err)
				}
				changed = true
				continue
			}
			src, dst := w.Pod(a.From), w.Pod(a.To)
			if src == nil || dst == nil {
				return fmt.Errorf("%s: unknown pod in %s -> %s", st.Name, a.From, a.To)
			}
			if err := probe(a, src, dst, changed); err != nil {
				return fmt.Errorf("%s: %w", st.Name, err)
			}
			changed = false
		}
	}
	return nil
}

// Apply performs a non-probe action on the state.
func (w *CNPWorld) Apply(a CNPAction) error {
	var cnp *cnpv1beta1.ClusterNetworkPolicy
	switch a.Kind {
	case CNPReorderRules, CNPSetAction, CNPSetPriority, CNPSetNamedPort, CNPPrependNetworksRule:
		i := slices.IndexFunc(w.ClusterPolicies, func(p *cnpv1beta1.ClusterNetworkPolicy) bool { return p.Name == a.Policy })
		if i < 0 {
			return fmt.Errorf("%s: no ClusterNetworkPolicy %q", a.Kind, a.Policy)
		}
		cnp = w.ClusterPolicies[i].DeepCopy() // objects are replaced, never changed in place
		w.ClusterPolicies[i] = cnp
	}
	switch a.Kind {
	case CNPReorderRules:
		if a.Direction == policy.Ingress {
			old := slices.Clone(cnp.Spec.Ingress)
			for i, j := range a.Order {
				cnp.Spec.Ingress[i] = old[j]
			}
		} else {
			old := slices.Clone(cnp.Spec.Egress)
			for i, j := range a.Order {
				cnp.Spec.Egress[i] = old[j]
			}
		}
	case CNPSetAction:
		act := cnpv1beta1.ClusterNetworkPolicyRuleAction(a.Action)
		if a.Direction == policy.Ingress {
			cnp.Spec.Ingress[a.Index].Action = act
		} else {
			cnp.Spec.Egress[a.Index].Action = act
		}
	case CNPPrependNetworksRule:
		var nets []cnpv1beta1.CIDR
		for _, ref := range a.Pods {
			p := w.Pod(ref)
			if p == nil {
				return fmt.Errorf("no pod %s", ref)
			}
			ip := netip.MustParseAddr(p.Status.PodIP)
			nets = append(nets, cnpv1beta1.CIDR(netip.PrefixFrom(ip, ip.BitLen()).String()))
		}
		rule := cnpv1beta1.ClusterNetworkPolicyEgressRule{Name: a.Value, Action: cnpv1beta1.ClusterNetworkPolicyRuleAction(a.Action),
			To: []cnpv1beta1.ClusterNetworkPolicyEgressPeer{{Networks: nets}}}
		cnp.Spec.Egress = append([]cnpv1beta1.ClusterNetworkPolicyEgressRule{rule}, cnp.Spec.Egress...)
	case CNPNamespaceLabels:
		i := slices.IndexFunc(w.Namespaces, func(n *corev1.Namespace) bool { return n.Name == CNPNamespacePrefix+a.Namespace })
		if i < 0 {
			return fmt.Errorf("no namespace %s", a.Namespace)
		}
		ns := w.Namespaces[i].DeepCopy()
		ns.Labels = maps.Clone(a.Labels)
		w.Namespaces[i] = ns
	case CNPSetNamedPort:
		named := []cnpv1beta1.ClusterNetworkPolicyProtocol{{DestinationNamedPort: a.Value}}
		if a.Direction == policy.Ingress {
			cnp.Spec.Ingress[a.Index].Protocols = named
		} else {
			cnp.Spec.Egress[a.Index].Protocols = named
		}
	case CNPSetPriority:
		cnp.Spec.Priority = a.Priority
	case CNPPodLabel:
		old := w.Pod(a.From)
		if old == nil {
			return fmt.Errorf("no pod %s", a.From)
		}
		p := old.DeepCopy()
		if a.Value == "" {
			delete(p.Labels, CNPRoleLabel)
		} else {
			p.Labels[CNPRoleLabel] = a.Value
		}
		w.Pods[slices.Index(w.Pods, old)] = p
	case CNPDeletePolicy:
		w.Policies = slices.DeleteFunc(w.Policies, func(p *networkingv1.NetworkPolicy) bool {
			return p.Namespace == a.Namespace && p.Name == a.Policy
		})
	default:
		return fmt.Errorf("action %q is not a change", a.Kind)
	}
	return nil
}

func setNamedPort(pol string, d policy.Direction, i int, name string) CNPAction {
	return CNPAction{Kind: CNPSetNamedPort, Policy: pol, Direction: d, Index: i, Value: name}
}
