package agentclient

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
)

// ErrNotInstalled is returned (wrapped, naming the namespace) by Discover
// when no agent pod exists.
var ErrNotInstalled = errors.New("no netpol agent pods")

// Agent is one agent pod.
type Agent struct {
	Namespace string
	Name      string
	Node      string // "" while the pod is not scheduled
	// Ready is the pod's Ready condition.
	Ready bool
	// Version is the pod's install.LabelVersion label ("" if absent). The
	// authoritative version is the agent's own Status.version; the label
	// lets `status` show skew before dialling.
	Version string
	// Phase is the pod's phase; Deleting is set once deletion has begun.
	Phase    corev1.PodPhase
	Deleting bool
	Created  time.Time
	// Waiting is why a container of the pod is not running, e.g.
	// "ImagePullBackOff" or "CrashLoopBackOff" ("" when all run).
	Waiting string
}

// State describes the pod's state for messages: "Running", "Pending
// (ImagePullBackOff)", "Running, not ready (CrashLoopBackOff)".
func (a Agent) State() string {
	s := string(a.Phase)
	if a.Phase == corev1.PodRunning && !a.Ready {
		s += ", not ready"
	}
	if a.Deleting {
		s += ", terminating"
	}
	if a.Waiting != "" {
		s += " (" + a.Waiting + ")"
	}
	return s
}

func (a Agent) String() string { return a.Namespace + "/" + a.Name }

// Discover lists the agent pods (install.AgentSelector) in namespace
// (install.DefaultNamespace when ""), sorted by node then name. With
// onNode set, only the pods scheduled on that node are listed. No pod at
// all is ErrNotInstalled; a missing `list pods` permission is an error
// naming the verb, resource and namespace.
func Discover(ctx context.Context, client kubernetes.Interface, namespace string) ([]Agent, error) {
	return discover(ctx, client, namespace, "")
}

// DiscoverOnNode is Discover restricted to one node, for reconnecting to a
// node whose agent pod was replaced (a restarted DaemonSet pod has a new name).
func DiscoverOnNode(ctx context.Context, client kubernetes.Interface, namespace, node string) ([]Agent, error) {
	return discover(ctx, client, namespace, node)
}

func discover(ctx context.Context, client kubernetes.Interface, namespace, node string) ([]Agent, error) {
	if namespace == "" {
		namespace = install.DefaultNamespace
	}
	opts := metav1.ListOptions{LabelSelector: install.AgentSelector}
	if node != "" {
		opts.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
	}
	list, err := client.CoreV1().Pods(namespace).List(ctx, opts)
	switch {
	case apierrors.IsForbidden(err):
		return nil, fmt.Errorf("finding the netpol agent pods: you may not list pods in namespace %s "+
			"(RBAC: verb list on resource pods is needed to find the agents): %w", namespace, err)
	case err != nil:
		return nil, fmt.Errorf("finding the netpol agent pods in namespace %s: %w", namespace, err)
	}
	agents := make([]Agent, 0, len(list.Items))
	for i := range list.Items {
		if node != "" && list.Items[i].Spec.NodeName != node {
			continue // the field selector already did this, unless a fake client ignored it
		}
		agents = append(agents, agentOf(&list.Items[i]))
	}
	sort.Slice(agents, func(i, j int) bool {
		if agents[i].Node != agents[j].Node {
			return agents[i].Node < agents[j].Node
		}
		return agents[i].Name < agents[j].Name
	})
	if len(agents) == 0 {
		where := "namespace " + namespace
		if node != "" {
			where += " on node " + node
		}
		return nil, fmt.Errorf("%w in %s (label %s)", ErrNotInstalled, where, install.AgentSelector)
	}
	return agents, nil
}

func agentOf(p *corev1.Pod) Agent {
	a := Agent{
		Namespace: p.Namespace, Name: p.Name, Node: p.Spec.NodeName,
		Version: p.Labels[install.LabelVersion], Phase: p.Status.Phase,
		Deleting: p.DeletionTimestamp != nil, Created: p.CreationTimestamp.Time,
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			a.Ready = c.Status == corev1.ConditionTrue
		}
	}
	for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && w.Reason != "" && w.Reason != "PodInitializing" {
			a.Waiting = w.Reason
			break
		}
	}
	return a
}

// Pick chooses the agent to dial among the pods of one node: a ready pod
// not being deleted, else a running one, newest first (during a rolling
// update the old pod is deleting while the new one starts). ok is false
// when none is running.
func Pick(pods []Agent) (Agent, bool) {
	best, found := Agent{}, false
	score := func(a Agent) int {
		switch {
		case a.Deleting || a.Phase != corev1.PodRunning:
			return 0
		case a.Ready:
			return 2
		}
		return 1
	}
	for _, a := range pods {
		if score(a) == 0 {
			continue
		}
		if !found || score(a) > score(best) || (score(a) == score(best) && a.Created.After(best.Created)) {
			best, found = a, true
		}
	}
	return best, found
}

// Nodes groups agents by node (pods not yet scheduled are left out).
func Nodes(agents []Agent) map[string][]Agent {
	out := map[string][]Agent{}
	for _, a := range agents {
		if a.Node != "" {
			out[a.Node] = append(out[a.Node], a)
		}
	}
	return out
}
