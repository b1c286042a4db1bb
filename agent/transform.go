package agent

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// trimForCache is the informers' transform: it drops what neither policy nor
// the flows' enrichment read before an object enters the cache, so that the
// agent's memory grows with what policy needs per pod, not with the pod
// manifests (at 10k pods, managedFields alone were a fifth of the live heap;
// docs/perf.md, "Scale with simulated nodes"). Every object loses its
// managedFields and kubectl apply's copy of its whole manifest (the
// last-applied annotation: as large as the object again); a node loses
// the list of images on it (tens of KB on a real node); a pod becomes a
// CachedPod, its identity, labels, workload, node, named ports and
// addresses. Idempotent, as client-go requires (a relist transforms
// again): a CachedPod passes through.
func trimForCache(obj any) (any, error) {
	if p, ok := obj.(*corev1.Pod); ok {
		return newCachedPod(p), nil
	}
	if n, ok := obj.(*corev1.Node); ok {
		n.Status.Images = nil
	}
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
		delete(m.GetAnnotations(), corev1.LastAppliedConfigAnnotation)
	}
	return obj, nil
}
