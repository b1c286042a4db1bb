package install

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
)

// Installed is an object of an install found in the cluster.
type Installed struct {
	Kind      Kind
	Namespace string
	Name      string
	// Terminating is set when the object is already being deleted.
	Terminating bool
}

// Ref names the object as kubectl does: "clusterrole.rbac.authorization.k8s.io/netpol-agent:ns".
func (o Installed) Ref() string { return ref(o.Kind, o.Name) }

// FindInstalled lists every object of the install in namespace, in apply
// order: objects in the namespace carrying ProjectSelector, cluster-scoped
// ones carrying InstanceSelector(namespace), and the namespace itself when it
// carries our label (a namespace the user made is never ours to delete).
func FindInstalled(ctx context.Context, client dynamic.Interface, namespace string) ([]Installed, error) {
	var out []Installed
	for _, k := range AllKinds {
		var (
			items []metav1.Object
			err   error
		)
		switch {
		case k.Kind == "Namespace":
			var ns metav1.Object
			ns, err = client.Resource(k.Resource).Get(ctx, namespace, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				continue
			}
			if err == nil && ns.GetLabels()[LabelPartOf] == PartOf {
				items = append(items, ns)
			}
		default:
			sel := ProjectSelector
			if !k.Namespaced {
				sel = InstanceSelector(namespace)
			}
			items, err = listMeta(ctx, resourceFor(client, k, namespace), sel)
		}
		if err != nil {
			return nil, fmt.Errorf("listing %s labelled %s: %w", k, ProjectSelector, err)
		}
		for _, it := range items {
			out = append(out, Installed{Kind: k, Namespace: it.GetNamespace(), Name: it.GetName(), Terminating: it.GetDeletionTimestamp() != nil})
		}
	}
	return out, nil
}

func listMeta(ctx context.Context, res dynamic.ResourceInterface, selector string) ([]metav1.Object, error) {
	list, err := res.List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	out := make([]metav1.Object, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

// Delete deletes one object with the given propagation. An object already
// gone is not an error.
func Delete(ctx context.Context, client dynamic.Interface, o Installed, propagation metav1.DeletionPropagation) error {
	err := resourceFor(client, o.Kind, o.Namespace).Delete(ctx, o.Name, metav1.DeleteOptions{PropagationPolicy: &propagation})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting %s: %w", o.Ref(), err)
	}
	return nil
}
