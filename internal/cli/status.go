package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/kubectl-netpol/kubectl-netpol/advise"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/internal/agentclient"
	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
	"github.com/kubectl-netpol/kubectl-netpol/internal/version"
)

// statusDialTimeout bounds reaching one agent and its Status answer.
const statusDialTimeout = 10 * time.Second

// statusParallel is how many agents status queries at once.
const statusParallel = 16

// mapPressureWarn is the map fill (percent) from which status warns: a full
// map makes the agent refuse new endpoints or rules.
const mapPressureWarn = 90

// statusDialer opens an Observer client to the agent in pod; the Closer ends
// the connection.
type statusDialer func(ctx context.Context, pod *corev1.Pod) (flowv1.ObserverClient, io.Closer, error)

// StatusOptions is `kubectl netpol status`.
type StatusOptions struct {
	genericiooptions.IOStreams
	agentClients

	Output string
	// Dial reaches an agent; through the API server's port-forward unless a
	// test supplies its own.
	Dial statusDialer
	// ClientVersion is this plugin's version (tests pin it).
	ClientVersion string
	// Now is the clock the history's span is measured with (tests pin it).
	Now func() time.Time

	factory   *Factory
	namespace string
}

// statusReport is the -o json|yaml schema of `kubectl netpol status`.
type statusReport struct {
	Namespace     string `json:"namespace"`
	ClientVersion string `json:"clientVersion"`
	// Desired is how many nodes the DaemonSet should run on (-1 when it
	// could not be read); more than len(Nodes) means agents are missing.
	Desired int          `json:"desired"`
	Nodes   []nodeStatus `json:"nodes"`
	// Audited are the NetworkPolicies in audit mode (netpol.kubectl.io/mode:
	// audit on the policy or its namespace), "ns/name (why)"; nil when they
	// could not be listed (AuditedError says why).
	Audited      []string `json:"audited"`
	AuditedError string   `json:"auditedError,omitempty"`
	// Now is when the report was made (the history's span is measured to it).
	Now time.Time `json:"-"`
}

// nodeStatus is one node's agent as status sees it.
type nodeStatus struct {
	Node string `json:"node"`
	Pod  string `json:"pod"`
	// PodReady is the pod's Ready condition; PodState says what it is doing.
	PodReady bool   `json:"podReady"`
	PodState string `json:"podState"`
	// Version is the agent's own (Status.version), else its pod's label.
	Version string `json:"version,omitempty"`
	Skew    string `json:"skew,omitempty"`
	// Error says why the agent's Status could not be read.
	Error string       `json:"error,omitempty"`
	Agent *agentReport `json:"agent,omitempty"`
}

// agentReport is the agent's answer to Status.
type agentReport struct {
	Ready             bool   `json:"ready"`
	EndpointsEnforced uint32 `json:"endpointsEnforced"`
	Policies          uint32 `json:"policies"`
	// ClusterPolicies are the ClusterNetworkPolicies compiled (watched:
	// their CRD exists and the agent reads them); DomainNamePolicies those
	// whose domainNames peers are not enforced.
	ClusterPolicies         uint32      `json:"clusterPolicies"`
	ClusterPoliciesWatched  bool        `json:"clusterPoliciesWatched"`
	DomainNamePolicies      []string    `json:"domainNamePolicies,omitempty"`
	Maps                    []mapReport `json:"maps,omitempty"`
	EventsLost              uint64      `json:"eventsLost"`
	EventsRateLimited       uint64      `json:"eventsRateLimited"`
	FlowsSeen               uint64      `json:"flowsSeen"`
	FlowsDroppedSlowClients uint64      `json:"flowsDroppedSlowClients"`
	RingCapacity            uint32      `json:"ringCapacity"`
	Uptime                  string      `json:"uptime,omitempty"`
	LastApply               *time.Time  `json:"lastApply,omitempty"`
	LastApplyError          string      `json:"lastApplyError,omitempty"`
	Checks                  []check     `json:"checks,omitempty"`
	// CNI is the node's CNI as the agent identified it.
	CNI *cniReport `json:"cni,omitempty"`
	// Enforcement is the bypass self-check's verdict.
	Enforcement *enforcementReport `json:"enforcement,omitempty"`
	History     *historyReport     `json:"history,omitempty"`
}

// historyReport is the agent's connection history: what it covers, its use
// of the budgets, and what was lost.
type historyReport struct {
	Oldest             *time.Time `json:"oldest,omitempty"`
	Records            uint64     `json:"records"`
	Keys               uint64     `json:"keys"`
	MemoryBytes        uint64     `json:"memoryBytes"`
	MemoryBudgetBytes  uint64     `json:"memoryBudgetBytes"`
	DiskBytes          uint64     `json:"diskBytes"`
	DiskBudgetBytes    uint64     `json:"diskBudgetBytes"`
	CoarsenedRecords   uint64     `json:"coarsenedRecords"`
	DroppedRecords     uint64     `json:"droppedRecords"`
	DroppedConnections uint64     `json:"droppedConnections"`
	UnrecordedFlows    uint64     `json:"unrecordedFlows"`
	Gaps               int        `json:"gaps"`
	Error              string     `json:"error,omitempty"`
}

func historyReportOf(c *flowv1.HistoryCoverage) *historyReport {
	if c == nil {
		return nil
	}
	h := &historyReport{Records: c.GetRecords(), Keys: c.GetKeys(), MemoryBytes: c.GetMemoryBytes(), MemoryBudgetBytes: c.GetMemoryBudgetBytes(),
		DiskBytes: c.GetDiskBytes(), DiskBudgetBytes: c.GetDiskBudgetBytes(), CoarsenedRecords: c.GetCoarsenedRecords(),
		DroppedRecords: c.GetDroppedRecords(), DroppedConnections: c.GetDroppedConnections(), UnrecordedFlows: c.GetUnrecordedFlows(),
		Gaps: len(c.GetGaps()), Error: c.GetError()}
	if o := c.GetOldest(); o != nil {
		t := o.AsTime().UTC()
		h.Oldest = &t
	}
	return h
}

// cniReport is the node's CNI and how much pod traffic passes the agent's
// hooks beside it.
type cniReport struct {
	Name           string   `json:"name,omitempty"`
	Mode           string   `json:"mode,omitempty"`
	Coverage       string   `json:"coverage"`
	EnforcesPolicy bool     `json:"enforcesPolicy,omitempty"`
	Evidence       []string `json:"evidence,omitempty"`
	Why            string   `json:"why,omitempty"`
}

// enforcementReport: whether the agent's hooks see the node's pod traffic.
type enforcementReport struct {
	// State is "enforcing", "partially enforcing" or "not enforcing".
	State         string     `json:"state"`
	Detail        string     `json:"detail,omitempty"`
	ActivePods    uint32     `json:"activePods"`
	BypassingPods uint32     `json:"bypassingPods"`
	Bypassing     []string   `json:"bypassing,omitempty"`
	Checked       *time.Time `json:"checked,omitempty"`
}

// name is "Name (mode)", or "unknown".
func (c *cniReport) name() string {
	switch {
	case c == nil:
		return "-"
	case c.Name == "":
		return "unknown"
	case c.Mode == "":
		return c.Name
	}
	return c.Name + " (" + c.Mode + ")"
}

type mapReport struct {
	Name       string `json:"name"`
	Entries    uint64 `json:"entries"`
	MaxEntries uint64 `json:"maxEntries"`
	// Pressure is entries as a percentage of maxEntries.
	Pressure float64 `json:"pressurePercent"`
}

type check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// NewCmdStatus returns `kubectl netpol status`.
func NewCmdStatus(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	return newCmdStatus(&StatusOptions{IOStreams: streams, factory: f, ClientVersion: version.Version()})
}

func newCmdStatus(o *StatusOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the netpol agent on every node: ready, version, what it enforces, map pressure, lost events, node checks",
		Long: `Show, for every node running the netpol agent: whether the agent pod is
ready, its version (with a warning when it differs from this plugin), and
what the agent itself reports: the node's CNI and whether pod traffic reaches
the agent's hooks beside it (ENFORCEMENT: enforcing, partially enforcing, or
not enforcing when the CNI's datapath takes pod traffic past netfilter),
endpoints and policies enforced, BPF map usage
and pressure, events lost or rate-limited, node prerequisite checks (such as
bridge-nf-call-iptables where a bridge CNI needs it) and the last failure to
apply a policy change.

The agents are reached through the API server's port-forward (RBAC: create
on pods/portforward in the install namespace). A node whose agent cannot be
reached says why. -n/--namespace names the install namespace (default
netpol-system).`,
		Example: `  kubectl netpol status
  kubectl netpol status -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Complete()
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "Output format: '' (a table), json or yaml")
	return cmd
}

// Complete resolves the install namespace.
func (o *StatusOptions) Complete() {
	o.namespace = agentNamespace(o.factory.ConfigFlags)
}

// Validate checks the output format.
func (o *StatusOptions) Validate() error {
	switch o.Output {
	case "", "json", "yaml":
		return nil
	}
	return fmt.Errorf("unknown output format %q: use -o json, -o yaml, or leave it out for a table", o.Output)
}

// Run gathers every node's status and prints it.
func (o *StatusOptions) Run(ctx context.Context) error {
	if err := o.connect(o.factory, o.Dial == nil, false); err != nil {
		return err
	}
	if o.Dial == nil {
		o.Dial = o.portForwardDialer()
	}
	ns := o.namespace
	pods, err := install.AgentPods(ctx, o.Kube, ns)
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("you may not list pods in namespace %s, which status needs to find the agents: %w", ns, err)
	case err != nil:
		return fmt.Errorf("listing the agent pods in namespace %s: %w", ns, err)
	}
	if len(pods) == 0 {
		_, dsErr := o.Kube.AppsV1().DaemonSets(ns).Get(ctx, install.AgentName, metav1.GetOptions{})
		if dsErr == nil {
			return fmt.Errorf("daemonset %s/%s exists but has no pods: no node matches its node selector, or its pods cannot be created (kubectl describe daemonset -n %s %s)",
				ns, install.AgentName, ns, install.AgentName)
		}
		return fmt.Errorf("%s is not installed in namespace %s (no pod labelled %s): install it with 'kubectl netpol install'",
			install.AgentName, ns, install.AgentSelector)
	}
	report := statusReport{Namespace: ns, ClientVersion: o.ClientVersion, Desired: -1, Nodes: o.gather(ctx, pods), Now: time.Now()}
	if o.Now != nil {
		report.Now = o.Now()
	}
	if ds, err := o.Kube.AppsV1().DaemonSets(ns).Get(ctx, install.AgentName, metav1.GetOptions{}); err == nil {
		report.Desired = int(ds.Status.DesiredNumberScheduled)
	}
	if report.Audited, err = auditedPolicies(ctx, o.Kube); err != nil {
		report.AuditedError = err.Error()
	}
	if o.Output != "" {
		return writeStructured(o.Out, o.Output, report)
	}
	return printStatus(o.Out, report)
}

func (o *StatusOptions) portForwardDialer() statusDialer {
	return func(ctx context.Context, pod *corev1.Pod) (flowv1.ObserverClient, io.Closer, error) {
		conn, err := agentclient.Dial(ctx, o.Config, agentclient.Agent{Namespace: pod.Namespace, Name: pod.Name, Node: pod.Spec.NodeName})
		if err != nil {
			return nil, nil, err
		}
		return flowv1.NewObserverClient(conn), conn, nil
	}
}

// gather picks one pod per node (the one to dial: ready and not deleting,
// newest first) and asks every reachable agent for its Status, in parallel.
func (o *StatusOptions) gather(ctx context.Context, pods []corev1.Pod) []nodeStatus {
	byNode := map[string][]*corev1.Pod{}
	var nodes []string
	for i := range pods {
		n := install.NodeOf(&pods[i])
		if byNode[n] == nil {
			nodes = append(nodes, n)
		}
		byNode[n] = append(byNode[n], &pods[i])
	}
	sort.Strings(nodes)
	client := install.VersionLabelValue(o.ClientVersion)
	out := make([]nodeStatus, len(nodes))
	var wg sync.WaitGroup
	// Each query is a port-forward through the API server: a bounded number
	// at a time, so a large cluster does not open one per node at once.
	slots := make(chan struct{}, statusParallel)
	for i, node := range nodes {
		pod := pickPod(byNode[node])
		out[i] = nodeStatus{Node: node, Pod: pod.Name, PodReady: install.PodReady(pod), PodState: install.PodState(pod, nil, ""), Version: pod.Labels[install.LabelVersion]}
		if !install.AgentRunning(pod) {
			out[i].Error = fmt.Sprintf("agent pod %s is %s", pod.Name, out[i].PodState)
			// A state with a detail ("CrashLoopBackOff: <message>") already
			// carries the agent's last words.
			if exit := install.LastExit(pod); exit != "" && !strings.Contains(out[i].PodState, ": ") {
				out[i].Error += "; last exit: " + exit
			}
		} else {
			wg.Add(1)
			go func(st *nodeStatus, pod *corev1.Pod) {
				defer wg.Done()
				slots <- struct{}{}
				defer func() { <-slots }()
				o.queryAgent(ctx, st, pod)
			}(&out[i], pod)
		}
	}
	wg.Wait()
	for i := range out {
		if v := out[i].Version; v != "" {
			out[i].Skew = version.Skew(client, install.VersionLabelValue(v))
		}
	}
	return out
}

// pickPod prefers a running, ready pod not being deleted, then the newest.
func pickPod(pods []*corev1.Pod) *corev1.Pod {
	score := func(p *corev1.Pod) int {
		s := 0
		if p.DeletionTimestamp == nil {
			s += 4
		}
		if p.Status.Phase == corev1.PodRunning {
			s += 2
		}
		if install.PodReady(p) {
			s++
		}
		return s
	}
	best := pods[0]
	for _, p := range pods[1:] {
		if score(p) > score(best) || (score(p) == score(best) && p.CreationTimestamp.After(best.CreationTimestamp.Time)) {
			best = p
		}
	}
	return best
}

func (o *StatusOptions) queryAgent(ctx context.Context, st *nodeStatus, pod *corev1.Pod) {
	ctx, cancel := context.WithTimeout(ctx, statusDialTimeout)
	defer cancel()
	client, closer, err := o.Dial(ctx, pod)
	if err != nil {
		st.Error = "cannot reach the agent: " + firstLine(err.Error())
		return
	}
	// Closing a gRPC connection over a port-forward stream takes about a
	// second (the transport waits for its reader); the answer is in hand,
	// so status does not wait for it.
	defer func() { go closer.Close() }()
	resp, err := client.Status(ctx, &flowv1.StatusRequest{})
	if err != nil {
		st.Error = "agent did not answer Status: " + firstLine(err.Error())
		return
	}
	st.Agent = agentReportOf(resp)
	if v := resp.GetVersion(); v != "" {
		st.Version = v
	}
}

func agentReportOf(r *flowv1.StatusResponse) *agentReport {
	a := &agentReport{
		Ready:                   r.GetReady(),
		EndpointsEnforced:       r.GetEndpointsEnforced(),
		Policies:                r.GetPolicies(),
		ClusterPolicies:         r.GetClusterPolicies(),
		ClusterPoliciesWatched:  r.GetClusterPoliciesWatched(),
		DomainNamePolicies:      r.GetDomainNamePolicies(),
		EventsLost:              r.GetEventsLost(),
		EventsRateLimited:       r.GetEventsRateLimited(),
		FlowsSeen:               r.GetFlowsSeen(),
		FlowsDroppedSlowClients: r.GetFlowsDroppedSlowClients(),
		RingCapacity:            r.GetRingCapacity(),
		LastApplyError:          r.GetLastApplyError(),
		History:                 historyReportOf(r.GetHistory()),
	}
	if u := r.GetUptime(); u != nil {
		a.Uptime = u.AsDuration().Round(time.Second).String()
	}
	if t := r.GetLastApply(); t != nil {
		tt := t.AsTime().UTC()
		a.LastApply = &tt
	}
	for _, m := range r.GetMaps() {
		mr := mapReport{Name: m.GetName(), Entries: m.GetEntries(), MaxEntries: m.GetMaxEntries()}
		if mr.MaxEntries > 0 {
			mr.Pressure = float64(int(float64(mr.Entries)*1000/float64(mr.MaxEntries))) / 10
		}
		a.Maps = append(a.Maps, mr)
	}
	for _, c := range r.GetChecks() {
		a.Checks = append(a.Checks, check{Name: c.GetName(), OK: c.GetOk(), Detail: c.GetDetail()})
	}
	if c := r.GetCni(); c != nil {
		a.CNI = &cniReport{Name: c.GetName(), Mode: c.GetMode(), Coverage: c.GetCoverage(), EnforcesPolicy: c.GetEnforcesPolicy(),
			Evidence: c.GetEvidence(), Why: c.GetWhy()}
	}
	if e := r.GetEnforcement(); e != nil {
		a.Enforcement = &enforcementReport{State: e.GetState(), Detail: e.GetDetail(), ActivePods: e.GetActivePods(),
			BypassingPods: e.GetBypassingPods(), Bypassing: e.GetBypassing()}
		if t := e.GetChecked(); t != nil {
			tt := t.AsTime().UTC()
			a.Enforcement.Checked = &tt
		}
	}
	return a
}

// printStatus prints one table row per node, then one line per problem.
func printStatus(w io.Writer, r statusReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tAGENT\tVERSION\tCNI\tENFORCEMENT\tENDPOINTS\tPOLICIES\tMAP PRESSURE\tLOST\tRATE-LIMITED\tCHECKS\tHISTORY")
	var notes []string
	for _, n := range r.Nodes {
		note := func(format string, args ...any) {
			notes = append(notes, n.Node+": "+fmt.Sprintf(format, args...))
		}
		agentState := strings.SplitN(n.PodState, " ", 2)[0]
		endpoints, policies, pressure, lost, limited, checks, hist := "-", "-", "-", "-", "-", "-", "-"
		cniName, enforcement := "-", "-"
		if a := n.Agent; a != nil {
			cniName = a.CNI.name()
			if e := a.Enforcement; e != nil {
				enforcement = e.State
				if e.State != "enforcing" {
					note("%s: %s", e.State, e.Detail)
				}
			}
			if a.CNI != nil && a.CNI.EnforcesPolicy {
				note("%s enforces NetworkPolicy too: both enforce the same objects, so a packet passes only if both accept it; `kubectl netpol explain` predicts the agent's verdict", a.CNI.name())
			}
			if !a.Ready {
				agentState = "starting"
				note("agent is not ready yet: its caches have not synced or the first policy set is not enforced")
			}
			endpoints, policies = strconv.Itoa(int(a.EndpointsEnforced)), strconv.Itoa(int(a.Policies))
			if a.ClusterPolicies > 0 {
				policies += fmt.Sprintf(" + %d cnp", a.ClusterPolicies)
			}
			if len(a.DomainNamePolicies) > 0 {
				note("ClusterNetworkPolicies with domainNames peers, which are not enforced (they match nothing; the policies' other rules are): %s",
					strings.Join(a.DomainNamePolicies, ", "))
			}
			lost, limited = strconv.FormatUint(a.EventsLost, 10), strconv.FormatUint(a.EventsRateLimited, 10)
			if top := fullestMap(a.Maps); top != nil {
				// Rounded down: 99.5% full must not read as 100%.
				pressure = fmt.Sprintf("%d%% (%s)", int(top.Pressure), top.Name)
			}
			for _, m := range a.Maps {
				if m.Pressure >= mapPressureWarn {
					note("map %s is %.1f%% full (%d of %d entries): new endpoints or rules may be refused", m.Name, m.Pressure, m.Entries, m.MaxEntries)
				}
			}
			failed := 0
			for _, c := range a.Checks {
				if !c.OK {
					failed++
					note("check %s failed: %s", c.Name, c.Detail)
				}
			}
			checks = fmt.Sprintf("%d/%d ok", len(a.Checks)-failed, len(a.Checks))
			if a.LastApplyError != "" {
				note("last policy apply failed: %s", a.LastApplyError)
			}
			if a.EventsLost > 0 {
				note("%d flow events lost in the kernel (ring buffer full): flows shown by watch are incomplete", a.EventsLost)
			}
			if h := a.History; h != nil {
				hist = historyCell(h, r.Now)
				if h.DroppedRecords > 0 || h.UnrecordedFlows > 0 {
					note("history over its budget: %d older records (%d connections) dropped, %d flows not recorded; raise install --history-memory/--history-disk for a longer history",
						h.DroppedRecords, h.DroppedConnections, h.UnrecordedFlows)
				}
				if h.Error != "" {
					note("history: %s", h.Error)
				}
			}
		}
		if n.Error != "" {
			if n.Agent == nil && agentState == install.StateReady {
				agentState = "unreachable"
			}
			note("%s", n.Error)
		}
		if n.Skew != "" {
			note("version skew: %s", n.Skew)
		}
		ver := n.Version
		if ver == "" {
			ver = "unknown"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Node, agentState, ver, cniName, enforcement, endpoints, policies, pressure, lost, limited, checks, hist)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.Desired > len(r.Nodes) {
		notes = append(notes, fmt.Sprintf("daemonset %s/%s should run on %d nodes but has pods on %d: kubectl describe daemonset -n %s %s says why",
			r.Namespace, install.AgentName, r.Desired, len(r.Nodes), r.Namespace, install.AgentName))
	}
	switch {
	case r.AuditedError != "":
		notes = append(notes, "audited policies unknown: "+r.AuditedError)
	case len(r.Audited) > 0:
		notes = append(notes, fmt.Sprintf("audited, not enforced (%d): %s; their would-be verdicts show as AUDIT in watch, `kubectl netpol promote` enforces one",
			len(r.Audited), strings.Join(r.Audited, ", ")))
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
	}
	return nil
}

// auditedPolicies lists the NetworkPolicies in audit mode, with why
// (advise.AuditedBy: the policy's annotation or its namespace's).
func auditedPolicies(ctx context.Context, kube kubernetes.Interface) ([]string, error) {
	nps, err := kube.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing NetworkPolicies: %w", err)
	}
	nsList, err := kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing namespaces: %w", err)
	}
	byName := map[string]*corev1.Namespace{}
	for i := range nsList.Items {
		byName[nsList.Items[i].Name] = &nsList.Items[i]
	}
	out := []string{}
	for i := range nps.Items {
		np := &nps.Items[i]
		if why := advise.AuditedBy(np, byName[np.Namespace]); why != "" {
			s := np.Namespace + "/" + np.Name
			if why != "the policy" {
				s += " (" + why + ")"
			}
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out, nil
}

// historyCell is "SPAN, N% of memory" (the history's reach and pressure).
func historyCell(h *historyReport, now time.Time) string {
	span := "empty"
	if h.Oldest != nil && !now.IsZero() {
		span = humanDuration(now.Sub(*h.Oldest))
	}
	if h.MemoryBudgetBytes == 0 {
		return span
	}
	return fmt.Sprintf("%s, %d%% mem", span, h.MemoryBytes*100/h.MemoryBudgetBytes)
}

// humanDuration is a short duration: 3d4h, 5h12m, 42m.
func humanDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dm", int(d.Minutes()))
}

func fullestMap(maps []mapReport) *mapReport {
	var top *mapReport
	for i := range maps {
		if top == nil || maps[i].Pressure > top.Pressure {
			top = &maps[i]
		}
	}
	return top
}
