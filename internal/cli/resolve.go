package cli

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kubectl-netpol/kubectl-netpol/internal/snapshot"
)

// workloadKinds maps the kubectl short and long names a user may type to a kind.
var workloadKinds = map[string]string{
	"deploy": "Deployment", "deployment": "Deployment", "deployments": "Deployment",
	"sts": "StatefulSet", "statefulset": "StatefulSet", "statefulsets": "StatefulSet",
	"ds": "DaemonSet", "daemonset": "DaemonSet", "daemonsets": "DaemonSet",
	"job": "Job", "jobs": "Job",
	"rs": "ReplicaSet", "replicaset": "ReplicaSet", "replicasets": "ReplicaSet",
}

// shortKind is how output names a workload kind (deploy/web).
var shortKind = map[string]string{
	"Deployment": "deploy", "StatefulSet": "sts", "DaemonSet": "ds", "Job": "job", "ReplicaSet": "rs",
}

// peerRef is a SRC or DST as typed: [ns/]pod, [ns/]pod/NAME, [ns/]KIND/NAME, or an IP.
type peerRef struct {
	Raw       string
	Kind      string // "Pod", a workload kind, or "IP"
	Namespace string
	Name      string
	IP        netip.Addr
}

func (r peerRef) isIP() bool { return r.Kind == "IP" }

// parsePeer parses a SRC/DST argument; defaultNamespace applies when none is given.
func parsePeer(arg, defaultNamespace string) (peerRef, error) {
	r := peerRef{Raw: arg, Kind: "Pod", Namespace: defaultNamespace}
	if arg == "" {
		return r, fmt.Errorf("empty endpoint: give [NAMESPACE/]POD, KIND/NAME or an IP")
	}
	if ip, err := netip.ParseAddr(arg); err == nil {
		r.Kind, r.IP, r.Namespace = "IP", ip.Unmap(), ""
		return r, nil
	}
	parts := strings.Split(arg, "/")
	for _, p := range parts {
		if p == "" {
			return r, fmt.Errorf("%q: empty name part; give [NAMESPACE/]POD, [NAMESPACE/]KIND/NAME or an IP", arg)
		}
	}
	kindOf := func(s string) (string, bool) {
		s = strings.ToLower(s)
		if s == "pod" || s == "pods" || s == "po" {
			return "Pod", true
		}
		k, ok := workloadKinds[s]
		return k, ok
	}
	switch len(parts) {
	case 1:
		r.Name = parts[0]
	case 2:
		if n := strings.ToLower(parts[0]); n == "node" || n == "nodes" || n == "no" {
			// node/NAME, as watch shows node traffic: the node's address.
			r.Kind, r.Namespace, r.Name = "Node", "", parts[1]
			return r, nil
		}
		if k, ok := kindOf(parts[0]); ok {
			r.Kind, r.Name = k, parts[1]
		} else {
			r.Namespace, r.Name = parts[0], parts[1]
		}
	case 3:
		k, ok := kindOf(parts[1])
		if !ok {
			return r, fmt.Errorf("%q: %q is not a kind; use pod, deploy, sts, ds, job or rs", arg, parts[1])
		}
		r.Namespace, r.Kind, r.Name = parts[0], k, parts[2]
	default:
		return r, fmt.Errorf("%q: too many parts; give [NAMESPACE/]POD, [NAMESPACE/]KIND/NAME or an IP", arg)
	}
	return r, nil
}

// endpoint is a resolved SRC or DST.
type endpoint struct {
	Ref peerRef
	Pod *corev1.Pod // nil for an IP outside the pods
	IP  netip.Addr
	// Note says how a workload or IP became this pod, e.g.
	// "deploy/web: picked running pod web-5d9c (1 of 3)".
	Note string
	// FromTemplate is set when no pod existed and the workload's template stands in.
	FromTemplate bool
}

// String names the endpoint: ns/pod or the IP.
func (e endpoint) String() string {
	if e.Pod != nil {
		return e.Pod.Namespace + "/" + e.Pod.Name
	}
	return e.IP.String()
}

// resolver finds endpoints in a loaded Set, with near-miss suggestions when
// a name is wrong.
type resolver struct {
	set      *snapshot.Set
	pods     map[string]*corev1.Pod     // ns/name
	byNS     map[string][]string        // ns -> pod names
	byIP     map[netip.Addr]*corev1.Pod // non-hostNetwork pods
	nsNames  []string
	nsExists map[string]bool
}

func newResolver(set *snapshot.Set) *resolver {
	r := &resolver{set: set, pods: map[string]*corev1.Pod{}, byNS: map[string][]string{},
		byIP: map[netip.Addr]*corev1.Pod{}, nsExists: map[string]bool{}}
	for _, p := range set.Pods {
		r.pods[p.Namespace+"/"+p.Name] = p
		r.byNS[p.Namespace] = append(r.byNS[p.Namespace], p.Name)
		if p.Spec.HostNetwork {
			continue
		}
		for _, s := range podIPStrings(p) {
			if ip, err := netip.ParseAddr(s); err == nil {
				r.byIP[ip.Unmap()] = p
			}
		}
	}
	r.nsNames = set.NamespaceNames()
	for _, n := range r.nsNames {
		r.nsExists[n] = true
	}
	return r
}

func podIPStrings(p *corev1.Pod) []string {
	var out []string
	if p.Status.PodIP != "" {
		out = append(out, p.Status.PodIP)
	}
	for _, ip := range p.Status.PodIPs {
		if ip.IP != p.Status.PodIP {
			out = append(out, ip.IP)
		}
	}
	return out
}

func (r *resolver) resolve(ref peerRef) (endpoint, error) {
	ep := endpoint{Ref: ref}
	if ref.isIP() {
		ep.IP = ref.IP
		if p := r.byIP[ref.IP]; p != nil {
			ep.Pod = p
			ep.Note = fmt.Sprintf("%s is the IP of pod %s/%s", ref.IP, p.Namespace, p.Name)
		}
		return ep, nil
	}
	if ref.Kind == "Node" {
		return r.resolveNode(ref)
	}
	if !r.nsExists[ref.Namespace] {
		return ep, fmt.Errorf("%s: namespace %q not found%s", ref.Raw, ref.Namespace, suggestion(ref.Namespace, r.nsNames, "namespaces"))
	}
	if ref.Kind == "Pod" {
		p := r.pods[ref.Namespace+"/"+ref.Name]
		if p == nil {
			return ep, fmt.Errorf("%s: pod %q not found in namespace %q%s", ref.Raw, ref.Name, ref.Namespace,
				suggestion(ref.Name, r.byNS[ref.Namespace], "pods there"))
		}
		ep.Pod = p
		ep.IP = podIP(p)
		return ep, nil
	}
	return r.resolveWorkload(ref)
}

// resolveNode is node/NAME: the node's InternalIP (else its ExternalIP), an
// IP from there on, so the engine treats it as node traffic.
func (r *resolver) resolveNode(ref peerRef) (endpoint, error) {
	var names []string
	for _, n := range r.set.Nodes {
		names = append(names, n.Name)
		if n.Name != ref.Name {
			continue
		}
		for _, typ := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP} {
			for _, a := range n.Status.Addresses {
				if ip, err := netip.ParseAddr(a.Address); a.Type == typ && err == nil {
					ref.Kind, ref.IP = "IP", ip.Unmap()
					return endpoint{Ref: ref, IP: ref.IP, Note: fmt.Sprintf("node/%s is %s (its %s)", n.Name, ref.IP, typ)}, nil
				}
			}
		}
		return endpoint{Ref: ref}, fmt.Errorf("%s: node %q lists no InternalIP or ExternalIP; give one of its addresses instead", ref.Raw, ref.Name)
	}
	if len(names) == 0 {
		return endpoint{Ref: ref}, fmt.Errorf("%s: no nodes loaded (with -f, include the Node objects; live, you may not list nodes): give the node's address instead", ref.Raw)
	}
	return endpoint{Ref: ref}, fmt.Errorf("%s: node %q not found%s", ref.Raw, ref.Name, suggestion(ref.Name, names, "nodes"))
}

func podIP(p *corev1.Pod) netip.Addr {
	ip, _ := netip.ParseAddr(p.Status.PodIP)
	return ip.Unmap()
}

// resolveWorkload picks one pod of a workload: a running, ready-to-serve pod
// if there is one (first by name, so answers are stable), else any pod, else
// the pod template.
func (r *resolver) resolveWorkload(ref peerRef) (endpoint, error) {
	ep := endpoint{Ref: ref}
	short := shortKind[ref.Kind]
	var w *snapshot.Workload
	var names []string
	for i := range r.set.Workloads {
		x := &r.set.Workloads[i]
		if x.Kind != ref.Kind || x.Namespace != ref.Namespace {
			continue
		}
		names = append(names, x.Name)
		if x.Name == ref.Name {
			w = x
		}
	}
	if w == nil {
		return ep, fmt.Errorf("%s: %s %q not found in namespace %q%s", ref.Raw, strings.ToLower(ref.Kind), ref.Name, ref.Namespace,
			suggestion(ref.Name, names, strings.ToLower(ref.Kind)+"s there"))
	}
	sel, err := metav1.LabelSelectorAsSelector(w.Selector)
	if err != nil || w.Selector == nil {
		return ep, fmt.Errorf("%s: %s %s/%s has no usable selector", ref.Raw, strings.ToLower(ref.Kind), w.Namespace, w.Name)
	}
	var running, other []*corev1.Pod
	for _, name := range r.byNS[ref.Namespace] {
		p := r.pods[ref.Namespace+"/"+name]
		if !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			running = append(running, p)
		} else {
			other = append(other, p)
		}
	}
	byName := func(ps []*corev1.Pod) {
		sort.Slice(ps, func(i, j int) bool { return ps[i].Name < ps[j].Name })
	}
	byName(running)
	byName(other)
	label := short + "/" + w.Name
	switch {
	case len(running) > 0:
		ep.Pod = running[0]
		ep.Note = fmt.Sprintf("%s: picked running pod %s (1 of %d running)", label, ep.Pod.Name, len(running))
	case len(other) > 0:
		ep.Pod = other[0]
		phase := string(ep.Pod.Status.Phase)
		if phase == "" {
			phase = "no status"
		}
		ep.Note = fmt.Sprintf("%s: no running pod; picked pod %s (%s, 1 of %d)", label, ep.Pod.Name, phase, len(other))
	case w.Template != nil:
		p := &corev1.Pod{ObjectMeta: *w.Template.ObjectMeta.DeepCopy(), Spec: *w.Template.Spec.DeepCopy()}
		p.Namespace = w.Namespace
		p.Name = w.Name + "-<template>"
		ep.Pod = p
		ep.FromTemplate = true
		ep.Note = fmt.Sprintf("%s: no pods found; using its pod template (labels %s)", label, labels.Set(p.Labels))
	default:
		return ep, fmt.Errorf("%s: no pods match %s %s/%s (selector %s)", ref.Raw, strings.ToLower(ref.Kind), w.Namespace, w.Name, sel)
	}
	ep.IP = podIP(ep.Pod)
	return ep, nil
}

// scopeFor is the part of a live cluster that questions about refs need.
func scopeFor(refs []peerRef) snapshot.Scope {
	var s snapshot.Scope
	seen := map[string]bool{}
	kinds := map[string]map[string]bool{}
	for _, r := range refs {
		if r.isIP() {
			s.IPs = append(s.IPs, r.IP)
			continue
		}
		if r.Kind == "Node" {
			continue // nodes are always read in full
		}
		if !seen[r.Namespace] {
			seen[r.Namespace] = true
			s.Namespaces = append(s.Namespaces, r.Namespace)
		}
		if r.Kind != "Pod" {
			if kinds[r.Namespace] == nil {
				kinds[r.Namespace] = map[string]bool{}
			}
			kinds[r.Namespace][r.Kind] = true
		}
	}
	if len(kinds) > 0 {
		s.WorkloadKinds = map[string][]string{}
		for ns, ks := range kinds {
			for k := range ks {
				s.WorkloadKinds[ns] = append(s.WorkloadKinds[ns], k)
			}
			sort.Strings(s.WorkloadKinds[ns])
		}
	}
	// Many IPs cost one lookup each; reading everything is cheaper.
	if len(s.IPs) > 16 {
		s.AllNamespaces = true
	}
	return s
}
