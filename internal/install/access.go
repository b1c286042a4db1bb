package install

import (
	"context"
	"fmt"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Permission is one verb on one resource, in a namespace or cluster-wide.
type Permission struct {
	Verb     string
	Group    string
	Resource string
	// Name restricts the permission to one object ("" for any).
	Name string
	// Namespace is empty for cluster-scoped resources and cluster-wide verbs.
	Namespace string
}

func (p Permission) String() string {
	r := p.Resource
	if p.Group != "" {
		r += "." + p.Group
	}
	if p.Name != "" {
		r += "/" + p.Name
	}
	if p.Namespace != "" {
		return fmt.Sprintf("%s %s in namespace %s", p.Verb, r, p.Namespace)
	}
	return fmt.Sprintf("%s %s", p.Verb, r)
}

// InstallPermissions are what installing into namespace takes: create and
// patch (server-side apply does either) on every kind of Manifests.
func InstallPermissions(namespace string) []Permission {
	return kindPermissions(namespace, Kinds, "create", "patch")
}

// UninstallPermissions are what uninstalling from namespace takes: list (to
// find the labelled objects) and delete on every kind.
func UninstallPermissions(namespace string) []Permission {
	return kindPermissions(namespace, AllKinds, "list", "delete")
}

func kindPermissions(namespace string, kinds []Kind, verbs ...string) []Permission {
	var out []Permission
	for _, k := range kinds {
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

// GrantPermissions are the permissions the install's ClusterRole and Role
// give the agent. Kubernetes lets a user grant only permissions they hold
// (RBAC escalation prevention), unless they may escalate and bind roles.
func GrantPermissions(objs []Object) []Permission {
	var out []Permission
	add := func(rules []rbacv1.PolicyRule, namespace string) {
		for _, r := range rules {
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						names := r.ResourceNames
						if len(names) == 0 {
							names = []string{""}
						}
						for _, n := range names {
							out = append(out, Permission{Verb: v, Group: g, Resource: res, Name: n, Namespace: namespace})
						}
					}
				}
			}
		}
	}
	for _, obj := range objs {
		switch r := obj.(type) {
		case *rbacv1.ClusterRole:
			add(r.Rules, "")
		case *rbacv1.Role:
			add(r.Rules, r.Namespace)
		}
	}
	return out
}

// escalatePermissions let a user grant permissions they do not hold.
func escalatePermissions(namespace string) []Permission {
	var out []Permission
	for _, v := range []string{"escalate", "bind"} {
		out = append(out,
			Permission{Verb: v, Group: rbacv1.GroupName, Resource: "clusterroles"},
			Permission{Verb: v, Group: rbacv1.GroupName, Resource: "roles", Namespace: namespace})
	}
	return out
}

// MissingPermissionsError lists every permission the user lacks.
type MissingPermissionsError struct {
	Missing []Permission
	// Grant is set when the missing permissions are those the agent is
	// given, which the user must hold to grant.
	Grant bool
}

func (e *MissingPermissionsError) Error() string {
	parts := make([]string, len(e.Missing))
	for i, p := range e.Missing {
		parts[i] = p.String()
	}
	why := ""
	if e.Grant {
		why = " (the agent's roles grant them, and Kubernetes lets you grant only what you hold, unless you may escalate and bind roles)"
	}
	return "you need permission to " + strings.Join(parts, ", ") + why +
		"; ask a cluster admin or use an admin kubeconfig"
}

// CheckGrant checks that the user may create the install's roles: they
// hold every permission the roles grant, or may escalate and bind roles.
func CheckGrant(ctx context.Context, client kubernetes.Interface, objs []Object, namespace string) error {
	missing, err := missingPermissions(ctx, client, GrantPermissions(objs))
	if err != nil || len(missing) == 0 {
		return err
	}
	noEscalate, err := missingPermissions(ctx, client, escalatePermissions(namespace))
	if err != nil || len(noEscalate) == 0 {
		return err
	}
	return &MissingPermissionsError{Missing: missing, Grant: true}
}

// CheckAccess asks the API server (SelfSubjectAccessReview) whether the
// current user holds each permission, and returns a MissingPermissionsError
// naming all those it does not, so the user learns everything at once
// instead of failing half-way through an apply.
func CheckAccess(ctx context.Context, client kubernetes.Interface, perms []Permission) error {
	missing, err := missingPermissions(ctx, client, perms)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return &MissingPermissionsError{Missing: missing}
	}
	return nil
}

func missingPermissions(ctx context.Context, client kubernetes.Interface, perms []Permission) ([]Permission, error) {
	var missing []Permission
	for _, p := range perms {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: p.Verb, Group: p.Group, Resource: p.Resource, Name: p.Name, Namespace: p.Namespace,
			},
		}}
		got, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("checking permission to %s: %w", p, err)
		}
		if !got.Status.Allowed {
			missing = append(missing, p)
		}
	}
	return missing, nil
}
