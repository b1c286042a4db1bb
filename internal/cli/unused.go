package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
	"github.com/kubectl-netpol/kubectl-netpol/internal/snapshot"
	"github.com/kubectl-netpol/kubectl-netpol/whatif"
)

// UnusedOptions is `kubectl netpol unused`.
type UnusedOptions struct {
	genericiooptions.IOStreams
	agentAccess

	Since  string
	Output string

	factory   *Factory
	namespace string
	explicit  bool
	Now       func() time.Time
}

// unusedReport is the -o json|yaml schema.
type unusedReport struct {
	Since       time.Time           `json:"since"`
	Nodes       []string            `json:"nodes"`
	Unreachable map[string]string   `json:"unreachable,omitempty"`
	Unused      []whatif.UnusedRule `json:"unused"`
}

// NewCmdUnused returns `kubectl netpol unused`.
func NewCmdUnused(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &UnusedOptions{IOStreams: streams, factory: f, Now: time.Now, agentAccess: newAgentAccess(f)}
	cmd := &cobra.Command{
		Use:   "unused [--since 30d]",
		Short: "NetworkPolicy rules and policies that decided no connection on any node",
		Long: `List the NetworkPolicy rules (ingress[i], egress[i]) and whole policies that
no agent saw decide a connection in the window: a rule allowing nothing that
happened, or a policy that neither allowed nor isolated any connection.

Each agent counts its rules' decisions and keeps the counts across restarts.
A rule observed for less than the window (the policy is younger, or the
agents started counting later) is "not yet known", not unused. A policy
edited in the window may have its rules renumbered: read its counts with care.`,
		Example: `  # Rules unused for a month in namespace shop
  kubectl netpol unused --since 30d -n shop`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.namespace, o.explicit, err = f.Namespace(false); err != nil {
				return err
			}
			if err := validateTextOutput(o.Output); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&o.Since, "since", "30d", "The window: a duration (30d, 12h) or an RFC 3339 time")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "text", "Output format: text, json or yaml")
	cmd.Flags().StringVar(&o.AgentNamespace, "agent-namespace", install.DefaultNamespace, "Namespace the netpol agent is installed in")
	return cmd
}

// Run reads the policies and every node's rule counters, and prints what was unused.
func (o *UnusedOptions) Run(ctx context.Context) error {
	now := o.Now()
	since, err := parseSince(o.Since, now)
	if err != nil {
		return err
	}
	src := SourceOptions{factory: o.factory}
	scope := snapshot.Scope{AllNamespaces: true}
	if o.explicit {
		scope = snapshot.Scope{Namespaces: []string{o.namespace}}
	}
	set, err := src.Load(ctx, scope, o.namespace)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var nodes []whatif.NodeHits
	unreachable, err := o.eachAgent(ctx, func(ctx context.Context, node string, c flowv1.ObserverClient) error {
		r, err := c.RuleHits(ctx, &flowv1.RuleHitsRequest{})
		if err != nil {
			return fmt.Errorf("reading its rule counters: %w", err)
		}
		mu.Lock()
		nodes = append(nodes, whatif.NodeHits{Node: node, Since: r.GetCountingSince().AsTime(), Hits: r.GetHits()})
		mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	if len(nodes) == 0 {
		return fmt.Errorf("no agent answered (%d node(s) unreachable): rule counters come from the agents; `kubectl netpol status` shows why", len(unreachable))
	}
	var pols []*networkingv1.NetworkPolicy
	for _, p := range set.Policies {
		if !o.explicit || p.Namespace == o.namespace {
			pols = append(pols, p)
		}
	}
	rep := unusedReport{Since: since.UTC(), Unreachable: unreachable, Unused: whatif.Unused(pols, nodes, since, now)}
	for _, n := range nodes {
		rep.Nodes = append(rep.Nodes, n.Node)
	}
	sort.Strings(rep.Nodes)
	for node, why := range unreachable {
		fmt.Fprintf(o.ErrOut, "WARNING: PARTIAL ANSWER: the agent on node %s could not be reached (%s): a rule used only there may be listed as unused\n", node, why)
	}
	if o.Output != "text" {
		return writeStructured(o.Out, o.Output, rep)
	}
	printUnused(o.Out, rep, len(pols))
	return nil
}

func printUnused(w io.Writer, rep unusedReport, policies int) {
	fmt.Fprintf(w, "%d policies, rule counters from %d node(s), window since %s\n", policies, len(rep.Nodes), rep.Since.Format(time.RFC3339))
	if len(rep.Unused) == 0 {
		fmt.Fprintln(w, "Every rule decided at least one connection in the window.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POLICY\tRULE\tLAST HIT\tOBSERVED\tSTATUS")
	for _, u := range rep.Unused {
		rule, last, status := u.Rule, "never", "unused"
		if rule == "" {
			rule = "(whole policy)"
		}
		if u.LastHit != nil {
			last = u.LastHit.Format(time.RFC3339)
		}
		if u.NotYetKnown {
			status = "not yet known"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", u.Policy, rule, last, u.Observed, status)
	}
	tw.Flush()
}
