package policy

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// Snapshot is the cluster state a Decision is computed from. Objects are read,
// never modified. Namespaces referenced by pods or policies but absent here are
// treated as having only the kubernetes.io/metadata.name label.
type Snapshot struct {
	Namespaces []*corev1.Namespace
	Pods       []*corev1.Pod
	Policies   []*networkingv1.NetworkPolicy
	// NodeIPs are the addresses of cluster nodes; traffic from or to them is
	// node traffic, which NetworkPolicy does not restrict for local kubelet probes.
	NodeIPs []netip.Addr
}

// Direction is the side of a connection a policy rule governs.
type Direction string

const (
	Ingress Direction = "Ingress"
	Egress  Direction = "Egress"
)

// Peer is one end of a connection: a pod, or an IP outside the pod network.
type Peer struct {
	// Pod is set when the end is a pod in the Snapshot.
	Pod *corev1.Pod
	// IP is the address of this end. For a pod it defaults to status.podIP.
	IP netip.Addr
}

// Traffic is one connection attempt from Src to Dst.
type Traffic struct {
	Src, Dst Peer
	// Protocol defaults to TCP.
	Protocol corev1.Protocol
	// Port is the destination port number. Named ports in policies resolve
	// against the destination pod's container ports (name + protocol).
	Port int32
}

// PolicyRef names a policy. Kind leaves room for ClusterNetworkPolicy tiers.
type PolicyRef struct {
	Kind      string `json:"kind"` // "NetworkPolicy"
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// RuleRef names one rule: the Index-th entry of the policy's ingress or egress list.
type RuleRef struct {
	Policy    PolicyRef `json:"policy"`
	Direction Direction `json:"direction"`
	Index     int       `json:"index"`
}

// Reason says why one direction was decided the way it was.
type Reason string

const (
	// ReasonNotIsolated: no policy selects the pod for this direction, so everything is allowed.
	ReasonNotIsolated Reason = "NotIsolated"
	// ReasonAllowedByRule: the pod is isolated and at least one rule allows the traffic.
	ReasonAllowedByRule Reason = "AllowedByRule"
	// ReasonNoRuleMatched: the pod is isolated and no rule of any selecting policy allows the traffic.
	ReasonNoRuleMatched Reason = "NoRuleMatched"
	// ReasonNotApplicable: this side is not a pod subject to policy (an external IP,
	// a hostNetwork pod, node traffic), so it does not restrict the traffic.
	ReasonNotApplicable Reason = "NotApplicable"
)

// Decision is the answer for one Traffic: allowed only if the source's egress
// side AND the destination's ingress side both allow it.
type Decision struct {
	Allowed bool `json:"allowed"`
	// Egress is the source pod's side, Ingress the destination pod's side.
	Egress   DirectionDecision `json:"egress"`
	Ingress  DirectionDecision `json:"ingress"`
	Warnings []Warning         `json:"warnings,omitempty"`
}

// DirectionDecision is the verdict of one side.
type DirectionDecision struct {
	Direction Direction `json:"direction"`
	Allowed   bool      `json:"allowed"`
	Reason    Reason    `json:"reason"`
	// Isolated is true when at least one policy selects the pod for this direction.
	Isolated   bool        `json:"isolated"`
	IsolatedBy []PolicyRef `json:"isolatedBy,omitempty"`
	// AllowedBy lists every rule that allows the traffic (the union is additive).
	AllowedBy []RuleMatch `json:"allowedBy,omitempty"`
	// Policies has, for every selecting policy, how each of its rules in this
	// direction fared: the explanation of a denial.
	Policies []PolicyEvaluation `json:"policies,omitempty"`
}

// RuleMatch is a rule that allowed the traffic and the peer and port entries that matched.
type RuleMatch struct {
	Rule RuleRef `json:"rule"`
	// Peer is the index in from/to that matched, or -1 when the rule has no peers (all peers).
	Peer int `json:"peer"`
	// Port is the index in ports that matched, or -1 when the rule has no ports (all ports).
	Port int `json:"port"`
}

// PolicyEvaluation is one selecting policy and its rules in one direction.
//
// Rules is empty (never null) when the policy has no rules in this direction:
// it then denies everything in that direction for the pods it selects, and
// Summary says so ("... has no ingress rules: denies all ingress"). Renderers
// should print Summary first, then each rule with its Mismatches.
type PolicyEvaluation struct {
	Policy PolicyRef        `json:"policy"`
	Rules  []RuleEvaluation `json:"rules"`
	// Summary is one plain-language sentence: which pod the policy selects,
	// through which podSelector, and what its rules did.
	Summary string `json:"summary"`
}

// RuleEvaluation says whether a rule matched and, if not, why.
type RuleEvaluation struct {
	Rule    RuleRef `json:"rule"`
	Matched bool    `json:"matched"`
	// Mismatches are the reasons it did not match, one per peer or port entry tried.
	Mismatches []Mismatch `json:"mismatches,omitempty"`
}

// MismatchKind says which part of a rule failed to match.
type MismatchKind string

const (
	MismatchPeer MismatchKind = "Peer"
	MismatchPort MismatchKind = "Port"
)

// Mismatch is one reason a rule did not match, in plain language and structured.
type Mismatch struct {
	Kind MismatchKind `json:"kind"`
	// Index is the peer or port entry's index in the rule.
	Index int `json:"index"`
	// Message is a plain-language sentence, e.g.
	// `namespace "web" does not match namespaceSelector team=db (label team is absent)`.
	Message string `json:"message"`
}

// WarningCode identifies a Warning for programs; Message is for people.
type WarningCode string

const (
	WarnHostNetwork        WarningCode = "HostNetwork"
	WarnNoPodIP            WarningCode = "NoPodIP"
	WarnNamedPortAbsent    WarningCode = "NamedPortAbsent"
	WarnNamedPortAmbiguous WarningCode = "NamedPortAmbiguous"
	WarnSCTP               WarningCode = "SCTP"
	WarnLoopback           WarningCode = "Loopback"
	WarnNodeTraffic        WarningCode = "NodeTraffic"
)

// Warning flags a circumstance that changes how to read a Decision.
type Warning struct {
	Code    WarningCode `json:"code"`
	Message string      `json:"message"`
}
