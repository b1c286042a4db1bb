package agent

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// trimForCache is the informers' transform: it drops what neither policy nor
// the flows' enrichment read before an object enters the cache, so that the
// agent's memory grows with what policy needs per pod, not with the pod
// manifests (at 10k pods, managedFields alone were a fifth of the live heap;
// docs/perf.md, "Scale with simulated nodes"). Every object loses its
// managedFields; a pod keeps its identity, labels, owners, node, ports and
// addresses. Idempotent, as client-go requires (a relist transforms again).
func trimForCache(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	if p, ok := obj.(*corev1.Pod); ok {
		return trimPod(p), nil
	}
	return obj, nil
}

// trimPod keeps what policy.Engine (labels, namespace, node, hostNetwork,
// phase, addresses, named container ports, sidecar init containers), the
// enricher (name, workload owner) and the address index read. In place: the
// decoded pod is the informer's to change, and a copy would keep two pod
// structs (1.2 KB each) alive per pod until the next GC.
func trimPod(p *corev1.Pod) *corev1.Pod {
	ports := func(cs []corev1.Container) []corev1.Container {
		for i := range cs {
			c := &cs[i]
			*c = corev1.Container{Name: c.Name, Ports: c.Ports, RestartPolicy: c.RestartPolicy}
		}
		return cs
	}
	p.ObjectMeta = metav1.ObjectMeta{
		Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
		Labels: p.Labels, OwnerReferences: p.OwnerReferences,
	}
	p.Spec = corev1.PodSpec{
		NodeName: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork,
		Containers: ports(p.Spec.Containers), InitContainers: ports(p.Spec.InitContainers),
	}
	p.Status = corev1.PodStatus{
		Phase: p.Status.Phase, PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs,
		HostIP: p.Status.HostIP, HostIPs: p.Status.HostIPs,
	}
	return p
}

// sameCachedPod reports whether two cached (trimmed) versions of a pod hold
// the same: an update between them (a condition, a container state, a
// graceful deletion's timestamp) changes nothing that policy, the enricher or
// the anti-spoofing guard read, and needs no recompile.
func sameCachedPod(a, b *corev1.Pod) bool {
	x, y := *a, *b
	x.ResourceVersion, y.ResourceVersion = "", ""
	return equality.Semantic.DeepEqual(&x, &y)
}
