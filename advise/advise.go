package advise

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
	"github.com/kubectl-netpol/kubectl-netpol/whatif"
)

// Annotations and labels advice carries.
const (
	// ModeAnnotation on a NetworkPolicy (or on its namespace, for every
	// policy in it) set to ModeAudit: the agent judges the policy but does
	// not enforce it. ModeEnforce on a policy overrides an auditing
	// namespace. The engine's (package policy) meaning, named here for callers.
	ModeAnnotation = policy.ModeAnnotation
	ModeAudit      = policy.ModeAudit
	ModeEnforce    = policy.ModeEnforce
	// WindowAnnotation records the history the advice was built from.
	WindowAnnotation = "netpol.kubectl.io/advised-from"
	managedByLabel   = "app.kubernetes.io/managed-by"
	managedBy        = "kubectl-netpol-advise"
)

// Input is what Advise works from.
type Input struct {
	History *history.Set
	// Engine is today's cluster (or manifests): the labels of workloads the
	// selectors must not match, and the pods whose named ports rules use.
	Engine *policy.Engine
	// Since is the window's start (zero: all history).
	Since time.Time
	// Namespaces and Workloads select the workloads to advise for
	// (Workloads as history.EndName gives them: ns/deploy/web). Both empty:
	// every workload.
	Namespaces []string
	Workloads  []string
	// Ingress and Egress: which directions to propose.
	Ingress, Egress bool
	// Audit marks the proposals for audit mode (ModeAnnotation).
	Audit bool
}

// Connection is observed traffic a rule admits (or that needs no rule).
type Connection struct {
	// Peer is the other end (history.EndName).
	Peer        string    `json:"peer"`
	Protocol    string    `json:"protocol"`
	Port        uint32    `json:"port"`
	PortName    string    `json:"portName,omitempty"`
	Connections uint64    `json:"connections"`
	LastSeen    time.Time `json:"lastSeen"`
	// Note says what the peer is when that matters: cluster DNS, a node,
	// an address outside the cluster.
	Note string `json:"note,omitempty"`
}

// Rule is one rule of a proposal and the observed connections it admits.
type Rule struct {
	Index  int          `json:"index"`
	Admits []Connection `json:"admits"`
}

// Proposal is the policy for one workload and direction.
type Proposal struct {
	Workload  string                      `json:"workload"`
	Direction string                      `json:"direction"` // ingress or egress
	Policy    *networkingv1.NetworkPolicy `json:"policy"`
	Rules     []Rule                      `json:"rules"`
	// Exempt is observed traffic no rule is needed for (node traffic).
	Exempt []Connection `json:"exempt,omitempty"`
	Notes  []string     `json:"notes,omitempty"`
}

// Pair is observed traffic between two ends that no proposal admits: seen
// only before the window, or denied when it was seen.
type Pair = whatif.Exposure

// Report is the advice.
type Report struct {
	Coverage  whatif.Coverage `json:"coverage"`
	Proposals []Proposal      `json:"proposals"`
	// NotSeen are selected workloads with no connection in the window
	// (no policy is proposed for them: nothing says what they need).
	NotSeen []string `json:"notSeen,omitempty"`
	// BeforeWindow is traffic of the selected workloads seen only before
	// the window: not admitted.
	BeforeWindow []Pair `json:"beforeWindow,omitempty"`
	// Denied is traffic of the selected workloads that was denied when seen:
	// not admitted.
	Denied []Pair `json:"denied,omitempty"`
	// Skipped names workloads given no policy, and why.
	Skipped []string `json:"skipped,omitempty"`
	// Unknown are Input.Workloads neither the history nor the cluster has.
	Unknown []string `json:"unknown,omitempty"`
}

// end is one end of recorded traffic.
type end struct {
	name string
	ep   *flowv1.Endpoint // the newest record's
	last int64
	ips  []string
}

func (e *end) workload() bool { return e.ep.GetNamespace() != "" && !e.ep.GetHostNetwork() }

type pairKey struct {
	src, dst *end
	proto    flowv1.Protocol
	port     uint32
}

// nodeCount is one judging node's connections of a pair, by verdict, and
// before the window.
type nodeCount struct {
	allowed, denied, before uint64
}

type pairAgg struct {
	nodes            history.NodeCounts[nodeCount]
	last, lastBefore int64
	dns              bool
}

// observed is the history aggregated by end pair, protocol and port.
type observed struct {
	ends  map[string]*end
	pairs map[pairKey]*pairAgg
}

func aggregate(set *history.Set, since time.Time) *observed {
	o := &observed{ends: map[string]*end{}, pairs: map[pairKey]*pairAgg{}}
	type keyed struct {
		pk  pairKey
		agg *pairAgg
	}
	byFlow := map[*flowv1.Flow]keyed{} // records of one stream share their key's Flow
	cut := since.UnixNano()
	for i := range set.Records {
		rec := &set.Records[i]
		if rec.Connections == 0 {
			continue // an end without its start: counted where the start is
		}
		k := rec.Key
		kd, ok := byFlow[k]
		if !ok {
			src := o.end(k.GetSource(), k.GetIp().GetSource(), rec.Last)
			dst := o.end(k.GetDestination(), k.GetIp().GetDestination(), rec.Last)
			kd.pk = pairKey{src, dst, k.GetL4().GetProtocol(), k.GetL4().GetDestinationPort()}
			if kd.agg = o.pairs[kd.pk]; kd.agg == nil {
				kd.agg = &pairAgg{}
				o.pairs[kd.pk] = kd.agg
			}
			byFlow[k] = kd
		} else {
			o.touch(kd.pk.src, k.GetSource(), rec.Last)
			o.touch(kd.pk.dst, k.GetDestination(), rec.Last)
		}
		p := kd.agg
		nc := p.nodes.Of(k.GetNode())
		switch {
		case !since.IsZero() && rec.Start.Add(rec.Width).UnixNano() <= cut:
			nc.before += rec.Connections
			p.lastBefore = max(p.lastBefore, rec.Last)
			continue
		case flow.Dropped(k):
			nc.denied += rec.Connections
		default:
			nc.allowed += rec.Connections
		}
		p.last = max(p.last, rec.Last)
		if s := k.GetService(); kd.pk.port == 53 && (s.GetName() == "kube-dns" || k.GetDestination().GetNamespace() == "kube-system") {
			p.dns = true
		}
	}
	return o
}

func (o *observed) end(ep *flowv1.Endpoint, ip string, last int64) *end {
	name := history.EndName(ep, ip)
	e := o.ends[name]
	if e == nil {
		e = &end{name: name, ep: ep, last: last}
		o.ends[name] = e
	}
	o.touch(e, ep, last)
	if ep.GetNamespace() == "" || ep.GetHostNetwork() {
		if !slices.Contains(e.ips, ip) && ip != "" {
			e.ips = append(e.ips, ip)
		}
	}
	return e
}

// touch keeps the newest endpoint of an end: the labels a workload has now.
func (o *observed) touch(e *end, ep *flowv1.Endpoint, last int64) {
	if last > e.last {
		e.last, e.ep = last, ep
	}
}

// portKey is a destination port.
type portKey struct {
	proto corev1.Protocol
	port  int32
}

type side struct {
	subject *end
	dir     policy.Direction
	peers   map[*end]map[portKey]*Connection
}

// Advise proposes the policies.
func Advise(in Input) (*Report, error) {
	if in.History == nil || in.Engine == nil {
		return nil, fmt.Errorf("advise needs a history and an engine")
	}
	if !in.Ingress && !in.Egress {
		in.Ingress = true
	}
	o := aggregate(in.History, in.Since)
	r := &Report{Coverage: coverage(in)}
	r.Coverage.Pairs = len(o.pairs)
	selected := func(e *end) bool {
		if !e.workload() {
			return false
		}
		if len(in.Workloads) > 0 {
			return slices.Contains(in.Workloads, e.name)
		}
		return len(in.Namespaces) == 0 || slices.Contains(in.Namespaces, e.ep.GetNamespace())
	}
	sides := map[*end]*[2]*side{}
	sideOf := func(subject *end, dir policy.Direction) *side {
		s := sides[subject]
		if s == nil {
			s = &[2]*side{}
			sides[subject] = s
		}
		i := 0
		if dir == policy.Egress {
			i = 1
		}
		if s[i] == nil {
			s[i] = &side{subject: subject, dir: dir, peers: map[*end]map[portKey]*Connection{}}
		}
		return s[i]
	}
	seenInWindow := map[*end]bool{}
	for pk, p := range o.pairs {
		srcSel, dstSel := selected(pk.src), selected(pk.dst)
		if !srcSel && !dstSel {
			continue
		}
		proto, ok := protocol(pk.proto)
		pair := Pair{Source: pk.src.name, Destination: pk.dst.name, Protocol: protoName(pk.proto), Port: pk.port}
		if before := p.nodes.Max(func(n *nodeCount) uint64 { return n.before }); before > 0 && p.last == 0 {
			pair.Connections, pair.LastSeen = before, time.Unix(0, p.lastBefore).UTC()
			r.BeforeWindow = append(r.BeforeWindow, pair)
			continue
		}
		if p.last == 0 {
			continue
		}
		seenInWindow[pk.src], seenInWindow[pk.dst] = true, true
		allowed := p.nodes.Max(func(n *nodeCount) uint64 { return n.allowed })
		if denied := p.nodes.Max(func(n *nodeCount) uint64 { return n.denied }); denied > 0 && allowed == 0 {
			pair.Connections, pair.LastSeen = denied, time.Unix(0, p.last).UTC()
			r.Denied = append(r.Denied, pair)
			continue
		}
		if !ok {
			r.Coverage.Errors = append(r.Coverage.Errors, fmt.Sprintf("%s -> %s over %s: NetworkPolicy admits TCP, UDP and SCTP only; not advised", pk.src.name, pk.dst.name, pair.Protocol))
			continue
		}
		pt := portKey{proto, int32(pk.port)}
		c := Connection{Protocol: pair.Protocol, Port: pk.port, Connections: allowed, LastSeen: time.Unix(0, p.last).UTC()}
		if p.dns {
			c.Note = "cluster DNS"
		}
		if in.Ingress && dstSel {
			sideOf(pk.dst, policy.Ingress).add(pk.src, pt, c)
		}
		if in.Egress && srcSel {
			sideOf(pk.src, policy.Egress).add(pk.dst, pt, c)
		}
	}
	g := newGenerator(in, o)
	subjects := make([]*end, 0, len(o.ends))
	for _, e := range o.ends {
		if selected(e) {
			subjects = append(subjects, e)
		}
	}
	slices.SortFunc(subjects, func(a, b *end) int { return strings.Compare(a.name, b.name) })
	for _, s := range subjects {
		if !seenInWindow[s] {
			r.NotSeen = append(r.NotSeen, s.name+" (seen only before the window)")
			continue
		}
		for _, dir := range []policy.Direction{policy.Ingress, policy.Egress} {
			if (dir == policy.Ingress && !in.Ingress) || (dir == policy.Egress && !in.Egress) {
				continue
			}
			sd := sideOf(s, dir)
			p, skip := g.propose(sd)
			if skip != "" {
				r.Skipped = append(r.Skipped, skip)
				continue
			}
			r.Proposals = append(r.Proposals, *p)
		}
	}
	r.NotSeen = append(r.NotSeen, g.unseenInCluster(subjects)...)
	for _, w := range in.Workloads {
		if _, ok := o.ends[w]; !ok && !g.inCluster(w) {
			r.Unknown = append(r.Unknown, w)
		}
	}
	for _, ps := range [][]Pair{r.BeforeWindow, r.Denied} {
		slices.SortFunc(ps, func(a, b Pair) int {
			return cmp.Or(strings.Compare(a.Source, b.Source), strings.Compare(a.Destination, b.Destination), cmp.Compare(a.Port, b.Port))
		})
	}
	return r, nil
}

func (s *side) add(peer *end, pt portKey, c Connection) {
	m := s.peers[peer]
	if m == nil {
		m = map[portKey]*Connection{}
		s.peers[peer] = m
	}
	c.Peer = peer.name
	m[pt] = &c
}

// coverage is whatif's account of the history, with the records in the
// window and the nodes that judged them.
func coverage(in Input) whatif.Coverage {
	c := whatif.HistoryCoverage(in.History, in.Since)
	for i := range in.History.Records {
		rec := &in.History.Records[i]
		if n := rec.Key.GetNode(); n != "" && !slices.Contains(c.Nodes, n) {
			c.Nodes = append(c.Nodes, n)
		}
		if in.Since.IsZero() || rec.Start.Add(rec.Width).After(in.Since) {
			c.Records++
		}
	}
	slices.Sort(c.Nodes)
	return c
}

func protocol(p flowv1.Protocol) (corev1.Protocol, bool) {
	switch p {
	case flowv1.Protocol_PROTOCOL_TCP:
		return corev1.ProtocolTCP, true
	case flowv1.Protocol_PROTOCOL_UDP:
		return corev1.ProtocolUDP, true
	case flowv1.Protocol_PROTOCOL_SCTP:
		return corev1.ProtocolSCTP, true
	}
	return "", false
}

func protoName(p flowv1.Protocol) string { return strings.TrimPrefix(p.String(), "PROTOCOL_") }

// generator builds proposals: selectors unique among the namespace's
// workloads, peers grouped by the ports they used.
type generator struct {
	in Input
	o  *observed
	// labels of every workload known per namespace (history and cluster).
	known map[string]map[string]map[string]string
	names map[string]int // policy names used, per namespace/name
	// window is the span the advice was built from, for the annotation.
	window string
}

func newGenerator(in Input, o *observed) *generator {
	g := &generator{in: in, o: o, known: map[string]map[string]map[string]string{}, names: map[string]int{}, window: window(in.Since, in.History)}
	add := func(ns, name string, l map[string]string) {
		m := g.known[ns]
		if m == nil {
			m = map[string]map[string]string{}
			g.known[ns] = m
		}
		if _, ok := m[name]; !ok {
			m[name] = history.StableLabels(l)
		}
	}
	for _, e := range o.ends {
		if e.workload() {
			add(e.ep.GetNamespace(), e.name, e.ep.GetLabels())
		}
	}
	for _, p := range in.Engine.Pods() {
		if !p.Spec.HostNetwork {
			add(p.Namespace, podWorkload(p), p.Labels)
		}
	}
	return g
}

// podWorkload names a cluster pod as history names its end.
func podWorkload(p *corev1.Pod) string {
	kind, name := history.Workload(p)
	ep := &flowv1.Endpoint{Namespace: p.Namespace, Pod: p.Name}
	if kind != "" {
		ep.Workload = &flowv1.Workload{Kind: kind, Name: name}
	}
	return history.EndName(ep, "")
}

// unseenInCluster are the cluster's selected workloads without any record.
func (g *generator) unseenInCluster(seen []*end) []string {
	var out []string
	done := map[string]bool{}
	for _, e := range seen {
		done[e.name] = true
	}
	for _, p := range g.in.Engine.Pods() {
		if p.Spec.HostNetwork {
			continue
		}
		name := podWorkload(p)
		if done[name] {
			continue
		}
		if len(g.in.Workloads) > 0 && !slices.Contains(g.in.Workloads, name) ||
			len(g.in.Workloads) == 0 && len(g.in.Namespaces) > 0 && !slices.Contains(g.in.Namespaces, p.Namespace) {
			continue
		}
		done[name] = true
		out = append(out, name+" (no connection recorded)")
	}
	slices.Sort(out)
	return out
}

func (g *generator) inCluster(name string) bool {
	for _, p := range g.in.Engine.Pods() {
		if podWorkload(p) == name {
			return true
		}
	}
	return false
}

// preferredKeys come first in selectors: the recommended labels, then the
// common conventions; other labels follow in name order.
var preferredKeys = []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
	"app.kubernetes.io/part-of", "app", "k8s-app", "name", "component", "tier", "role"}

// selector picks the fewest of own's stable labels, preferred keys first,
// that no other workload of the namespace carries; others lists those that
// carry them anyway (identical labels).
func (g *generator) selector(ns, self string, own map[string]string) (sel map[string]string, others []string) {
	own = history.StableLabels(own)
	keys := make([]string, 0, len(own))
	for k := range own {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		ia, ib := slices.Index(preferredKeys, a), slices.Index(preferredKeys, b)
		if ia < 0 {
			ia = len(preferredKeys)
		}
		if ib < 0 {
			ib = len(preferredKeys)
		}
		return cmp.Or(cmp.Compare(ia, ib), strings.Compare(a, b))
	})
	matching := func(sel map[string]string) []string {
		var m []string
		for name, l := range g.known[ns] {
			if name != self && matches(sel, l) {
				m = append(m, name)
			}
		}
		return m
	}
	sel = map[string]string{}
	for _, k := range keys {
		if len(sel) > 0 && len(matching(sel)) == 0 {
			break
		}
		sel[k] = own[k]
	}
	// Drop what the later labels made unnecessary, least preferred first;
	// the most preferred label stays: it names the workload.
	for i, k := range slices.Backward(keys) {
		if _, ok := sel[k]; !ok || i == 0 {
			continue
		}
		delete(sel, k)
		if len(matching(sel)) > 0 {
			sel[k] = own[k]
		}
	}
	others = matching(sel)
	slices.Sort(others)
	return sel, others
}

func matches(sel, l map[string]string) bool {
	for k, v := range sel {
		if w, ok := l[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// propose builds the policy of one side, or says why there is none.
func (g *generator) propose(s *side) (*Proposal, string) {
	subject, dir := s.subject, strings.ToLower(string(s.dir))
	ns := subject.ep.GetNamespace()
	labels := history.StableLabels(subject.ep.GetLabels())
	if len(labels) == 0 {
		return nil, fmt.Sprintf("%s (%s): it has no labels (only rollout labels such as pod-template-hash), so no policy can select it alone; label its pods (app.kubernetes.io/name) and advise again", subject.name, dir)
	}
	sel, shared := g.selector(ns, subject.name, labels)
	if len(shared) > 0 {
		return nil, fmt.Sprintf("%s (%s): %s carry the same labels, so a policy selecting it would isolate them too; give it a distinguishing label (app.kubernetes.io/name or instance) and advise again", subject.name, dir, strings.Join(shared, ", "))
	}
	p := &Proposal{Workload: subject.name, Direction: dir}
	np := &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: g.policyName(ns, subject, dir), Labels: map[string]string{managedByLabel: managedBy}},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: sel},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyType(s.dir)}},
	}
	np.Annotations = map[string]string{WindowAnnotation: g.window}
	if g.in.Audit {
		np.Annotations[ModeAnnotation] = ModeAudit
	}
	if !hasPreferred(sel) {
		p.Notes = append(p.Notes, fmt.Sprintf("%s has no app.kubernetes.io/* label: the selector uses %s", subject.name, labelString(sel)))
	}
	type peerPorts struct {
		peer  *end
		ports []networkingv1.NetworkPolicyPort
		conns []Connection
		sig   string
		total uint64
		dns   bool
	}
	var pps []*peerPorts
	for peer, ports := range s.peers {
		pp := &peerPorts{peer: peer}
		keys := make([]portKey, 0, len(ports))
		for k := range ports {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b portKey) int {
			return cmp.Or(strings.Compare(string(a.proto), string(b.proto)), cmp.Compare(a.port, b.port))
		})
		dstPod := g.currentPod(subject)
		if s.dir == policy.Egress {
			dstPod = g.currentPod(peer)
		}
		exempt := g.exempt(peer)
		var sig []string
		for _, k := range keys {
			c := *ports[k]
			if c.Note == "" {
				c.Note = peerNote(peer)
			}
			if exempt {
				c.Note = strings.TrimSpace(c.Note + " (node traffic is exempt from NetworkPolicy: no rule needed)")
				p.Exempt = append(p.Exempt, c)
				continue
			}
			port := intstr.FromInt32(k.port)
			if name := portName(dstPod, k.port, k.proto); name != "" {
				port, c.PortName = intstr.FromString(name), name
			}
			proto := k.proto
			pp.ports = append(pp.ports, networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &port})
			pp.conns = append(pp.conns, c)
			pp.total += c.Connections
			pp.dns = pp.dns || c.Note == "cluster DNS"
			sig = append(sig, string(k.proto)+"/"+port.String())
		}
		if len(pp.ports) == 0 {
			continue
		}
		pp.sig = strings.Join(sig, ",")
		pps = append(pps, pp)
	}
	// Peers that used the same ports share a rule: a rule admits each of its
	// peers on each of its ports, and each of those was observed.
	type group struct {
		ports []networkingv1.NetworkPolicyPort
		peers []networkingv1.NetworkPolicyPeer
		conns []Connection
		total uint64
		dns   bool
		first string
	}
	bySig := map[string]*group{}
	var groups []*group
	slices.SortFunc(pps, func(a, b *peerPorts) int { return strings.Compare(a.peer.name, b.peer.name) })
	for _, pp := range pps {
		gr := bySig[pp.sig]
		if gr == nil {
			gr = &group{ports: pp.ports, first: pp.peer.name}
			bySig[pp.sig] = gr
			groups = append(groups, gr)
		}
		for _, peer := range g.peers(pp.peer, ns, p) {
			if !slices.ContainsFunc(gr.peers, func(q networkingv1.NetworkPolicyPeer) bool { return samePeer(q, peer) }) {
				gr.peers = append(gr.peers, peer)
			}
		}
		gr.conns = append(gr.conns, pp.conns...)
		gr.total += pp.total
		gr.dns = gr.dns || pp.dns
	}
	slices.SortFunc(groups, func(a, b *group) int {
		if a.dns != b.dns {
			if a.dns {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(b.total, a.total), strings.Compare(a.first, b.first))
	})
	for i, gr := range groups {
		if s.dir == policy.Ingress {
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: gr.peers, Ports: gr.ports})
		} else {
			np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: gr.peers, Ports: gr.ports})
		}
		p.Rules = append(p.Rules, Rule{Index: i, Admits: gr.conns})
	}
	if len(groups) == 0 {
		what := "into"
		if s.dir == policy.Egress {
			what = "from"
		}
		p.Notes = append(p.Notes, fmt.Sprintf("no connection %s %s was observed in the window: this policy denies all its %s", what, subject.name, dir))
	}
	p.Policy = np
	return p, ""
}

// peers are the policy peers standing for one observed end.
func (g *generator) peers(e *end, subjectNS string, p *Proposal) []networkingv1.NetworkPolicyPeer {
	if !e.workload() {
		out := make([]networkingv1.NetworkPolicyPeer, 0, len(e.ips))
		ips := slices.Clone(e.ips)
		slices.Sort(ips)
		for _, ip := range ips {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				continue
			}
			out = append(out, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: netip.PrefixFrom(a, a.BitLen()).String()}})
		}
		return out
	}
	ns := e.ep.GetNamespace()
	peer := networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{}}
	if ns != subjectNS {
		peer.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}
	}
	labels := history.StableLabels(e.ep.GetLabels())
	if len(labels) == 0 {
		p.Notes = append(p.Notes, fmt.Sprintf("peer %s has no labels: every pod of namespace %s is admitted in its place", e.name, ns))
		return []networkingv1.NetworkPolicyPeer{peer}
	}
	sel, shared := g.selector(ns, e.name, labels)
	if len(shared) > 0 {
		p.Notes = append(p.Notes, fmt.Sprintf("peer %s shares its labels with %s: the rule admits them too", e.name, strings.Join(shared, ", ")))
	}
	peer.PodSelector.MatchLabels = sel
	return []networkingv1.NetworkPolicyPeer{peer}
}

func samePeer(a, b networkingv1.NetworkPolicyPeer) bool {
	return peerString(a) == peerString(b)
}

func peerString(p networkingv1.NetworkPolicyPeer) string {
	var b strings.Builder
	if p.NamespaceSelector != nil {
		b.WriteString("ns:" + labelString(p.NamespaceSelector.MatchLabels))
	}
	if p.PodSelector != nil {
		b.WriteString(" pod:" + labelString(p.PodSelector.MatchLabels))
	}
	if p.IPBlock != nil {
		b.WriteString(" ip:" + p.IPBlock.CIDR)
	}
	return b.String()
}

func labelString(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		keys[i] = k + "=" + l[k]
	}
	return strings.Join(keys, ",")
}

func hasPreferred(sel map[string]string) bool {
	for k := range sel {
		if strings.HasPrefix(k, "app.kubernetes.io/") {
			return true
		}
	}
	return false
}

func peerNote(e *end) string {
	switch {
	case e.workload():
		return ""
	case strings.HasPrefix(e.name, "node/"):
		return "node " + strings.TrimPrefix(e.name, "node/")
	case e.ep.GetHostNetwork():
		return "hostNetwork pod " + e.name + " (its node's address)"
	}
	return "address outside the cluster's pods"
}

// exempt: traffic with a node address needs no rule (the engine exempts
// the pod's side of node traffic).
func (g *generator) exempt(peer *end) bool {
	if peer.workload() || len(peer.ips) == 0 {
		return false
	}
	for _, ip := range peer.ips {
		a, err := netip.ParseAddr(ip)
		if err != nil || !g.in.Engine.IsNodeIP(a) {
			return false
		}
	}
	return true
}

// currentPod is a pod of the end's workload in the engine's snapshot (the
// named ports a rule may use), or nil.
func (g *generator) currentPod(e *end) *corev1.Pod {
	if !e.workload() {
		return nil
	}
	return whatif.CurrentPod(g.in.Engine, e.ep)
}

// portName is the name pod declares for port/proto, when exactly one.
func portName(pod *corev1.Pod, port int32, proto corev1.Protocol) string {
	if pod == nil {
		return ""
	}
	var name string
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			pp := cmp.Or(cp.Protocol, corev1.ProtocolTCP)
			if cp.Name == "" || pp != proto {
				continue
			}
			if cp.ContainerPort == port {
				if name != "" && name != cp.Name {
					return "" // two names for one port: the number is clearer
				}
				name = cp.Name
			}
		}
	}
	if name == "" {
		return ""
	}
	// The name must mean this number only, else the rule admits more.
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == name && cmp.Or(cp.Protocol, corev1.ProtocolTCP) == proto && cp.ContainerPort != port {
				return ""
			}
		}
	}
	return name
}

func (g *generator) policyName(ns string, subject *end, dir string) string {
	base := subject.name[strings.LastIndex(subject.name, "/")+1:]
	name := "advised-" + base + "-" + dir
	if len(name) > 253 {
		name = name[:253]
	}
	g.names[ns+"/"+name]++
	if n := g.names[ns+"/"+name]; n > 1 {
		suffix := fmt.Sprintf("-%d", n)
		name = name[:min(len(name), 253-len(suffix))] + suffix
	}
	return name
}

// window is the span the advice was built from, for the annotation.
func window(since time.Time, set *history.Set) string {
	to := set.Newest()
	if since.IsZero() {
		return "all history to " + to.UTC().Format(time.RFC3339)
	}
	return since.UTC().Format(time.RFC3339) + " to " + to.UTC().Format(time.RFC3339)
}
