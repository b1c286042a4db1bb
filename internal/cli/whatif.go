package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
	"github.com/kubectl-netpol/kubectl-netpol/internal/snapshot"
	"github.com/kubectl-netpol/kubectl-netpol/whatif"
)

// Exit codes of whatif (a CI gate).
const (
	whatifBreaks       = 1 // an observed, allowed connection would be denied
	whatifEmptyHistory = 2 // no history to judge: the answer would mean nothing
)

// WhatifOptions is `kubectl netpol whatif`.
type WhatifOptions struct {
	genericiooptions.IOStreams
	agentAccess

	Proposals []string // -f: the proposed NetworkPolicies
	Deletes   []string // --delete ns/name
	Since     string
	Output    string
	Flows     string   // --flows: a capture instead of the agents' history
	Current   []string // --current: today's objects from files instead of the cluster
	Color     string

	factory    *Factory
	namespace  string
	namespaces []string
	since      time.Time
	Now        func() time.Time
}

// NewCmdWhatif returns `kubectl netpol whatif`.
func NewCmdWhatif(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &WhatifOptions{IOStreams: streams, factory: f, Now: time.Now, agentAccess: newAgentAccess(f)}
	cmd := &cobra.Command{
		Use:   "whatif -f FILE|DIR [--delete NAMESPACE/NAME ...]",
		Short: "Which observed connections a policy change would break or open",
		Long: `Re-judge every connection the agents recorded (their history: days, aggregated
by workload pair, port and verdict) under the cluster's policies now and under
the proposed change, with the same engine the agents enforce with, and report
the connections whose verdict changes: newly denied (what breaks) and newly
allowed (what opens), by workload pair, with counts, last seen and the policy
and rule that decide under the proposal.

Exit status: 1 when an observed connection that was allowed would be denied,
2 when there is no history to judge, 0 otherwise: a gate for CI.

The answer says how much history backed it (window, nodes, gaps); agents that
cannot be reached make a partial answer, said loudly.

Offline: --flows reads a capture written by 'kubectl netpol watch -o json'
instead of the agents, and --current today's objects from files instead of
the cluster.`,
		Example: `  # What would this policy break in the last 7 days of traffic?
  kubectl netpol whatif -f new-db-policy.yaml

  # Deleting a policy, over the last 30 days, as JSON
  kubectl netpol whatif --delete shop/allow-web --since 30d -o json

  # In CI, without a cluster: a saved capture and the repository's manifests
  kubectl netpol whatif --flows capture.jsonl --current deploy/ -f deploy/policies/new.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVarP(&o.Proposals, "filename", "f", nil, "Proposed NetworkPolicies (file or directory; repeatable): each adds or replaces the policy of the same namespace/name")
	fl.StringArrayVar(&o.Deletes, "delete", nil, "A NetworkPolicy the change deletes: NAMESPACE/NAME (repeatable)")
	fl.StringVar(&o.Since, "since", "7d", "How much history to judge: a duration (7d, 24h) or an RFC 3339 time")
	fl.StringVarP(&o.Output, "output", "o", "text", "Output format: text, json or yaml")
	fl.StringVar(&o.Flows, "flows", "", "Judge a capture written by `kubectl netpol watch -o json` instead of the agents' history")
	fl.StringArrayVar(&o.Current, "current", nil, "Read today's objects (namespaces, pods, workloads, NetworkPolicies) from files instead of the cluster (repeatable)")
	fl.StringVar(&o.AgentNamespace, "agent-namespace", install.DefaultNamespace, "Namespace the netpol agent is installed in")
	addColorFlag(cmd, &o.Color)
	return cmd
}

// parseSince accepts a duration with days (7d, 1d12h) or an RFC 3339 time.
func parseSince(s string, now time.Time) (time.Time, error) {
	rest := s
	var d time.Duration
	if i := strings.Index(rest, "d"); i > 0 {
		if days, err := strconv.Atoi(rest[:i]); err == nil && days >= 0 {
			d = time.Duration(days) * 24 * time.Hour
			rest = rest[i+1:]
		}
	}
	if rest != s && rest == "" {
		return now.Add(-d), nil
	}
	if dd, err := time.ParseDuration(rest); err == nil && dd >= 0 {
		return now.Add(-d - dd), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid --since %q: use a duration ago (7d, 24h, 90m) or an RFC 3339 time", s)
	}
	return t, nil
}

// Complete resolves the namespace and the window.
func (o *WhatifOptions) Complete() error {
	var explicit bool
	var err error
	if o.namespace, explicit, err = o.factory.Namespace(len(o.Current) > 0); err != nil {
		return err
	}
	if explicit {
		o.namespaces = []string{o.namespace}
	}
	o.since, err = parseSince(o.Since, o.Now())
	return err
}

// Validate checks the flags.
func (o *WhatifOptions) Validate() error {
	if len(o.Proposals) == 0 && len(o.Deletes) == 0 {
		return errors.New("nothing to judge: give the proposed policies with -f FILE|DIR and/or --delete NAMESPACE/NAME")
	}
	for _, d := range o.Deletes {
		if ns, name, ok := strings.Cut(d, "/"); !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return fmt.Errorf("--delete %q: name the policy as NAMESPACE/NAME", d)
		}
	}
	if err := validateColor(o.Color); err != nil {
		return err
	}
	return validateTextOutput(o.Output)
}

// states loads today's objects and applies the proposal to a copy.
func (o *WhatifOptions) states(ctx context.Context) (current, proposed *snapshot.Set, err error) {
	src := SourceOptions{Filenames: o.Current, factory: o.factory}
	if current, err = src.Load(ctx, snapshot.Scope{AllNamespaces: true}, o.namespace); err != nil {
		return nil, nil, err
	}
	next := *current
	next.Policies = append([]*networkingv1.NetworkPolicy(nil), current.Policies...)
	next.ClusterPolicies = append([]*cnpv1beta1.ClusterNetworkPolicy(nil), current.ClusterPolicies...)
	next.Origins = map[string]string{}
	for k, v := range current.Origins {
		next.Origins[k] = v
	}
	proposed = &next
	if len(o.Proposals) > 0 {
		w, err := snapshot.LoadPolicyFiles(o.Proposals, o.namespace)
		if err != nil {
			return nil, nil, err
		}
		proposed.SetWhatIf(w)
	}
	for _, d := range o.Deletes {
		ns, name, _ := strings.Cut(d, "/")
		if !proposed.DeletePolicy(ns, name) {
			return nil, nil, fmt.Errorf("--delete %s: no NetworkPolicy %s in namespace %s (kubectl get networkpolicy -n %s lists them)", d, name, ns, ns)
		}
	}
	return current, proposed, nil
}

// Run loads both states and the history, judges, prints, and returns the gate's exit code.
func (o *WhatifOptions) Run(ctx context.Context) error {
	current, proposed, err := o.states(ctx)
	if err != nil {
		return err
	}
	cur, err := newEngine(current)
	if err != nil {
		return err
	}
	next, err := newEngine(proposed)
	if err != nil {
		return err
	}
	set, err := o.windowHistory(ctx, o.Flows, o.Since, &o.since)
	if err != nil {
		return err
	}
	rep, err := whatif.Run(whatif.Input{Current: cur, Proposed: next, History: set, Since: o.since, Namespaces: o.namespaces})
	if err != nil {
		return err
	}
	if rep.Coverage.Records == 0 {
		o.warnPartial(rep)
		where := fmt.Sprintf("on %d node(s) (is the agent installed with its history on, and has traffic flowed? `kubectl netpol status` shows each node's history)", len(rep.Coverage.Nodes))
		if o.Flows != "" {
			where = "in " + o.Flows + " (no new flow, drop or flow end of TCP, UDP or SCTP in the window)"
		}
		fmt.Fprintf(o.ErrOut, "no connection history to judge since %s %s: nothing observed, so nothing can be said about what the change breaks\n",
			o.since.UTC().Format(time.RFC3339), where)
		return &ExitError{Code: whatifEmptyHistory}
	}
	if o.Output == "text" {
		o.warnPartial(rep)
		printWhatif(o.Out, rep, useColor(o.Color, o.Out))
	} else if err := writeStructured(o.Out, o.Output, rep); err != nil {
		return err
	}
	if rep.Breaks {
		return &ExitError{Code: whatifBreaks}
	}
	return nil
}

// warnPartial says loudly, on stderr, which nodes' connections the answer misses.
func (o *WhatifOptions) warnPartial(rep *whatif.Report) {
	warnUnreachable(o.ErrOut, rep.Coverage.Unreachable)
}

// warnUnreachable says loudly, on stderr, which nodes' history an answer misses.
func warnUnreachable(w io.Writer, unreachable map[string]string) {
	for node, why := range unreachable {
		fmt.Fprintf(w, "WARNING: PARTIAL ANSWER: the agent on node %s could not be reached (%s): its connections are not judged\n", node, why)
	}
}

func printWhatif(w io.Writer, rep *whatif.Report, pal palette) {
	c := rep.Coverage
	fmt.Fprintf(w, "History: %d records, %d connection pairs, from %d node(s) (%s)", c.Records, c.Pairs, len(c.Nodes), strings.Join(c.Nodes, ", "))
	if span := c.Span(); span != "" {
		fmt.Fprintf(w, ", %s", span)
	}
	fmt.Fprintln(w)
	for _, g := range c.Gaps {
		fmt.Fprintf(w, "  gap (agent not recording): %s\n", g)
	}
	if c.DroppedRecords > 0 {
		fmt.Fprintf(w, "  the agents' budgets dropped %d older records (%d connections)\n", c.DroppedRecords, c.DroppedConnections)
	}
	for _, e := range c.Errors {
		fmt.Fprintf(w, "  note: %s\n", e)
	}
	if len(c.Unreachable) > 0 {
		fmt.Fprintf(w, "  PARTIAL: %d node(s) unreachable; their connections are not judged\n", len(c.Unreachable))
	}
	if rep.Drifted > 0 {
		fmt.Fprintf(w, "  %d pair(s) were observed with another verdict than today's policies give (policies changed in the window)\n", rep.Drifted)
	}
	section := func(title string, cs []whatif.Change, verdict string) {
		fmt.Fprintf(w, "\n%s: %d\n", title, len(cs))
		if len(cs) == 0 {
			return
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  SOURCE\tDESTINATION\tPORT\tCONNECTIONS\tLAST SEEN\tUNDER THE PROPOSAL")
		for _, ch := range cs {
			dst := ch.Destination
			if ch.Service != "" {
				dst += " (svc " + ch.Service + ")"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s/%d\t%d\t%s\t%s %s\n", ch.Source, dst, ch.Protocol, ch.Port, ch.Connections,
				ch.LastSeen.Format(time.RFC3339), verdict, ch.Why)
		}
		tw.Flush()
	}
	section(pal.denied("Newly denied (would break)"), rep.NewlyDenied, pal.denied("DENIED:"))
	section(pal.allowed("Newly allowed (would open)"), rep.NewlyAllowed, pal.allowed("ALLOWED:"))
	if rep.Breaks {
		fmt.Fprintln(w, "\nThe change denies connections that were observed allowed: exit status 1.")
	}
}
