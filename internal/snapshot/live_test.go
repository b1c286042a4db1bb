package snapshot

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// A scope of many namespaces is read with one list of everything, not two
// lists per namespace; a small one stays scoped.
func TestLiveLoadListsOnceForManyNamespaces(t *testing.T) {
	var objs []runtime.Object
	var names []string
	for i := range ScopedListsMax + 4 {
		ns := fmt.Sprintf("ns-%02d", i)
		names = append(names, ns)
		objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
			&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p"}})
	}
	objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "p"}})
	for _, tc := range []struct {
		namespaces []string
		podLists   int
		pods       int
		partial    bool
	}{
		{names[:2], 2, 2, true},
		{names, 1, len(names) + 1, false},
	} {
		client := fake.NewClientset(objs...)
		podLists := 0
		client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
			podLists++
			return false, nil, nil
		})
		set, err := (&Live{Client: client}).Load(context.Background(), Scope{Namespaces: tc.namespaces})
		if err != nil {
			t.Fatal(err)
		}
		if podLists != tc.podLists || len(set.Pods) != tc.pods || set.Partial != tc.partial {
			t.Errorf("%d namespaces: %d pod lists, %d pods, partial %v; want %d, %d, %v",
				len(tc.namespaces), podLists, len(set.Pods), set.Partial, tc.podLists, tc.pods, tc.partial)
		}
	}
}
