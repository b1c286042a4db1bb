package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"k8s.io/apimachinery/pkg/api/resource"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-netpol/kubectl-netpol/internal/cni"
	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
	"github.com/kubectl-netpol/kubectl-netpol/internal/version"
)

// defaultWaitTimeout bounds --wait of install and uninstall.
const defaultWaitTimeout = 2 * time.Minute

// agentClients reaches the cluster for install, uninstall and status.
// Tests set the fields directly; connect fills the missing ones from the
// kubeconfig flags.
type agentClients struct {
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
	Config  *rest.Config
	// PollInterval paces the --wait loops (1s when zero).
	PollInterval time.Duration
}

// connect builds what is missing: always the clientset; the REST config
// when needConfig (port-forward, dynamic client); the dynamic client when
// needDynamic.
func (c *agentClients) connect(f *Factory, needConfig, needDynamic bool) error {
	if c.Kube == nil {
		// NewClient explains a missing or broken kubeconfig; the clients
		// are then built from the same flags with a higher rate limit.
		if _, _, err := f.NewClient(); err != nil {
			return err
		}
		needConfig = true
	}
	if c.Config == nil && (needConfig || needDynamic && c.Dynamic == nil) {
		cfg, err := f.ConfigFlags.ToRESTConfig()
		if err != nil {
			return err
		}
		cfg = rest.CopyConfig(cfg)
		cfg.UserAgent = "kubectl-netpol"
		// client-go's default (5 requests/s) would make an install, its
		// access reviews and applies about 45 requests, take seconds; the
		// API server's own fairness limits still apply.
		cfg.QPS, cfg.Burst = 50, 100
		c.Config = cfg
	}
	if c.Kube == nil {
		kube, err := kubernetes.NewForConfig(c.Config)
		if err != nil {
			return err
		}
		c.Kube = kube
	}
	if needDynamic && c.Dynamic == nil {
		d, err := dynamic.NewForConfig(c.Config)
		if err != nil {
			return err
		}
		c.Dynamic = d
	}
	return nil
}

func (c *agentClients) poll() time.Duration {
	if c.PollInterval > 0 {
		return c.PollInterval
	}
	return time.Second
}

// InstallOptions is `kubectl netpol install`.
type InstallOptions struct {
	genericiooptions.IOStreams
	agentClients

	Image        string
	NodeSelector string
	DryRun       string
	Output       string
	Wait         bool
	Timeout      time.Duration
	// AntiSpoofing and KeepEstablished configure the agent.
	AntiSpoofing     bool
	KeepEstablished  bool
	FlowEndSummaries bool
	FlowEndProtocols string
	// AgentNice is the agents' niceness (0-19).
	AgentNice int
	// FlowAggregation is the agents' --flow-aggregation.
	FlowAggregation time.Duration
	// History keeps each node's connection history, within these budgets
	// (quantities; "" for the agent's defaults).
	History                    bool
	HistoryMemory, HistoryDisk string
	Pprof                      bool
	// OTLP export: the Collector's address, plain text or the CA file.
	OTLPEndpoint string
	OTLPInsecure bool
	OTLPCAFile   string
	// MountBPFFS adds the privileged init container that mounts bpffs on
	// nodes without it.
	MountBPFFS bool
	// Force installs beside a CNI whose datapath would take pod traffic
	// past the agent.
	Force bool
	// Version labels the objects; the plugin's own version unless a test
	// pins it.
	Version string

	factory *Factory
	opts    install.Options
}

// NewCmdInstall returns `kubectl netpol install`.
func NewCmdInstall(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	return newCmdInstall(&InstallOptions{IOStreams: streams, factory: f, Version: version.Version()})
}

func newCmdInstall(o *InstallOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install or upgrade the netpol agent (a DaemonSet enforcing NetworkPolicies with eBPF)",
		Long: `Install the netpol agent in the cluster, or upgrade it to this plugin's version.

It creates, with server-side apply (field manager kubectl-netpol): the
namespace (-n, default netpol-system), a ServiceAccount, a ClusterRole that
reads pods, namespaces, services, nodes and NetworkPolicies (nothing else, no
secrets), a Role that reads the agent's own DaemonSet and writes Events on
its pod, their bindings, and
the netpol-agent DaemonSet. The agent runs on the host network with the
capabilities BPF, NET_ADMIN and PERFMON only, listens on 127.0.0.1 only, and
is reached by 'kubectl netpol status' and 'watch' through the API server's
port-forward.

Before applying, install looks for the cluster's CNI (its DaemonSet and
ConfigMap) and says what will and will not work beside it. Beside a CNI whose
datapath takes pod traffic past netfilter (Cilium, Calico's eBPF dataplane)
the agent could not enforce: install stops there unless --force. Beside a CNI
that enforces NetworkPolicy too (Calico iptables/nftables, Weave Net,
kube-router) both enforce the same objects: a packet passes only if both
accept it.

The agent pins its maps and links in the node's BPF filesystem at
/sys/fs/bpf, which systemd mounts on most distributions. An init container
without any privilege checks it first: on a node without it, install --wait
and status say "bpffs is not mounted at /sys/fs/bpf on node X" and how to fix
it. --mount-bpffs mounts it instead, from an init container that Kubernetes
requires to be privileged (see docs/install.md).

Every object is labelled app.kubernetes.io/part-of=kubectl-netpol, which
'kubectl netpol uninstall' uses to remove them all. Running install again is
safe: unchanged objects stay as they are, a new version rolls the agents.

-n/--namespace names the install namespace (not the kubeconfig context's
namespace); status, uninstall and version take the same flag.`,
		Example: `  # Install on every node and wait until each agent is ready
  kubectl netpol install

  # Print the manifests instead (review them, or apply them with your own tooling)
  kubectl netpol install --dry-run=client -o yaml

  # Nodes without bpffs at /sys/fs/bpf (minimal distributions): mount it from a
  # privileged init container; compare with and without:
  kubectl netpol install --mount-bpffs --dry-run=client -o yaml

  # From your own registry, on Linux nodes of one pool, into another namespace
  kubectl netpol install --image registry.example/netpol-agent:v0.1.0 \
      --node-selector kubernetes.io/os=linux,pool=general -n netpol`,
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
	fl.StringVar(&o.Image, "image", version.DefaultAgentImage(), "Agent image, with a tag other than latest or a digest")
	fl.StringVar(&o.NodeSelector, "node-selector", "", "Run the agent only on nodes with these labels: key=value[,key=value...]")
	fl.StringVar(&o.DryRun, "dry-run", "none", `"client": print what would be created without contacting the cluster; "server": ask the API server to validate without persisting`)
	fl.Lookup("dry-run").NoOptDefVal = "client"
	fl.StringVarP(&o.Output, "output", "o", "", "With --dry-run=client, print the manifests: yaml or json")
	fl.BoolVar(&o.AntiSpoofing, "anti-spoofing", true, "Drop packets a pod sends with a source address that is not its own (turn off for pods that route or forward others' traffic)")
	fl.BoolVar(&o.FlowEndSummaries, "flow-end-summaries", true, "Report each ended connection of a local pod with its packets, bytes and duration (from conntrack; counts need net.netfilter.nf_conntrack_acct=1 on the nodes)")
	fl.StringVar(&o.FlowEndProtocols, "flow-end-protocols", "all", `Which ended connections get a summary: "all", or "tcp" (TCP only, read from the sockets' states with no conntrack listener: cheaper per connection, no UDP/SCTP/ICMP summaries; docs/install.md)`)
	fl.IntVar(&o.AgentNice, "agent-nice", install.DefaultAgentNice, "Niceness of the agents' user space (0-19; enforcement runs in the kernel either way): above 0 their flow processing and compiles yield the CPU to the node's workloads, and on a saturated node flow events are dropped and counted instead of slowing pods; 0 gives them the workloads' priority")
	fl.DurationVar(&o.FlowAggregation, "flow-aggregation", install.DefaultFlowAggregation, "Within this interval, count repeats of an allowed connection (same source, destination, port, protocol and deciding rules) in the kernel and report them as one flow per interval with their count, rather than one per connection; 0 reports each connection (costs more per connection: docs/install.md). Drops and audited flows are always reported one by one")
	fl.BoolVar(&o.History, "history", true, "Keep an aggregated history of judged connections on each node (under "+install.HistoryDir+"), which whatif, unused and watch --since read")
	fl.StringVar(&o.HistoryMemory, "history-memory", "", "Memory budget of each agent's connection history, e.g. 128Mi (default 64Mi; docs/perf.md gives the sizing)")
	fl.StringVar(&o.HistoryDisk, "history-disk", "", "Disk budget of each agent's connection history file, e.g. 256Mi (default 64Mi)")
	fl.BoolVar(&o.KeepEstablished, "keep-established", false, "Leave established connections alone when a policy change denies them (default: cut them, as the new policy says)")
	fl.BoolVar(&o.MountBPFFS, "mount-bpffs", false, "Mount bpffs at /sys/fs/bpf on nodes where nothing did, from an init container that runs before the agent. "+
		"Kubernetes admits the Bidirectional mount propagation this needs only in a PRIVILEGED container (every capability, no seccomp): "+
		"prefer mounting bpffs on the nodes (systemd's sys-fs-bpf.mount). The agent itself stays unprivileged")
	fl.BoolVar(&o.Force, "force", false, "Install even beside a CNI whose datapath takes pod traffic past netfilter (Cilium, Calico's eBPF dataplane), where the agent could not enforce; status then shows those nodes as not enforcing")
	fl.BoolVar(&o.Pprof, "pprof", false, "Serve Go's profiles (/debug/pprof/) on each agent's loopback HTTP port, to see where the agent's own CPU and memory go (kubectl port-forward to the agent pod)")
	fl.StringVar(&o.OTLPEndpoint, "otlp-endpoint", "", "Export every node's flows (OTLP logs) and metrics (OTLP metrics) to this OpenTelemetry Collector: HOST:PORT of its OTLP gRPC receiver. Export never slows enforcement: what the Collector cannot take is dropped and counted (status, kubectl_netpol_otlp_dropped_total)")
	fl.BoolVar(&o.OTLPInsecure, "otlp-insecure", false, "Send OTLP in plain text (a Collector inside the cluster network); default TLS")
	fl.StringVar(&o.OTLPCAFile, "otlp-ca-file", "", "PEM file of the CA that signed the Collector's certificate, shipped to the agents in a ConfigMap (default: the system roots)")
	fl.BoolVar(&o.Wait, "wait", true, "Wait until the agent is ready on every node, showing each node's progress")
	fl.DurationVar(&o.Timeout, "timeout", defaultWaitTimeout, "How long --wait waits before showing the failing pods' state, events and logs")
	return cmd
}

// Complete resolves the namespace and parses the node selector.
func (o *InstallOptions) Complete() error {
	sel, err := install.ParseNodeSelector(o.NodeSelector)
	if err != nil {
		return fmt.Errorf("--node-selector: %w", err)
	}
	if o.FlowEndProtocols != "all" && o.FlowEndProtocols != "tcp" {
		return fmt.Errorf("--flow-end-protocols %q: use all (the default) or tcp", o.FlowEndProtocols)
	}
	if o.FlowAggregation < 0 {
		return fmt.Errorf("--flow-aggregation %s: use 0 (a flow per connection) or an interval such as 1s", o.FlowAggregation)
	}
	if o.AgentNice < 0 || o.AgentNice > 19 {
		return fmt.Errorf("--agent-nice %d: use 0 (the workloads' priority) to 19 (the lowest)", o.AgentNice)
	}
	o.opts = install.Options{
		Namespace:          agentNamespace(o.factory.ConfigFlags),
		Image:              o.Image,
		NodeSelector:       sel,
		Version:            o.Version,
		NoAntiSpoofing:     !o.AntiSpoofing,
		KeepEstablished:    o.KeepEstablished,
		NoFlowEndSummaries: !o.FlowEndSummaries,
		FlowEndTCPOnly:     o.FlowEndProtocols == "tcp",
		Nice:               &o.AgentNice,
		FlowAggregation:    &o.FlowAggregation,
		MountBPFFS:         o.MountBPFFS,
		NoHistory:          !o.History,
		HistoryMemory:      o.HistoryMemory,
		HistoryDisk:        o.HistoryDisk,
		Pprof:              o.Pprof,
		OTLPEndpoint:       o.OTLPEndpoint,
		OTLPInsecure:       o.OTLPInsecure,
	}
	for flag, v := range map[string]string{"--history-memory": o.HistoryMemory, "--history-disk": o.HistoryDisk} {
		if v == "" {
			continue
		}
		if q, err := resource.ParseQuantity(v); err != nil || q.Value() < 1<<20 {
			return fmt.Errorf("%s %q: use a size of at least 1Mi, e.g. 128Mi or 1Gi", flag, v)
		}
	}
	if o.OTLPCAFile != "" {
		ca, err := os.ReadFile(o.OTLPCAFile)
		if err != nil {
			return fmt.Errorf("--otlp-ca-file: %w", err)
		}
		o.opts.OTLPCA = ca
	}
	return nil
}

// Validate checks the flags before anything is read or written.
func (o *InstallOptions) Validate() error {
	switch o.DryRun {
	case "none", "client", "server":
	default:
		return fmt.Errorf(`unknown --dry-run %q: use "client", "server" or "none"`, o.DryRun)
	}
	switch o.Output {
	case "":
	case "yaml", "json":
		if o.DryRun != "client" {
			return fmt.Errorf("-o %s prints the manifests and needs --dry-run=client", o.Output)
		}
	default:
		return fmt.Errorf("unknown output format %q: use -o yaml or -o json (with --dry-run=client)", o.Output)
	}
	if o.Timeout <= 0 {
		return fmt.Errorf("--timeout must be positive, got %s", o.Timeout)
	}
	if err := o.opts.Validate(); err != nil {
		return fmt.Errorf("--image/-n: %w", err)
	}
	return nil
}

// Run prints or applies the manifests, then waits for the agents.
func (o *InstallOptions) Run(ctx context.Context) error {
	objs, err := install.Manifests(o.opts)
	if err != nil {
		return err
	}
	if o.DryRun == "client" {
		return o.printManifests(objs)
	}
	if err := o.connect(o.factory, false, true); err != nil {
		return err
	}
	ns := o.opts.Namespace
	if err := install.CheckAccess(ctx, o.Kube, install.InstallPermissions(ns)); err != nil {
		return err
	}
	if err := install.CheckGrant(ctx, o.Kube, objs, ns); err != nil {
		return err
	}
	if err := o.checkOtherInstalls(ctx); err != nil {
		return err
	}
	if err := o.preflightCNI(ctx); err != nil {
		return err
	}
	if objs, err = o.keepForeignNamespace(ctx, objs); err != nil {
		return err
	}
	prev, err := o.Kube.AppsV1().DaemonSets(ns).Get(ctx, install.AgentName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		prev = nil
	case err != nil:
		return fmt.Errorf("reading daemonset %s/%s: %w", ns, install.AgentName, err)
	}
	newVersion := install.VersionLabelValue(o.Version)
	if prev != nil && o.DryRun == "none" {
		if old := prev.Labels[install.LabelVersion]; old != newVersion {
			if old == "" {
				old = "an unknown version"
			}
			fmt.Fprintf(o.Out, "upgrading %s from %s to %s\n", install.AgentName, old, newVersion)
		}
	}
	var results []install.Result
	if o.DryRun == "server" {
		results, err = install.ApplyDryRun(ctx, o.Dynamic, objs)
	} else {
		results, err = install.Apply(ctx, o.Dynamic, objs)
	}
	for _, r := range results {
		suffix := ""
		switch {
		case r.NotValidated:
			suffix = " (server dry run: not validated, its namespace does not exist yet)"
		case o.DryRun == "server":
			suffix = " (server dry run)"
		}
		fmt.Fprintf(o.Out, "%s %s%s\n", r.Ref(), r.Action, suffix)
	}
	if err != nil {
		return err
	}
	if o.DryRun == "server" || !o.Wait {
		return nil
	}
	return o.waitReady(ctx, newVersion)
}

// keepForeignNamespace leaves a namespace install did not create as it is:
// applying ours would label it, and uninstall would then delete it with
// everything else in it. It warns when the namespace's Pod Security level
// rejects the agent pod.
func (o *InstallOptions) keepForeignNamespace(ctx context.Context, objs []install.Object) ([]install.Object, error) {
	ns, err := o.Kube.CoreV1().Namespaces().Get(ctx, o.opts.Namespace, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return objs, nil
	case err != nil:
		return nil, fmt.Errorf("reading namespace %s: %w", o.opts.Namespace, err)
	case ns.Labels[install.LabelPartOf] == install.PartOf:
		return objs, nil
	}
	fmt.Fprintf(o.Out, "namespace/%s exists and was not created by install: left as it is (uninstall will not delete it)\n", ns.Name)
	if level := ns.Labels[podSecurityEnforce]; level != "" && level != "privileged" {
		fmt.Fprintf(o.ErrOut, "Warning: namespace %s enforces the Pod Security level %q, which rejects the agent pod (hostNetwork, hostPath, capabilities): "+
			"label it %s=privileged or install into a namespace of its own\n", ns.Name, level, podSecurityEnforce)
	}
	kept := objs[:0:0]
	for _, obj := range objs {
		if _, isNS := obj.(*corev1.Namespace); !isNS {
			kept = append(kept, obj)
		}
	}
	return kept, nil
}

// podSecurityEnforce is the Pod Security admission label of a namespace.
const podSecurityEnforce = "pod-security.kubernetes.io/enforce"

// checkOtherInstalls refuses a second agent on the same nodes: two agents
// would attach to the same hooks and pin at the same paths. Installs on
// disjoint nodes (--node-selector) are the user's call, with a warning.
// Without permission to list DaemonSets cluster-wide the check is skipped.
func (o *InstallOptions) checkOtherInstalls(ctx context.Context) error {
	list, err := o.Kube.AppsV1().DaemonSets(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: install.AgentSelector})
	if err != nil {
		return nil
	}
	for _, ds := range list.Items {
		if ds.Namespace == o.opts.Namespace {
			continue
		}
		other := fmt.Sprintf("an agent is already installed in namespace %s (daemonset %s)", ds.Namespace, ds.Name)
		if len(o.opts.NodeSelector) == 0 {
			return fmt.Errorf("%s: two agents on one node would fight over the same hooks and pins; "+
				"upgrade that one (kubectl netpol install -n %s), remove it (kubectl netpol uninstall -n %s), "+
				"or give each install its own nodes with --node-selector", other, ds.Namespace, ds.Namespace)
		}
		fmt.Fprintf(o.ErrOut, "Warning: %s; make sure --node-selector %s selects none of its nodes\n", other, install.FormatNodeSelector(o.opts.NodeSelector))
	}
	return nil
}

// preflightCNI says, from the CNI's DaemonSets and ConfigMaps, what will and
// will not work beside it, and refuses without --force where the agent
// could not enforce. Without permission to list DaemonSets it says so and
// goes on: each agent still identifies its node's CNI.
func (o *InstallOptions) preflightCNI(ctx context.Context) error {
	facts, err := cni.FactsFromCluster(ctx, o.Kube)
	if err != nil {
		fmt.Fprintf(o.ErrOut, "Warning: the CNI check is skipped (%v); after install, `kubectl netpol status` shows the CNI each agent finds\n", err)
		return nil
	}
	r := cni.Classify(facts)
	lines, needsForce := cni.Advice(r)
	fmt.Fprintf(o.ErrOut, "CNI: %s\n", r)
	for _, l := range lines {
		fmt.Fprintf(o.ErrOut, "  %s\n", l)
	}
	if needsForce && !o.Force {
		return fmt.Errorf("the agent could not enforce NetworkPolicy beside %s (%s coverage of pod traffic): not installing; "+
			"rerun with --force to install anyway (see docs/install.md, \"Beside which CNI\")", r, r.Coverage)
	}
	if needsForce {
		fmt.Fprintf(o.ErrOut, "Warning: installing beside %s because of --force: nodes will show as not enforcing in `kubectl netpol status`\n", r)
	}
	return nil
}

func (o *InstallOptions) printManifests(objs []install.Object) error {
	if o.Output == "" {
		for _, obj := range objs {
			kind, err := install.KindOf(obj)
			if err != nil {
				return err
			}
			fmt.Fprintf(o.Out, "%s created (dry run)\n", install.Result{Kind: kind, Name: obj.GetName()}.Ref())
		}
		return nil
	}
	items := make([]map[string]any, len(objs))
	for i, obj := range objs {
		u, err := install.Unstructured(obj)
		if err != nil {
			return err
		}
		items[i] = u.Object
	}
	if o.Output == "json" {
		return writeStructured(o.Out, "json", map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
	}
	for i, item := range items {
		b, err := yaml.Marshal(item)
		if err != nil {
			return err
		}
		if i > 0 {
			io.WriteString(o.Out, "---\n")
		}
		if _, err := o.Out.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// waitReady polls the DaemonSet and its pods until every scheduled agent
// runs the new version and is ready, printing each node's state when it
// changes. On timeout it prints what is known about every pod that is not
// ready and fails.
func (o *InstallOptions) waitReady(ctx context.Context, wantVersion string) error {
	ns := o.opts.Namespace
	fmt.Fprintf(o.Out, "Waiting for %s to be ready on every node (timeout %s)\n", install.AgentName, o.Timeout)
	progress := newNodeProgress(o.Out)
	var (
		ds   *appsv1.DaemonSet
		pods []corev1.Pod
	)
	waitCtx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	nodeCheckFailed := false
	err := wait.PollUntilContextCancel(waitCtx, o.poll(), true, func(ctx context.Context) (bool, error) {
		// Keep the last good reads for the timeout report: a failed Get
		// returns an empty object.
		d, err := o.Kube.AppsV1().DaemonSets(ns).Get(ctx, install.AgentName, metav1.GetOptions{})
		if err != nil {
			return false, retryable(err)
		}
		p, err := install.AgentPods(ctx, o.Kube, ns)
		if err != nil {
			return false, retryable(err)
		}
		ds, pods = d, p
		events := lastPodEvents(ctx, o.Kube, ns)
		for i := range pods {
			p := &pods[i]
			if p.DeletionTimestamp == nil || !hasCurrentPod(pods, p.Spec.NodeName, ds) {
				progress.set(install.NodeOf(p), install.PodState(p, ds, events[string(p.UID)]))
			}
		}
		if daemonSetDone(ds, pods) {
			return true, nil
		}
		nodeCheckFailed = onlyNodeChecksFail(ds, pods)
		return nodeCheckFailed, nil
	})
	if err == nil && nodeCheckFailed {
		return o.reportNotReady(ctx, ds, pods, fmt.Sprintf("\nStopped waiting: %s is ready on %d of %d nodes, and on the others the node check (init container %s) failed twice.\n",
			install.AgentName, ds.Status.NumberReady, ds.Status.DesiredNumberScheduled, install.PreflightContainer),
			"its node check failed there (details above); fix those nodes (the DaemonSet retries by itself: `kubectl netpol status` shows when they are ready)")
	}
	if err == nil {
		if ds.Status.DesiredNumberScheduled == 0 {
			fmt.Fprintf(o.ErrOut, "Warning: no node matches --node-selector %q: the agent runs nowhere\n", install.FormatNodeSelector(o.opts.NodeSelector))
			return nil
		}
		fmt.Fprintf(o.Out, "%s %s is ready on %d of %d nodes\n", install.AgentName, wantVersion, ds.Status.NumberReady, ds.Status.DesiredNumberScheduled)
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var pollErr *pollError
	if errors.As(err, &pollErr) {
		return pollErr.err
	}
	return o.reportNotReady(ctx, ds, pods, "", "")
}

// onlyNodeChecksFail reports whether every scheduled node has a current
// agent pod, and each one that is not ready has failed its node check
// twice (install.PreflightFailure): waiting longer would change nothing
// until someone fixes those nodes.
func onlyNodeChecksFail(ds *appsv1.DaemonSet, pods []corev1.Pod) bool {
	st := ds.Status
	if st.ObservedGeneration < ds.Generation || st.DesiredNumberScheduled == 0 {
		return false
	}
	current, failed := 0, 0
	for i := range pods {
		p := &pods[i]
		if p.DeletionTimestamp != nil || !install.IsCurrent(p, ds) {
			continue
		}
		current++
		if install.PodReady(p) {
			continue
		}
		if _, ok := install.PreflightFailure(p); !ok {
			return false
		}
		failed++
	}
	return failed > 0 && current == int(st.DesiredNumberScheduled)
}

// daemonSetDone reports whether the controller has caught up with the last
// apply and every scheduled pod is current and ready.
func daemonSetDone(ds *appsv1.DaemonSet, pods []corev1.Pod) bool {
	st := ds.Status
	if st.ObservedGeneration < ds.Generation || st.UpdatedNumberScheduled != st.DesiredNumberScheduled ||
		st.NumberReady != st.DesiredNumberScheduled || st.NumberUnavailable != 0 {
		return false
	}
	for i := range pods {
		if !install.IsCurrent(&pods[i], ds) || !install.PodReady(&pods[i]) || pods[i].DeletionTimestamp != nil {
			return false
		}
	}
	return true
}

func hasCurrentPod(pods []corev1.Pod, node string, ds *appsv1.DaemonSet) bool {
	for i := range pods {
		if pods[i].Spec.NodeName == node && pods[i].DeletionTimestamp == nil && install.IsCurrent(&pods[i], ds) {
			return true
		}
	}
	return false
}

// reportNotReady prints why the agent is not ready and returns the error:
// after the timeout, or (header and cause given) when only failed node
// checks are left to wait for.
func (o *InstallOptions) reportNotReady(ctx context.Context, ds *appsv1.DaemonSet, pods []corev1.Pod, header, cause string) error {
	// The wait's context is over; diagnostics get their own short one.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	if ds == nil {
		return fmt.Errorf("timed out after %s: daemonset %s/%s could not be read", o.Timeout, o.opts.Namespace, install.AgentName)
	}
	if header == "" {
		header = fmt.Sprintf("\nTimed out after %s: %s is ready on %d of %d nodes.\n", o.Timeout, install.AgentName, ds.Status.NumberReady, ds.Status.DesiredNumberScheduled)
	}
	fmt.Fprint(o.Out, header)
	if int(ds.Status.DesiredNumberScheduled) > len(pods) {
		// Pods that were never created: the DaemonSet's events say why
		// (admission, quota, priority class).
		fmt.Fprintf(o.Out, "%d pod(s) not created; daemonset events:\n", int(ds.Status.DesiredNumberScheduled)-len(pods))
		fmt.Fprint(o.Out, install.ObjectEvents(ctx, o.Kube, "DaemonSet", ds, 10))
	}
	for i := range pods {
		if install.PodReady(&pods[i]) && install.IsCurrent(&pods[i], ds) {
			continue
		}
		fmt.Fprint(o.Out, install.Diagnose(ctx, o.Kube, &pods[i], install.DiagnoseOptions{Events: 10, LogLines: 20}))
	}
	notReady := int(ds.Status.DesiredNumberScheduled - ds.Status.NumberReady)
	if cause != "" {
		return fmt.Errorf("%s is not ready on %d of %d nodes: %s, or remove it with 'kubectl netpol uninstall -n %s'",
			install.AgentName, notReady, ds.Status.DesiredNumberScheduled, cause, o.opts.Namespace)
	}
	return fmt.Errorf("%s is not ready on %d of %d nodes after %s (details above); "+
		"fix the cause and run install again, or remove it with 'kubectl netpol uninstall -n %s'",
		install.AgentName, notReady, ds.Status.DesiredNumberScheduled, o.Timeout, o.opts.Namespace)
}

// lastPodEvents maps pod UID to the reason of its newest event, in one
// list call; unreadable events leave the map empty (states are coarser).
func lastPodEvents(ctx context.Context, kube kubernetes.Interface, ns string) map[string]string {
	out := map[string]string{}
	list, err := kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Pod"})
	if err != nil {
		return out
	}
	newest := map[string]time.Time{}
	for _, e := range list.Items {
		uid := string(e.InvolvedObject.UID)
		t := e.LastTimestamp.Time
		if t.IsZero() {
			t = e.EventTime.Time
		}
		if t.IsZero() {
			t = e.CreationTimestamp.Time
		}
		if !t.Before(newest[uid]) {
			newest[uid], out[uid] = t, e.Reason
		}
	}
	return out
}

// pollError stops a wait loop on an error that waiting will not fix.
type pollError struct{ err error }

func (e *pollError) Error() string { return e.err.Error() }

// retryable keeps polling through transient API errors and stops on
// refusals (forbidden, unauthorized) and on a DaemonSet that disappeared.
func retryable(err error) error {
	if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) || apierrors.IsNotFound(err) {
		return &pollError{err: err}
	}
	return nil
}

// nodeProgress prints "  node: state" when a node's state changes.
type nodeProgress struct {
	w    io.Writer
	last map[string]string
}

func newNodeProgress(w io.Writer) *nodeProgress {
	return &nodeProgress{w: w, last: map[string]string{}}
}

func (p *nodeProgress) set(node, state string) {
	if p.last[node] == state {
		return
	}
	p.last[node] = state
	fmt.Fprintf(p.w, "  %s: %s\n", node, strings.TrimSpace(state))
}
