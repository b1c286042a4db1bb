package agent

// ClusterNetworkPolicy status: whether each policy is enforced on every
// node, written by one agent, only when it changes.
//
// Each agent publishes what it enforces in a Lease of its own
// (netpol-node-NODE in the agent's namespace): the ClusterNetworkPolicies,
// as name@generation, of its last successful apply, or why the last apply
// failed, written only when that changes - a few hundred bytes per node per
// policy change. One agent, elected through the Lease netpol-cnp-status
// (client-go leader election), reads those reports and writes on each
// policy a single condition, netpol.kubectl.io/Enforced, and only when the
// condition would change: True once every node reports the policy's current
// generation, False naming the nodes that lag or failed. Writes per policy
// change: one small Lease per node plus one status write per policy,
// instead of every agent writing every policy (nodes x policies). The
// condition is applied server-side under its own field manager, so other
// implementations' conditions on the same object are left alone.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpac "sigs.k8s.io/network-policy-api/pkg/client/applyconfiguration/apis/v1beta1"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
)

const (
	// ConditionEnforced is the condition type the agents write.
	ConditionEnforced = "netpol.kubectl.io/Enforced"
	// nodeReportAnnotation holds a node's report (JSON) on its Lease.
	nodeReportAnnotation = "netpol.kubectl.io/cluster-policies"
	// nodeReportLabel marks the report Leases.
	nodeReportLabel = "netpol.kubectl.io/node-report"
	// statusLeaseName is the Lease that elects the status writer.
	statusLeaseName = "netpol-cnp-status"
	fieldManager    = "netpol-agent"
	// conditionNodes bounds the nodes named in a condition's message.
	conditionNodes = 5
)

// nodeReport is what one node enforces of the ClusterNetworkPolicies.
type nodeReport struct {
	// Applied are "name@generation" of the last successful apply, sorted.
	Applied []string `json:"applied"`
	// Error is why the last apply failed ("" when it succeeded).
	Error string `json:"error,omitempty"`
}

func reportOf(policies []*cnpv1beta1.ClusterNetworkPolicy) nodeReport {
	r := nodeReport{Applied: make([]string, 0, len(policies))}
	for _, p := range policies {
		r.Applied = append(r.Applied, policyVersion(p))
	}
	slices.Sort(r.Applied)
	return r
}

func policyVersion(p *cnpv1beta1.ClusterNetworkPolicy) string {
	return p.Name + "@" + strconv.FormatInt(p.Generation, 10)
}

func nodeLeaseName(node string) string { return "netpol-node-" + node }

// nodeReporter writes this node's report Lease when the report changes.
type nodeReporter struct {
	client    kubernetes.Interface
	namespace string
	node      string

	mu   sync.Mutex
	last string // the report last written
	// applied is the last successful apply's report (a failure keeps
	// reporting what is still enforced).
	applied nodeReport
	// next holds the report to write (the latest wins): applies never wait
	// on the API server.
	next chan nodeReport
}

func newNodeReporter(client kubernetes.Interface, namespace, node string) *nodeReporter {
	return &nodeReporter{client: client, namespace: namespace, node: node, next: make(chan nodeReport, 1)}
}

// applied records a successful apply of policies (err nil) or a failed
// apply (err), for run to publish.
func (n *nodeReporter) report(policies []*cnpv1beta1.ClusterNetworkPolicy, err error) {
	n.mu.Lock()
	var r nodeReport
	if err == nil {
		n.applied = reportOf(policies)
		r = n.applied
	} else {
		r = nodeReport{Applied: n.applied.Applied, Error: err.Error()}
	}
	n.mu.Unlock()
	for {
		select {
		case n.next <- r:
			return
		default:
		}
		select { // replace the unwritten older report
		case <-n.next:
		default:
		}
	}
}

// run publishes reports until ctx ends, retrying a failed write.
func (n *nodeReporter) run(ctx context.Context) {
	for {
		var r nodeReport
		select {
		case <-ctx.Done():
			return
		case r = <-n.next:
		}
		for ctx.Err() == nil {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := n.publish(wctx, r)
			cancel()
			if err == nil {
				break
			}
			klog.ErrorS(err, "Publishing the node's ClusterNetworkPolicy report; retrying")
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
			case r = <-n.next: // a newer one
			}
		}
	}
}

// publish writes r unless it is what was last written.
func (n *nodeReporter) publish(ctx context.Context, r nodeReport) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if string(b) == n.last {
		return nil
	}
	leases := n.client.CoordinationV1().Leases(n.namespace)
	name := nodeLeaseName(n.node)
	l, err := leases.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: n.namespace,
			Labels: map[string]string{nodeReportLabel: "true"}}, Spec: coordinationv1.LeaseSpec{HolderIdentity: &n.node}}
		l.Annotations = map[string]string{nodeReportAnnotation: string(b)}
		_, err = leases.Create(ctx, l, metav1.CreateOptions{})
	case err == nil:
		if l.Annotations[nodeReportAnnotation] == string(b) {
			break // written by this node before a restart
		}
		if l.Annotations == nil {
			l.Annotations = map[string]string{}
		}
		l.Annotations[nodeReportAnnotation] = string(b)
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("reporting the ClusterNetworkPolicies node %s enforces (Lease %s/%s): %w", n.node, n.namespace, name, err)
	}
	n.last = string(b)
	return nil
}

// enforcedCounts counts, per name@generation, the nodes whose report
// lists it: the fast path of enforcedCondition.
func enforcedCounts(nodes []string, reports map[string]nodeReport) map[string]int {
	counts := map[string]int{}
	for _, n := range nodes {
		for _, v := range reports[n].Applied {
			counts[v]++
		}
	}
	return counts
}

// enforcedCondition is the condition a policy should carry given the
// reports of nodes (the nodes that run the agent; one without a report has
// not enforced anything yet) and their enforcedCounts.
func enforcedCondition(p *cnpv1beta1.ClusterNetworkPolicy, nodes []string, reports map[string]nodeReport, counts map[string]int) metav1.Condition {
	want := policyVersion(p)
	var lagging, failed []string
	for _, n := range nodes {
		if counts[want] == len(nodes) {
			break // the fast path: every node has it
		}
		r, ok := reports[n]
		_, has := slices.BinarySearch(r.Applied, want)
		switch {
		case ok && r.Error != "" && !has:
			failed = append(failed, n+" ("+firstLineOf(r.Error)+")")
		case !has:
			lagging = append(lagging, n)
		}
	}
	c := metav1.Condition{Type: ConditionEnforced, ObservedGeneration: p.Generation}
	switch {
	case len(failed) > 0:
		c.Status, c.Reason = metav1.ConditionFalse, "ApplyFailed"
		c.Message = fmt.Sprintf("not enforced on %d of %d nodes: the agent failed to apply policy on %s", len(failed)+len(lagging), len(nodes), someOf(failed))
	case len(lagging) > 0:
		c.Status, c.Reason = metav1.ConditionFalse, "Pending"
		c.Message = fmt.Sprintf("not yet enforced on %d of %d nodes: %s", len(lagging), len(nodes), someOf(lagging))
	default:
		c.Status, c.Reason = metav1.ConditionTrue, "EnforcedOnAllNodes"
		c.Message = fmt.Sprintf("enforced on all %d nodes", len(nodes))
	}
	if hasDomainNames(p) {
		c.Message += "; its domainNames peers are not enforced (they match nothing), its other rules are"
	}
	return c
}

func hasDomainNames(p *cnpv1beta1.ClusterNetworkPolicy) bool {
	for _, r := range p.Spec.Egress {
		for _, to := range r.To {
			if len(to.DomainNames) > 0 {
				return true
			}
		}
	}
	return false
}

func someOf(names []string) string {
	if len(names) <= conditionNodes {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:conditionNodes], ", ") + fmt.Sprintf(" and %d more", len(names)-conditionNodes)
}

func firstLineOf(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// sameCondition reports whether the policy already carries c (the
// transition time aside).
func sameCondition(p *cnpv1beta1.ClusterNetworkPolicy, c metav1.Condition) bool {
	old := meta.FindStatusCondition(p.Status.Conditions, c.Type)
	return old != nil && old.Status == c.Status && old.Reason == c.Reason && old.Message == c.Message && old.ObservedGeneration == c.ObservedGeneration
}

// statusWriter writes the condition of every policy from the nodes'
// reports (while this agent leads).
type statusWriter struct {
	client    kubernetes.Interface
	cnps      cnpclient.Interface
	namespace string
	cluster   *Cluster
	// interval coalesces bursts: one pass at most this often.
	interval time.Duration
	// kick asks for a pass (a policy or node changed; see poke).
	kick chan struct{}
	// indexed are the reports by node as of their Lease's resourceVersion:
	// a pass indexes only the reports that changed (used by run only).
	indexed map[string]indexedReport
}

type indexedReport struct {
	resourceVersion string
	report          nodeReport
}

func newStatusWriter(client kubernetes.Interface, cnps cnpclient.Interface, namespace string, c *Cluster) *statusWriter {
	w := &statusWriter{client: client, cnps: cnps, namespace: namespace, cluster: c, interval: time.Second, kick: make(chan struct{}, 1)}
	return w
}

// poke asks for a pass, without waiting.
func (w *statusWriter) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// run writes conditions until ctx ends: after every change of a report,
// a policy or a node, at most once per interval.
func (w *statusWriter) run(ctx context.Context) {
	f := informers.NewSharedInformerFactoryWithOptions(w.client, 0, informers.WithNamespace(w.namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = nodeReportLabel + "=true" }))
	leases := f.Coordination().V1().Leases()
	poke := func(any) { w.poke() }
	_, _ = leases.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }, DeleteFunc: poke})
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), leases.Informer().HasSynced) {
		return
	}
	w.poke()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		}
		if err := w.pass(ctx, leases.Lister().Leases(w.namespace).List); err != nil {
			klog.ErrorS(err, "Writing ClusterNetworkPolicy status")
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(w.interval):
		}
	}
}

// pass writes every condition that changed.
func (w *statusWriter) pass(ctx context.Context, list func(labels.Selector) ([]*coordinationv1.Lease, error)) error {
	policies, err := w.cluster.cnp.list()
	if err != nil || len(policies) == 0 {
		return err
	}
	ls, err := list(labels.Everything())
	if err != nil {
		return err
	}
	nodes, err := w.agentNodes()
	if err != nil {
		return err
	}
	reports := map[string]nodeReport{}
	indexed := make(map[string]indexedReport, len(ls))
	for _, l := range ls {
		if l.Spec.HolderIdentity == nil {
			continue
		}
		node := *l.Spec.HolderIdentity
		if _, err := w.cluster.nodeLister.Get(node); err != nil {
			continue // a node gone since: its report is stale
		}
		ir, ok := w.indexed[node]
		if !ok || ir.resourceVersion != l.ResourceVersion {
			var r nodeReport
			if json.Unmarshal([]byte(l.Annotations[nodeReportAnnotation]), &r) != nil {
				continue
			}
			slices.Sort(r.Applied) // written sorted; a hand-edited Lease must not mislead the look-ups
			ir = indexedReport{resourceVersion: l.ResourceVersion, report: r}
		}
		indexed[node], reports[node] = ir, ir.report
		if !slices.Contains(nodes, node) {
			nodes = append(nodes, node)
		}
	}
	w.indexed = indexed
	slices.Sort(nodes)
	var errs []error
	counts := enforcedCounts(nodes, reports)
	for _, p := range policies {
		c := enforcedCondition(p, nodes, reports, counts)
		if sameCondition(p, c) {
			continue
		}
		cond := metav1ac.Condition().WithType(c.Type).WithStatus(c.Status).WithReason(c.Reason).WithMessage(c.Message).
			WithObservedGeneration(c.ObservedGeneration).WithLastTransitionTime(metav1.Now())
		if old := meta.FindStatusCondition(p.Status.Conditions, c.Type); old != nil && old.Status == c.Status {
			cond.WithLastTransitionTime(old.LastTransitionTime)
		}
		ac := cnpac.ClusterNetworkPolicy(p.Name).WithStatus(cnpac.ClusterNetworkPolicyStatus().WithConditions(cond))
		if _, err := w.cnps.PolicyV1beta1().ClusterNetworkPolicies().ApplyStatus(ctx, ac, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("clusternetworkpolicy %s: %w", p.Name, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("writing status: %v", errs)
	}
	return nil
}

// agentNodes are the nodes an agent pod is scheduled on: what "every
// node" means for enforcement (a node no agent runs on enforces nothing,
// which status reports, and fake nodes, e.g. kwok's, never report).
func (w *statusWriter) agentNodes() ([]string, error) {
	sel, err := labels.Parse(install.AgentSelector)
	if err != nil {
		return nil, err
	}
	pods, err := w.cluster.podsInNamespace(w.namespace, sel)
	if err != nil {
		return nil, err
	}
	var nodes []string
	for _, p := range pods {
		if n := p.NodeName; n != "" && !slices.Contains(nodes, n) {
			nodes = append(nodes, n)
		}
	}
	return nodes, nil
}

// leadStatus runs the status writer whenever this agent holds the
// netpol-cnp-status Lease, until ctx ends.
func leadStatus(ctx context.Context, w *statusWriter, identity string) error {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: statusLeaseName, Namespace: w.namespace},
		Client:     w.client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, LeaseDuration: 30 * time.Second, RenewDeadline: 20 * time.Second, RetryPeriod: 5 * time.Second,
		ReleaseOnCancel: true, Name: statusLeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				klog.InfoS("Writing ClusterNetworkPolicy status (elected)", "identity", identity)
				w.run(ctx)
			},
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		le.Run(ctx) // returns when leadership is lost: stand again
	}
	return nil
}
