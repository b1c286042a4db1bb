package policy

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Allowed answers Evaluate(t).Allowed without building the explanation: no
// allocation for Snapshot pods and IPs. It runs the same code as Evaluate.
func (e *Engine) Allowed(t Traffic) bool {
	return e.decide(&t, nil, false)
}

// Evaluate decides t and explains the decision: per direction, the isolating
// policies, every rule that allows it and, for each selecting policy, why
// each of its rules in that direction did or did not match; plus warnings.
func (e *Engine) Evaluate(t Traffic) Decision {
	d := Decision{
		Egress:  DirectionDecision{Direction: Egress},
		Ingress: DirectionDecision{Direction: Ingress},
	}
	d.Allowed = e.decide(&t, &d, true)
	return d
}

// Why decides t and names what decided it: per direction the reason, the
// isolating policies and the rules that allow, without Evaluate's per-rule
// mismatches, policy summaries and warnings. It is the cost of a one-line
// reason (`check`), a fraction of a full explanation.
func (e *Engine) Why(t Traffic) Decision {
	d := Decision{
		Egress:  DirectionDecision{Direction: Egress},
		Ingress: DirectionDecision{Direction: Ingress},
	}
	d.Allowed = e.decide(&t, &d, false)
	return d
}

// normProtocol applies the API default (TCP) and accepts any letter case.
func normProtocol(p corev1.Protocol) corev1.Protocol {
	switch p {
	case "":
		return corev1.ProtocolTCP
	case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		return p
	}
	return corev1.Protocol(strings.ToUpper(string(p)))
}

func knownProtocol(p corev1.Protocol) bool {
	return p == corev1.ProtocolTCP || p == corev1.ProtocolUDP || p == corev1.ProtocolSCTP
}

// resolve turns a Peer into an endpoint. An IP owned by a Snapshot pod is
// that pod, as in the datapath, which knows endpoints by address.
func (e *Engine) resolve(p Peer) endpoint {
	ep := endpoint{ip: p.IP.Unmap()}
	if p.Pod != nil {
		ep.pod = e.lookupPod(p.Pod)
		if !ep.ip.IsValid() && len(ep.pod.ips) > 0 {
			ep.ip, ep.node = ep.pod.ips[0], ep.pod.firstIsNode
			return ep
		}
	} else if ep.ip.IsValid() {
		ep.pod = e.podByIP(ep.ip)
	}
	ep.node = e.IsNodeIP(ep.ip)
	return ep
}

// decide is the one implementation of the verdict. With d == nil it returns
// as soon as the answer is known; with d it fills in what decided, and with
// explain also why every other rule did not match, and the warnings.
func (e *Engine) decide(t *Traffic, d *Decision, explain bool) bool {
	proto := normProtocol(t.Protocol)
	src, dst := e.resolve(t.Src), e.resolve(t.Dst)
	var w *warnings
	if explain {
		w = &warnings{}
		defer func() { d.Warnings = w.list }()
		e.endpointWarnings(w, &src, "source")
		e.endpointWarnings(w, &dst, "destination")
		if proto == corev1.ProtocolSCTP {
			w.add(WarnSCTP, "SCTP is judged like TCP and UDP here, but only clusters whose network plugin supports SCTP NetworkPolicy enforce it")
		}
	}

	if isLoopback(&src, &dst) {
		if d != nil {
			w.add(WarnLoopback, fmt.Sprintf("%s to %s is loopback traffic, which NetworkPolicy never restricts", describe(&src), describe(&dst)))
			for _, dd := range []*DirectionDecision{&d.Egress, &d.Ingress} {
				dd.Allowed, dd.Reason = true, ReasonNotApplicable
			}
		}
		return true
	}
	if d == nil {
		return e.permits(&src, &dst, proto, t.Port)
	}
	ok := e.side(Egress, &src, &dst, &dst, proto, t.Port, &d.Egress, w)
	ok = e.side(Ingress, &dst, &src, &dst, proto, t.Port, &d.Ingress, w) && ok
	if e.hasAudited && (audits(&src) || audits(&dst)) {
		a := &AuditOutcome{Egress: DirectionDecision{Direction: Egress}, Ingress: DirectionDecision{Direction: Ingress}}
		a.Allowed = e.sideIn(Egress, fullLists(&src), &src, &dst, &dst, proto, t.Port, &a.Egress, &warnings{})
		a.Allowed = e.sideIn(Ingress, fullLists(&dst), &dst, &src, &dst, proto, t.Port, &a.Ingress, &warnings{}) && a.Allowed
		if a.Allowed != ok {
			a.Policies = auditedIn(&a.Egress, &a.Ingress)
			d.Audit = a
		}
	}
	return ok
}

// audits reports whether an audited policy selects the endpoint.
func audits(ep *endpoint) bool { return ep.isPod() && ep.pod.ident.audit != nil }

// enforcedLists are the enforced policies selecting the endpoint's identity.
func enforcedLists(ep *endpoint) *tierLists {
	id := ep.pod.ident
	return &tierLists{nps: id.selectedBy, cluster: id.cluster}
}

// fullLists are all policies selecting it, audited ones included.
func fullLists(ep *endpoint) *tierLists {
	if ep.isPod() && ep.pod.ident.audit != nil {
		return ep.pod.ident.audit
	}
	if !ep.isPod() {
		return nil
	}
	return enforcedLists(ep)
}

// auditedIn names the audited policies in the decisions.
func auditedIn(dds ...*DirectionDecision) []PolicyRef {
	var out []PolicyRef
	seen := map[PolicyRef]bool{}
	add := func(r PolicyRef, audited bool) {
		if audited && !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	for _, dd := range dds {
		for _, p := range dd.Policies {
			add(p.Policy, p.Audited)
		}
		for _, p := range dd.ClusterPolicies {
			add(p.Policy, p.Audited)
		}
	}
	return out
}

// permits is the verdict of both sides, loopback aside: the source's egress,
// then, only if that allows, the destination's ingress.
func (e *Engine) permits(src, dst *endpoint, proto corev1.Protocol, port int32) bool {
	return e.side(Egress, src, dst, dst, proto, port, nil, nil) &&
		e.side(Ingress, dst, src, dst, proto, port, nil, nil)
}

// side is sideIn with the enforced policies.
func (e *Engine) side(dir Direction, subject, other, dst *endpoint, proto corev1.Protocol, port int32, dd *DirectionDecision, w *warnings) bool {
	var l *tierLists
	if subject.isPod() {
		l = enforcedLists(subject)
	}
	return e.sideIn(dir, l, subject, other, dst, proto, port, dd, w)
}

func isLoopback(src, dst *endpoint) bool {
	if src.pod != nil && dst.pod != nil && (src.pod == dst.pod ||
		(!src.pod.indexed || !dst.pod.indexed) && src.pod.key == dst.pod.key) {
		return true
	}
	if src.ip.IsValid() && src.ip == dst.ip {
		return true
	}
	return src.ip.IsLoopback() || dst.ip.IsLoopback()
}

// side decides one direction for subject (the source for Egress, the
// destination for Ingress) against the other end, tier by tier: Admin
// ClusterNetworkPolicies, NetworkPolicy (final for the pods it selects),
// Baseline ClusterNetworkPolicies, then allow. dst is the destination,
// against which named ports resolve.
func (e *Engine) sideIn(dir Direction, l *tierLists, subject, other, dst *endpoint, proto corev1.Protocol, port int32, dd *DirectionDecision, w *warnings) bool {
	if !subject.isPod() {
		if dd != nil {
			dd.Allowed, dd.Reason = true, ReasonNotApplicable
		}
		return true
	}
	di := dirIndex(dir)
	pols := l.nps[di]
	if dd != nil {
		dd.Isolated = len(pols) > 0
		for _, p := range pols {
			dd.IsolatedBy = append(dd.IsolatedBy, p.ref)
		}
	}
	admin, baseline := l.cluster[di][tierAdminIdx], l.cluster[di][tierBaselineIdx]
	if len(admin) == 0 && len(baseline) == 0 {
		return e.networkPolicySide(dir, pols, subject, other, dst, proto, port, dd, w)
	}
	if dd != nil {
		defer func() { dd.Summary = tierSummary(dir, subject, dd) }()
	}
	if ok, decided := e.clusterTier(admin, di, other, dst, proto, port, dd, w); decided {
		return e.clusterVerdict(TierAdmin, ok, dd)
	}
	if len(pols) == 0 {
		if ok, decided := e.clusterTier(baseline, di, other, dst, proto, port, dd, w); decided {
			return e.clusterVerdict(TierBaseline, ok, dd)
		}
	}
	if dd != nil && len(pols) > 0 {
		dd.Tier = TierNetworkPolicy
	}
	return e.networkPolicySide(dir, pols, subject, other, dst, proto, port, dd, w)
}

func (e *Engine) clusterVerdict(t Tier, allowed bool, dd *DirectionDecision) bool {
	if dd != nil {
		dd.Tier, dd.Allowed, dd.Reason = t, allowed, ReasonDeniedByClusterPolicy
		if allowed {
			dd.Reason = ReasonAcceptedByClusterPolicy
		}
	}
	return allowed
}

// networkPolicySide is the NetworkPolicy tier, which also gives the verdict
// of a pod it does not select (allowed: not isolated, or node traffic).
func (e *Engine) networkPolicySide(dir Direction, pols []*policyInfo, subject, other, dst *endpoint, proto corev1.Protocol, port int32, dd *DirectionDecision, w *warnings) bool {
	di := dirIndex(dir)
	if other.node {
		if dd != nil {
			dd.Allowed, dd.Reason = true, ReasonNotApplicable
			w.add(WarnNodeTraffic, fmt.Sprintf("%s is a node address: traffic between a pod and a node is always allowed, so %s's %s policies do not apply", other.ip, subject.pod.key, strings.ToLower(string(dir))))
		}
		return true
	}
	if len(pols) == 0 {
		if dd != nil {
			dd.Allowed, dd.Reason = true, ReasonNotIsolated
		}
		return true
	}
	allowed := false
	for _, pol := range pols {
		var pe *PolicyEvaluation
		if dd != nil && w != nil {
			dd.Policies = append(dd.Policies, PolicyEvaluation{Policy: pol.ref, Rules: []RuleEvaluation{}, Audited: pol.audited})
			pe = &dd.Policies[len(dd.Policies)-1]
		}
		for ri := range pol.rules[di] {
			r := &pol.rules[di][ri]
			peer, portIdx, peerOK, portOK := r.match(other, dst, proto, port, dd != nil)
			if peerOK && portOK {
				if dd == nil {
					return true
				}
				allowed = true
				dd.AllowedBy = append(dd.AllowedBy, RuleMatch{Rule: r.ref, Peer: peer, Port: portIdx})
				if pe != nil {
					pe.Rules = append(pe.Rules, RuleEvaluation{Rule: r.ref, Matched: true})
				}
				continue
			}
			if pe != nil {
				pe.Rules = append(pe.Rules, RuleEvaluation{Rule: r.ref, Mismatches: explainRule(r, other, dst, proto, port, peerOK, portOK, w)})
			}
		}
		if pe != nil {
			pe.Summary = policySummary(pol, dir, subject, pe)
		}
	}
	if dd != nil {
		dd.Allowed = allowed
		dd.Reason = ReasonNoRuleMatched
		if allowed {
			dd.Reason = ReasonAllowedByRule
		}
	}
	return allowed
}

// warnings collects Decision warnings without duplicates.
type warnings struct{ list []Warning }

func (w *warnings) add(code WarningCode, msg string) {
	if w == nil {
		return // Why: no warnings
	}
	for _, x := range w.list {
		if x.Code == code && x.Message == msg {
			return
		}
	}
	w.list = append(w.list, Warning{Code: code, Message: msg})
}

func (e *Engine) endpointWarnings(w *warnings, ep *endpoint, role string) {
	if ep.pod == nil {
		return
	}
	if ep.pod.hostNetwork {
		w.add(WarnHostNetwork, fmt.Sprintf("the %s, pod %s, uses the host network: NetworkPolicy does not apply to it, and peers see it as its node's address", role, ep.pod.key))
	}
	if len(ep.pod.ips) == 0 {
		w.add(WarnNoPodIP, fmt.Sprintf("the %s, pod %s, has no IP yet: judged by its labels only; ipBlock peers cannot match it", role, ep.pod.key))
	}
}
