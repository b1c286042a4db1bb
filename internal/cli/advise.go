package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-netpol/kubectl-netpol/advise"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
	"github.com/kubectl-netpol/kubectl-netpol/internal/snapshot"
)

// AdviseOptions is `kubectl netpol advise`.
type AdviseOptions struct {
	genericiooptions.IOStreams
	agentAccess

	Workloads     []string // --workload [NS/]KIND/NAME
	AllNamespaces bool
	Since         string
	Ingress       bool
	Egress        bool
	Both          bool
	Audit         bool
	Output        string
	Flows         string   // --flows: a capture instead of the agents' history
	Current       []string // --current: today's objects from files

	factory    *Factory
	namespace  string
	explicitNS bool
	since      time.Time
	Now        func() time.Time
}

// NewCmdAdvise returns `kubectl netpol advise`.
func NewCmdAdvise(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &AdviseOptions{IOStreams: streams, factory: f, Now: time.Now, agentAccess: newAgentAccess(f)}
	cmd := &cobra.Command{
		Use:   "advise [-n NAMESPACE | -A | --workload KIND/NAME ...] [--since 7d] [--ingress|--egress|--both]",
		Short: "Propose the smallest NetworkPolicies that admit the traffic the agents observed",
		Long: `Read the connection history the agents recorded and propose, per workload and
direction, the smallest NetworkPolicy that admits every connection observed in
the window and nothing else: selectors on stable labels (never
pod-template-hash; app.kubernetes.io/* first), namespaces by
kubernetes.io/metadata.name, ports by number (by name when the destination
declares it), cluster DNS as its own rule, addresses outside the pods as
ipBlocks. Each rule carries a comment naming the connections it admits and how
often; the head says the window and what was not seen (workloads without
traffic, traffic only before the window, denied traffic).

Policies are annotated netpol.kubectl.io/mode: audit unless --audit=false:
applied, they are judged but not enforced until 'kubectl netpol promote'.

Offline: --flows reads a capture written by 'kubectl netpol watch -o json'
instead of the agents, and --current today's objects from files.`,
		Example: `  # Ingress policies for every workload of namespace shop, from the last 7 days
  kubectl netpol advise -n shop > shop-policies.yaml

  # Both directions for one Deployment, over 30 days
  kubectl netpol advise -n shop --workload deploy/api --both --since 30d

  # In CI, from a saved capture and the repository's manifests
  kubectl netpol advise --flows capture.jsonl --current deploy/ -n shop`,
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
	fl.StringArrayVar(&o.Workloads, "workload", nil, "Advise for this workload only: [NAMESPACE/]KIND/NAME (deploy/api, sts/db) or [NAMESPACE/]POD (repeatable)")
	fl.BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "Advise for the workloads of every namespace")
	fl.StringVar(&o.Since, "since", "7d", "The observation window: a duration (7d, 24h) or an RFC 3339 time")
	fl.BoolVar(&o.Ingress, "ingress", false, "Propose ingress policies (the default)")
	fl.BoolVar(&o.Egress, "egress", false, "Propose egress policies")
	fl.BoolVar(&o.Both, "both", false, "Propose ingress and egress policies")
	fl.BoolVar(&o.Audit, "audit", true, "Annotate the policies netpol.kubectl.io/mode: audit (judged, not enforced, until promoted)")
	fl.StringVarP(&o.Output, "output", "o", "yaml", "Output format: yaml (commented, for kubectl apply) or json (the report)")
	fl.StringVar(&o.Flows, "flows", "", "Read a capture `FILE` written by 'kubectl netpol watch -o json' instead of the agents' history")
	fl.StringArrayVar(&o.Current, "current", nil, "Read today's objects (namespaces, pods, workloads) from files instead of the cluster (repeatable)")
	fl.StringVar(&o.AgentNamespace, "agent-namespace", install.DefaultNamespace, "Namespace the netpol agent is installed in")
	_ = cmd.RegisterFlagCompletionFunc("workload", completeEndpoints(f, 0))
	return cmd
}

// Complete resolves the namespace and the window.
func (o *AdviseOptions) Complete() error {
	var err error
	if o.namespace, o.explicitNS, err = o.factory.Namespace(len(o.Current) > 0); err != nil {
		return err
	}
	if o.Both {
		o.Ingress, o.Egress = true, true
	}
	if !o.Ingress && !o.Egress {
		o.Ingress = true
	}
	o.since, err = parseSince(o.Since, o.Now())
	return err
}

// Validate checks the flags.
func (o *AdviseOptions) Validate() error {
	if o.AllNamespaces && (o.explicitNS || len(o.Workloads) > 0) {
		return errors.New("--all-namespaces advises for every workload: drop -n and --workload, or drop -A")
	}
	if o.Output != "yaml" && o.Output != "json" {
		return fmt.Errorf("unknown output format %q: use yaml or json", o.Output)
	}
	if len(o.Current) > 0 && o.Flows == "" {
		return errors.New("--current reads today's objects for an offline run: give the history with --flows FILE too")
	}
	_, err := o.workloadNames()
	return err
}

// workloadNames are the --workload arguments as history names ends.
func (o *AdviseOptions) workloadNames() ([]string, error) {
	var out []string
	for _, w := range o.Workloads {
		ref, err := parsePeer(w, o.namespace)
		if err != nil {
			return nil, fmt.Errorf("--workload %s: %w", w, err)
		}
		ep := &flowv1.Endpoint{Namespace: ref.Namespace, Pod: ref.Name}
		switch ref.Kind {
		case "Pod":
		case "IP", "Node":
			return nil, fmt.Errorf("--workload %s: name a workload ([NAMESPACE/]KIND/NAME) or a pod, not an address", w)
		default:
			ep = &flowv1.Endpoint{Namespace: ref.Namespace, Workload: &flowv1.Workload{Kind: ref.Kind, Name: ref.Name}}
		}
		out = append(out, history.EndName(ep, ""))
	}
	return out, nil
}

// Run loads the objects and the history, advises and prints.
func (o *AdviseOptions) Run(ctx context.Context) error {
	src := SourceOptions{Filenames: o.Current, factory: o.factory}
	objs, err := src.Load(ctx, snapshot.Scope{AllNamespaces: true}, o.namespace)
	if err != nil {
		return err
	}
	e, err := newEngine(objs)
	if err != nil {
		return err
	}
	set, err := o.history(ctx)
	if err != nil {
		return err
	}
	in := advise.Input{History: set, Engine: e, Since: o.since, Ingress: o.Ingress, Egress: o.Egress, Audit: o.Audit}
	if in.Workloads, err = o.workloadNames(); err != nil {
		return err
	}
	if len(in.Workloads) == 0 && !o.AllNamespaces {
		in.Namespaces = []string{o.namespace}
	}
	rep, err := advise.Advise(in)
	if err != nil {
		return err
	}
	if len(rep.Unknown) > 0 {
		return fmt.Errorf("--workload %s: neither the cluster nor the history has it (`kubectl get deploy,sts,ds,job,pod -n NAMESPACE` lists workloads)", strings.Join(rep.Unknown, ", "))
	}
	warnUnreachable(o.ErrOut, rep.Coverage.Unreachable)
	if rep.Coverage.Records == 0 {
		fmt.Fprintf(o.ErrOut, "no connection history since %s %s: nothing observed, so nothing to advise\n",
			o.since.UTC().Format(time.RFC3339), o.historyWhere(len(rep.Coverage.Nodes)))
		return &ExitError{Code: whatifEmptyHistory}
	}
	if o.Output == "json" {
		return writeStructured(o.Out, "json", rep)
	}
	return advise.WriteYAML(o.Out, rep)
}

// history is the agents' history, or the capture's. All of it is read:
// what was seen only before the window is reported, not admitted.
func (o *AdviseOptions) history(ctx context.Context) (*history.Set, error) {
	if o.Flows == "" {
		return o.collectHistory(ctx, &flowv1.HistoryRequest{SchemaVersion: history.SchemaVersion})
	}
	return readCaptureHistory(o.Flows, o.Since, &o.since)
}

func (o *AdviseOptions) historyWhere(nodes int) string {
	if o.Flows != "" {
		return "in " + o.Flows
	}
	return fmt.Sprintf("on %d node(s) (is the agent installed with its history on, and has traffic flowed? `kubectl netpol status` shows each node's history)", nodes)
}
