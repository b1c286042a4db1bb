package cli

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubectl-netpol/kubectl-netpol/internal/snapshot"
)

// liveObjects loads the bundled example as if it were in a cluster, plus a
// Deployment with two pods (one not running) and an unrelated namespace.
func liveObjects(t *testing.T) []runtime.Object {
	t.Helper()
	set, err := snapshot.LoadFiles([]string{example}, false, "default")
	if err != nil {
		t.Fatal(err)
	}
	var objs []runtime.Object
	for _, n := range set.Namespaces {
		objs = append(objs, n)
	}
	for _, p := range set.Pods {
		objs = append(objs, p)
	}
	for _, p := range set.Policies {
		objs = append(objs, p)
	}
	objs = append(objs,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "unrelated"}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "web"},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "api-b", Namespace: "web", Labels: map[string]string{"app": "api"}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.2.31"}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "api-a", Namespace: "web", Labels: map[string]string{"app": "api"}},
			Status: corev1.PodStatus{Phase: corev1.PodPending}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.250.9.1"}}}},
	)
	return objs
}

func TestLiveExplainMatchesOffline(t *testing.T) {
	client := fake.NewClientset(liveObjects(t)...)
	live, _, err := run(t, fakeFactory(client), "", "explain", "web/frontend-1", "db/mysql-0")
	if err != nil {
		t.Fatal(err)
	}
	offline, _, err := run(t, offlineFactory(t), "", "explain", "-f", example, "web/frontend-1", "db/mysql-0")
	if err != nil {
		t.Fatal(err)
	}
	if live != offline {
		t.Errorf("live and -f disagree:\n--- live\n%s\n--- offline\n%s", live, offline)
	}
	// Only the namespaces of the question are listed for pods and policies.
	for _, a := range client.Actions() {
		if a.GetVerb() == "list" && a.GetResource().Resource == "pods" && a.GetNamespace() == "unrelated" {
			t.Errorf("listed pods of an unrelated namespace")
		}
	}
}

func TestLiveWorkloadPicksRunningPod(t *testing.T) {
	client := fake.NewClientset(liveObjects(t)...)
	out, _, err := run(t, fakeFactory(client), "", "explain", "-n", "web", "deploy/api", "db/mysql-0", "--port", "3306")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "DENIED  web/api-b → db/mysql-0", "deploy/api: picked running pod api-b (1 of 1 running)")
}

func TestLiveNodeTrafficAndIPLookup(t *testing.T) {
	client := fake.NewClientset(liveObjects(t)...)
	out, _, err := run(t, fakeFactory(client), "", "explain", "10.250.9.1", "db/mysql-0", "--port", "3306")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "ALLOWED  10.250.9.1 → db/mysql-0", "node address")
}

func TestLiveCheckAndMatrix(t *testing.T) {
	client := fake.NewClientset(liveObjects(t)...)
	out, _, err := run(t, fakeFactory(client), checkItems, "check")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	offline, _, _ := run(t, offlineFactory(t), checkItems, "check", "-f", example)
	if out != offline {
		t.Errorf("live check differs from -f:\n%s\n%s", out, offline)
	}
	out, _, err = run(t, fakeFactory(client), "", "matrix", "-n", "web", "--ports", "80")
	if err != nil {
		t.Fatal(err)
	}
	// web/api-a is Pending (not completed) and stays in; nothing isolates web.
	mustContain(t, out, "web/api-a", "web/api-b", "web/frontend-1")
	if strings.Contains(out, "X") {
		t.Errorf("nothing in web is isolated:\n%s", out)
	}
}

func TestLiveForbiddenNamespacesDegrades(t *testing.T) {
	client := fake.NewClientset(liveObjects(t)...)
	client.PrependReactor("list", "namespaces", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, "", nil)
	})
	out, _, err := run(t, fakeFactory(client), "", "explain", "web/frontend-1", "db/mysql-0", "--port", "3306")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "DENIED", "warning: cannot list namespaces (forbidden)")
}

func TestLiveAPIErrorNamesCluster(t *testing.T) {
	client := fake.NewClientset(liveObjects(t)...)
	client.PrependReactor("list", "networkpolicies", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "networking.k8s.io", Resource: "networkpolicies"}, "", nil)
	})
	_, _, err := run(t, fakeFactory(client), "", "explain", "web/frontend-1", "db/mysql-0")
	if err == nil {
		t.Fatal("want an error")
	}
	mustContain(t, err.Error(), "listing networkpolicies in namespace", `context "fake", server https://fake.invalid`, "forbidden")
}

func TestCompletion(t *testing.T) {
	client := fake.NewClientset(liveObjects(t)...)
	f := fakeFactory(client)
	got := endpointCandidates(context.Background(), f, "")
	mustContain(t, strings.Join(got, " "), "db/", "web/", "deploy/")
	got = endpointCandidates(context.Background(), f, "db/my")
	if strings.Join(got, ",") != "db/mysql-0" {
		t.Errorf("db/my -> %v", got)
	}
	*f.ConfigFlags.Namespace = "web"
	got = endpointCandidates(context.Background(), f, "deploy/")
	if strings.Join(got, ",") != "deploy/api" {
		t.Errorf("deploy/ -> %v", got)
	}
	got = endpointCandidates(context.Background(), f, "fr")
	if strings.Join(got, ",") != "frontend-1" {
		t.Errorf("fr -> %v", got)
	}
	// Through cobra's hidden __complete command, as the kubectl_complete-netpol shim calls it.
	out, _, err := run(t, f, "", "__complete", "explain", "-n", "db", "my")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "mysql-0\n")
}
