package snapshot

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
)

// KindClusterNetworkPolicy is the kind of policy.networking.k8s.io ClusterNetworkPolicies.
const KindClusterNetworkPolicy = "ClusterNetworkPolicy"

// Scope says which part of a cluster a question is about. Only pods and
// policies are scoped: namespaces and nodes are always read in full, because
// namespace selectors and node traffic need all of them.
type Scope struct {
	// AllNamespaces loads pods and policies of every namespace.
	AllNamespaces bool
	// Namespaces whose pods and policies are loaded.
	Namespaces []string
	// IPs that may belong to pods in other namespaces: their namespaces are
	// added to the scope (found with a status.podIP field selector).
	IPs []netip.Addr
	// WorkloadKinds lists, per namespace, the workload kinds to read
	// (Deployment, StatefulSet, DaemonSet, Job, ReplicaSet).
	WorkloadKinds map[string][]string
}

// Cluster identifies the cluster a live load talks to, for messages.
type Cluster struct {
	Context string
	Server  string
}

func (c Cluster) String() string {
	ctx := c.Context
	if ctx == "" {
		ctx = "(none)"
	}
	return fmt.Sprintf("context %q, server %s", ctx, c.Server)
}

// ClusterError is an API failure, with the cluster it came from.
type ClusterError struct {
	Cluster Cluster
	Op      string // e.g. "listing pods in namespace db"
	Err     error
}

func (e *ClusterError) Error() string {
	if isUnreachable(e.Err) {
		return fmt.Sprintf("cannot reach the cluster (%s) while %s: %v\n"+
			"check that the cluster is up and --context/--kubeconfig point at it, or use -f FILE to evaluate manifests offline", e.Cluster, e.Op, e.Err)
	}
	return fmt.Sprintf("%s (%s): %v", e.Op, e.Cluster, e.Err)
}

func (e *ClusterError) Unwrap() error { return e.Err }

// isUnreachable tells transport failures (no answer) from API answers.
func isUnreachable(err error) bool {
	var status apierrors.APIStatus
	return !errors.As(err, &status)
}

// ScopedListsMax is the most namespaces plus addresses a Scope is loaded by
// per-namespace lists for; a larger one is loaded in full.
const ScopedListsMax = 16

// Live loads from a cluster through client-go.
type Live struct {
	Client kubernetes.Interface
	// CNPClient reads ClusterNetworkPolicies; nil reads none. A cluster
	// without the CRD has none (no error).
	CNPClient cnpclient.Interface
	Cluster   Cluster
	// PageSize bounds each list call (0: 500) so huge clusters stream in pages.
	PageSize int64
}

func (l *Live) fail(op string, err error) error {
	return &ClusterError{Cluster: l.Cluster, Op: op, Err: err}
}

// Load reads the objects of scope.
func (l *Live) Load(ctx context.Context, scope Scope) (*Set, error) {
	s := &Set{}
	origin := "live " + l.Cluster.String()
	nsList, err := listAll(ctx, l.pageSize(), func(o metav1.ListOptions) ([]corev1.Namespace, string, error) {
		r, err := l.Client.CoreV1().Namespaces().List(ctx, o)
		if err != nil {
			return nil, "", err
		}
		return r.Items, r.Continue, nil
	})
	switch {
	case apierrors.IsForbidden(err):
		// Namespace-scoped RBAC: evaluation still works with the name label only.
		s.Warnings = append(s.Warnings, "cannot list namespaces (forbidden): namespace selectors see only the kubernetes.io/metadata.name label")
	case err != nil:
		return nil, l.fail("listing namespaces", err)
	}
	for i := range nsList {
		s.Namespaces = append(s.Namespaces, &nsList[i])
	}
	nodes, err := listAll(ctx, l.pageSize(), func(o metav1.ListOptions) ([]corev1.Node, string, error) {
		r, err := l.Client.CoreV1().Nodes().List(ctx, o)
		if err != nil {
			return nil, "", err
		}
		return r.Items, r.Continue, nil
	})
	switch {
	case apierrors.IsForbidden(err):
		s.Warnings = append(s.Warnings, "cannot list nodes (forbidden): traffic from node addresses is not recognised as node traffic")
	case err != nil:
		return nil, l.fail("listing nodes", err)
	}
	for i := range nodes {
		s.Nodes = append(s.Nodes, &nodes[i])
	}

	if err := l.loadClusterPolicies(ctx, s, origin); err != nil {
		return nil, err
	}

	namespaces := map[string]bool{}
	for _, n := range scope.Namespaces {
		namespaces[n] = true
	}
	// A scoped load costs two list calls per namespace and one per address; past a few, one
	// paginated list of everything makes far fewer calls, each waiting on the client's rate
	// limit (check of 10,000 items over 100 namespaces of a 11k-pod cluster: 19 s of waiting
	// for 0.7 s of work; docs/perf.md, "Scale with simulated nodes").
	if !scope.AllNamespaces && len(scope.Namespaces)+len(scope.IPs) > ScopedListsMax {
		scope.AllNamespaces = true
	}
	if !scope.AllNamespaces {
		for _, ip := range scope.IPs {
			pods, err := l.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{
				FieldSelector: fields.OneTermEqualSelector("status.podIP", ip.String()).String(),
			})
			if err != nil {
				return nil, l.fail("finding the pod with IP "+ip.String(), err)
			}
			for _, p := range pods.Items {
				if !p.Spec.HostNetwork {
					namespaces[p.Namespace] = true
				}
			}
		}
	}
	targets := []string{metav1.NamespaceAll}
	if !scope.AllNamespaces {
		targets = targets[:0]
		for n := range namespaces {
			targets = append(targets, n)
		}
		sort.Strings(targets)
		s.Partial = true
	}
	for _, ns := range targets {
		where := "in namespace " + ns
		if ns == metav1.NamespaceAll {
			where = "in all namespaces"
		}
		pods, err := listAll(ctx, l.pageSize(), func(o metav1.ListOptions) ([]corev1.Pod, string, error) {
			r, err := l.Client.CoreV1().Pods(ns).List(ctx, o)
			if err != nil {
				return nil, "", err
			}
			return r.Items, r.Continue, nil
		})
		if err != nil {
			return nil, l.fail("listing pods "+where, err)
		}
		for i := range pods {
			s.Pods = append(s.Pods, &pods[i])
			s.setOrigin("Pod", pods[i].Namespace, pods[i].Name, origin)
		}
		pols, err := listAll(ctx, l.pageSize(), func(o metav1.ListOptions) ([]networkingv1.NetworkPolicy, string, error) {
			r, err := l.Client.NetworkingV1().NetworkPolicies(ns).List(ctx, o)
			if err != nil {
				return nil, "", err
			}
			return r.Items, r.Continue, nil
		})
		if err != nil {
			return nil, l.fail("listing networkpolicies "+where, err)
		}
		for i := range pols {
			s.Policies = append(s.Policies, &pols[i])
			s.setOrigin("NetworkPolicy", pols[i].Namespace, pols[i].Name, origin)
		}
	}
	for ns, kinds := range scope.WorkloadKinds {
		for _, kind := range kinds {
			ws, err := l.Workloads(ctx, kind, ns)
			if err != nil {
				return nil, l.fail(fmt.Sprintf("listing %ss in namespace %s", kind, ns), err)
			}
			s.Workloads = append(s.Workloads, ws...)
		}
	}
	s.sortObjects()
	return s, nil
}

// loadClusterPolicies lists every ClusterNetworkPolicy (they are cluster
// scoped and select pods anywhere, so never scoped like pods).
func (l *Live) loadClusterPolicies(ctx context.Context, s *Set, origin string) error {
	if l.CNPClient == nil {
		return nil
	}
	cnps, err := listAll(ctx, l.pageSize(), func(o metav1.ListOptions) ([]cnpv1beta1.ClusterNetworkPolicy, string, error) {
		r, err := l.CNPClient.PolicyV1beta1().ClusterNetworkPolicies().List(ctx, o)
		if err != nil {
			return nil, "", err
		}
		return r.Items, r.Continue, nil
	})
	switch {
	case apierrors.IsNotFound(err):
		return nil // the CRD is not installed: no cluster policies
	case apierrors.IsForbidden(err):
		s.Warnings = append(s.Warnings, "cannot list clusternetworkpolicies (forbidden): Admin and Baseline tiers are left out of the verdicts")
		return nil
	case err != nil:
		return l.fail("listing clusternetworkpolicies", err)
	}
	for i := range cnps {
		s.ClusterPolicies = append(s.ClusterPolicies, &cnps[i])
		s.setOrigin(KindClusterNetworkPolicy, "", cnps[i].Name, origin)
	}
	return nil
}

func (l *Live) pageSize() int64 {
	if l.PageSize > 0 {
		return l.PageSize
	}
	return 500
}

// listAll pages through a list call.
func listAll[T any](ctx context.Context, limit int64, list func(metav1.ListOptions) ([]T, string, error)) ([]T, error) {
	var all []T
	opts := metav1.ListOptions{Limit: limit}
	for {
		items, cont, err := list(opts)
		if err != nil {
			return nil, err
		}
		all = append(all, items...)
		if cont == "" {
			return all, nil
		}
		opts.Continue = cont
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// Workloads lists the workloads of kind (Deployment, StatefulSet, DaemonSet,
// Job or ReplicaSet) in namespace ns.
func (l *Live) Workloads(ctx context.Context, kind, ns string) ([]Workload, error) {
	var out []Workload
	o := metav1.ListOptions{}
	switch kind {
	case "Deployment":
		r, err := l.Client.AppsV1().Deployments(ns).List(ctx, o)
		if err != nil {
			return nil, err
		}
		for i := range r.Items {
			x := &r.Items[i]
			out = append(out, Workload{Kind: kind, Namespace: x.Namespace, Name: x.Name, Selector: x.Spec.Selector, Template: &x.Spec.Template})
		}
	case "StatefulSet":
		r, err := l.Client.AppsV1().StatefulSets(ns).List(ctx, o)
		if err != nil {
			return nil, err
		}
		for i := range r.Items {
			x := &r.Items[i]
			out = append(out, Workload{Kind: kind, Namespace: x.Namespace, Name: x.Name, Selector: x.Spec.Selector, Template: &x.Spec.Template})
		}
	case "DaemonSet":
		r, err := l.Client.AppsV1().DaemonSets(ns).List(ctx, o)
		if err != nil {
			return nil, err
		}
		for i := range r.Items {
			x := &r.Items[i]
			out = append(out, Workload{Kind: kind, Namespace: x.Namespace, Name: x.Name, Selector: x.Spec.Selector, Template: &x.Spec.Template})
		}
	case "ReplicaSet":
		r, err := l.Client.AppsV1().ReplicaSets(ns).List(ctx, o)
		if err != nil {
			return nil, err
		}
		for i := range r.Items {
			x := &r.Items[i]
			out = append(out, Workload{Kind: kind, Namespace: x.Namespace, Name: x.Name, Selector: x.Spec.Selector, Template: &x.Spec.Template})
		}
	case "Job":
		r, err := l.Client.BatchV1().Jobs(ns).List(ctx, o)
		if err != nil {
			return nil, err
		}
		for i := range r.Items {
			x := &r.Items[i]
			out = append(out, Workload{Kind: kind, Namespace: x.Namespace, Name: x.Name, Selector: x.Spec.Selector, Template: &x.Spec.Template})
		}
	default:
		return nil, fmt.Errorf("unknown workload kind %q", kind)
	}
	return out, nil
}
