package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/internal/agentclient"
	"github.com/kubectl-netpol/kubectl-netpol/internal/flowmap"
	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
	"github.com/kubectl-netpol/kubectl-netpol/internal/picture"
	"github.com/kubectl-netpol/kubectl-netpol/internal/version"
	"github.com/kubectl-netpol/kubectl-netpol/tui"
	"github.com/kubectl-netpol/kubectl-netpol/tui/components/detail"
	"github.com/kubectl-netpol/kubectl-netpol/whatif"
)

// ErrNoAgent is returned by `watch` without --input-file while no live
// source is available.
var ErrNoAgent = errors.New("no netpol agent to stream flows from: live flows come from the agent on every node; " +
	"install it with `kubectl netpol install` (see `kubectl netpol install --help`), " +
	"or look at a saved capture with `kubectl netpol watch --input-file FILE`")

// defaultLast is how many recent flows a one-shot (not following) live
// query prints, as `hubble observe` does.
const defaultLast = 20

// WatchOptions is `kubectl netpol watch`.
type WatchOptions struct {
	genericiooptions.IOStreams
	ConfigFlags *genericclioptions.ConfigFlags

	filters       flow.FilterBuilder
	allNamespaces bool
	namespaces    []string
	Since, Until  string
	Last          uint64
	Follow        bool
	Output        string
	InputFile     string
	// Map draws the workload map of the flows (-o dot, svg or png)
	// instead of listing them.
	Map bool
	// PerNode shows each node's record of a cross-node connection as it
	// came (--per-node); by default the two are paired into one flow.
	PerNode bool
	// AgentNamespace is where the agent is installed (--agent-namespace;
	// -n is a flow filter in watch).
	AgentNamespace string
	// AgentPort is the agents' gRPC port on their node's loopback.
	AgentPort int

	// LiveSource returns the source streaming from the agents (the real one
	// finds the agent pods and dials each through pods/portforward).
	LiveSource func(context.Context, *WatchOptions) (flow.Source, error)
	// KubeClient returns a clientset and its REST config for the kubeconfig
	// flags; a failure means no cluster is reachable.
	KubeClient func() (kubernetes.Interface, *rest.Config, error)
	// DialAgent connects to an agent pod (default: agentclient.DialPort
	// through pods/portforward to AgentPort).
	DialAgent AgentDialer
	// StatusEvery is how often each agent's Status is polled for lost flows.
	StatusEvery time.Duration
	// Explainer explains the selected flow in the TUI (default: the policy
	// engine against the cluster, falling back to the flow's record).
	Explainer detail.Explainer
	// ClientVersion is this plugin's version, compared with each agent's.
	ClientVersion string
	// IsTerminal reports whether w is a terminal (replaced in tests).
	IsTerminal func(w any) bool
	// RunTUI runs the TUI (replaced in tests).
	RunTUI func(context.Context, tui.Options) error
	// Now is the clock for relative --since/--until.
	Now func() time.Time

	// WhatIf and WhatIfDelete re-judge each flow under proposed policies
	// (--whatif FILE|DIR, --whatif-delete NAMESPACE/NAME).
	WhatIf, WhatIfDelete []string
	// Factory loads the cluster's objects for --whatif.
	Factory *Factory

	request *flowv1.ObserveRequest
	source  flow.Source
	// whatifChanged counts printed flows the proposal would change.
	whatifChanged, whatifJudged uint64
}

// filterValue is a repeatable filter flag. pflag calls Set in command-line
// order, which is what gives --not its meaning: it negates the next filter.
type filterValue struct {
	o    *WatchOptions
	kind flow.FilterKind
	vals []string
}

func (v *filterValue) String() string { return strings.Join(v.vals, ",") }
func (v *filterValue) Type() string   { return "string" }
func (v *filterValue) Set(s string) error {
	if v.kind == flow.Namespace {
		v.o.namespaces = append(v.o.namespaces, s)
	}
	v.vals = append(v.vals, s)
	return v.o.filters.Add(v.kind, s)
}

// notValue is --not.
type notValue struct{ o *WatchOptions }

func (v *notValue) String() string   { return "false" }
func (v *notValue) Type() string     { return "bool" }
func (v *notValue) IsBoolFlag() bool { return true }
func (v *notValue) Set(s string) error {
	if s != "true" {
		return fmt.Errorf("--not takes no value")
	}
	v.o.filters.Not()
	return nil
}

// NewWatchOptions returns the options with the real terminal, TUI and clock.
func NewWatchOptions(configFlags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *WatchOptions {
	return &WatchOptions{
		IOStreams:     streams,
		ConfigFlags:   configFlags,
		LiveSource:    defaultLiveSource,
		Factory:       NewFactory(configFlags),
		KubeClient:    kubeClientFor(configFlags),
		AgentPort:     install.AgentGRPCPort,
		StatusEvery:   2 * time.Second,
		ClientVersion: version.Version(),
		IsTerminal:    isTerminal,
		RunTUI:        tui.Run,
		Now:           time.Now,
	}
}

// kubeClientFor returns a KubeClient reading the kubeconfig flags, with the
// clear "no cluster" messages the other verbs give.
func kubeClientFor(configFlags *genericclioptions.ConfigFlags) func() (kubernetes.Interface, *rest.Config, error) {
	return func() (kubernetes.Interface, *rest.Config, error) {
		client, _, err := NewFactory(configFlags).NewClient()
		if err != nil {
			// The factory's hint (-f FILE) is explain's; watch replays captures.
			first, _, _ := strings.Cut(err.Error(), "\n")
			return nil, nil, fmt.Errorf("%s\npoint --kubeconfig/--context at the cluster running the netpol agent, "+
				"or replay a saved capture with --input-file FILE", first)
		}
		cfg, err := configFlags.ToRESTConfig()
		if err != nil {
			return nil, nil, err
		}
		return client, cfg, nil
	}
}

// defaultLiveSource discovers the agents and dials them through pods/portforward.
func defaultLiveSource(ctx context.Context, o *WatchOptions) (flow.Source, error) {
	client, cfg, err := o.KubeClient()
	if err != nil {
		return nil, err
	}
	dial := o.DialAgent
	if dial == nil {
		dial = func(ctx context.Context, a agentclient.Agent) (AgentConn, error) {
			return agentclient.DialPort(ctx, cfg, a, o.AgentPort)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	src, err := liveSource(ctx, client, o.AgentNamespace, dial, o.StatusEvery)
	if err != nil {
		return nil, err
	}
	return src, nil
}

// NewCmdWatch returns `kubectl netpol watch`.
func NewCmdWatch(configFlags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	return newCmdWatch(NewWatchOptions(configFlags, streams))
}

func newCmdWatch(o *WatchOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "watch [flags]",
		Short: "Watch allowed and denied flows live, or replay a capture",
		Long: `Watch every node's flow verdicts: which connections NetworkPolicies allowed or
denied, and the policy and rule that decided each.

On a terminal this opens an interactive view (flows; a chart of allowed and
denied flows per second over 1m, 5m or 1h; the top policy rules and workload
pairs by denies; a map of workloads and their connections; a namespace matrix;
and why the selected flow was allowed or denied); when the output is piped it
prints one line per flow (-o compact) or JSON lines (-o json), which
--input-file replays later. --map draws the workload map as a picture
(-o dot, svg or png).

Live flows come from the netpol agent on every node (kubectl netpol install),
reached through the API server's pods/portforward: you need RBAC list on pods
and create on pods/portforward in the agent's namespace (--agent-namespace).

Filters follow hubble observe: filters AND together; a repeated flag ORs its
values; --namespace/--pod/--label/--ip/--port match either end of a flow
and --from-*/--to-* one end; --not negates the filter that follows it.

A connection between pods on two nodes is judged twice: egress on the source
pod's node, ingress on the destination pod's node. watch shows it once, with
both observation points (NODE "node-a+node-b", and each point's verdict and
policy); a drop names the side, policy and rule that dropped it. --per-node
shows each node's own record instead. Traffic from a node's addresses
(kubelet probes, hostNetwork pods) shows as node/NAME.`,
		Example: `  # Interactive view of every node's flows, live
  kubectl netpol watch

  # Keep printing drops into namespace shop
  kubectl netpol watch --to-namespace shop --verdict denied -o compact --follow

  # Interactive view of a saved capture
  kubectl netpol watch --input-file capture.jsonl

  # Drops into namespace shop, one line each
  kubectl netpol watch --to-namespace shop --verdict denied -o compact --input-file capture.jsonl

  # Each node's own record of cross-node connections, unpaired
  kubectl netpol watch --per-node -o json --follow

  # The workload map of a capture, to paste into a review; or for Graphviz
  kubectl netpol watch --map -o png --input-file capture.jsonl > map.png
  kubectl netpol watch --map --input-file capture.jsonl | dot -Tsvg > map.svg

  # Everything except kube-system, as JSON lines
  kubectl netpol watch --not --namespace kube-system -o json --input-file capture.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Complete(cmd.Context()); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	filter := func(name, short string, kind flow.FilterKind, usage string) {
		f.VarP(&filterValue{o: o, kind: kind}, name, short, usage)
	}
	filter("namespace", "n", flow.Namespace, "Flows from or to this namespace (repeatable)")
	f.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "Flows in every namespace (the default; conflicts with --namespace)")
	filter("from-namespace", "", flow.FromNamespace, "Flows from this namespace")
	filter("to-namespace", "", flow.ToNamespace, "Flows to this namespace")
	filter("pod", "", flow.Pod, `Flows from or to this pod: "[namespace/]name-prefix"`)
	filter("from-pod", "", flow.FromPod, `Flows from this pod: "[namespace/]name-prefix"`)
	filter("to-pod", "", flow.ToPod, `Flows to this pod: "[namespace/]name-prefix"`)
	filter("label", "l", flow.Label, `Flows from or to pods matching this label selector ("app=web,tier!=db")`)
	filter("from-label", "", flow.FromLabel, "Flows from pods matching this label selector")
	filter("to-label", "", flow.ToLabel, "Flows to pods matching this label selector")
	filter("ip", "", flow.IP, "Flows from or to this IP address or CIDR")
	filter("from-ip", "", flow.FromIP, "Flows from this IP address or CIDR")
	filter("to-ip", "", flow.ToIP, "Flows to this IP address or CIDR")
	filter("port", "", flow.Port, "Flows from or to this port")
	filter("from-port", "", flow.FromPort, "Flows from this source port")
	filter("to-port", "", flow.ToPort, "Flows to this destination port")
	filter("verdict", "", flow.Verdict, "allowed or denied (hubble's forwarded/dropped are accepted)")
	filter("reason", "", flow.Reason, "allowed_by_rule, no_rule_matched, not_isolated, established, not_subject, revoked")
	filter("protocol", "", flow.Protocol, "tcp, udp, sctp, icmp or icmpv6")
	filter("policy", "", flow.Policy, `Flows allowed, denied or isolated by this policy (or that an audited policy would decide): "namespace/name" (a NetworkPolicy), "cnp/name" (a ClusterNetworkPolicy) or "name" (either kind)`)
	filter("node", "", flow.Node, "Flows reported by this node")
	filter("service", "", flow.Service, `Flows through this Service: "[namespace/]name"`)
	not := f.VarPF(&notValue{o: o}, "not", "", "Negate the next filter flag (it excludes matching flows)")
	not.NoOptDefVal = "true"
	f.StringVar(&o.Since, "since", "", "Only flows since this time: a duration ago (5m, 1h, 2d) or an RFC 3339 time; "+
		"live, what is older than an hour comes from the agents' history (one line per connection key and time bucket, with its count)")
	f.StringVar(&o.Until, "until", "", "Only flows before this time: a duration ago or an RFC 3339 time")
	f.Uint64Var(&o.Last, "last", 0, fmt.Sprintf("Only the last N matching flows (live one-shot default: %d)", defaultLast))
	f.BoolVarP(&o.Follow, "follow", "f", false, "Keep streaming new flows (with --input-file: keep reading what is appended)")
	f.StringVarP(&o.Output, "output", "o", "", "tui, compact or json (default: tui on a terminal, compact otherwise); with --map: dot, svg or png")
	f.BoolVar(&o.Map, "map", false, "Draw the map of workloads and their connections, labelled by verdict, from the flows "+
		"(a capture, the agents' recent flows, or with --follow until interrupted) as -o dot (default), svg or png")
	f.StringVar(&o.InputFile, "input-file", "", "Replay flows from a JSON-lines file written by -o json")
	f.BoolVar(&o.PerNode, "per-node", false, "Show each node's own record of a connection between pods on two nodes "+
		"(egress on the source's node, ingress on the destination's) instead of one flow with both observation points")
	f.StringArrayVar(&o.WhatIf, "whatif", nil, "Also judge each flow under these proposed NetworkPolicies (file or directory; repeatable) "+
		"and the cluster's others: flows whose verdict would change are highlighted and counted")
	f.StringArrayVar(&o.WhatIfDelete, "whatif-delete", nil, "With the proposal, a NetworkPolicy it deletes: NAMESPACE/NAME (repeatable)")
	f.StringVar(&o.AgentNamespace, "agent-namespace", install.DefaultNamespace, "Namespace the netpol agent is installed in (-n filters flows)")
	f.IntVar(&o.AgentPort, "agent-port", install.AgentGRPCPort, "The agents' gRPC port on their node's loopback")
	_ = f.MarkHidden("agent-port") // for tests and custom builds; install always uses the default
	return cmd
}

// Complete picks the output format and the source, and builds the request.
func (o *WatchOptions) Complete(ctx context.Context) error {
	if o.Output == "" && o.Map {
		o.Output = picture.DOT
	}
	if o.Output == "" {
		o.Output = flow.OutputCompact
		if o.IsTerminal(o.Out) && o.IsTerminal(o.In) {
			o.Output = "tui"
		}
	}
	req := &flowv1.ObserveRequest{
		Follow:    o.Follow,
		Last:      o.Last,
		Allowlist: o.filters.Allowlist(),
		Denylist:  o.filters.Denylist(),
	}
	for _, t := range []struct {
		flag, val string
		dst       **timestamppb.Timestamp
	}{{"since", o.Since, &req.Since}, {"until", o.Until, &req.Until}} {
		if t.val == "" {
			continue
		}
		at, err := parseSince(t.val, o.Now())
		if err != nil {
			return fmt.Errorf("invalid --%s %q: use a duration ago (30s, 5m, 1h, 2d) or an RFC 3339 time (2026-11-25T14:00:00Z)", t.flag, t.val)
		}
		*t.dst = timestamppb.New(at)
	}
	if o.InputFile != "" {
		o.source = &flow.FileSource{Path: o.InputFile}
	} else {
		src, err := o.LiveSource(ctx, o)
		if err != nil {
			return err
		}
		o.source = src
		if req.Since != nil {
			o.source = &historyFirst{live: src, now: o.Now, access: o.agents()}
		}
		// Live: the TUI follows; a one-shot print shows the last few, like hubble observe.
		if o.Output == "tui" {
			req.Follow = true
		} else if !req.Follow && req.Last == 0 && req.Since == nil && !o.Map {
			// (A map draws every flow the agents still hold.)
			req.Last = defaultLast
		}
	}
	if !o.PerNode {
		// A cross-node connection is judged on two nodes: show it once.
		o.source = &flow.Pair{Source: o.source}
	}
	if len(o.WhatIf) > 0 || len(o.WhatIfDelete) > 0 {
		w := &WhatifOptions{factory: o.Factory, Proposals: o.WhatIf, Deletes: o.WhatIfDelete, namespace: "default"}
		_, proposed, err := w.states(ctx)
		if err != nil {
			return fmt.Errorf("--whatif: %w", err)
		}
		e, err := newEngine(proposed)
		if err != nil {
			return fmt.Errorf("--whatif: %w", err)
		}
		o.source = &whatifSource{Source: o.source, ann: whatif.NewAnnotator(e), judged: &o.whatifJudged, changed: &o.whatifChanged}
	}
	o.request = req
	return nil
}

// Validate checks flag combinations.
func (o *WatchOptions) Validate() error {
	if o.filters.PendingNot() {
		return errors.New("--not must be followed by the filter it negates, e.g. --not --namespace kube-system")
	}
	if o.allNamespaces && len(o.namespaces) > 0 {
		return errors.New("--all-namespaces and --namespace conflict: use one")
	}
	if o.Map {
		if !picture.IsFormat(o.Output) {
			return fmt.Errorf("--map draws a picture: use -o dot, svg or png, not %q", o.Output)
		}
		if o.Output == picture.PNG && o.IsTerminal(o.Out) {
			return errors.New("-o png writes an image: redirect it to a file, e.g. > map.png")
		}
	} else if picture.IsFormat(o.Output) {
		return fmt.Errorf("-o %s draws the workload map: add --map", o.Output)
	}
	switch o.Output {
	case picture.SVG, picture.PNG, picture.DOT:
	case "tui":
		if !o.IsTerminal(o.Out) {
			return errors.New("-o tui needs a terminal: use -o compact or -o json when the output is piped")
		}
	case flow.OutputCompact, flow.OutputJSON:
	default:
		return fmt.Errorf("unknown output format %q: use tui, compact or json", o.Output)
	}
	if _, err := flow.CompileQuery(o.request); err != nil {
		return err
	}
	return nil
}

// agents reaches the agents as the live source does, for their history.
func (o *WatchOptions) agents() *agentAccess {
	return &agentAccess{AgentNamespace: o.AgentNamespace, AgentPort: o.AgentPort, KubeClient: o.KubeClient, DialAgent: o.DialAgent}
}

// Run streams flows into the TUI or a printer until the source ends or ctx is done.
func (o *WatchOptions) Run(ctx context.Context) error {
	if o.Output == "tui" {
		name := "live"
		if o.InputFile != "" {
			name = "replay " + filepath.Base(o.InputFile)
		}
		in := o.In
		explainer := o.Explainer
		if explainer == nil {
			explainer = newEngineExplainer(o.KubeClient)
		}
		cfg := tui.Config{SourceName: name, ClientVersion: o.ClientVersion, Explainer: explainer}
		if o.InputFile == "" {
			cfg.History = &agentsHistory{access: o.agents(), allowlist: o.request.GetAllowlist(), denylist: o.request.GetDenylist(), now: o.Now}
		} else if filter, err := flow.CompileFilter(o.request.GetAllowlist(), o.request.GetDenylist()); err == nil {
			cfg.History = &captureHistory{path: o.InputFile, match: filter.Match}
		}
		return o.RunTUI(ctx, tui.Options{
			Config:  cfg,
			Source:  o.source,
			Request: o.request,
			Input:   in,
			Output:  o.Out,
		})
	}
	if o.Map {
		return o.runMap(ctx)
	}
	p, err := flow.NewPrinter(o.Output, o.Out, nil)
	if err != nil {
		return err
	}
	notes := &nodeNotes{clientVersion: o.ClientVersion, skewed: map[string]bool{}, down: map[string]string{}}
	err = o.source.Observe(ctx, o.request, func(b flow.Batch) error {
		notes.report(o.ErrOut, b.Nodes)
		for _, f := range b.Flows {
			if err := p.Print(f); err != nil {
				return err
			}
		}
		return p.Flush()
	})
	if o.whatifJudged > 0 {
		fmt.Fprintf(o.ErrOut, "whatif: %d of %d judged flows would change verdict under the proposal\n", o.whatifChanged, o.whatifJudged)
	}
	switch {
	case err == nil, errors.Is(err, context.Canceled) && ctx.Err() != nil:
		return nil // interrupted: what was printed is the answer
	case errors.Is(err, syscall.EPIPE):
		return nil // the reader (head, less) went away
	}
	return err
}

// runMap gathers the flows into a workload map and draws it when the
// source ends (or, following, when interrupted).
func (o *WatchOptions) runMap(ctx context.Context) error {
	g := flowmap.New()
	first, last := time.Time{}, time.Time{}
	notes := &nodeNotes{clientVersion: o.ClientVersion, skewed: map[string]bool{}, down: map[string]string{}}
	err := o.source.Observe(ctx, o.request, func(b flow.Batch) error {
		notes.report(o.ErrOut, b.Nodes)
		for _, f := range b.Flows {
			g.Add(f)
			t := f.GetTime().AsTime()
			if first.IsZero() || t.Before(first) {
				first = t
			}
			if t.After(last) {
				last = t
			}
		}
		return nil
	})
	if err != nil && !(errors.Is(err, context.Canceled) && ctx.Err() != nil) {
		return err
	}
	if g.Len() == 0 {
		return errors.New("no flows to draw: widen the filters, or give --since or --input-file")
	}
	title := fmt.Sprintf("Workloads and connections, %s to %s UTC", first.UTC().Format("2006-01-02 15:04:05"), last.UTC().Format("15:04:05"))
	return picture.WriteGraph(o.Out, o.Output, picture.FromFlowMap(g, title))
}

// nodeNotes tells a piped watch's stderr about agents whose version differs
// from the plugin's (once per version) and nodes that went down or came back
// (once per change), so stdout stays pure flows.
type nodeNotes struct {
	clientVersion string
	skewed        map[string]bool   // agent versions warned about
	down          map[string]string // node -> why, while down
}

func (n *nodeNotes) report(w io.Writer, states []flow.NodeState) {
	for _, s := range states {
		switch {
		case s.Connected:
			if _, was := n.down[s.Node]; was {
				fmt.Fprintf(w, "node %s: reconnected\n", s.Node)
				delete(n.down, s.Node)
			}
			if s.Version == "" || n.skewed[s.Version] {
				continue
			}
			if skew := version.Skew(n.clientVersion, s.Version); skew != "" {
				n.skewed[s.Version] = true
				fmt.Fprintf(w, "warning: version skew on node %s: %s\n", s.Node, skew)
			}
		case n.down[s.Node] != s.Err:
			n.down[s.Node] = s.Err
			fmt.Fprintf(w, "warning: node %s unreachable (retrying): %s\n", s.Node, s.Err)
		}
	}
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
