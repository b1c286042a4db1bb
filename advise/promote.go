package advise

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
	"github.com/kubectl-netpol/kubectl-netpol/whatif"
)

// AuditedBy says why a policy is audited: "the policy" (its own
// annotation), "namespace NS" (the namespace's annotation, which the
// policy does not override with ModeEnforce), or "" when it is enforced.
func AuditedBy(np *networkingv1.NetworkPolicy, ns *corev1.Namespace) string {
	return policy.AuditedBy(&np.ObjectMeta, ns)
}

// NodeEvidence is what one node's history says about the policy.
type NodeEvidence struct {
	Node string `json:"node"`
	// WouldDeny counts the connections the node judged that the policy,
	// enforced, would deny.
	WouldDeny uint64 `json:"wouldDeny"`
	// Unreachable: the node's history could not be read (why).
	Unreachable string `json:"unreachable,omitempty"`
}

// Evidence is the case for (or against) enforcing an audited policy.
type Evidence struct {
	Policy    string `json:"policy"`
	AuditedBy string `json:"auditedBy"`
	// Source says where the would-deny counts come from.
	Source string `json:"source"`
	// AuditedWouldDeny counts the connections the datapath itself reported
	// as AUDIT, would be denied, naming this policy, in the window: the
	// kernel's own evidence beside the re-judged history.
	AuditedWouldDeny uint64          `json:"auditedWouldDeny"`
	Coverage         whatif.Coverage `json:"coverage"`
	Nodes            []NodeEvidence  `json:"nodes"`
	// WouldDeny are the observed connections, allowed today, that the
	// policy enforced would deny: what promotion breaks.
	WouldDeny []whatif.Change `json:"wouldDeny"`
	// Safe: history in the window from every node, and nothing would be denied.
	Safe bool `json:"safe"`
	// Why is one sentence on the verdict.
	Why string `json:"why"`
}

// Promotion judges whether the audited policy namespace/name can be
// enforced: the history of the window is re-judged (package whatif) with
// the policy enforced, against what is enforced today (every audited policy
// left out, since the datapath does not enforce them), and each
// connection allowed today that the policy would deny counts against it.
func Promotion(snap *policy.Snapshot, namespace, name string, set *history.Set, since time.Time) (*Evidence, error) {
	i := slices.IndexFunc(snap.Policies, func(p *networkingv1.NetworkPolicy) bool { return p.Namespace == namespace && p.Name == name })
	if i < 0 {
		return nil, fmt.Errorf("no NetworkPolicy %s in namespace %s (kubectl get networkpolicy -n %s lists them)", name, namespace, namespace)
	}
	target := snap.Policies[i]
	nsOf := map[string]*corev1.Namespace{}
	for _, ns := range snap.Namespaces {
		nsOf[ns.Name] = ns
	}
	ev := &Evidence{Policy: namespace + "/" + name, AuditedBy: AuditedBy(target, nsOf[namespace])}
	if ev.AuditedBy == "" {
		return ev, fmt.Errorf("NetworkPolicy %s/%s is enforced already (neither it nor its namespace is annotated %s: %s)", namespace, name, ModeAnnotation, ModeAudit)
	}
	enforced := *snap
	enforced.Policies = nil
	for _, p := range snap.Policies {
		if AuditedBy(p, nsOf[p.Namespace]) == "" {
			enforced.Policies = append(enforced.Policies, p)
		}
	}
	// The target as it will be once promoted: annotated enforce, so an
	// engine that honours audit annotations judges it enforced too.
	enforcedTarget := target.DeepCopy()
	if enforcedTarget.Annotations == nil {
		enforcedTarget.Annotations = map[string]string{}
	}
	enforcedTarget.Annotations[ModeAnnotation] = ModeEnforce
	promoted := enforced
	promoted.Policies = append(slices.Clone(enforced.Policies), enforcedTarget)
	now, err := policy.NewEngine(&enforced)
	if err != nil {
		return nil, err
	}
	next, err := policy.NewEngine(&promoted)
	if err != nil {
		return nil, err
	}
	rep, err := whatif.Run(whatif.Input{Current: now, Proposed: next, History: set, Since: since})
	if err != nil {
		return nil, err
	}
	ev.AuditedWouldDeny = auditedWouldDeny(set, since, namespace, name)
	ev.Source = "the history re-judged with the policy enforced, against the policies enforced today (no AUDIT record names it)"
	if ev.AuditedWouldDeny > 0 {
		ev.Source = fmt.Sprintf("the history re-judged with the policy enforced, and %d connection(s) the datapath reported as AUDIT, would be denied by it", ev.AuditedWouldDeny)
	}
	ev.Coverage = rep.Coverage
	perNode := map[string]uint64{}
	for _, c := range rep.NewlyDenied {
		if c.ObservedAllowed == 0 {
			continue // denied when seen: enforcing changes nothing for it
		}
		ev.WouldDeny = append(ev.WouldDeny, c)
		for _, n := range c.Nodes {
			perNode[n] += c.Connections
		}
	}
	for _, n := range rep.Coverage.Nodes {
		ev.Nodes = append(ev.Nodes, NodeEvidence{Node: n, WouldDeny: perNode[n]})
	}
	for n, why := range rep.Coverage.Unreachable {
		ev.Nodes = append(ev.Nodes, NodeEvidence{Node: n, Unreachable: why})
	}
	slices.SortFunc(ev.Nodes, func(a, b NodeEvidence) int { return strings.Compare(a.Node, b.Node) })
	switch {
	case rep.Coverage.Records == 0:
		ev.Why = "no connection history in the window: nothing shows the policy is safe to enforce"
	case len(rep.Coverage.Unreachable) > 0:
		ev.Why = fmt.Sprintf("the history of %d node(s) could not be read: what the policy would deny there is unknown", len(rep.Coverage.Unreachable))
	case len(ev.WouldDeny) > 0:
		ev.Why = fmt.Sprintf("enforced, the policy would deny %d observed connection kind(s) that are allowed today", len(ev.WouldDeny))
	case ev.AuditedWouldDeny > 0:
		ev.Why = fmt.Sprintf("the datapath reported %d connection(s) in the window as AUDIT that the policy, enforced, would deny", ev.AuditedWouldDeny)
	default:
		ev.Safe = true
		ev.Why = fmt.Sprintf("no observed connection would be denied on any of %d node(s) in the window", len(rep.Coverage.Nodes))
	}
	return ev, nil
}

// auditedWouldDeny counts the window's AUDIT connections that the datapath
// said the policy namespace/name would deny (by a rule of it, or as one of
// the policies that would isolate the pod).
func auditedWouldDeny(set *history.Set, since time.Time, namespace, name string) uint64 {
	if set == nil {
		return 0
	}
	var n uint64
	for _, rec := range set.Records {
		a := rec.Key.GetAudit()
		if rec.Key.GetVerdict() != flowv1.Verdict_VERDICT_AUDIT || a.GetWouldBe() != flowv1.Verdict_VERDICT_DENIED ||
			(!since.IsZero() && rec.Start.Add(rec.Width).Before(since)) {
			continue
		}
		refs := a.GetIsolatedBy()
		if a.GetRule() != nil {
			refs = append(refs, a.GetRule())
		}
		for _, r := range refs {
			if r.GetNamespace() == namespace && r.GetName() == name {
				n += rec.Connections
				break
			}
		}
	}
	return n
}
