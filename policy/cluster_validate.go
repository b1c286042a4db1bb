package policy

import (
	"fmt"
	"net/netip"
	"regexp"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// Limits and patterns of the ClusterNetworkPolicy CRD (v0.3.0 schema).
const (
	cnpMaxRules    = 25
	cnpMaxPeers    = 25
	cnpMaxItems    = 25
	cnpMaxRuleName = 100
	cnpMaxCIDR     = 43
	cnpMaxPriority = 1000
)

var domainNamePattern = regexp.MustCompile(`^(\*\.)?([a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)+[a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.?$`)

// ValidateClusterPolicy checks a ClusterNetworkPolicy the way the API
// server does with the CRD's schema (enums, bounds, list sizes, exactly one
// field of subjects, peers, protocols and ports) and its CEL rules (start <
// end, canonical CIDRs, no named ports with networks/nodes/domainNames
// peers); label selectors are checked as for built-in objects, since the
// engine must evaluate them. The error is a *ValidationError naming the
// object and each field.
func ValidateClusterPolicy(cnp *cnpv1beta1.ClusterNetworkPolicy) error {
	errs := validateName(cnp.Name)
	spec := field.NewPath("spec")
	switch cnp.Spec.Tier {
	case cnpv1beta1.AdminTier, cnpv1beta1.BaselineTier:
	case "":
		errs = append(errs, field.Required(spec.Child("tier"), "set Admin or Baseline"))
	default:
		errs = append(errs, field.NotSupported(spec.Child("tier"), cnp.Spec.Tier, []string{"Admin", "Baseline"}))
	}
	if p := cnp.Spec.Priority; p < 0 || p > cnpMaxPriority {
		errs = append(errs, field.Invalid(spec.Child("priority"), p, fmt.Sprintf("must be between 0 and %d", cnpMaxPriority)))
	}
	subj := spec.Child("subject")
	switch s := cnp.Spec.Subject; {
	case s.Namespaces != nil && s.Pods != nil:
		errs = append(errs, field.Invalid(subj, "namespaces, pods", "must have exactly one of namespaces or pods"))
	case s.Namespaces != nil:
		errs = append(errs, validateSelector(s.Namespaces, subj.Child("namespaces"))...)
	case s.Pods != nil:
		errs = append(errs, validateNamespacedPod(s.Pods, subj.Child("pods"))...)
	default:
		errs = append(errs, field.Required(subj, "set namespaces or pods"))
	}
	if n := len(cnp.Spec.Ingress); n > cnpMaxRules {
		errs = append(errs, field.TooMany(spec.Child("ingress"), n, cnpMaxRules))
	}
	if n := len(cnp.Spec.Egress); n > cnpMaxRules {
		errs = append(errs, field.TooMany(spec.Child("egress"), n, cnpMaxRules))
	}
	for i := range cnp.Spec.Ingress {
		r := &cnp.Spec.Ingress[i]
		p := spec.Child("ingress").Index(i)
		errs = append(errs, validateRuleHead(r.Name, r.Action, len(r.From), r.From == nil, p, "from")...)
		for j := range r.From {
			pp := p.Child("from").Index(j)
			peer := &r.From[j]
			errs = append(errs, exactlyOne(pp, "namespaces", peer.Namespaces != nil, "pods", peer.Pods != nil)...)
			if peer.Namespaces != nil {
				errs = append(errs, validateSelector(peer.Namespaces, pp.Child("namespaces"))...)
			}
			if peer.Pods != nil {
				errs = append(errs, validateNamespacedPod(peer.Pods, pp.Child("pods"))...)
			}
		}
		errs = append(errs, validateProtocols(r.Protocols, p.Child("protocols"))...)
	}
	for i := range cnp.Spec.Egress {
		r := &cnp.Spec.Egress[i]
		p := spec.Child("egress").Index(i)
		errs = append(errs, validateRuleHead(r.Name, r.Action, len(r.To), r.To == nil, p, "to")...)
		noNamedPorts := false
		for j := range r.To {
			errs = append(errs, validateEgressPeer(&r.To[j], p.Child("to").Index(j))...)
			noNamedPorts = noNamedPorts || r.To[j].Networks != nil || r.To[j].Nodes != nil || r.To[j].DomainNames != nil
		}
		errs = append(errs, validateProtocols(r.Protocols, p.Child("protocols"))...)
		if noNamedPorts {
			for j, pr := range r.Protocols {
				if pr.DestinationNamedPort != "" {
					errs = append(errs, field.Invalid(p.Child("protocols").Index(j).Child("destinationNamedPort"), pr.DestinationNamedPort,
						"networks/nodes/domainNames peer cannot be set with namedPorts since there are no namedPorts for networks/nodes/domainNames"))
				}
			}
		}
	}
	if len(errs) > 0 {
		return &ValidationError{Kind: KindClusterNetworkPolicy, Name: cnp.Name, Errs: errs}
	}
	return nil
}

func validateSelector(sel *metav1.LabelSelector, p *field.Path) field.ErrorList {
	return metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, p)
}

func validateNamespacedPod(np *cnpv1beta1.NamespacedPod, p *field.Path) field.ErrorList {
	errs := validateSelector(&np.NamespaceSelector, p.Child("namespaceSelector"))
	return append(errs, validateSelector(&np.PodSelector, p.Child("podSelector"))...)
}

func validateRuleHead(name string, action cnpv1beta1.ClusterNetworkPolicyRuleAction, peers int, absent bool, p *field.Path, peersField string) field.ErrorList {
	var errs field.ErrorList
	if len(name) > cnpMaxRuleName {
		errs = append(errs, field.TooLong(p.Child("name"), name, cnpMaxRuleName))
	}
	switch action {
	case cnpv1beta1.ClusterNetworkPolicyRuleActionAccept, cnpv1beta1.ClusterNetworkPolicyRuleActionDeny, cnpv1beta1.ClusterNetworkPolicyRuleActionPass:
	case "":
		errs = append(errs, field.Required(p.Child("action"), "set Accept, Deny or Pass"))
	default:
		errs = append(errs, field.NotSupported(p.Child("action"), action, []string{"Accept", "Deny", "Pass"}))
	}
	switch {
	case absent:
		errs = append(errs, field.Required(p.Child(peersField), "list at least one peer"))
	case peers == 0:
		errs = append(errs, field.Invalid(p.Child(peersField), "[]", "must have at least 1 item"))
	case peers > cnpMaxPeers:
		errs = append(errs, field.TooMany(p.Child(peersField), peers, cnpMaxPeers))
	}
	return errs
}

// exactlyOne checks that one (name, set) pair of a one-of struct is set.
func exactlyOne(p *field.Path, pairs ...any) field.ErrorList {
	var set, names []string
	for i := 0; i < len(pairs); i += 2 {
		names = append(names, pairs[i].(string))
		if pairs[i+1].(bool) {
			set = append(set, pairs[i].(string))
		}
	}
	switch len(set) {
	case 1:
		return nil
	case 0:
		return field.ErrorList{field.Required(p, fmt.Sprintf("set exactly one of %v", names))}
	}
	return field.ErrorList{field.Invalid(p, set, fmt.Sprintf("must have exactly one of %v", names))}
}

func validateEgressPeer(peer *cnpv1beta1.ClusterNetworkPolicyEgressPeer, p *field.Path) field.ErrorList {
	errs := exactlyOne(p, "namespaces", peer.Namespaces != nil, "pods", peer.Pods != nil, "nodes", peer.Nodes != nil,
		"networks", peer.Networks != nil, "domainNames", peer.DomainNames != nil)
	if peer.Namespaces != nil {
		errs = append(errs, validateSelector(peer.Namespaces, p.Child("namespaces"))...)
	}
	if peer.Pods != nil {
		errs = append(errs, validateNamespacedPod(peer.Pods, p.Child("pods"))...)
	}
	if peer.Nodes != nil {
		errs = append(errs, validateSelector(peer.Nodes, p.Child("nodes"))...)
	}
	if peer.Networks != nil {
		errs = append(errs, validateSet(p.Child("networks"), peer.Networks, func(c cnpv1beta1.CIDR) string {
			if len(c) > cnpMaxCIDR {
				return fmt.Sprintf("may not be more than %d bytes", cnpMaxCIDR)
			}
			if pfx, err := netip.ParsePrefix(string(c)); err != nil || pfx != pfx.Masked() {
				return "Invalid CIDR format provided"
			}
			return ""
		})...)
	}
	if peer.DomainNames != nil {
		errs = append(errs, validateSet(p.Child("domainNames"), peer.DomainNames, func(d cnpv1beta1.DomainName) string {
			if !domainNamePattern.MatchString(string(d)) {
				return "should match '" + domainNamePattern.String() + "'"
			}
			return ""
		})...)
	}
	return errs
}

// validateSet checks a listType=set field: its size, no duplicates, and
// each item (bad returns why an item is invalid, or "").
func validateSet[T ~string](p *field.Path, items []T, bad func(T) string) field.ErrorList {
	errs := listSize(p, len(items))
	seen := map[T]bool{}
	for i, it := range items {
		if seen[it] {
			errs = append(errs, field.Duplicate(p.Index(i), it))
		}
		seen[it] = true
		if why := bad(it); why != "" {
			errs = append(errs, field.Invalid(p.Index(i), it, why))
		}
	}
	return errs
}

func listSize(p *field.Path, n int) field.ErrorList {
	switch {
	case n == 0:
		return field.ErrorList{field.Invalid(p, "[]", "must have at least 1 item")}
	case n > cnpMaxItems:
		return field.ErrorList{field.TooMany(p, n, cnpMaxItems)}
	}
	return nil
}

func validateProtocols(protos []cnpv1beta1.ClusterNetworkPolicyProtocol, p *field.Path) field.ErrorList {
	if protos == nil {
		return nil
	}
	errs := listSize(p, len(protos))
	for i := range protos {
		pr := &protos[i]
		pp := p.Index(i)
		errs = append(errs, exactlyOne(pp, "tcp", pr.TCP != nil, "udp", pr.UDP != nil, "sctp", pr.SCTP != nil,
			"destinationNamedPort", pr.DestinationNamedPort != "")...)
		check := func(name string, dp *cnpv1beta1.Port) {
			if dp == nil {
				errs = append(errs, field.Required(pp.Child(name).Child("destinationPort"), "set destinationPort (number or range), or leave "+name+" out"))
				return
			}
			errs = append(errs, validateCNPPort(dp, pp.Child(name).Child("destinationPort"))...)
		}
		if pr.TCP != nil {
			check("tcp", pr.TCP.DestinationPort)
		}
		if pr.UDP != nil {
			check("udp", pr.UDP.DestinationPort)
		}
		if pr.SCTP != nil {
			check("sctp", pr.SCTP.DestinationPort)
		}
	}
	return errs
}

func validateCNPPort(dp *cnpv1beta1.Port, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, exactlyOne(p, "number", dp.Number != 0, "range", dp.Range != nil)...)
	inRange := func(fp *field.Path, n int32) {
		if n < 1 || n > 65535 {
			errs = append(errs, field.Invalid(fp, n, "must be between 1 and 65535"))
		}
	}
	if dp.Number != 0 {
		inRange(p.Child("number"), dp.Number)
	}
	if r := dp.Range; r != nil {
		inRange(p.Child("range", "start"), r.Start)
		inRange(p.Child("range", "end"), r.End)
		if r.Start >= r.End {
			errs = append(errs, field.Invalid(p.Child("range"), fmt.Sprintf("%d-%d", r.Start, r.End), "Start port must be less than End port"))
		}
	}
	return errs
}
