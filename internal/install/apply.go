package install

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// Kind is one kind of object install creates.
type Kind struct {
	Kind       string
	Resource   schema.GroupVersionResource
	Namespaced bool
}

// String names the resource as kubectl and RBAC messages do: "daemonsets.apps".
func (k Kind) String() string {
	if k.Resource.Group == "" {
		return k.Resource.Resource
	}
	return k.Resource.Resource + "." + k.Resource.Group
}

// Kinds are the kinds every install has, in apply order. Uninstall deletes
// AllKinds in the reverse order, DaemonSet first.
var Kinds = []Kind{
	{"Namespace", schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, false},
	{"ServiceAccount", schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}, true},
	{"ClusterRole", schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}, false},
	{"ClusterRoleBinding", schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"}, false},
	{"Role", schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"}, true},
	{"RoleBinding", schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"}, true},
	{"DaemonSet", schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "daemonsets"}, true},
}

// configMapKind is the one kind only some installs have (the OTLP export's
// CA: install --otlp-ca-file), applied just before the DaemonSet.
var configMapKind = Kind{"ConfigMap", schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, true}

// AllKinds are every kind an install may have, in apply order: what
// uninstall looks for and needs the rights to delete.
var AllKinds = append(append(Kinds[:len(Kinds)-1:len(Kinds)-1], configMapKind), Kinds[len(Kinds)-1])

// KindOf returns the Kind entry of obj.
func KindOf(obj runtime.Object) (Kind, error) {
	k := obj.GetObjectKind().GroupVersionKind().Kind
	for _, kind := range AllKinds {
		if kind.Kind == k {
			return kind, nil
		}
	}
	return Kind{}, fmt.Errorf("install does not manage kind %q", k)
}

// Apply outcomes, as kubectl apply prints them.
const (
	Created    = "created"
	Configured = "configured"
	Unchanged  = "unchanged"
)

// Result is what Apply did to one object.
type Result struct {
	Kind      Kind
	Namespace string
	Name      string
	Action    string // Created, Configured or Unchanged
	// Previous is the object before the apply (nil when Created).
	Previous *unstructured.Unstructured
	// NotValidated is set by a dry run for an object in a namespace that
	// does not exist yet: the server cannot admit it without the namespace.
	NotValidated bool
}

// Ref names the object as kubectl does: "daemonset.apps/netpol-agent".
func (r Result) Ref() string { return ref(r.Kind, r.Name) }

func ref(k Kind, name string) string {
	s := k.Resource.Resource[:len(k.Resource.Resource)-1] // singular; every kind here ends in "s"
	if k.Resource.Group != "" {
		s += "." + k.Resource.Group
	}
	return s + "/" + name
}

// Apply server-side applies objs in order under FieldManager, taking over
// fields other managers set (an install owns its objects). Each result says
// whether the object was created, changed, or left as it was (same
// resourceVersion). It stops at the first failure, naming the object.
func Apply(ctx context.Context, client dynamic.Interface, objs []Object) ([]Result, error) {
	return apply(ctx, client, objs, false)
}

// ApplyDryRun is Apply with the API server's dry run: every object is
// validated and admitted, nothing is persisted. An object is Unchanged when
// the server's answer equals what is stored, ignoring bookkeeping fields.
func ApplyDryRun(ctx context.Context, client dynamic.Interface, objs []Object) ([]Result, error) {
	return apply(ctx, client, objs, true)
}

func apply(ctx context.Context, client dynamic.Interface, objs []Object, dryRun bool) ([]Result, error) {
	var results []Result
	newNamespaces := map[string]bool{}
	for _, obj := range objs {
		kind, err := KindOf(obj)
		if err != nil {
			return results, err
		}
		u, err := Unstructured(obj)
		if err != nil {
			return results, err
		}
		res := resourceFor(client, kind, obj.GetNamespace())
		r := Result{Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName(), Action: Created}
		if dryRun && kind.Namespaced && newNamespaces[obj.GetNamespace()] {
			r.NotValidated = true
			results = append(results, r)
			continue
		}
		prev, err := res.Get(ctx, obj.GetName(), metav1.GetOptions{})
		switch {
		case err == nil && prev.GetDeletionTimestamp() != nil:
			return results, fmt.Errorf("%s is being deleted (by an uninstall?): wait until it is gone, then install again", r.Ref())
		case err == nil:
			r.Previous = prev
		case !apierrors.IsNotFound(err):
			return results, fmt.Errorf("reading %s: %w", r.Ref(), err)
		}
		opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		applied, err := res.Apply(ctx, obj.GetName(), u, opts)
		if err != nil {
			return results, fmt.Errorf("applying %s: %w", r.Ref(), err)
		}
		if prev == nil && kind.Kind == "Namespace" {
			newNamespaces[obj.GetName()] = true
		}
		if prev != nil {
			r.Action = Configured
			if sameObject(prev, applied, dryRun) {
				r.Action = Unchanged
			}
		}
		results = append(results, r)
	}
	return results, nil
}

// Unstructured converts obj to the apply configuration sent to the server
// (and printed by --dry-run=client): without the fields only the server sets.
func Unstructured(obj Object) (*unstructured.Unstructured, error) {
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("converting %s %s: %w", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), err)
	}
	u := &unstructured.Unstructured{Object: content}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	return u, nil
}

func resourceFor(client dynamic.Interface, k Kind, namespace string) dynamic.ResourceInterface {
	if k.Namespaced {
		return client.Resource(k.Resource).Namespace(namespace)
	}
	return client.Resource(k.Resource)
}

// sameObject reports whether an apply left the object as it was. A real
// apply that changes nothing keeps the resourceVersion; a dry run never
// bumps it, so there the contents are compared without bookkeeping fields.
func sameObject(prev, applied *unstructured.Unstructured, dryRun bool) bool {
	if !dryRun {
		return applied.GetResourceVersion() == prev.GetResourceVersion()
	}
	strip := func(u *unstructured.Unstructured) map[string]any {
		c := u.DeepCopy().Object
		for _, f := range []string{"managedFields", "resourceVersion", "generation"} {
			unstructured.RemoveNestedField(c, "metadata", f)
		}
		return c
	}
	return equality.Semantic.DeepEqual(strip(prev), strip(applied))
}
