package snapshot

import (
	"sort"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// Workload is a controller whose pods a user can name by the workload
// (deploy/NAME, sts/NAME, ds/NAME, job/NAME, rs/NAME).
type Workload struct {
	Kind      string // Deployment, StatefulSet, DaemonSet, Job, ReplicaSet
	Namespace string
	Name      string
	Selector  *metav1.LabelSelector
	// Template is the pod template, used when no pod of the workload exists
	// (manifests in a repository usually carry workloads, not pods).
	Template *corev1.PodTemplateSpec
}

// Set is the objects one evaluation runs on.
type Set struct {
	Namespaces []*corev1.Namespace
	Pods       []*corev1.Pod
	Policies   []*networkingv1.NetworkPolicy
	// ClusterPolicies are ClusterNetworkPolicies (v1beta1; v1alpha2 files
	// are read into the same type: the schema is the same). Always the
	// whole cluster's, even in a Partial set: they select pods anywhere.
	ClusterPolicies []*cnpv1beta1.ClusterNetworkPolicy
	Nodes           []*corev1.Node
	Workloads       []Workload

	// Origins maps an object key (see Key) to where it was read, e.g.
	// "policies.yaml:12" or `context "prod"`, for messages.
	Origins map[string]string
	// Ignored counts documents of kinds evaluation does not use, by kind.
	Ignored map[string]int
	// Warnings are non-fatal problems met while loading (e.g. nodes not readable).
	Warnings []string
	// Partial is true when only some namespaces' pods and policies were loaded
	// (a live load scoped to the namespaces a question is about).
	Partial bool
}

// Key names an object for Origins: "Kind/namespace/name" ("Kind/name" when cluster-scoped).
func Key(kind, namespace, name string) string {
	if namespace == "" {
		return kind + "/" + name
	}
	return kind + "/" + namespace + "/" + name
}

// Origin returns where the object was read, or "".
func (s *Set) Origin(kind, namespace, name string) string {
	return s.Origins[Key(kind, namespace, name)]
}

func (s *Set) setOrigin(kind, namespace, name, where string) {
	if s.Origins == nil {
		s.Origins = map[string]string{}
	}
	s.Origins[Key(kind, namespace, name)] = where
}

// Snapshot returns the policy engine's view of the set. Node addresses
// (policy.NodeAddresses: the rule the agent uses too) become NodeIPs so
// traffic from or to any node is recognised as node traffic. When the set is
// Partial, pods outside the loaded namespaces cannot veto a derived node
// address; the agent, which sees every pod, decides what is enforced.
func (s *Set) Snapshot() *policy.Snapshot {
	snap := &policy.Snapshot{Namespaces: s.Namespaces, Pods: s.Pods, Policies: s.Policies, ClusterPolicies: s.ClusterPolicies, Nodes: s.Nodes}
	snap.NodeIPs = policy.NodeIPs(policy.NodeAddresses(s.Nodes, policy.PodsHold(s.Pods)))
	return snap
}

// SetClusterPolicies adds each ClusterNetworkPolicy to the set, replacing
// one with the same name (the what-if of `--with-policy`). It returns the
// names of those that replaced existing ones.
func (s *Set) SetClusterPolicies(policies []*cnpv1beta1.ClusterNetworkPolicy, origin func(*cnpv1beta1.ClusterNetworkPolicy) string) (replaced []string) {
	index := make(map[string]int, len(s.ClusterPolicies))
	for i, p := range s.ClusterPolicies {
		index[p.Name] = i
	}
	for _, p := range policies {
		if i, ok := index[p.Name]; ok {
			s.ClusterPolicies[i] = p
			replaced = append(replaced, p.Name)
		} else {
			index[p.Name] = len(s.ClusterPolicies)
			s.ClusterPolicies = append(s.ClusterPolicies, p)
		}
		if origin != nil {
			s.setOrigin(KindClusterNetworkPolicy, "", p.Name, origin(p))
		}
	}
	return replaced
}

// SetPolicies adds each policy to the set, replacing one with the same
// namespace and name: the what-if of `--with-policy`. It returns the keys
// ("namespace/name") of the policies that replaced existing ones.
func (s *Set) SetPolicies(policies []*networkingv1.NetworkPolicy, origin func(*networkingv1.NetworkPolicy) string) (replaced []string) {
	index := make(map[string]int, len(s.Policies))
	for i, p := range s.Policies {
		index[p.Namespace+"/"+p.Name] = i
	}
	for _, p := range policies {
		k := p.Namespace + "/" + p.Name
		if i, ok := index[k]; ok {
			s.Policies[i] = p
			replaced = append(replaced, k)
		} else {
			index[k] = len(s.Policies)
			s.Policies = append(s.Policies, p)
		}
		if origin != nil {
			s.setOrigin("NetworkPolicy", p.Namespace, p.Name, origin(p))
		}
	}
	return replaced
}

// NamespaceNames returns the sorted names of the namespaces in the set,
// including namespaces only referenced by pods or policies.
func (s *Set) NamespaceNames() []string {
	seen := map[string]bool{}
	for _, n := range s.Namespaces {
		seen[n.Name] = true
	}
	for _, p := range s.Pods {
		seen[p.Namespace] = true
	}
	for _, p := range s.Policies {
		seen[p.Namespace] = true
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// sortObjects orders everything by namespace and name so output never depends
// on file or API order.
func (s *Set) sortObjects() {
	sort.SliceStable(s.Namespaces, func(i, j int) bool { return s.Namespaces[i].Name < s.Namespaces[j].Name })
	sort.SliceStable(s.Pods, func(i, j int) bool { return nsLess(s.Pods[i].ObjectMeta, s.Pods[j].ObjectMeta) })
	sort.SliceStable(s.Policies, func(i, j int) bool { return nsLess(s.Policies[i].ObjectMeta, s.Policies[j].ObjectMeta) })
	sort.SliceStable(s.Nodes, func(i, j int) bool { return s.Nodes[i].Name < s.Nodes[j].Name })
	sort.SliceStable(s.ClusterPolicies, func(i, j int) bool { return s.ClusterPolicies[i].Name < s.ClusterPolicies[j].Name })
	sort.SliceStable(s.Workloads, func(i, j int) bool {
		a, b := s.Workloads[i], s.Workloads[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.Name < b.Name
	})
}

func nsLess(a, b metav1.ObjectMeta) bool {
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}
