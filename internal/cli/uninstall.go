package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
)

// UninstallOptions is `kubectl netpol uninstall`.
type UninstallOptions struct {
	genericiooptions.IOStreams
	agentClients

	Wait    bool
	Timeout time.Duration

	factory   *Factory
	namespace string
}

// NewCmdUninstall returns `kubectl netpol uninstall`.
func NewCmdUninstall(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	return newCmdUninstall(&UninstallOptions{IOStreams: streams, factory: f})
}

func newCmdUninstall(o *UninstallOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove the netpol agent: every object install created, and on each node its BPF programs and pins",
		Long: `Remove the netpol agent from the cluster.

First the netpol-agent DaemonSet is deleted (foreground propagation), and each
agent pod, seeing its DaemonSet go, detaches and unpins every BPF program,
link and map it made on its node before it exits: NetworkPolicies are no
longer enforced from then on. Once every agent pod is gone, the other objects
labelled app.kubernetes.io/part-of=kubectl-netpol are deleted: those in the
install namespace, the ClusterRole and ClusterRoleBinding of this install,
and the namespace itself when install created it. RBAC stays until the pods
are gone because the agents need it while they clean up.

With --wait=false the command does not wait for the pods: it deletes the
DaemonSet and, if agent pods are still cleaning up, leaves the rest; run it
again to finish.`,
		Example: `  kubectl netpol uninstall
  kubectl netpol uninstall -n netpol --timeout 5m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Complete()
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&o.Wait, "wait", true, "Wait until every agent pod has cleaned its node and every object is gone, showing each node's progress")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", defaultWaitTimeout, "How long --wait waits")
	return cmd
}

// Complete resolves the install namespace.
func (o *UninstallOptions) Complete() {
	o.namespace = agentNamespace(o.factory.ConfigFlags)
}

// Validate checks the flags.
func (o *UninstallOptions) Validate() error {
	if o.Timeout <= 0 {
		return fmt.Errorf("--timeout must be positive, got %s", o.Timeout)
	}
	return nil
}

// Run removes the install in order: DaemonSet, (wait for the pods), the rest.
func (o *UninstallOptions) Run(ctx context.Context) error {
	if err := o.connect(o.factory, false, true); err != nil {
		return err
	}
	ns := o.namespace
	found, err := install.FindInstalled(ctx, o.Dynamic, ns)
	if err != nil {
		return err
	}
	pods, err := install.AgentPods(ctx, o.Kube, ns)
	if err != nil {
		return fmt.Errorf("listing agent pods in %s: %w", ns, err)
	}
	if len(found) == 0 && len(pods) == 0 {
		fmt.Fprintf(o.Out, "%s is not installed in namespace %s: nothing labelled %s there or cluster-wide for it\n",
			install.AgentName, ns, install.ProjectSelector)
		return nil
	}
	if err := install.CheckAccess(ctx, o.Kube, install.UninstallPermissions(ns)); err != nil {
		return err
	}

	var rest []install.Installed
	for _, obj := range found {
		if obj.Kind.Kind != "DaemonSet" {
			rest = append(rest, obj)
			continue
		}
		// Foreground: the DaemonSet stays, marked for deletion, until the
		// garbage collector has deleted its pods; an agent reading it at
		// shutdown sees the deletionTimestamp (or NotFound) and cleans up.
		if err := install.Delete(ctx, o.Dynamic, obj, metav1.DeletePropagationForeground); err != nil {
			return err
		}
		fmt.Fprintf(o.Out, "%s deleted\n", obj.Ref())
	}

	if !o.Wait {
		if pods, err = install.AgentPods(ctx, o.Kube, ns); err != nil {
			return fmt.Errorf("listing agent pods in %s: %w", ns, err)
		}
		if len(pods) > 0 {
			fmt.Fprintf(o.Out, "%d agent pod(s) are cleaning their nodes; the other objects stay until they are gone (the agents need their RBAC): run 'kubectl netpol uninstall -n %s' again to finish\n", len(pods), ns)
			return nil
		}
		return o.deleteRest(ctx, rest)
	}

	waitCtx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if len(pods) > 0 {
		fmt.Fprintf(o.Out, "Waiting for the agents to clean their nodes and exit (timeout %s)\n", o.Timeout)
	}
	if err := o.waitPodsGone(waitCtx, pods); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	if err := o.deleteRest(ctx, rest); err != nil {
		return err
	}
	return o.waitGone(waitCtx, ctx, rest)
}

// waitPodsGone polls until no agent pod is left, printing each node's state.
func (o *UninstallOptions) waitPodsGone(ctx context.Context, initial []corev1.Pod) error {
	ns := o.namespace
	progress := newNodeProgress(o.Out)
	nodes := map[string]bool{}
	for i := range initial {
		nodes[install.NodeOf(&initial[i])] = true
	}
	var left []corev1.Pod
	err := wait.PollUntilContextCancel(ctx, o.poll(), true, func(ctx context.Context) (bool, error) {
		pods, err := install.AgentPods(ctx, o.Kube, ns)
		if err != nil {
			return false, retryable(err)
		}
		left = pods
		here := map[string]bool{}
		for i := range pods {
			node := install.NodeOf(&pods[i])
			here[node], nodes[node] = true, true
			state := install.StateTerminating
			if pods[i].DeletionTimestamp == nil {
				state = "waiting for the garbage collector"
			}
			progress.set(node, state)
		}
		for node := range nodes {
			if !here[node] {
				progress.set(node, "removed")
			}
		}
		return len(pods) == 0, nil
	})
	if err == nil {
		return nil
	}
	var pollErr *pollError
	if errors.As(err, &pollErr) {
		return pollErr.err
	}
	diag, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	fmt.Fprintf(o.Out, "\nTimed out after %s: %d agent pod(s) still terminating.\n", o.Timeout, len(left))
	for i := range left {
		fmt.Fprint(o.Out, install.Diagnose(diag, o.Kube, &left[i], install.DiagnoseOptions{Events: 10, LogLines: 20}))
	}
	return fmt.Errorf("agent pods still running after %s, so their nodes may not be clean yet; the ServiceAccount, RBAC and namespace were kept for them: "+
		"run 'kubectl netpol uninstall -n %s' again to keep waiting", o.Timeout, ns)
}

// deleteRest deletes every object but the DaemonSet, in reverse apply
// order (bindings before roles, the namespace last).
func (o *UninstallOptions) deleteRest(ctx context.Context, rest []install.Installed) error {
	for i := len(rest) - 1; i >= 0; i-- {
		obj := rest[i]
		if obj.Terminating {
			continue
		}
		if err := install.Delete(ctx, o.Dynamic, obj, metav1.DeletePropagationBackground); err != nil {
			return err
		}
		fmt.Fprintf(o.Out, "%s deleted\n", obj.Ref())
	}
	return nil
}

// waitGone waits for the namespace (which takes its contents with it) and
// the cluster-scoped objects to disappear.
func (o *UninstallOptions) waitGone(waitCtx, ctx context.Context, rest []install.Installed) error {
	var pending string
	err := wait.PollUntilContextCancel(waitCtx, o.poll(), true, func(ctx context.Context) (bool, error) {
		for _, obj := range rest {
			if obj.Kind.Namespaced && obj.Kind.Kind != "Namespace" {
				continue // removed by now, or with the namespace
			}
			_, err := o.Dynamic.Resource(obj.Kind.Resource).Get(ctx, obj.Name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				continue
			case err != nil:
				return false, retryable(err)
			}
			pending = obj.Ref()
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s is still being deleted after %s: check its finalizers (kubectl get %s -o yaml)", pending, o.Timeout, pending)
	}
	fmt.Fprintf(o.Out, "%s uninstalled from namespace %s\n", install.AgentName, o.namespace)
	return nil
}
