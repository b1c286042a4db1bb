package policy

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Pod is the engine's record of a pod: everything policy reads of one, and
// nothing else. A caller that keeps many pods (the node agent, at 100k
// pods) keeps these instead of *corev1.Pod, whose struct alone is over
// 1 KB whatever it holds (docs/perf.md, "Where the memory goes at 100k").
// Make one with NewPod; a Pod is never modified once made.
type Pod struct {
	Namespace, Name string
	UID             types.UID
	ResourceVersion string
	Labels          map[string]string
	NodeName        string
	HostNetwork     bool
	Phase           corev1.PodPhase
	// IPs are status.podIP and status.podIPs, unmapped, without duplicates.
	IPs []netip.Addr

	ports []namedPort // named ports of containers and of sidecar init containers
	// invalid says why the pod cannot be evaluated (an unparsable address);
	// NewEngine reports it.
	invalid error
}

// NewPod records what policy reads of p (which it does not keep: the
// record shares only p's strings and labels map, which it never modifies).
func NewPod(p *corev1.Pod) *Pod {
	r := &Pod{
		Namespace: p.Namespace, Name: p.Name, UID: p.UID, ResourceVersion: p.ResourceVersion,
		Labels: p.Labels, NodeName: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork,
		Phase: p.Status.Phase, ports: declaredPorts(p),
	}
	r.IPs, r.invalid = podIPs(p)
	return r
}

// Err says why the pod cannot be evaluated (NewEngine fails with it), or nil.
func (p *Pod) Err() error { return p.invalid }

// SameForPolicy reports whether policy reads the same from p and q: they
// differ at most in ResourceVersion. The agent skips the recompile for pod
// updates that change nothing of the record (conditions, container states).
func (p *Pod) SameForPolicy(q *Pod) bool {
	return p.Namespace == q.Namespace && p.Name == q.Name && p.UID == q.UID &&
		maps.Equal(p.Labels, q.Labels) && p.NodeName == q.NodeName && p.HostNetwork == q.HostNetwork &&
		p.Phase == q.Phase && slices.Equal(p.IPs, q.IPs) && slices.Equal(p.ports, q.ports) &&
		errString(p.invalid) == errString(q.invalid)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// ShareWith makes p use q's labels map and named ports where the two hold
// the same, so that many records (the replicas of one workload) keep one
// copy of each: records are never modified, so sharing is safe.
func (p *Pod) ShareWith(q *Pod) {
	if maps.Equal(p.Labels, q.Labels) {
		p.Labels = q.Labels
	}
	if slices.Equal(p.ports, q.ports) {
		p.ports = q.ports
	}
}

// DeepCopy returns a copy sharing nothing with p.
func (p *Pod) DeepCopy() *Pod {
	c := *p
	c.Labels = maps.Clone(p.Labels)
	c.IPs = slices.Clone(p.IPs)
	c.ports = slices.Clone(p.ports)
	return &c
}

// Object returns a pod holding what p records: for callers of the Engine's
// API that print or pass on *corev1.Pod. A new object on every call.
func (p *Pod) Object() *corev1.Pod {
	o := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, UID: p.UID,
			ResourceVersion: p.ResourceVersion, Labels: p.Labels},
		Spec:   corev1.PodSpec{NodeName: p.NodeName, HostNetwork: p.HostNetwork},
		Status: corev1.PodStatus{Phase: p.Phase},
	}
	for i, ip := range p.IPs {
		if i == 0 {
			o.Status.PodIP = ip.String()
		}
		o.Status.PodIPs = append(o.Status.PodIPs, corev1.PodIP{IP: ip.String()})
	}
	if len(p.ports) > 0 {
		// One container declaring them all resolves every name as the
		// original containers did (declaredPorts keeps their order).
		c := corev1.Container{Name: "ports"}
		for _, np := range p.ports {
			c.Ports = append(c.Ports, corev1.ContainerPort{Name: np.name, Protocol: np.proto, ContainerPort: np.port})
		}
		o.Spec.Containers = []corev1.Container{c}
	}
	return o
}

// String names the pod as namespace/name.
func (p *Pod) String() string { return p.Namespace + "/" + p.Name }

// podIPs returns status.podIP and status.podIPs, unmapped, without
// duplicates; the first unparsable one is the error (the others are kept).
func podIPs(pod *corev1.Pod) ([]netip.Addr, error) {
	var out []netip.Addr
	var bad error
	add := func(field, s string) {
		if s == "" {
			return
		}
		ip, err := netip.ParseAddr(s)
		if err != nil {
			if bad == nil {
				bad = fmt.Errorf("%s: Invalid value: %q: must be a valid IP address", field, s)
			}
			return
		}
		ip = ip.Unmap()
		if !slices.Contains(out, ip) {
			out = append(out, ip)
		}
	}
	add("status.podIP", pod.Status.PodIP)
	for i, p := range pod.Status.PodIPs {
		add(fmt.Sprintf("status.podIPs[%d].ip", i), p.IP)
	}
	return slices.Clip(out), bad
}

// declaredPorts lists the named container ports of a pod, including those of
// restartable (sidecar) init containers, which serve traffic like containers.
func declaredPorts(pod *corev1.Pod) []namedPort {
	var out []namedPort
	add := func(c *corev1.Container) {
		for _, p := range c.Ports {
			if p.Name == "" {
				continue
			}
			proto := p.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			out = append(out, namedPort{name: p.Name, proto: proto, port: p.ContainerPort})
		}
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			add(c)
		}
	}
	for i := range pod.Spec.Containers {
		add(&pod.Spec.Containers[i])
	}
	return slices.Clip(out)
}

// podsHold is PodsHold over records.
func podsHold(pods []*Pod) func(netip.Addr) bool {
	ips := make(map[netip.Addr]bool, len(pods))
	for _, p := range pods {
		if p == nil || p.HostNetwork {
			continue
		}
		for _, ip := range p.IPs {
			ips[ip] = true
		}
	}
	return func(ip netip.Addr) bool { return ips[ip.Unmap()] }
}
