package flow

import (
	"fmt"
	"slices"
	"strings"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// enumName returns an enum value's name without its type prefix
// ("VERDICT_DENIED" -> "DENIED").
func enumName(full, prefix string) string { return strings.TrimPrefix(full, prefix) }

// VerdictName is the short name of v, e.g. "DENIED".
func VerdictName(v flowv1.Verdict) string { return enumName(v.String(), "VERDICT_") }

// ReasonName is the short name of r, e.g. "NO_RULE_MATCHED".
func ReasonName(r flowv1.Reason) string { return enumName(r.String(), "REASON_") }

// ProtocolName is the short name of p, e.g. "TCP".
func ProtocolName(p flowv1.Protocol) string { return enumName(p.String(), "PROTOCOL_") }

// TierName is "Admin" or "Baseline" ("" when unset).
func TierName(t flowv1.ClusterTier) string {
	switch t {
	case flowv1.ClusterTier_CLUSTER_TIER_ADMIN:
		return string(policy.TierAdmin)
	case flowv1.ClusterTier_CLUSTER_TIER_BASELINE:
		return string(policy.TierBaseline)
	}
	return ""
}

// ActionName is "Accept", "Deny" or "Pass" ("" when unset).
func ActionName(a flowv1.ClusterAction) string {
	switch a {
	case flowv1.ClusterAction_CLUSTER_ACTION_ACCEPT:
		return string(policy.ActionAccept)
	case flowv1.ClusterAction_CLUSTER_ACTION_DENY:
		return string(policy.ActionDeny)
	case flowv1.ClusterAction_CLUSTER_ACTION_PASS:
		return string(policy.ActionPass)
	}
	return ""
}

// DirectionName is the short name of d, e.g. "INGRESS".
func DirectionName(d flowv1.TrafficDirection) string {
	return enumName(d.String(), "TRAFFIC_DIRECTION_")
}

// parseEnum accepts a short or full name in any case ("denied", "VERDICT_DENIED")
// and a few aliases people type (hubble's "dropped", "forwarded").
func parseEnum(kind, prefix, s string, values map[string]int32, aliases map[string]string) (int32, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	if a, ok := aliases[u]; ok {
		u = a
	}
	if v, ok := values[prefix+u]; ok && v != 0 {
		return v, nil
	}
	if v, ok := values[u]; ok && v != 0 {
		return v, nil
	}
	var names []string
	for n, v := range values {
		if v != 0 {
			names = append(names, strings.ToLower(strings.TrimPrefix(n, prefix)))
		}
	}
	slices.Sort(names)
	return 0, fmt.Errorf("unknown %s %q: use one of %s", kind, s, strings.Join(names, ", "))
}

// ParseVerdict parses "allowed", "denied" (or hubble's "forwarded", "dropped").
func ParseVerdict(s string) (flowv1.Verdict, error) {
	v, err := parseEnum("verdict", "VERDICT_", s, flowv1.Verdict_value,
		map[string]string{"FORWARDED": "ALLOWED", "DROPPED": "DENIED", "ALLOW": "ALLOWED", "DENY": "DENIED", "DROP": "DENIED"})
	return flowv1.Verdict(v), err
}

// ParseReason parses a reason such as "no_rule_matched" or "not-isolated".
func ParseReason(s string) (flowv1.Reason, error) {
	v, err := parseEnum("reason", "REASON_", strings.ReplaceAll(s, "-", "_"), flowv1.Reason_value, nil)
	return flowv1.Reason(v), err
}

// ParseProtocol parses "tcp", "udp", "sctp", "icmp", "icmpv6".
func ParseProtocol(s string) (flowv1.Protocol, error) {
	v, err := parseEnum("protocol", "PROTOCOL_", s, flowv1.Protocol_value, nil)
	return flowv1.Protocol(v), err
}

// ParseDirection parses "ingress" or "egress".
func ParseDirection(s string) (flowv1.TrafficDirection, error) {
	v, err := parseEnum("direction", "TRAFFIC_DIRECTION_", s, flowv1.TrafficDirection_value, nil)
	return flowv1.TrafficDirection(v), err
}
