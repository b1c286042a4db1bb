package agent

import (
	"reflect"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Replicas of one workload share one labels map (and their namespace and
// workload strings), a pod with other labels or of another workload does
// not, and once no record holds a shape its table entry goes.
func TestPodShapesShareReplicasAndForget(t *testing.T) {
	yes := true
	replica := func(name, rs string, labels map[string]string, port int32) *CachedPod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: labels,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs, Controller: &yes}}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port, Protocol: corev1.ProtocolTCP}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"},
		}
		obj, err := trimForCache(p)
		if err != nil {
			t.Fatal(err)
		}
		return obj.(*CachedPod)
	}
	sameMap := func(a, b map[string]string) bool { return reflect.ValueOf(a).Pointer() == reflect.ValueOf(b).Pointer() }
	l := func() map[string]string {
		return map[string]string{"app": "web-shape-test", "pod-template-hash": "7d9f8c"}
	}
	a := replica("web-1", "web-7d9f8c", l(), 8080)
	b := replica("web-2", "web-7d9f8c", l(), 8080)
	odd := replica("web-3", "web-7d9f8c", l(), 9090) // same shape, its own ports
	other := replica("api-1", "api-5c4b", l(), 8080)
	relabeled := replica("web-4", "web-7d9f8c", map[string]string{"app": "web-shape-test", "pod-template-hash": "x"}, 8080)

	if !sameMap(a.Labels, b.Labels) || !sameMap(a.Labels, odd.Labels) {
		t.Error("replicas of one workload with equal labels keep their own labels maps")
	}
	if a.shape != b.shape || a.shape != odd.shape {
		t.Error("replicas of one workload do not share a shape")
	}
	if other.shape == a.shape || relabeled.shape == a.shape || sameMap(relabeled.Labels, a.Labels) {
		t.Error("pods of another workload or with other labels share the replicas' shape")
	}
	if got := odd.Object().Spec.Containers[0].Ports[0].ContainerPort; got != 9090 {
		t.Errorf("a replica with other ports reads port %d, want its own 9090", got)
	}
	if b.Namespace != "shop" || b.WorkloadKind != "Deployment" || b.WorkloadName != "web" {
		t.Errorf("shared strings changed: %s %s/%s", b.Namespace, b.WorkloadKind, b.WorkloadName)
	}

	key := shapeKey(a) // the replicas are not used after this: collectable
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC() // the cleanup runs after the shape is collected
		shapes.mu.Lock()
		_, held := shapes.byKey[key]
		shapes.mu.Unlock()
		if !held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the shape of deleted replicas stayed in the table")
		}
		time.Sleep(10 * time.Millisecond)
	}
	runtime.KeepAlive(other)
	runtime.KeepAlive(relabeled)
}
