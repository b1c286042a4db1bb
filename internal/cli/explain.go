package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-netpol/kubectl-netpol/internal/snapshot"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

const explainExample = `  # Can web/frontend-1 reach db/mysql-0, on each port mysql-0 declares and on any other port?
  kubectl netpol explain web/frontend-1 db/mysql-0

  # One port, by number or by the destination's port name; a workload picks one of its pods
  kubectl netpol explain deploy/frontend db/mysql-0 -n web --port mysql

  # Offline, from manifests, and what-if a policy were applied
  kubectl netpol explain -f examples/db-policy web/frontend-1 db/mysql-0 --with-policy fix.yaml

  # Machine-readable (schema: docs/explain.md)
  kubectl netpol explain web/frontend-1 10.0.0.7 --port 443 -o json`

// ExplainOptions answers: may SRC reach DST, and exactly why (not).
type ExplainOptions struct {
	SourceOptions
	genericiooptions.IOStreams

	Port     string
	Protocol string
	Output   string
	Color    string

	namespace string
	src, dst  peerRef
	proto     corev1.Protocol
}

// NewCmdExplain returns `kubectl netpol explain SRC DST`.
func NewCmdExplain(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &ExplainOptions{IOStreams: streams, SourceOptions: SourceOptions{factory: f}}
	cmd := &cobra.Command{
		Use:   "explain SRC DST",
		Short: "Explain whether SRC may connect to DST, naming the policies and rules that decide it",
		Long: `Explain whether traffic from SRC to DST is allowed by NetworkPolicies, and why.

SRC and DST are each [NAMESPACE/]POD, [NAMESPACE/]pod/NAME, a workload
([NAMESPACE/]deploy|sts|ds|job|rs/NAME: one of its running pods is picked and
named), node/NAME (the node's InternalIP; traffic with any node address,
including what the CNI gives a node in the pod range, is node traffic), or
an IP address (an endpoint outside the pods, or a pod's IP).
Without --port, every port the destination declares is evaluated, plus one
port standing for "any other port".

Objects come from the current cluster, or from files with -f.
Rules are numbered from 0, as in the policy's spec: ingress[0] is the first
ingress rule.`,
		Example:           explainExample,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeEndpoints(f, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(f, args); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	o.SourceOptions.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.Port, "port", "", "Destination port, a number or the destination's port name (default: each declared port, plus any other port)")
	cmd.Flags().StringVar(&o.Protocol, "protocol", "", "Protocol: TCP, UDP or SCTP (default TCP; without --port, limits the declared ports shown)")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "text", "Output format: text, json or yaml")
	addColorFlag(cmd, &o.Color)
	return cmd
}

// Complete fills in the namespace and parses SRC and DST.
func (o *ExplainOptions) Complete(f *Factory, args []string) error {
	var err error
	if o.namespace, _, err = f.Namespace(o.Offline()); err != nil {
		return err
	}
	if o.src, err = parsePeer(args[0], o.namespace); err != nil {
		return fmt.Errorf("SRC %v", err)
	}
	if o.dst, err = parsePeer(args[1], o.namespace); err != nil {
		return fmt.Errorf("DST %v", err)
	}
	return nil
}

// Validate checks flag values before anything is read.
func (o *ExplainOptions) Validate() error {
	var err error
	if o.proto, err = parseProtocol(o.Protocol); err != nil {
		return err
	}
	if o.Port != "" {
		if _, _, err := parsePortNumber(o.Port); err != nil {
			return err
		}
	}
	if err := validateColor(o.Color); err != nil {
		return err
	}
	return validateTextOutput(o.Output)
}

// Run loads the objects, resolves SRC and DST, and evaluates each port.
func (o *ExplainOptions) Run(ctx context.Context) error {
	set, err := o.Load(ctx, scopeFor([]peerRef{o.src, o.dst}), o.namespace)
	if err != nil {
		return err
	}
	res := newResolver(set)
	src, err := res.resolve(o.src)
	if err != nil {
		return err
	}
	dst, err := res.resolve(o.dst)
	if err != nil {
		return err
	}
	engine, err := newEngine(set)
	if err != nil {
		return err
	}
	var ports []portSpec
	var notes []string
	if o.Port != "" {
		p, err := resolveUserPort(o.Port, o.proto, dst)
		if err != nil {
			return err
		}
		ports = []portSpec{p}
	} else {
		ports = declaredPorts(dst.Pod, o.proto)
		proto := o.proto
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		if n, ok := otherPort(engine, src, dst, proto, ports); ok {
			ports = append(ports, portSpec{Port: n, Protocol: proto, Other: true})
			what := "the destination does not declare it"
			if dst.Pod == nil {
				what = "the destination is not a pod"
			}
			notes = append(notes, fmt.Sprintf("any other %s port is represented by %d: %s and no rule deciding this traffic names it", proto, n, what))
		} else {
			notes = append(notes, fmt.Sprintf("every %s port is declared or named by a rule, so no \"any other port\" is shown", proto))
		}
	}
	x := buildExplanation(engine, set, src, dst, ports, notes)
	switch o.Output {
	case "json", "yaml":
		return writeStructured(o.Out, o.Output, x)
	}
	return renderExplanation(o.Out, x, useColor(o.Color, o.Out), set)
}

// newEngine builds the engine, naming the file an invalid policy came from.
func newEngine(set *snapshot.Set) (*policy.Engine, error) {
	e, err := policy.NewEngine(set.Snapshot())
	if err != nil {
		return nil, withOrigin(set, err)
	}
	return e, nil
}
