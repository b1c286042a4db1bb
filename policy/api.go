package policy

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// Snapshot is the cluster state a Decision is computed from. Objects are read,
// never modified. Namespaces referenced by pods or policies but absent here are
// treated as having only the kubernetes.io/metadata.name label.
type Snapshot struct {
	Namespaces []*corev1.Namespace
	Pods       []*corev1.Pod
	// PodRecords are more pods, as the engine's records (NewPod): for a
	// caller that keeps records rather than objects (the node agent). The
	// Engine's methods that return pods make objects of them (Pod.Object).
	PodRecords []*Pod
	Policies   []*networkingv1.NetworkPolicy
	// NodeIPs are the addresses of cluster nodes; traffic from or to them is
	// node traffic, which NetworkPolicy does not restrict for local kubelet probes.
	NodeIPs []netip.Addr
	// ClusterPolicies are the cluster's ClusterNetworkPolicies (Admin and
	// Baseline tiers). v1alpha2 objects have the same schema: convert them.
	ClusterPolicies []*cnpv1beta1.ClusterNetworkPolicy
	// Nodes give node peers of ClusterNetworkPolicies their labels and
	// addresses (NodeAddresses); their addresses are node addresses as
	// NodeIPs are.
	Nodes []*corev1.Node
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

// PolicyRef names a policy: a NetworkPolicy, or a ClusterNetworkPolicy
// (Kind KindClusterNetworkPolicy, no Namespace).
type PolicyRef struct {
	Kind      string `json:"kind"` // "NetworkPolicy" or "ClusterNetworkPolicy"
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
	// ReasonAcceptedByClusterPolicy: a ClusterNetworkPolicy rule (Admin, or
	// Baseline for a pod no NetworkPolicy selects) accepts the traffic.
	ReasonAcceptedByClusterPolicy Reason = "AcceptedByClusterPolicy"
	// ReasonDeniedByClusterPolicy: a ClusterNetworkPolicy rule denies it.
	ReasonDeniedByClusterPolicy Reason = "DeniedByClusterPolicy"
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
	// Audit is set when enforcing the audited policies would change the
	// verdict: what would happen then, and why.
	Audit *AuditOutcome `json:"audit,omitempty"`
}

// AuditOutcome is the verdict the audited policies would give, enforced
// together with the enforced ones.
type AuditOutcome struct {
	Allowed bool              `json:"allowed"`
	Egress  DirectionDecision `json:"egress"`
	Ingress DirectionDecision `json:"ingress"`
	// Policies are the audited policies that took part in the decision.
	Policies []PolicyRef `json:"policies"`
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
	// direction fared: the explanation of a denial. Empty when a
	// ClusterNetworkPolicy decided in the Admin tier (NetworkPolicy is then
	// never consulted).
	Policies []PolicyEvaluation `json:"policies,omitempty"`

	// Tier is the tier that decided: Admin, NetworkPolicy (a policy selects
	// the pod) or Baseline; empty when none did (allowed by default, or not
	// applicable).
	Tier Tier `json:"tier,omitempty"`
	// ClusterRule is the ClusterNetworkPolicy rule that accepted or denied.
	ClusterRule *ClusterRuleMatch `json:"clusterRule,omitempty"`
	// Passed are the Pass rules that sent the traffic on to the next tier.
	Passed []ClusterRuleMatch `json:"passed,omitempty"`
	// ClusterPolicies are the ClusterNetworkPolicies consulted, in
	// evaluation order (Admin by priority, then Baseline by priority; the
	// same priority by name).
	ClusterPolicies []ClusterPolicyEvaluation `json:"clusterPolicies,omitempty"`
	// Summary is one sentence on the order of tiers when any
	// ClusterNetworkPolicy selects the pod, e.g. "Admin policy
	// `deny-monitoring` (priority 10) ingress rule 0 `deny-all` denies;
	// NetworkPolicy never consulted".
	Summary string `json:"summary,omitempty"`
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
	// Audited: the policy is audited, not enforced (only in AuditOutcome).
	Audited bool `json:"audited,omitempty"`
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
	// WarnDomainNames: a ClusterNetworkPolicy rule consulted names
	// domainNames peers, which are not enforced here: they match nothing.
	WarnDomainNames WarningCode = "DomainNamesNotEnforced"
)

// Warning flags a circumstance that changes how to read a Decision.
type Warning struct {
	Code    WarningCode `json:"code"`
	Message string      `json:"message"`
}

// KindClusterNetworkPolicy is PolicyRef.Kind for a cluster-scoped
// policy.networking.k8s.io ClusterNetworkPolicy (Namespace is empty).
const KindClusterNetworkPolicy = "ClusterNetworkPolicy"

// Tier is one stage of the evaluation order: Admin ClusterNetworkPolicies,
// then NetworkPolicy, then Baseline ClusterNetworkPolicies, then allow.
type Tier string

const (
	TierAdmin         Tier = "Admin"
	TierNetworkPolicy Tier = "NetworkPolicy"
	TierBaseline      Tier = "Baseline"
)

// ClusterAction is what a ClusterNetworkPolicy rule does with the traffic it matches.
type ClusterAction string

const (
	ActionAccept ClusterAction = "Accept"
	ActionDeny   ClusterAction = "Deny"
	ActionPass   ClusterAction = "Pass"
)

// ClusterRuleRef names one ClusterNetworkPolicy rule: the Index-th entry of
// the policy's ingress or egress list, with what identifies it to people.
type ClusterRuleRef struct {
	Policy    PolicyRef     `json:"policy"`
	Tier      Tier          `json:"tier"`
	Priority  int32         `json:"priority"`
	Direction Direction     `json:"direction"`
	Index     int           `json:"index"`
	Name      string        `json:"name,omitempty"`
	Action    ClusterAction `json:"action"`
}

// ClusterRuleMatch is a ClusterNetworkPolicy rule that matched, with the
// peer and protocols entry that did (-1 for protocols: the rule has none).
type ClusterRuleMatch struct {
	Rule     ClusterRuleRef `json:"rule"`
	Peer     int            `json:"peer"`
	Protocol int            `json:"protocol"`
}

// ClusterPolicyEvaluation is one ClusterNetworkPolicy that selects the
// subject in one direction, and its rules tried in order until the first
// that matched (Rules stops there: later rules are never consulted).
type ClusterPolicyEvaluation struct {
	Policy   PolicyRef               `json:"policy"`
	Tier     Tier                    `json:"tier"`
	Priority int32                   `json:"priority"`
	Rules    []ClusterRuleEvaluation `json:"rules"`
	// Audited: the policy is audited, not enforced (only in AuditOutcome).
	Audited bool `json:"audited,omitempty"`
}

// ClusterRuleEvaluation is one ClusterNetworkPolicy rule tried.
type ClusterRuleEvaluation struct {
	Rule       ClusterRuleRef `json:"rule"`
	Matched    bool           `json:"matched"`
	Mismatches []Mismatch     `json:"mismatches,omitempty"`
}
