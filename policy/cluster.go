package policy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// This file is the ClusterNetworkPolicy half of the engine: Admin and
// Baseline tiers, each a list of policies in priority order whose rules are
// tried in written order, the first match deciding (Accept, Deny) or ending
// the tier (Pass).

// tierIndex maps a CNP tier to identity.cluster's index.
const (
	tierAdminIdx = iota
	tierBaselineIdx
)

// clusterInfo is a validated ClusterNetworkPolicy with its selectors parsed.
type clusterInfo struct {
	obj      *cnpv1beta1.ClusterNetworkPolicy
	ref      PolicyRef
	tier     Tier
	priority int32
	// Subject: nsSel always; podSel nil for a namespaces subject.
	nsSel, podSel labels.Selector
	rules         [2][]clusterRule
	// domainNames: some egress peer names domains (not enforced here).
	domainNames bool
	// audited: evaluated but not enforced (audit.go).
	audited bool
}

type clusterRule struct {
	ref   ClusterRuleRef
	peers []clusterPeer
	// ports nil: the rule has no protocols, it matches all traffic.
	ports []portInfo
}

type clusterPeerKind uint8

const (
	cpNamespaces clusterPeerKind = iota
	cpPods
	cpNetworks
	cpNodes
	cpDomainNames
)

type clusterPeer struct {
	kind          clusterPeerKind
	nsSel, podSel labels.Selector // namespaces, pods; nodes uses nsSel for the node selector
	networks      []netip.Prefix
	// text describes the peer for people: `namespaces team=db`.
	text string
	// selKey names the selectors (namespaces and pods peers): equal keys
	// select the same pods.
	selKey string
	// selector specs, for explanations.
	nsSpec, podSpec *metav1.LabelSelector
	domains         []string
}

// clusterLess is the evaluation order within a tier: priority, then name
// (the API leaves equal priorities undefined; the name keeps it stable and
// the same in the CLI and the datapath).
func clusterLess(a, b *clusterInfo) int {
	if a.tier != b.tier {
		if a.tier == TierAdmin {
			return -1
		}
		return 1
	}
	return cmp.Or(cmp.Compare(a.priority, b.priority), strings.Compare(a.ref.Name, b.ref.Name))
}

func compileCluster(cnp *cnpv1beta1.ClusterNetworkPolicy) (*clusterInfo, error) {
	ci := &clusterInfo{obj: cnp, ref: PolicyRef{Kind: KindClusterNetworkPolicy, Name: cnp.Name},
		tier: Tier(cnp.Spec.Tier), priority: cnp.Spec.Priority}
	fail := func(path string, err error) (*clusterInfo, error) {
		return nil, fmt.Errorf("clusternetworkpolicy %s: %s: %w", cnp.Name, path, err)
	}
	var err error
	switch s := cnp.Spec.Subject; {
	case s.Namespaces != nil:
		if ci.nsSel, err = metav1.LabelSelectorAsSelector(s.Namespaces); err != nil {
			return fail("spec.subject.namespaces", err)
		}
	case s.Pods != nil:
		if ci.nsSel, err = metav1.LabelSelectorAsSelector(&s.Pods.NamespaceSelector); err != nil {
			return fail("spec.subject.pods.namespaceSelector", err)
		}
		if ci.podSel, err = metav1.LabelSelectorAsSelector(&s.Pods.PodSelector); err != nil {
			return fail("spec.subject.pods.podSelector", err)
		}
	}
	for i, r := range cnp.Spec.Ingress {
		cr := clusterRule{ref: ci.ruleRef(Ingress, i, r.Name, r.Action)}
		for j := range r.From {
			p, err := compileClusterPeer(r.From[j].Namespaces, r.From[j].Pods, nil, nil, nil)
			if err != nil {
				return fail(fmt.Sprintf("spec.ingress[%d].from[%d]", i, j), err)
			}
			cr.peers = append(cr.peers, p)
		}
		cr.ports = compileProtocols(r.Protocols)
		ci.rules[0] = append(ci.rules[0], cr)
	}
	for i, r := range cnp.Spec.Egress {
		cr := clusterRule{ref: ci.ruleRef(Egress, i, r.Name, r.Action)}
		for j := range r.To {
			to := &r.To[j]
			p, err := compileClusterPeer(to.Namespaces, to.Pods, to.Networks, to.Nodes, to.DomainNames)
			if err != nil {
				return fail(fmt.Sprintf("spec.egress[%d].to[%d]", i, j), err)
			}
			ci.domainNames = ci.domainNames || p.kind == cpDomainNames
			cr.peers = append(cr.peers, p)
		}
		cr.ports = compileProtocols(r.Protocols)
		ci.rules[1] = append(ci.rules[1], cr)
	}
	return ci, nil
}

func (ci *clusterInfo) ruleRef(dir Direction, i int, name string, action cnpv1beta1.ClusterNetworkPolicyRuleAction) ClusterRuleRef {
	return ClusterRuleRef{Policy: ci.ref, Tier: ci.tier, Priority: ci.priority, Direction: dir, Index: i, Name: name, Action: ClusterAction(action)}
}

func compileClusterPeer(ns *metav1.LabelSelector, pods *cnpv1beta1.NamespacedPod, networks []cnpv1beta1.CIDR, nodes *metav1.LabelSelector, domains []cnpv1beta1.DomainName) (clusterPeer, error) {
	var p clusterPeer
	var err error
	switch {
	case ns != nil:
		p.kind, p.nsSpec = cpNamespaces, ns
		p.nsSel, err = metav1.LabelSelectorAsSelector(ns)
		p.text = "namespaces " + SelectorString(ns)
	case pods != nil:
		p.kind, p.nsSpec, p.podSpec = cpPods, &pods.NamespaceSelector, &pods.PodSelector
		if p.nsSel, err = metav1.LabelSelectorAsSelector(&pods.NamespaceSelector); err == nil {
			p.podSel, err = metav1.LabelSelectorAsSelector(&pods.PodSelector)
		}
		p.text = fmt.Sprintf("pods %s in namespaces %s", SelectorString(&pods.PodSelector), SelectorString(&pods.NamespaceSelector))
	case nodes != nil:
		p.kind, p.nsSpec = cpNodes, nodes
		p.nsSel, err = metav1.LabelSelectorAsSelector(nodes)
		p.text = "nodes " + SelectorString(nodes)
	case len(networks) > 0:
		p.kind = cpNetworks
		var s []string
		for _, n := range networks {
			pfx, perr := netip.ParsePrefix(string(n))
			if perr != nil {
				return p, fmt.Errorf("networks: invalid CIDR %q: %w", n, perr)
			}
			p.networks = append(p.networks, pfx)
			s = append(s, string(n))
		}
		p.text = "networks " + strings.Join(s, ", ")
	case len(domains) > 0:
		p.kind = cpDomainNames
		for _, d := range domains {
			p.domains = append(p.domains, string(d))
		}
		p.text = "domainNames " + strings.Join(p.domains, ", ")
	default:
		return p, fmt.Errorf("no peer field set")
	}
	if err == nil && (p.kind == cpNamespaces || p.kind == cpPods) {
		p.selKey = fmt.Sprintf("%d|%s", p.kind, p.nsSel.String())
		if p.podSel != nil {
			p.selKey += "|" + p.podSel.String()
		}
	}
	return p, err
}

// compileProtocols turns a rule's protocols into port entries; nil means
// the rule has none and matches every protocol and port.
func compileProtocols(protos []cnpv1beta1.ClusterNetworkPolicyProtocol) []portInfo {
	if len(protos) == 0 {
		return nil
	}
	out := make([]portInfo, 0, len(protos))
	for _, p := range protos {
		var proto corev1.Protocol
		var dp *cnpv1beta1.Port
		switch {
		case p.TCP != nil:
			proto, dp = corev1.ProtocolTCP, p.TCP.DestinationPort
		case p.UDP != nil:
			proto, dp = corev1.ProtocolUDP, p.UDP.DestinationPort
		case p.SCTP != nil:
			proto, dp = corev1.ProtocolSCTP, p.SCTP.DestinationPort
		default:
			// A named port resolves per destination pod, for the protocol
			// the pod declares it with.
			out = append(out, portInfo{kind: portNamed, name: p.DestinationNamedPort})
			continue
		}
		pt := portInfo{proto: proto, kind: portAll}
		switch {
		case dp == nil:
		case dp.Range != nil:
			pt.kind, pt.first, pt.last = portNumber, dp.Range.Start, dp.Range.End
		default:
			pt.kind, pt.first, pt.last = portNumber, dp.Number, dp.Number
		}
		out = append(out, pt)
	}
	return out
}

// clustersForNamespace returns the cluster policies whose subject's
// namespace selector matches ns, in evaluation order: computed once per
// namespace while NewEngine registers pods (remember set), afterwards
// computed on the side for a namespace never seen, so the Engine stays
// immutable once built.
func (e *Engine) clustersForNamespace(ns *nsInfo, remember bool) []*clusterInfo {
	if len(e.clusters) == 0 {
		return nil
	}
	if l, ok := e.clusterByNS[ns.name]; ok {
		return l
	}
	var l []*clusterInfo
	for _, ci := range e.clusters {
		if ci.nsSel.Matches(ns.labels) {
			l = append(l, ci)
		}
	}
	if remember {
		e.clusterByNS[ns.name] = l
	}
	return l
}

// fillClusterSelectedBy finds the ClusterNetworkPolicies selecting an
// identity per direction and tier, in evaluation order (e.clusters is sorted).
func (e *Engine) fillClusterSelectedBy(id *identity, register bool) {
	for _, ci := range e.clustersForNamespace(id.ns, register) {
		if ci.podSel != nil && !ci.podSel.Matches(id.labels) {
			continue
		}
		t := tierAdminIdx
		if ci.tier == TierBaseline {
			t = tierBaselineIdx
		}
		for d := range 2 {
			if len(ci.rules[d]) > 0 {
				id.cluster[d][t] = append(id.cluster[d][t], ci)
			}
		}
	}
}

// nodeLabels returns the labels of the node owning ip, and whether ip is a
// node address at all. A node address without a Node object has no labels.
func (e *Engine) nodeLabels(ip netip.Addr) (labels.Set, bool) {
	if n, ok := e.nodeByIP[ip]; ok {
		return n, true
	}
	return labels.Set{}, e.IsNodeIP(ip)
}

// matches is the semantics of one CNP peer against the other end.
// Selector peers see only pods that do not use the host network; networks
// match any address, pod IPs included; nodes match node addresses;
// domainNames match nothing here (reported as a warning).
func (p *clusterPeer) matches(e *Engine, other *endpoint) bool {
	switch p.kind {
	case cpNamespaces:
		return other.isPod() && p.nsSel.Matches(other.pod.ident.ns.labels)
	case cpPods:
		return other.isPod() && p.nsSel.Matches(other.pod.ident.ns.labels) && p.podSel.Matches(other.pod.ident.labels)
	case cpNetworks:
		if !other.ip.IsValid() {
			return false
		}
		for _, n := range p.networks {
			if n.Contains(other.ip) {
				return true
			}
		}
	case cpNodes:
		if !other.ip.IsValid() {
			return false
		}
		l, ok := e.nodeLabels(other.ip)
		return ok && p.nsSel.Matches(l)
	}
	return false
}

// match is one rule: some peer AND (no protocols, or some protocols entry).
func (r *clusterRule) match(e *Engine, other, dst *endpoint, proto corev1.Protocol, port int32) (peer, portIdx int, peerOK, portOK bool) {
	peer, portIdx = -1, -1
	for i := range r.peers {
		if r.peers[i].matches(e, other) {
			peer, peerOK = i, true
			break
		}
	}
	portOK = r.ports == nil
	for i := 0; !portOK && i < len(r.ports); i++ {
		if r.ports[i].matches(proto, port, dst) {
			portIdx, portOK = i, true
		}
	}
	return peer, portIdx, peerOK, portOK
}

// clusterTier runs one tier's policies for a side: the first rule that
// matches, over the policies in order, decides. It returns the verdict and
// whether the tier decided (Accept or Deny); a Pass or no match leaves the
// decision to the next tier.
func (e *Engine) clusterTier(pols []*clusterInfo, di int, other, dst *endpoint, proto corev1.Protocol, port int32, dd *DirectionDecision, w *warnings) (allowed, decided bool) {
	for _, ci := range pols {
		var pe *ClusterPolicyEvaluation
		if dd != nil {
			dd.ClusterPolicies = append(dd.ClusterPolicies, ClusterPolicyEvaluation{Policy: ci.ref, Tier: ci.tier, Priority: ci.priority, Rules: []ClusterRuleEvaluation{}, Audited: ci.audited})
			pe = &dd.ClusterPolicies[len(dd.ClusterPolicies)-1]
		}
		for ri := range ci.rules[di] {
			r := &ci.rules[di][ri]
			peer, portIdx, peerOK, portOK := r.match(e, other, dst, proto, port)
			if !peerOK || !portOK {
				if dd != nil {
					pe.Rules = append(pe.Rules, ClusterRuleEvaluation{Rule: r.ref, Mismatches: e.explainClusterRule(r, other, dst, proto, port, peerOK, portOK, w)})
				}
				continue
			}
			if dd != nil {
				pe.Rules = append(pe.Rules, ClusterRuleEvaluation{Rule: r.ref, Matched: true})
				m := ClusterRuleMatch{Rule: r.ref, Peer: peer, Protocol: portIdx}
				if r.ref.Action == ActionPass {
					dd.Passed = append(dd.Passed, m)
				} else {
					dd.ClusterRule = &m
				}
			}
			switch r.ref.Action {
			case ActionAccept:
				return true, true
			case ActionDeny:
				return false, true
			}
			return false, false // Pass: the rest of this tier is skipped
		}
	}
	return false, false
}

// ClusterPolicies returns the validated ClusterNetworkPolicies in
// evaluation order: Admin by priority, then Baseline by priority (equal
// priorities by name).
func (e *Engine) ClusterPolicies() []*cnpv1beta1.ClusterNetworkPolicy {
	out := make([]*cnpv1beta1.ClusterNetworkPolicy, len(e.clusters))
	for i, c := range e.clusters {
		out[i] = c.obj
	}
	return out
}

// ClusterPolicy returns the ClusterNetworkPolicy called name, or nil.
func (e *Engine) ClusterPolicy(name string) *cnpv1beta1.ClusterNetworkPolicy {
	if ci := e.clusterByName[name]; ci != nil {
		return ci.obj
	}
	return nil
}

// DomainNamePolicies names the ClusterNetworkPolicies with domainNames
// peers, which this engine (and the datapath) do not enforce: those peers
// match nothing, the policies' other rules apply. For warnings and metrics.
func (e *Engine) DomainNamePolicies() []string {
	var out []string
	for _, c := range e.clusters {
		if c.domainNames {
			out = append(out, c.ref.Name)
		}
	}
	slices.Sort(out)
	return out
}
