package policy

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// This file turns a verdict already decided in rules.go into sentences. It
// never decides anything itself.

// describe names an endpoint for people.
func describe(ep *endpoint) string {
	switch {
	case ep.pod != nil && ep.pod.hostNetwork:
		return fmt.Sprintf("hostNetwork pod %s (%s)", ep.pod.key, ep.ip)
	case ep.pod != nil:
		return "pod " + ep.pod.key
	case ep.ip.IsValid():
		return ep.ip.String()
	}
	return "an unknown peer"
}

// SelectorString renders a label selector the way kubectl does, with "{}"
// for the empty selector (which selects everything).
func SelectorString(sel *metav1.LabelSelector) string {
	if sel == nil {
		return "<absent>"
	}
	if len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0 {
		return "{}"
	}
	return metav1.FormatLabelSelector(sel)
}

// PeerString describes a from/to entry in plain language, e.g.
// `pods app=web in namespace "db"` or `ipBlock 10.0.0.0/8 except 10.1.0.0/16`.
func PeerString(peer *networkingv1.NetworkPolicyPeer, policyNamespace string) string {
	if peer.IPBlock != nil {
		s := "ipBlock " + peer.IPBlock.CIDR
		if len(peer.IPBlock.Except) > 0 {
			s += " except " + strings.Join(peer.IPBlock.Except, ", ")
		}
		return s
	}
	pods := "all pods"
	if ps := peer.PodSelector; ps != nil && (len(ps.MatchLabels) > 0 || len(ps.MatchExpressions) > 0) {
		pods = "pods " + SelectorString(ps)
	}
	switch ns := peer.NamespaceSelector; {
	case ns == nil:
		return fmt.Sprintf("%s in namespace %q", pods, policyNamespace)
	case len(ns.MatchLabels) == 0 && len(ns.MatchExpressions) == 0:
		return pods + " in all namespaces"
	default:
		return pods + " in namespaces " + SelectorString(ns)
	}
}

// labelWhy says which requirements of sel the labels l fail, e.g.
// `lacks label team (namespaceSelector team=db)`.
func labelWhy(l labels.Set, sel *metav1.LabelSelector, selName string) string {
	var why []string
	keys := make([]string, 0, len(sel.MatchLabels))
	for k := range sel.MatchLabels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		want := sel.MatchLabels[k]
		switch v, ok := l[k]; {
		case !ok:
			why = append(why, "lacks label "+k)
		case v != want && want == "":
			why = append(why, fmt.Sprintf("has %s=%s, not an empty %s", k, v, k))
		case v != want:
			why = append(why, fmt.Sprintf("has %s=%s, not %s=%s", k, v, k, want))
		}
	}
	for _, r := range sel.MatchExpressions {
		v, ok := l[r.Key]
		switch r.Operator {
		case metav1.LabelSelectorOpIn:
			if !ok {
				why = append(why, "lacks label "+r.Key)
			} else if !slices.Contains(r.Values, v) {
				why = append(why, fmt.Sprintf("has %s=%s, not in (%s)", r.Key, v, strings.Join(r.Values, ", ")))
			}
		case metav1.LabelSelectorOpNotIn:
			if ok && slices.Contains(r.Values, v) {
				why = append(why, fmt.Sprintf("has %s=%s, which %s notin (%s) excludes", r.Key, v, r.Key, strings.Join(r.Values, ", ")))
			}
		case metav1.LabelSelectorOpExists:
			if !ok {
				why = append(why, "lacks label "+r.Key)
			}
		case metav1.LabelSelectorOpDoesNotExist:
			if ok {
				why = append(why, fmt.Sprintf("has label %s (=%s), which must be absent", r.Key, v))
			}
		}
	}
	if len(why) == 0 {
		why = append(why, "does not match")
	}
	return fmt.Sprintf("%s (%s %s)", strings.Join(why, " and "), selName, SelectorString(sel))
}

func explainPeer(i int, p *peerInfo, other *endpoint) string {
	what := fmt.Sprintf("peer %d selects %s", i, PeerString(p.spec, p.policyNS))
	if p.ipBlock {
		if !other.ip.IsValid() {
			return fmt.Sprintf("%s; %s has no IP address", what, describe(other))
		}
		if !p.cidr.Contains(other.ip) {
			return fmt.Sprintf("%s; %s is outside %s", what, other.ip, p.spec.IPBlock.CIDR)
		}
		for j, ex := range p.except {
			if ex.Contains(other.ip) {
				return fmt.Sprintf("%s; %s is in the excepted %s", what, other.ip, p.spec.IPBlock.Except[j])
			}
		}
		return what + "; it does not match"
	}
	if msg, ok := notSelectable(what, other, " (only ipBlock peers match addresses outside the pod network)"); ok {
		return msg
	}
	id := other.pod.ident
	var why []string
	if !p.nsMatches(id.ns) {
		if p.nsSel == nil {
			return fmt.Sprintf("%s is in namespace %q; %s (podSelector alone means the policy's own namespace)", describe(other), id.ns.name, what)
		}
		why = append(why, fmt.Sprintf("namespace %q %s", id.ns.name, labelWhy(id.ns.labels, p.spec.NamespaceSelector, "namespaceSelector")))
	}
	if !p.podMatches(id.labels) {
		why = append(why, fmt.Sprintf("%s %s", describe(other), labelWhy(id.labels, p.spec.PodSelector, "podSelector")))
	}
	if len(why) == 0 {
		why = append(why, "it does not match")
	}
	return what + "; " + strings.Join(why, "; and ")
}

// notSelectable explains why a selector peer cannot see other, when it cannot.
func notSelectable(what string, other *endpoint, hint string) (string, bool) {
	if other.pod != nil && other.pod.hostNetwork {
		return fmt.Sprintf("%s; %s uses the host network, and pod/namespace selectors never match hostNetwork pods", what, describe(other)), true
	}
	if other.pod == nil {
		return fmt.Sprintf("%s; %s is not a pod%s", what, describe(other), hint), true
	}
	return "", false
}

func portString(pt *portInfo) string {
	switch pt.kind {
	case portAll:
		return "any " + string(pt.proto) + " port"
	case portNamed:
		if pt.proto == "" {
			return fmt.Sprintf("named port %q", pt.name)
		}
		return fmt.Sprintf("named port %q/%s", pt.name, pt.proto)
	}
	if pt.first == pt.last {
		return fmt.Sprintf("%d/%s", pt.first, pt.proto)
	}
	return fmt.Sprintf("%d-%d/%s", pt.first, pt.last, pt.proto)
}

func explainPort(pt *portInfo, proto corev1.Protocol, port int32, dst *endpoint, w *warnings) string {
	traffic := fmt.Sprintf("port %d/%s", port, proto)
	if proto != pt.proto || pt.kind == portAll {
		return fmt.Sprintf("%s is not %s", traffic, portString(pt))
	}
	if pt.kind == portNumber {
		if pt.first == pt.last {
			return fmt.Sprintf("%s is not %s", traffic, portString(pt))
		}
		return fmt.Sprintf("%s is not in %s", traffic, portString(pt))
	}
	if dst.pod == nil {
		return fmt.Sprintf("named port %q never matches traffic to an IP (%s is not a pod)", pt.name, describe(dst))
	}
	if dst.pod.hostNetwork {
		return fmt.Sprintf("named port %q never matches traffic to %s: it is judged as its node's address", pt.name, describe(dst))
	}
	nums := resolveNamed(dst.pod.ports, pt.name, pt.proto)
	switch len(nums) {
	case 0:
		msg := fmt.Sprintf("named port %q is not declared by %s for %s", pt.name, dst.pod.key, pt.proto)
		w.add(WarnNamedPortAbsent, msg+": a ports entry naming it matches nothing there")
		return msg
	case 1:
		return fmt.Sprintf("named port %q is %d/%s on %s, not %d", pt.name, nums[0], pt.proto, dst.pod.key, port)
	}
	w.add(WarnNamedPortAmbiguous, ambiguousMsg(dst.pod.key, pt.name, pt.proto, nums))
	return fmt.Sprintf("named port %q is %s/%s on %s, not %d", pt.name, joinInts(nums), pt.proto, dst.pod.key, port)
}

func ambiguousMsg(pod, name string, proto corev1.Protocol, nums []int32) string {
	return fmt.Sprintf("pod %s declares named port %q for %s more than once (%s): policies naming it match each of those ports", pod, name, proto, joinInts(nums))
}

func joinInts(nums []int32) string {
	s := make([]string, len(nums))
	for i, n := range nums {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

// explainRule lists why a rule did not match: every peer when no peer
// matched, every port entry when no port matched.
func explainRule(r *ruleInfo, other, dst *endpoint, proto corev1.Protocol, port int32, peerOK, portOK bool, w *warnings) []Mismatch {
	var out []Mismatch
	if !peerOK {
		for i := range r.peers {
			out = append(out, Mismatch{Kind: MismatchPeer, Index: i, Message: explainPeer(i, &r.peers[i], other)})
		}
	}
	if !portOK {
		for i := range r.ports {
			out = append(out, Mismatch{Kind: MismatchPort, Index: i, Message: explainPort(&r.ports[i], proto, port, dst, w)})
		}
	}
	return out
}

// policySummary is the one sentence a renderer prints for a selecting policy.
func policySummary(pol *policyInfo, dir Direction, subject *endpoint, pe *PolicyEvaluation) string {
	d := strings.ToLower(string(dir))
	sel := SelectorString(&pol.obj.Spec.PodSelector)
	if sel == "{}" {
		sel = fmt.Sprintf("{}, every pod in %s", pol.ref.Namespace)
	}
	head := fmt.Sprintf("%s/%s selects %s (podSelector %s) for %s", pol.ref.Namespace, pol.ref.Name, describe(subject), sel, dir)
	if len(pe.Rules) == 0 {
		return fmt.Sprintf("%s and has no %s rules: denies all %s", head, d, d)
	}
	var matched []string
	for _, r := range pe.Rules {
		if r.Matched {
			matched = append(matched, fmt.Sprint(r.Rule.Index))
		}
	}
	switch {
	case len(matched) == 1:
		return fmt.Sprintf("%s; its %s rule %s allows this traffic", head, d, matched[0])
	case len(matched) > 1:
		return fmt.Sprintf("%s; its %s rules %s allow this traffic", head, d, strings.Join(matched, ", "))
	case len(pe.Rules) == 1:
		return fmt.Sprintf("%s; its only %s rule does not match", head, d)
	}
	return fmt.Sprintf("%s; none of its %d %s rules matches", head, len(pe.Rules), d)
}
