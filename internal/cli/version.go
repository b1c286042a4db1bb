package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
	"github.com/kubectl-netpol/kubectl-netpol/internal/version"
)

// agentLookupTimeout bounds the cluster query of `version`, so an unreachable
// API server costs a few seconds, not kubectl's default of no timeout.
const agentLookupTimeout = 5 * time.Second

// VersionOptions prints the plugin's version and, unless ClientOnly, the
// version of the agent installed in the cluster.
type VersionOptions struct {
	genericiooptions.IOStreams
	configFlags *genericclioptions.ConfigFlags

	Output     string
	ClientOnly bool

	// Namespace is where the agent is looked for; Client reads it. Both are
	// set by Complete (tests set them directly). clientErr records why no
	// client could be built: `version` still succeeds without a cluster.
	Namespace string
	Client    kubernetes.Interface
	clientErr error
}

// versionInfo is the -o json schema of `kubectl netpol version`.
type versionInfo struct {
	Client clientVersion `json:"client"`
	Agent  *agentStatus  `json:"agent,omitempty"`
}

type clientVersion struct {
	Version    string `json:"version"`
	GoVersion  string `json:"goVersion"`
	Platform   string `json:"platform"`
	AgentImage string `json:"agentImage"`
}

// Agent states reported by `version`.
const (
	agentInstalled    = "Installed"
	agentNotInstalled = "NotInstalled"
	agentUnknown      = "Unknown" // cluster unreachable or the read was refused
)

// agentStatus is what the cluster says about the installed agent.
type agentStatus struct {
	State     string `json:"state"`
	Namespace string `json:"namespace"`
	DaemonSet string `json:"daemonSet,omitempty"`
	Version   string `json:"version,omitempty"`
	Image     string `json:"image,omitempty"`
	Desired   int32  `json:"desired"`
	Ready     int32  `json:"ready"`
	// Skew says how the agent differs from this plugin; empty when they match.
	Skew string `json:"skew,omitempty"`
	// Error is why the state is Unknown.
	Error string `json:"error,omitempty"`
}

// NewCmdVersion returns `kubectl netpol version`.
func NewCmdVersion(configFlags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &VersionOptions{IOStreams: streams, configFlags: configFlags}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the plugin version and the installed agent's version",
		Long: `Print the plugin version and, when the cluster is reachable and the agent is
installed, the agent's version, with a warning when they differ. The agent is
looked for in the namespace given with -n, else in netpol-system. Upgrade both
together: upgrade the plugin, then run 'kubectl netpol install'.`,
		Example: `  kubectl netpol version
  kubectl netpol version --client -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			o.Complete()
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "Output format: '' or json")
	cmd.Flags().BoolVar(&o.ClientOnly, "client", false, "Print only the plugin version; do not contact the cluster")
	return cmd
}

// Validate checks the output format.
func (o *VersionOptions) Validate() error {
	if o.Output != "" && o.Output != "json" {
		return fmt.Errorf("unknown output format %q: use -o json or leave it out", o.Output)
	}
	return nil
}

// Complete resolves the agent namespace and builds the cluster client. A
// missing or broken kubeconfig is not an error for `version`: it is reported
// as the agent state instead.
func (o *VersionOptions) Complete() {
	if o.ClientOnly || o.Client != nil {
		return
	}
	o.Namespace = agentNamespace(o.configFlags)
	cfg, err := o.configFlags.ToRESTConfig()
	if err != nil {
		o.clientErr = err
		return
	}
	o.Client, o.clientErr = kubernetes.NewForConfig(cfg)
}

// agentNamespace is the namespace given with -n/--namespace, or the default
// install namespace (not the kubeconfig context's namespace: the agent lives
// where install put it).
func agentNamespace(f *genericclioptions.ConfigFlags) string {
	if f != nil && f.Namespace != nil && *f.Namespace != "" {
		return *f.Namespace
	}
	return install.DefaultNamespace
}

// Run prints the versions. It fails only when output cannot be written.
func (o *VersionOptions) Run(ctx context.Context) error {
	info := versionInfo{Client: clientVersion{
		Version:    version.Version(),
		GoVersion:  runtime.Version(),
		Platform:   runtime.GOOS + "/" + runtime.GOARCH,
		AgentImage: version.DefaultAgentImage(),
	}}
	if !o.ClientOnly {
		ns := o.Namespace
		if ns == "" {
			ns = install.DefaultNamespace
		}
		st := agentStatus{State: agentUnknown, Namespace: ns}
		if o.clientErr != nil || o.Client == nil {
			st.Error = fmt.Sprintf("no cluster client: %v", o.clientErr)
		} else {
			ctx, cancel := context.WithTimeout(ctx, agentLookupTimeout)
			st = findAgent(ctx, o.Client, ns)
			cancel()
		}
		switch {
		case st.State == agentInstalled && st.Version == "":
			st.Skew = fmt.Sprintf("the agent DaemonSet has no %s label, so its version is unknown: run 'kubectl netpol install' to replace it", install.LabelVersion)
		case st.State == agentInstalled:
			st.Skew = version.Skew(install.VersionLabelValue(info.Client.Version), st.Version)
		}
		info.Agent = &st
	}
	if info.Agent != nil && info.Agent.Skew != "" {
		fmt.Fprintf(o.ErrOut, "Warning: version skew: %s\n", info.Agent.Skew)
	}
	if o.Output == "json" {
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	return printVersion(o.Out, info)
}

func printVersion(w io.Writer, info versionInfo) error {
	c := info.Client
	if _, err := fmt.Fprintf(w, "Client Version: %s (%s, %s)\n", c.Version, c.GoVersion, c.Platform); err != nil {
		return err
	}
	a := info.Agent
	if a == nil {
		return nil
	}
	var err error
	switch a.State {
	case agentInstalled:
		v := a.Version
		if v == "" {
			v = "unknown"
		}
		_, err = fmt.Fprintf(w, "Agent Version:  %s (DaemonSet %s/%s, %d/%d ready, image %s)\n", v, a.Namespace, a.DaemonSet, a.Ready, a.Desired, a.Image)
	case agentNotInstalled:
		_, err = fmt.Fprintf(w, "Agent Version:  not installed in namespace %s (run 'kubectl netpol install')\n", a.Namespace)
	default:
		_, err = fmt.Fprintf(w, "Agent Version:  unknown (%s)\n", a.Error)
	}
	return err
}

// findAgent reads the agent DaemonSet (by label, in namespace ns) and its
// version label. Every failure becomes State Unknown with a one-line reason,
// since a version query must not fail because the cluster is away.
func findAgent(ctx context.Context, cs kubernetes.Interface, ns string) agentStatus {
	st := agentStatus{State: agentUnknown, Namespace: ns}
	list, err := cs.AppsV1().DaemonSets(ns).List(ctx, metav1.ListOptions{LabelSelector: install.AgentSelector})
	if err != nil {
		st.Error = "cannot read the agent DaemonSet: " + firstLine(err.Error())
		return st
	}
	if len(list.Items) == 0 {
		st.State = agentNotInstalled
		return st
	}
	// Several matches means a hand-made copy; report the first by name so the
	// output is stable.
	items := list.Items
	sort.Slice(items, func(i, j int) bool { return items[i].Name < items[j].Name })
	ds := items[0]
	st.State = agentInstalled
	st.DaemonSet = ds.Name
	st.Version = ds.Labels[install.LabelVersion]
	if cs := ds.Spec.Template.Spec.Containers; len(cs) > 0 {
		st.Image = cs[0].Image
	}
	st.Desired = ds.Status.DesiredNumberScheduled
	st.Ready = ds.Status.NumberReady
	return st
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
