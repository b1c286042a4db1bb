package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
	"github.com/kubectl-netpol/kubectl-netpol/internal/snapshot"
	"github.com/kubectl-netpol/kubectl-netpol/whatif"
)

// CoverageOptions is `kubectl netpol coverage`.
type CoverageOptions struct {
	SourceOptions
	genericiooptions.IOStreams
	agentAccess

	Since  string
	Flows  string
	Output string

	namespace string
	explicit  bool
	Now       func() time.Time
}

type coverageReport struct {
	Pods []whatif.PodCoverage `json:"pods"`
	// Exposed is observed traffic reaching pods no policy isolates for ingress.
	Exposed []whatif.Exposure `json:"exposed"`
	// History says where the exposure came from, or why there is none.
	History string `json:"history"`
}

// NewCmdCoverage returns `kubectl netpol coverage`.
func NewCmdCoverage(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &CoverageOptions{IOStreams: streams, SourceOptions: SourceOptions{factory: f}, Now: time.Now, agentAccess: newAgentAccess(f)}
	cmd := &cobra.Command{
		Use:   "coverage [-n NAMESPACE]",
		Short: "Which pods policies isolate, per direction, and the observed traffic reaching pods none isolates",
		Long: `For each pod and direction: not isolated (no policy selects it: everything is
allowed), isolated with allowing rules, or isolated allowing nothing.

With the agents' history (live) or a capture (--flows), also the observed,
allowed connections into pods that no policy isolates for ingress: live
exposure, by workload pair.`,
		Example: `  # Coverage of namespace shop, with a day of observed exposure
  kubectl netpol coverage -n shop --since 24h

  # Offline, from manifests and a capture
  kubectl netpol coverage -f deploy/ --flows capture.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.namespace, o.explicit, err = f.Namespace(o.Offline()); err != nil {
				return err
			}
			if err := validateTextOutput(o.Output); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	o.SourceOptions.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.Since, "since", "24h", "History window for the observed exposure: a duration (24h, 7d) or an RFC 3339 time")
	cmd.Flags().StringVar(&o.Flows, "flows", "", "Observed traffic from a capture written by `kubectl netpol watch -o json` instead of the agents' history")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "text", "Output format: text, json or yaml")
	cmd.Flags().StringVar(&o.AgentNamespace, "agent-namespace", install.DefaultNamespace, "Namespace the netpol agent is installed in")
	return cmd
}

// Run classifies the pods and, with history, lists the exposure.
func (o *CoverageOptions) Run(ctx context.Context) error {
	since, err := parseSince(o.Since, o.Now())
	if err != nil {
		return err
	}
	scope := snapshot.Scope{AllNamespaces: true}
	var namespaces []string
	if o.explicit {
		scope, namespaces = snapshot.Scope{Namespaces: []string{o.namespace}}, []string{o.namespace}
	}
	set, err := o.Load(ctx, scope, o.namespace)
	if err != nil {
		return err
	}
	e, err := newEngine(set)
	if err != nil {
		return err
	}
	var pods []*corev1.Pod
	for _, p := range set.Pods {
		if !o.explicit || p.Namespace == o.namespace {
			pods = append(pods, p)
		}
	}
	rep := coverageReport{Pods: whatif.PodsCoverage(e, pods), Exposed: []whatif.Exposure{}}
	var hist *history.Set
	switch {
	case o.Flows != "":
		if hist, err = historyFromFile(o.Flows); err != nil {
			return err
		}
		rep.History = "capture " + o.Flows
	case o.Offline():
		rep.History = "none: offline (-f) without --flows"
	default:
		hist, err = o.collectHistory(ctx, &flowv1.HistoryRequest{SchemaVersion: history.SchemaVersion, Since: timestamppb.New(since)})
		if errors.Is(err, ErrNoAgent) {
			rep.History = "none: the netpol agent is not installed"
			err = nil
		}
		if err != nil {
			return err
		}
		if hist != nil {
			rep.History = fmt.Sprintf("agents on %d node(s) since %s", len(hist.Coverage), since.UTC().Format(time.RFC3339))
			for node, why := range hist.Unreachable {
				fmt.Fprintf(o.ErrOut, "WARNING: PARTIAL ANSWER: the agent on node %s could not be reached (%s): its observed traffic is missing\n", node, why)
			}
		}
	}
	if hist != nil {
		rep.Exposed = whatif.Exposed(e, hist, namespaces)
	}
	if o.Output != "text" {
		return writeStructured(o.Out, o.Output, rep)
	}
	printCoverage(o.Out, rep)
	return nil
}

func printCoverage(w io.Writer, rep coverageReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POD\tINGRESS\tEGRESS")
	counts := map[whatif.Isolation]int{}
	for _, p := range rep.Pods {
		in, eg := string(p.Ingress), string(p.Egress)
		if len(p.IngressBy) > 0 {
			in += " (" + strings.Join(p.IngressBy, ", ") + ")"
		}
		if len(p.EgressBy) > 0 {
			eg += " (" + strings.Join(p.EgressBy, ", ") + ")"
		}
		if p.HostNetwork {
			in, eg = "host network: never isolated", "host network: never isolated"
		}
		counts[p.Ingress]++
		fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Pod, in, eg)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d pods: ingress %d not isolated, %d isolated with allowing rules, %d isolated allowing nothing\n",
		len(rep.Pods), counts[whatif.NotIsolated], counts[whatif.IsolatedAllowing], counts[whatif.IsolatedDenyingAll])
	fmt.Fprintf(w, "\nObserved traffic into pods no policy isolates (history: %s): %d\n", rep.History, len(rep.Exposed))
	if len(rep.Exposed) == 0 {
		return
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  SOURCE\tDESTINATION\tPORT\tCONNECTIONS\tLAST SEEN")
	for _, x := range rep.Exposed {
		fmt.Fprintf(tw, "  %s\t%s\t%s/%d\t%d\t%s\n", x.Source, x.Destination, x.Protocol, x.Port, x.Connections, x.LastSeen.Format(time.RFC3339))
	}
	tw.Flush()
}
