package history

import (
	"reflect"
	"slices"
	"strconv"
	"strings"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// VolatileLabels are pod labels that change with every rollout of the same
// workload (a ReplicaSet's or a revision's hash): a key leaves them out so a
// workload's history survives its rollouts. No policy should select on them.
var VolatileLabels = []string{"pod-template-hash", "controller-revision-hash", "pod-template-generation", "batch.kubernetes.io/controller-uid", "controller-uid", "batch.kubernetes.io/job-name", "job-name"}

func volatile(k string) bool { return slices.Contains(VolatileLabels, k) }

// StableLabels returns l without the volatile labels (l itself when it has none).
func StableLabels(l map[string]string) map[string]string {
	n := 0
	for k := range l {
		if volatile(k) {
			n++
		}
	}
	if n == 0 {
		return l
	}
	out := make(map[string]string, len(l)-n)
	for k, v := range l {
		if !volatile(k) {
			out[k] = v
		}
	}
	return out
}

// labelCache remembers the canonical form of pods' label maps. The agent
// hands every flow of a pod the informer's own map, so the map's identity
// (checked with its length) says the labels did not change.
type labelCache struct {
	m map[podName]labelEntry
	// off: canonical forms are computed, never kept (one-off callers such
	// as EndKey: a cache's map would cost more than it saves).
	off bool
}

type podName struct{ namespace, name string }

type labelEntry struct {
	ptr   uintptr
	n     int
	canon string
}

const labelCacheMax = 1 << 16

func (c *labelCache) canon(ns, pod string, l map[string]string) string {
	if len(l) == 0 {
		return ""
	}
	ptr := reflect.ValueOf(l).Pointer()
	k := podName{ns, pod}
	if e, ok := c.m[k]; ok && e.ptr == ptr && e.n == len(l) && pod != "" {
		return e.canon
	}
	s := canonLabels(l)
	if pod != "" && !c.off {
		if c.m == nil || len(c.m) >= labelCacheMax {
			c.m = make(map[podName]labelEntry, 256)
		}
		c.m[k] = labelEntry{ptr: ptr, n: len(l), canon: s}
	}
	return s
}

// canonLabels is "k=v,k=v" of the stable labels, sorted by key.
func canonLabels(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		if !volatile(k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(l[k])
	}
	return b.String()
}

// appendKey appends the canonical key of f to b: equal keys, equal bytes.
func (c *labelCache) appendKey(b []byte, f *flowv1.Flow) []byte {
	b = append(b, f.GetNode()...)
	b = append(b, 0, byte(f.GetVerdict()), byte(f.GetReason()), byte(f.GetDirection()), byte(f.GetL4().GetProtocol()))
	b = strconv.AppendUint(b, uint64(f.GetL4().GetDestinationPort()), 10)
	if s := f.GetService(); s != nil {
		b = append(b, 0, 's')
		b = append(b, s.GetNamespace()...)
		b = append(b, '/')
		b = append(b, s.GetName()...)
		b = append(b, ':')
		b = strconv.AppendUint(b, uint64(s.GetPort()), 10)
	}
	b = c.appendEnd(b, f.GetSource(), f.GetIp().GetSource())
	b = c.appendEnd(b, f.GetDestination(), f.GetIp().GetDestination())
	for _, refs := range [][]*flowv1.PolicyRef{f.GetAllowedBy(), f.GetDeniedBy(), f.GetIsolatedBy()} {
		b = appendRefs(append(b, 0, 'r'), refs...)
	}
	if a := f.GetAudit(); a != nil {
		// AUDIT: what the audited policies would decide, and by what.
		b = append(b, 0, 'a', byte(a.GetWouldBe()), byte(a.GetReason()))
		if a.GetRule() != nil {
			b = appendRefs(b, a.GetRule())
		}
		b = appendRefs(append(b, 0, 'i'), a.GetIsolatedBy()...)
	}
	return b
}

func appendRefs(b []byte, refs ...*flowv1.PolicyRef) []byte {
	for _, r := range refs {
		b = append(b, r.GetKind()...)
		b = append(b, '/')
		b = append(b, r.GetNamespace()...)
		b = append(b, '/')
		b = append(b, r.GetName()...)
		b = append(b, '/', byte(r.GetDirection()))
		if r.RuleIndex != nil {
			b = strconv.AppendUint(b, uint64(r.GetRuleIndex()), 10)
		}
		b = append(b, ';')
	}
	return b
}

func (c *labelCache) appendEnd(b []byte, ep *flowv1.Endpoint, ip string) []byte {
	b = append(b, 0, 'e')
	if ep.GetNamespace() == "" {
		// Not a pod: the address (and the node that owns it) is the identity.
		b = append(b, ip...)
		b = append(b, '@')
		return append(b, ep.GetNodeName()...)
	}
	b = append(b, ep.GetNamespace()...)
	b = append(b, '/')
	if w := ep.GetWorkload(); w != nil {
		b = append(b, w.GetKind()...)
		b = append(b, '/')
		b = append(b, w.GetName()...)
	} else {
		b = append(b, "Pod/"...)
		b = append(b, ep.GetPod()...)
	}
	if ep.GetHostNetwork() {
		b = append(b, "@host"...)
	}
	b = append(b, '{')
	b = append(b, c.canon(ep.GetNamespace(), ep.GetPod(), ep.GetLabels())...)
	return append(b, '}')
}

// template is the key's Flow: what the record stands for, without what
// varies from one connection to the next.
func template(f *flowv1.Flow) *flowv1.Flow {
	t := &flowv1.Flow{
		Node: f.GetNode(), Type: f.GetType(), Verdict: f.GetVerdict(), Reason: f.GetReason(), Direction: f.GetDirection(),
		Ip:          &flowv1.IP{Source: f.GetIp().GetSource(), Destination: f.GetIp().GetDestination(), Version: f.GetIp().GetVersion()},
		L4:          &flowv1.Layer4{Protocol: f.GetL4().GetProtocol(), DestinationPort: f.GetL4().GetDestinationPort()},
		Source:      endTemplate(f.GetSource()),
		Destination: endTemplate(f.GetDestination()),
		AllowedBy:   f.GetAllowedBy(), DeniedBy: f.GetDeniedBy(), IsolatedBy: f.GetIsolatedBy(), Audit: f.GetAudit(),
	}
	if t.Type == flowv1.EventType_EVENT_TYPE_END {
		t.Type = flowv1.EventType_EVENT_TYPE_NEW
	}
	if s := f.GetService(); s != nil {
		t.Service = &flowv1.Service{Namespace: s.GetNamespace(), Name: s.GetName(), Ip: s.GetIp(), Port: s.GetPort()}
	}
	return t
}

func endTemplate(ep *flowv1.Endpoint) *flowv1.Endpoint {
	if ep == nil {
		return &flowv1.Endpoint{}
	}
	t := &flowv1.Endpoint{Namespace: ep.GetNamespace(), Identity: ep.GetIdentity(), HostNetwork: ep.GetHostNetwork(), NodeName: ep.GetNodeName()}
	if ep.GetNamespace() == "" {
		return t
	}
	t.NodeName = "" // a workload's pods move between nodes
	if len(ep.GetLabels()) > 0 {
		t.Labels = StableLabels(ep.GetLabels())
		if len(t.Labels) == len(ep.GetLabels()) {
			t.Labels = maps(ep.GetLabels())
		}
	}
	if w := ep.GetWorkload(); w != nil {
		t.Workload = &flowv1.Workload{Kind: w.GetKind(), Name: w.GetName()}
	} else {
		t.Pod = ep.GetPod() // no controller: the pod is the workload
	}
	return t
}

// maps copies l (the informer's map must not be kept: it is replaced, not
// changed, but a copy is what the file holds anyway).
func maps(l map[string]string) map[string]string {
	out := make(map[string]string, len(l))
	for k, v := range l {
		out[k] = v
	}
	return out
}

// EndKey is the canonical identity of one end of a key (workload and stable
// labels, or address): equal ends, equal strings.
func EndKey(ep *flowv1.Endpoint, ip string) string {
	c := labelCache{off: true}
	return string(c.appendEnd(nil, ep, ip))
}

// EndName names one end of a key for people: namespace/kind/name for a
// workload (deploy/web), namespace/name for a pod without a controller,
// node/NAME for a node, else the address.
func EndName(ep *flowv1.Endpoint, ip string) string {
	switch {
	case ep.GetNamespace() == "" && ep.GetNodeName() != "":
		return "node/" + ep.GetNodeName()
	case ep.GetNamespace() == "":
		return ip
	case ep.GetWorkload() != nil:
		return ep.GetNamespace() + "/" + shortKind(ep.GetWorkload().GetKind()) + "/" + ep.GetWorkload().GetName()
	}
	return ep.GetNamespace() + "/" + ep.GetPod()
}

func shortKind(kind string) string {
	switch kind {
	case "Deployment":
		return "deploy"
	case "StatefulSet":
		return "sts"
	case "DaemonSet":
		return "ds"
	case "Job":
		return "job"
	case "ReplicaSet":
		return "rs"
	case "CronJob":
		return "cronjob"
	}
	return strings.ToLower(kind)
}
