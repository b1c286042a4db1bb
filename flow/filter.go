package flow

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// Filter is a compiled allowlist/denylist pair. A flow passes when it matches
// at least one allowlist filter (or the allowlist is empty) and no denylist
// filter. Within one FlowFilter every non-empty field must match (AND) and a
// field matches when any of its values does (OR): the semantics of Hubble's
// flow filters, so users' habits carry over.
//
// The same compiled Filter runs in the agent (filtering at the source) and in
// the CLI (replays from --input-file), so both agree on every flow.
type Filter struct {
	allow []matcher
	deny  []matcher
}

// matcher is one compiled FlowFilter: all predicates must hold.
type matcher []func(*flowv1.Flow) bool

func (m matcher) match(f *flowv1.Flow) bool {
	for _, p := range m {
		if !p(f) {
			return false
		}
	}
	return true
}

// CompileFilter compiles the allow and deny lists. Errors name the field and
// value at fault (a bad label selector, IP or pod name).
func CompileFilter(allow, deny []*flowv1.FlowFilter) (*Filter, error) {
	f := &Filter{}
	for i, ff := range allow {
		m, err := compileOne(ff)
		if err != nil {
			return nil, fmt.Errorf("allowlist filter %d: %w", i, err)
		}
		f.allow = append(f.allow, m)
	}
	for i, ff := range deny {
		m, err := compileOne(ff)
		if err != nil {
			return nil, fmt.Errorf("denylist filter %d: %w", i, err)
		}
		f.deny = append(f.deny, m)
	}
	return f, nil
}

// Match reports whether the flow passes. A nil Filter passes everything.
func (f *Filter) Match(fl *flowv1.Flow) bool {
	if f == nil {
		return true
	}
	for _, m := range f.deny {
		if m.match(fl) {
			return false
		}
	}
	if len(f.allow) == 0 {
		return true
	}
	for _, m := range f.allow {
		if m.match(fl) {
			return true
		}
	}
	return false
}

// endpointSide selects the source or destination endpoint of a flow.
type endpointSide struct {
	ep   func(*flowv1.Flow) *flowv1.Endpoint
	ip   func(*flowv1.Flow) string
	port func(*flowv1.Flow) uint32
}

var (
	sourceSide = endpointSide{
		ep:   (*flowv1.Flow).GetSource,
		ip:   func(f *flowv1.Flow) string { return f.GetIp().GetSource() },
		port: func(f *flowv1.Flow) uint32 { return f.GetL4().GetSourcePort() },
	}
	destinationSide = endpointSide{
		ep:   (*flowv1.Flow).GetDestination,
		ip:   func(f *flowv1.Flow) string { return f.GetIp().GetDestination() },
		port: func(f *flowv1.Flow) uint32 { return f.GetL4().GetDestinationPort() },
	}
)

func compileOne(ff *flowv1.FlowFilter) (matcher, error) {
	var m matcher
	add := func(p func(*flowv1.Flow) bool) { m = append(m, p) }
	for _, side := range []struct {
		name                string
		s                   endpointSide
		ns, pods, sels, ips []string
		ports               []uint32
	}{
		{"source", sourceSide, ff.GetSourceNamespace(), ff.GetSourcePod(), ff.GetSourceLabel(), ff.GetSourceIp(), ff.GetSourcePort()},
		{"destination", destinationSide, ff.GetDestinationNamespace(), ff.GetDestinationPod(), ff.GetDestinationLabel(), ff.GetDestinationIp(), ff.GetDestinationPort()},
	} {
		s := side.s
		if ns := side.ns; len(ns) > 0 {
			add(func(f *flowv1.Flow) bool { return slices.Contains(ns, s.ep(f).GetNamespace()) })
		}
		if len(side.pods) > 0 {
			pods, err := parseAll(side.name+" pod", side.pods, parseNamespacedPrefix)
			if err != nil {
				return nil, err
			}
			add(func(f *flowv1.Flow) bool {
				ep := s.ep(f)
				if ep.GetPod() == "" {
					return false
				}
				return slices.ContainsFunc(pods, func(np namespacedPrefix) bool { return np.match(ep.GetNamespace(), ep.GetPod()) })
			})
		}
		if len(side.sels) > 0 {
			sels, err := parseAll(side.name+" label selector", side.sels, func(s string) (labels.Selector, error) { return labels.Parse(s) })
			if err != nil {
				return nil, err
			}
			add(func(f *flowv1.Flow) bool {
				ep := s.ep(f)
				if ep.GetPod() == "" {
					return false // addresses outside the cluster carry no labels
				}
				set := labels.Set(ep.GetLabels())
				return slices.ContainsFunc(sels, func(sel labels.Selector) bool { return sel.Matches(set) })
			})
		}
		if len(side.ips) > 0 {
			prefixes, err := parseAll(side.name+" IP", side.ips, parseIPOrCIDR)
			if err != nil {
				return nil, err
			}
			add(func(f *flowv1.Flow) bool {
				a, err := netip.ParseAddr(s.ip(f))
				if err != nil {
					return false
				}
				a = a.Unmap()
				return slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(a) })
			})
		}
		if ports := side.ports; len(ports) > 0 {
			add(func(f *flowv1.Flow) bool { return slices.Contains(ports, s.port(f)) })
		}
	}
	if v := ff.GetVerdict(); len(v) > 0 {
		add(func(f *flowv1.Flow) bool { return slices.Contains(v, f.GetVerdict()) })
	}
	if r := ff.GetReason(); len(r) > 0 {
		add(func(f *flowv1.Flow) bool { return slices.Contains(r, f.GetReason()) })
	}
	if p := ff.GetProtocol(); len(p) > 0 {
		add(func(f *flowv1.Flow) bool { return slices.Contains(p, f.GetL4().GetProtocol()) })
	}
	if d := ff.GetDirection(); len(d) > 0 {
		add(func(f *flowv1.Flow) bool { return slices.Contains(d, f.GetDirection()) })
	}
	if t := ff.GetType(); len(t) > 0 {
		add(func(f *flowv1.Flow) bool { return slices.Contains(t, f.GetType()) })
	}
	if n := ff.GetNode(); len(n) > 0 {
		// A flow paired from two nodes (Observations) matches either node.
		add(func(f *flowv1.Flow) bool {
			if slices.Contains(n, f.GetNode()) {
				return true
			}
			for _, o := range f.GetObservations() {
				if slices.Contains(n, o.GetNode()) {
					return true
				}
			}
			return false
		})
	}
	if len(ff.GetPolicy()) > 0 {
		names, err := parseAll("policy", ff.GetPolicy(), parsePolicyName)
		if err != nil {
			return nil, err
		}
		add(func(f *flowv1.Flow) bool {
			lists := [][]*flowv1.PolicyRef{f.GetAllowedBy(), f.GetDeniedBy(), f.GetIsolatedBy(),
				{f.GetAudit().GetRule()}, f.GetAudit().GetIsolatedBy()}
			for _, o := range f.GetObservations() { // both points of a paired flow
				lists = append(lists, o.GetAllowedBy(), o.GetDeniedBy(), o.GetIsolatedBy(), []*flowv1.PolicyRef{o.GetAudit().GetRule()}, o.GetAudit().GetIsolatedBy())
			}
			for _, refs := range lists {
				for _, r := range refs {
					if r != nil && slices.ContainsFunc(names, func(pn policyName) bool { return pn.match(r) }) {
						return true
					}
				}
			}
			return false
		})
	}
	if len(ff.GetService()) > 0 {
		names, err := parseAll("service", ff.GetService(), parseNamespacedName)
		if err != nil {
			return nil, err
		}
		add(func(f *flowv1.Flow) bool {
			svc := f.GetService()
			return svc.GetName() != "" && slices.ContainsFunc(names, func(nn namespacedName) bool { return nn.match(svc.GetNamespace(), svc.GetName()) })
		})
	}
	return m, nil
}

// parseAll parses every value of one field; the error names the field and value.
func parseAll[T any](field string, raws []string, parse func(string) (T, error)) ([]T, error) {
	out := make([]T, 0, len(raws))
	for _, raw := range raws {
		v, err := parse(raw)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", field, raw, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// namespacedName is "namespace/name" or "name" (any namespace).
type namespacedName struct{ namespace, name string }

func parseNamespacedName(s string) (namespacedName, error) {
	ns, name, found := strings.Cut(s, "/")
	if !found {
		ns, name = "", s
	}
	if name == "" || (found && ns == "") || strings.Contains(name, "/") {
		return namespacedName{}, fmt.Errorf(`want "namespace/name" or "name"`)
	}
	return namespacedName{ns, name}, nil
}

func (n namespacedName) match(ns, name string) bool {
	return name == n.name && (n.namespace == "" || ns == n.namespace)
}

// ClusterPolicyPrefix in a policy filter ("cnp/NAME") names a
// ClusterNetworkPolicy, which has no namespace.
const ClusterPolicyPrefix = "cnp/"

// policyName is a policy filter: "namespace/name" (a NetworkPolicy),
// "cnp/name" (a ClusterNetworkPolicy) or "name" (a policy of either kind,
// in any namespace).
type policyName struct {
	namespacedName
	cluster bool
}

func parsePolicyName(s string) (policyName, error) {
	if name, ok := strings.CutPrefix(s, ClusterPolicyPrefix); ok {
		if name == "" || strings.Contains(name, "/") {
			return policyName{}, fmt.Errorf(`want "cnp/name" for a ClusterNetworkPolicy`)
		}
		return policyName{namespacedName: namespacedName{name: name}, cluster: true}, nil
	}
	nn, err := parseNamespacedName(s)
	if err != nil {
		return policyName{}, fmt.Errorf(`want "namespace/name", "cnp/name" or "name"`)
	}
	return policyName{namespacedName: nn}, nil
}

func (p policyName) match(r *flowv1.PolicyRef) bool {
	isCluster := r.GetKind() == KindClusterNetworkPolicy
	if p.cluster || p.namespace != "" {
		return p.cluster == isCluster && p.namespacedName.match(r.GetNamespace(), r.GetName())
	}
	return r.GetName() == p.name
}

// namespacedPrefix is "namespace/pod-prefix" or "pod-prefix" (any namespace),
// as Hubble's --pod: "web-" matches every replica of a Deployment "web".
type namespacedPrefix struct{ namespace, prefix string }

func parseNamespacedPrefix(s string) (namespacedPrefix, error) {
	ns, p, found := strings.Cut(s, "/")
	if !found {
		return namespacedPrefix{"", s}, nil
	}
	if ns == "" || strings.Contains(p, "/") {
		return namespacedPrefix{}, fmt.Errorf(`want "namespace/pod" or "pod"`)
	}
	return namespacedPrefix{ns, p}, nil
}

func (n namespacedPrefix) match(ns, pod string) bool {
	return strings.HasPrefix(pod, n.prefix) && (n.namespace == "" || ns == n.namespace)
}

func parseIPOrCIDR(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("not an IP address or CIDR")
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("not an IP address or CIDR")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
