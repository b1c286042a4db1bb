package install

import (
	"context"
	"fmt"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Permission is one verb on one resource, in a namespace or cluster-wide.
type Permission struct {
	Verb     string
	Group    string
	Resource string
	// Namespace is empty for cluster-scoped resources and cluster-wide verbs.
	Namespace string
}

func (p Permission) String() string {
	r := p.Resource
	if p.Group != "" {
		r += "." + p.Group
	}
	if p.Namespace != "" {
		return fmt.Sprintf("%s %s in namespace %s", p.Verb, r, p.Namespace)
	}
	return fmt.Sprintf("%s %s", p.Verb, r)
}

// InstallPermissions are what installing into namespace takes: create and
// patch (server-side apply does either) on every kind of Manifests.
func InstallPermissions(namespace string) []Permission {
	return kindPermissions(namespace, "create", "patch")
}

// UninstallPermissions are what uninstalling from namespace takes: list (to
// find the labelled objects) and delete on every kind.
func UninstallPermissions(namespace string) []Permission {
	return kindPermissions(namespace, "list", "delete")
}

func kindPermissions(namespace string, verbs ...string) []Permission {
	var out []Permission
	for _, k := range Kinds {
		for _, v := range verbs {
			p := Permission{Verb: v, Group: k.Resource.Group, Resource: k.Resource.Resource}
			if k.Namespaced {
				p.Namespace = namespace
			}
			out = append(out, p)
		}
	}
	return out
}

// MissingPermissionsError lists every permission the user lacks.
type MissingPermissionsError struct {
	Missing []Permission
}

func (e *MissingPermissionsError) Error() string {
	parts := make([]string, len(e.Missing))
	for i, p := range e.Missing {
		parts[i] = p.String()
	}
	return "you need permission to " + strings.Join(parts, ", ") +
		"; ask a cluster admin or use an admin kubeconfig"
}

// CheckAccess asks the API server (SelfSubjectAccessReview) whether the
// current user holds each permission, and returns a MissingPermissionsError
// naming all those it does not, so the user learns everything at once
// instead of failing half-way through an apply.
func CheckAccess(ctx context.Context, client kubernetes.Interface, perms []Permission) error {
	var missing []Permission
	for _, p := range perms {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: p.Verb, Group: p.Group, Resource: p.Resource, Namespace: p.Namespace,
			},
		}}
		got, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("checking permission to %s: %w", p, err)
		}
		if !got.Status.Allowed {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return &MissingPermissionsError{Missing: missing}
	}
	return nil
}
