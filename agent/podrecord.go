package agent

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sync/atomic"

	"github.com/kubectl-netpol/kubectl-netpol/history"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// CachedPod is what the pod informer keeps of a pod (trimForCache makes it
// from the decoded object): the policy engine's record and the workload
// the flows name. A few hundred bytes where a trimmed *corev1.Pod took
// ~2 KB (its struct alone is 1,240 bytes, +408 per container): the
// agent's memory at 100k pods (docs/perf.md, "compact pod records").
//
// It is a runtime.Object with object meta (metav1.Object) for client-go's
// store, key function and indexers only; the meta it does not record reads
// as empty and its setters are no-ops. Never modified once cached.
type CachedPod struct {
	policy.Pod
	// WorkloadKind and WorkloadName name the pod's controller
	// (history.Workload).
	WorkloadKind, WorkloadName string
	// seq orders the records of a Snapshot: the informer's store lists
	// them in no fixed order, and the same records in the same order let
	// the policy.Cache reuse the last build's pod index.
	seq uint64
	// shape is what it shares with the other replicas of its workload
	// (podShapes); it keeps the shape in the table.
	shape *podShape
}

var cachedPodSeq atomic.Uint64

// newCachedPod records p.
func newCachedPod(p *corev1.Pod) *CachedPod {
	kind, name := history.Workload(p)
	cp := &CachedPod{Pod: *policy.NewPod(p), WorkloadKind: kind, WorkloadName: name, seq: cachedPodSeq.Add(1)}
	shapes.share(cp)
	return cp
}

// sameCachedPod reports whether two cached versions of a pod hold the
// same: an update between them (a condition, a container state, a graceful
// deletion's timestamp) changes nothing that policy, the enricher or the
// anti-spoofing guard read, and needs no recompile.
func sameCachedPod(a, b *CachedPod) bool {
	return a.SameForPolicy(&b.Pod) && a.WorkloadKind == b.WorkloadKind && a.WorkloadName == b.WorkloadName
}

// finished: the pod's containers are done, and its address may already
// be another pod's.
func (p *CachedPod) finished() bool {
	return p.Phase == corev1.PodSucceeded || p.Phase == corev1.PodFailed
}

func (p *CachedPod) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

func (p *CachedPod) DeepCopyObject() runtime.Object {
	return &CachedPod{Pod: *p.Pod.DeepCopy(), WorkloadKind: p.WorkloadKind, WorkloadName: p.WorkloadName, seq: p.seq, shape: p.shape}
}

// metav1.Object, over what the record keeps.

func (p *CachedPod) GetNamespace() string                          { return p.Namespace }
func (p *CachedPod) SetNamespace(ns string)                        { p.Namespace = ns }
func (p *CachedPod) GetName() string                               { return p.Name }
func (p *CachedPod) SetName(name string)                           { p.Name = name }
func (p *CachedPod) GetGenerateName() string                       { return "" }
func (p *CachedPod) SetGenerateName(string)                        {}
func (p *CachedPod) GetUID() types.UID                             { return p.UID }
func (p *CachedPod) SetUID(uid types.UID)                          { p.UID = uid }
func (p *CachedPod) GetResourceVersion() string                    { return p.ResourceVersion }
func (p *CachedPod) SetResourceVersion(v string)                   { p.ResourceVersion = v }
func (p *CachedPod) GetGeneration() int64                          { return 0 }
func (p *CachedPod) SetGeneration(int64)                           {}
func (p *CachedPod) GetSelfLink() string                           { return "" }
func (p *CachedPod) SetSelfLink(string)                            {}
func (p *CachedPod) GetCreationTimestamp() metav1.Time             { return metav1.Time{} }
func (p *CachedPod) SetCreationTimestamp(metav1.Time)              {}
func (p *CachedPod) GetDeletionTimestamp() *metav1.Time            { return nil }
func (p *CachedPod) SetDeletionTimestamp(*metav1.Time)             {}
func (p *CachedPod) GetDeletionGracePeriodSeconds() *int64         { return nil }
func (p *CachedPod) SetDeletionGracePeriodSeconds(*int64)          {}
func (p *CachedPod) GetLabels() map[string]string                  { return p.Labels }
func (p *CachedPod) SetLabels(l map[string]string)                 { p.Labels = l }
func (p *CachedPod) GetAnnotations() map[string]string             { return nil }
func (p *CachedPod) SetAnnotations(map[string]string)              {}
func (p *CachedPod) GetFinalizers() []string                       { return nil }
func (p *CachedPod) SetFinalizers([]string)                        {}
func (p *CachedPod) GetOwnerReferences() []metav1.OwnerReference   { return nil }
func (p *CachedPod) SetOwnerReferences([]metav1.OwnerReference)    {}
func (p *CachedPod) GetManagedFields() []metav1.ManagedFieldsEntry { return nil }
func (p *CachedPod) SetManagedFields([]metav1.ManagedFieldsEntry)  {}

var _ metav1.Object = (*CachedPod)(nil)
