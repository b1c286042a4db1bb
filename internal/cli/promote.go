package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-netpol/kubectl-netpol/advise"
	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
	"github.com/kubectl-netpol/kubectl-netpol/internal/snapshot"
)

// Exit codes of promote.
const (
	promoteRefused = 1 // the evidence does not allow enforcing (without --force)
)

// PromoteOptions is `kubectl netpol promote`.
type PromoteOptions struct {
	genericiooptions.IOStreams
	agentAccess

	Since  string
	Force  bool
	DryRun bool
	Flows  string // --flows: a capture instead of the agents' history
	Output string

	factory         *Factory
	namespace, name string
	since           time.Time
	Now             func() time.Time
}

// promoteReport is the -o json|yaml schema.
type promoteReport struct {
	*advise.Evidence
	Promoted bool `json:"promoted"`
	Forced   bool `json:"forced,omitempty"`
	DryRun   bool `json:"dryRun,omitempty"`
}

// NewCmdPromote returns `kubectl netpol promote`.
func NewCmdPromote(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &PromoteOptions{IOStreams: streams, factory: f, Now: time.Now, agentAccess: newAgentAccess(f)}
	cmd := &cobra.Command{
		Use:   "promote NAMESPACE/NAME [--since 7d] [--force]",
		Short: "Enforce an audited NetworkPolicy once the history shows it would deny nothing",
		Long: `Switch an audited NetworkPolicy (annotated netpol.kubectl.io/mode: audit, or in
a namespace so annotated) to enforcement by annotating it
netpol.kubectl.io/mode: enforce, only when the connection history of every
node shows no connection in the window that the policy would deny. The
evidence is shown either way: per node, the would-deny connections, and each
one by workload pair and port.

The history is re-judged with the policy enforced against the policies
enforced today (audited ones left out), with the engine the agents use.

Exit status 1 when promotion is refused: would-deny connections, no history
in the window, or nodes whose history could not be read. --force promotes
anyway and lists what will break.`,
		Example: `  # Enforce shop/advised-api-ingress if 7 days of traffic say it is safe
  kubectl netpol promote shop/advised-api-ingress

  # Only show the evidence
  kubectl netpol promote shop/advised-api-ingress --since 30d --dry-run`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeAuditedPolicies(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(args); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Since, "since", "7d", "The window that must show no would-deny connection: a duration (7d, 24h) or an RFC 3339 time")
	fl.BoolVar(&o.Force, "force", false, "Promote even when connections would be denied (they are listed)")
	fl.BoolVar(&o.DryRun, "dry-run", false, "Show the evidence and the decision; change nothing")
	fl.StringVar(&o.Flows, "flows", "", "Read a capture `FILE` written by 'kubectl netpol watch -o json' instead of the agents' history")
	fl.StringVarP(&o.Output, "output", "o", "text", "Output format: text, json or yaml")
	fl.StringVar(&o.AgentNamespace, "agent-namespace", install.DefaultNamespace, "Namespace the netpol agent is installed in")
	return cmd
}

// Complete parses NAMESPACE/NAME and the window.
func (o *PromoteOptions) Complete(args []string) error {
	ns, name, ok := strings.Cut(args[0], "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("%q: name the policy as NAMESPACE/NAME", args[0])
	}
	o.namespace, o.name = ns, name
	var err error
	if o.since, err = parseSince(o.Since, o.Now()); err != nil {
		return err
	}
	return validateTextOutput(o.Output)
}

// Run gathers the evidence, decides, and patches the policy.
func (o *PromoteOptions) Run(ctx context.Context) error {
	src := SourceOptions{factory: o.factory}
	objs, err := src.Load(ctx, snapshot.Scope{AllNamespaces: true}, o.namespace)
	if err != nil {
		return err
	}
	set, err := o.windowHistory(ctx, o.Flows, o.Since, &o.since)
	if err != nil {
		return err
	}
	ev, err := advise.Promotion(objs.Snapshot(), o.namespace, o.name, set, o.since)
	if err != nil {
		return withOrigin(objs, err)
	}
	rep := promoteReport{Evidence: ev, DryRun: o.DryRun, Forced: !ev.Safe && o.Force}
	warnUnreachable(o.ErrOut, ev.Coverage.Unreachable)
	if (ev.Safe || o.Force) && !o.DryRun {
		if err := o.patch(ctx); err != nil {
			return err
		}
		rep.Promoted = true
	}
	if o.Output != "text" {
		if err := writeStructured(o.Out, o.Output, rep); err != nil {
			return err
		}
	} else {
		printPromote(o.Out, rep)
	}
	if !ev.Safe && !o.Force {
		return &ExitError{Code: promoteRefused}
	}
	return nil
}

// patch annotates the policy for enforcement (overriding an auditing namespace).
func (o *PromoteOptions) patch(ctx context.Context) error {
	client, _, err := o.factory.NewClient()
	if err != nil {
		return err
	}
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{advise.ModeAnnotation: advise.ModeEnforce}}})
	if err != nil {
		return err
	}
	if _, err := client.NetworkingV1().NetworkPolicies(o.namespace).Patch(ctx, o.name, types.MergePatchType, body, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("annotating NetworkPolicy %s/%s %s: %s: %w", o.namespace, o.name, advise.ModeAnnotation, advise.ModeEnforce, err)
	}
	return nil
}

func printPromote(w io.Writer, rep promoteReport) {
	ev := rep.Evidence
	c := ev.Coverage
	fmt.Fprintf(w, "NetworkPolicy %s: audited (annotation %s: %s on %s)\n", ev.Policy, advise.ModeAnnotation, advise.ModeAudit, ev.AuditedBy)
	fmt.Fprintf(w, "Evidence: %s; %d history records from %d node(s)", ev.Source, c.Records, len(c.Nodes))
	if span := c.Span(); span != "" {
		fmt.Fprintf(w, ", %s", span)
	}
	fmt.Fprintln(w)
	for _, g := range c.Gaps {
		fmt.Fprintf(w, "  gap (agent not recording): %s\n", g)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tWOULD DENY")
	for _, n := range ev.Nodes {
		v := fmt.Sprint(n.WouldDeny)
		if n.Unreachable != "" {
			v = "unknown: " + n.Unreachable
		}
		fmt.Fprintf(tw, "  %s\t%s\n", n.Node, v)
	}
	tw.Flush()
	if len(ev.WouldDeny) > 0 {
		fmt.Fprintf(w, "\nWould deny (%d):\n", len(ev.WouldDeny))
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  SOURCE\tDESTINATION\tPORT\tCONNECTIONS\tLAST SEEN\tNODES")
		for _, ch := range ev.WouldDeny {
			fmt.Fprintf(tw, "  %s\t%s\t%s/%d\t%d\t%s\t%s\n", ch.Source, ch.Destination, ch.Protocol, ch.Port, ch.Connections,
				ch.LastSeen.Format(time.RFC3339), strings.Join(ch.Nodes, ","))
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	switch {
	case rep.DryRun:
		verdict := "would be promoted"
		if !ev.Safe {
			verdict = "would be refused"
		}
		fmt.Fprintf(w, "Dry run: %s %s: %s.\n", ev.Policy, verdict, ev.Why)
	case rep.Promoted && rep.Forced:
		fmt.Fprintf(w, "Promoted with --force: %s is annotated %s: %s although %s; the connections above will be denied.\n", ev.Policy, advise.ModeAnnotation, advise.ModeEnforce, ev.Why)
	case rep.Promoted:
		fmt.Fprintf(w, "Promoted: %s is annotated %s: %s (%s).\n", ev.Policy, advise.ModeAnnotation, advise.ModeEnforce, ev.Why)
	default:
		fmt.Fprintf(w, "Refused: %s. Fix the policy (kubectl netpol advise proposes one from the same history) or pass --force.\n", ev.Why)
	}
}

// completeAuditedPolicies offers NAMESPACE/NAME of the cluster's audited
// NetworkPolicies; on any error, nothing.
func completeAuditedPolicies(f *Factory) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
		defer cancel()
		client, _, err := f.NewClient()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		pols, err := client.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		auditing := map[string]*corev1.Namespace{}
		if nss, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil {
			for i := range nss.Items {
				auditing[nss.Items[i].Name] = &nss.Items[i]
			}
		}
		var out []cobra.Completion
		for i := range pols.Items {
			p := &pols.Items[i]
			if advise.AuditedBy(p, auditing[p.Namespace]) != "" {
				out = append(out, p.Namespace+"/"+p.Name)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
