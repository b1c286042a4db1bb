package policy

import (
	"fmt"

	networkingv1 "k8s.io/api/networking/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ValidationError is a NetworkPolicy or ClusterNetworkPolicy the API server would reject.
type ValidationError struct {
	// Kind is empty for a NetworkPolicy, KindClusterNetworkPolicy for a
	// ClusterNetworkPolicy (which has no Namespace).
	Kind            string
	Namespace, Name string
	Errs            field.ErrorList
}

func (v *ValidationError) Error() string {
	if v.Kind == KindClusterNetworkPolicy {
		return fmt.Sprintf("clusternetworkpolicy %s is invalid: %s", v.Name, v.Errs.ToAggregate().Error())
	}
	return fmt.Sprintf("networkpolicy %s/%s is invalid: %s", v.Namespace, v.Name, v.Errs.ToAggregate().Error())
}

// ValidatePolicy checks np the way the API server's networking.k8s.io/v1
// validation does (metadata name, label selectors, ports, peers, ipBlocks,
// policyTypes). CIDRs follow the legacy-field rules used for NetworkPolicy, so
// objects the API server already stores are accepted.
func ValidatePolicy(np *networkingv1.NetworkPolicy) error {
	errs := validateName(np.Name)
	md := field.NewPath("metadata")
	if np.Namespace == "" {
		errs = append(errs, field.Required(md.Child("namespace"), "set the policy's namespace (files without one take the current namespace)"))
	}
	spec := field.NewPath("spec")
	selOpts := metav1validation.LabelSelectorValidationOptions{}
	errs = append(errs, metav1validation.ValidateLabelSelector(&np.Spec.PodSelector, selOpts, spec.Child("podSelector"))...)
	for _, dir := range []Direction{Ingress, Egress} {
		list, peersField := "ingress", "from"
		if dir == Egress {
			list, peersField = "egress", "to"
		}
		for i, r := range ruleSpecs(np, dir) {
			p := spec.Child(list).Index(i)
			for j := range r.ports {
				errs = append(errs, validatePort(&r.ports[j], p.Child("ports").Index(j))...)
			}
			for j := range r.peers {
				errs = append(errs, validatePeer(&r.peers[j], p.Child(peersField).Index(j))...)
			}
		}
	}
	types := []string{string(networkingv1.PolicyTypeIngress), string(networkingv1.PolicyTypeEgress)}
	if len(np.Spec.PolicyTypes) > 2 {
		errs = append(errs, field.Invalid(spec.Child("policyTypes"), np.Spec.PolicyTypes, "may not specify more than two policyTypes"))
	} else {
		for i, t := range np.Spec.PolicyTypes {
			if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
				errs = append(errs, field.NotSupported(spec.Child("policyTypes").Index(i), t, types))
			}
		}
	}
	if len(errs) > 0 {
		return &ValidationError{Namespace: np.Namespace, Name: np.Name, Errs: errs}
	}
	return nil
}

// validateName checks metadata.name as the API server does for objects
// named by a DNS subdomain.
func validateName(name string) field.ErrorList {
	p := field.NewPath("metadata", "name")
	if name == "" {
		return field.ErrorList{field.Required(p, "name is required")}
	}
	var errs field.ErrorList
	for _, msg := range apivalidation.NameIsDNSSubdomain(name, false) {
		errs = append(errs, field.Invalid(p, name, msg))
	}
	return errs
}

func validatePort(port *networkingv1.NetworkPolicyPort, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if port.Protocol != nil && !knownProtocol(*port.Protocol) {
		errs = append(errs, field.NotSupported(p.Child("protocol"), *port.Protocol, []string{"TCP", "UDP", "SCTP"}))
	}
	switch {
	case port.Port == nil:
		if port.EndPort != nil {
			errs = append(errs, field.Invalid(p.Child("endPort"), *port.EndPort, "may not be specified when `port` is not specified"))
		}
	case port.Port.Type == intstr.Int:
		for _, msg := range validation.IsValidPortNum(int(port.Port.IntVal)) {
			errs = append(errs, field.Invalid(p.Child("port"), port.Port.IntVal, msg))
		}
		if port.EndPort != nil {
			if *port.EndPort < port.Port.IntVal {
				errs = append(errs, field.Invalid(p.Child("endPort"), *port.EndPort, "must be greater than or equal to `port`"))
			}
			for _, msg := range validation.IsValidPortNum(int(*port.EndPort)) {
				errs = append(errs, field.Invalid(p.Child("endPort"), *port.EndPort, msg))
			}
		}
	default:
		if port.EndPort != nil {
			errs = append(errs, field.Invalid(p.Child("endPort"), *port.EndPort, "may not be specified when `port` is non-numeric"))
		}
		for _, msg := range validation.IsValidPortName(port.Port.StrVal) {
			errs = append(errs, field.Invalid(p.Child("port"), port.Port.StrVal, msg))
		}
	}
	return errs
}

func validatePeer(peer *networkingv1.NetworkPolicyPeer, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	n := 0
	selOpts := metav1validation.LabelSelectorValidationOptions{}
	if peer.PodSelector != nil {
		n++
		errs = append(errs, metav1validation.ValidateLabelSelector(peer.PodSelector, selOpts, p.Child("podSelector"))...)
	}
	if peer.NamespaceSelector != nil {
		n++
		errs = append(errs, metav1validation.ValidateLabelSelector(peer.NamespaceSelector, selOpts, p.Child("namespaceSelector"))...)
	}
	if peer.IPBlock != nil {
		n++
		errs = append(errs, validateIPBlock(peer.IPBlock, p.Child("ipBlock"))...)
	}
	if n == 0 {
		errs = append(errs, field.Required(p, "must specify a peer"))
	} else if n > 1 && peer.IPBlock != nil {
		errs = append(errs, field.Forbidden(p, "may not specify both ipBlock and another peer"))
	}
	return errs
}

func validateIPBlock(b *networkingv1.IPBlock, p *field.Path) field.ErrorList {
	if b.CIDR == "" {
		return field.ErrorList{field.Required(p.Child("cidr"), "")}
	}
	errs := validation.IsValidCIDRForLegacyField(p.Child("cidr"), b.CIDR, false, nil)
	cidr, err := parseCIDR(b.CIDR)
	if err != nil {
		if len(errs) == 0 {
			errs = append(errs, field.Invalid(p.Child("cidr"), b.CIDR, err.Error()))
		}
		return errs
	}
	for i, s := range b.Except {
		ep := p.Child("except").Index(i)
		exErrs := validation.IsValidCIDRForLegacyField(ep, s, false, nil)
		errs = append(errs, exErrs...)
		ex, err := parseCIDR(s)
		if err != nil {
			if len(exErrs) == 0 {
				errs = append(errs, field.Invalid(ep, s, err.Error()))
			}
			continue
		}
		if ex.Addr().Is4() != cidr.Addr().Is4() || !cidr.Contains(ex.Addr()) || ex.Bits() <= cidr.Bits() {
			errs = append(errs, field.Invalid(ep, s, "must be a strict subset of `cidr`"))
		}
	}
	return errs
}
