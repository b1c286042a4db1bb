package agent

import (
	"fmt"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	pt "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

// The datapath compiled from trimmed pods is the one compiled from whole
// pods: the transform drops nothing policy reads (named ports of containers
// and of sidecar init containers, labels, phase, addresses, nodes).
func TestTrimForCacheKeepsThePolicyInput(t *testing.T) {
	full := pt.Synthetic(600, 150, 3)
	always := corev1.ContainerRestartPolicyAlways
	for i, p := range full.Pods {
		p.Spec.NodeName = fmt.Sprintf("node-%d", i%3)
		p.Annotations = map[string]string{"big": "manifest"}
		p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
		p.Spec.Containers[0].Image = "registry.example/app:1"
		p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "b"}}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		if i%5 == 0 { // a sidecar serving a named port of its own
			p.Spec.InitContainers = []corev1.Container{{Name: "proxy", RestartPolicy: &always,
				Ports: []corev1.ContainerPort{{Name: "proxy", ContainerPort: 15001, Protocol: corev1.ProtocolTCP}}}}
		}
	}
	trimmed := *full
	trimmed.Pods = nil
	for _, p := range full.Pods {
		obj, err := trimForCache(p.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		tp := obj.(*corev1.Pod)
		if tp.Annotations != nil || tp.ManagedFields != nil || tp.Spec.Containers[0].Image != "" || tp.Status.Conditions != nil {
			t.Fatalf("trimmed pod still holds what policy never reads: %+v", tp)
		}
		again, _ := trimForCache(tp.DeepCopy())
		if !reflect.DeepEqual(again, tp) {
			t.Fatalf("trimForCache is not idempotent:\n%+v\n%+v", tp, again)
		}
		trimmed.Pods = append(trimmed.Pods, tp)
	}
	for _, node := range []string{"node-0", "node-1", "node-2"} {
		want := compileFor(t, full, node)
		got := compileFor(t, &trimmed, node)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("node %s: the datapath from trimmed pods differs from the one from whole pods", node)
		}
	}
}

func compileFor(t *testing.T, s *policy.Snapshot, node string) *policy.Datapath {
	t.Helper()
	e, err := policy.NewEngine(s)
	if err != nil {
		t.Fatal(err)
	}
	dp, err := e.Compile(node)
	if err != nil {
		t.Fatal(err)
	}
	return dp
}

func TestTrimForCacheLeavesOtherKindsWhole(t *testing.T) {
	np := pt.Policy("ns", "p", pt.Selecting(pt.Sel("app=a")))
	np.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	np.Annotations = map[string]string{"k": "v"}
	obj, _ := trimForCache(np)
	got := obj.(interface{ GetAnnotations() map[string]string })
	if np.ManagedFields != nil || got.GetAnnotations()["k"] != "v" {
		t.Errorf("a NetworkPolicy must lose its managedFields only: %+v", obj)
	}
	if obj, _ := trimForCache(cacheTombstone{}); obj != (cacheTombstone{}) {
		t.Errorf("an object of no known kind must pass through: %v", obj)
	}
}

type cacheTombstone struct{}
