package policy

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Audit mode: a policy annotated ModeAnnotation=audit (or in a namespace so
// annotated, unless the policy says enforce) is evaluated but not enforced.
// The engine's verdicts, explanations and compiled datapaths are those of
// the enforced policies; Decision.Audit and the datapath's RuleAudit
// entries say where enforcing the audited ones would change the verdict.

// ModeAnnotation selects a policy's (or a namespace's policies') mode.
const ModeAnnotation = "netpol.kubectl.io/mode"

// Modes of ModeAnnotation.
const (
	ModeAudit   = "audit"
	ModeEnforce = "enforce"
)

// AuditedBy says why a policy (its metadata; ns its namespace, nil for a
// ClusterNetworkPolicy or an unknown namespace) is audited: "the policy"
// (its own annotation), "namespace NS" (the namespace's, which the policy
// does not override with ModeEnforce), or "" when it is enforced.
func AuditedBy(meta *metav1.ObjectMeta, ns *corev1.Namespace) string {
	switch {
	case !auditedBy(meta, ns != nil && namespaceAudits(ns)):
		return ""
	case meta.Annotations[ModeAnnotation] == ModeAudit:
		return "the policy"
	}
	return "namespace " + ns.Name
}

// auditedBy reports whether a policy with this metadata, in a namespace
// auditing (nsAudit) or not, is audited.
func auditedBy(meta *metav1.ObjectMeta, nsAudit bool) bool {
	switch meta.Annotations[ModeAnnotation] {
	case ModeAudit:
		return true
	case ModeEnforce:
		return false
	}
	return nsAudit
}

func namespaceAudits(ns *corev1.Namespace) bool {
	return ns.Annotations[ModeAnnotation] == ModeAudit
}

// splitAudited keeps in id's selections only the enforced policies and
// moves the complete lists (audited included) to id.audit, when an audited
// policy selects the identity.
func (e *Engine) splitAudited(id *identity) {
	if !e.hasAudited {
		return
	}
	var full tierLists
	any := false
	for d := range 2 {
		full.nps[d] = id.selectedBy[d]
		full.cluster[d] = id.cluster[d]
		for _, p := range id.selectedBy[d] {
			any = any || p.audited
		}
		for t := range 2 {
			for _, c := range id.cluster[d][t] {
				any = any || c.audited
			}
		}
	}
	if !any {
		return
	}
	id.audit = &full
	for d := range 2 {
		id.selectedBy[d] = filterOut(id.selectedBy[d], func(p *policyInfo) bool { return p.audited })
		for t := range 2 {
			id.cluster[d][t] = filterOut(id.cluster[d][t], func(c *clusterInfo) bool { return c.audited })
		}
	}
}

// tierLists are the policies selecting an identity, per direction index
// (and tier for cluster policies).
type tierLists struct {
	nps     [2][]*policyInfo
	cluster [2][2][]*clusterInfo
}

func filterOut[T any](s []T, drop func(T) bool) []T {
	out := make([]T, 0, len(s))
	for _, x := range s {
		if !drop(x) {
			out = append(out, x)
		}
	}
	return out
}

// AuditedPolicies lists the audited policies, NetworkPolicies first.
func (e *Engine) AuditedPolicies() []PolicyRef {
	var out []PolicyRef
	for _, p := range e.policies {
		if p.audited {
			out = append(out, p.ref)
		}
	}
	for _, c := range e.clusters {
		if c.audited {
			out = append(out, c.ref)
		}
	}
	return out
}

// Audited reports whether the policy ref names is audited.
func (e *Engine) Audited(ref PolicyRef) bool {
	if ref.Kind == KindClusterNetworkPolicy {
		c := e.clusterByName[ref.Name]
		return c != nil && c.audited
	}
	p := e.policyByRef[normRef(ref)]
	return p != nil && p.audited
}
