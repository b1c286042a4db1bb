package history

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Workload names the controller behind a pod: a Deployment for a pod of a
// ReplicaSet created by one (the pod-template-hash suffix removed), else
// its controller owner, else nothing. History keys use it, so a workload's
// record outlives its pods.
func Workload(p *corev1.Pod) (kind, name string) {
	return WorkloadOf(p.OwnerReferences, p.Labels)
}

// WorkloadOf is Workload for a pod's owner references and labels (for a
// caller that keeps no *corev1.Pod).
func WorkloadOf(owners []metav1.OwnerReference, labels map[string]string) (kind, name string) {
	for _, o := range owners {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		if o.Kind == "ReplicaSet" {
			if h := labels["pod-template-hash"]; h != "" && strings.HasSuffix(o.Name, "-"+h) {
				return "Deployment", strings.TrimSuffix(o.Name, "-"+h)
			}
		}
		return o.Kind, o.Name
	}
	return "", ""
}
