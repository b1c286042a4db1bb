// Code generated from the upstream suite's test sources by a one-off
// extraction, then reviewed; DO NOT EDIT by hand without checking upstream.

package conformance

import "github.com/kubectl-netpol/kubectl-netpol/policy"

// cnpCases are the ported upstream ClusterNetworkPolicy conformance tests,
// in upstream's file order. NotPortedCNP lists the others.
var cnpCases = []CNPCase{
	{Name: "CNPAdminTierEgressNamedPort", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy", "SupportClusterNetworkPolicyNamedPorts"}, Manifests: []string{"base/admin_tier/standard-egress-tcp-rules.yaml"}, Steps: []CNPStep{
		{Name: "Should support an 'allow-egress' policy for named port", Actions: []CNPAction{
			setNamedPort("egress-tcp", policy.Egress, 5, "web"),
			probe("gryffindor/harry-potter-0", "hufflepuff/cedric-diggory-1", "TCP", 80, true),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-1", "TCP", 8080, false),
		}},
	}},
	{Name: "CNPAdminTierEgressNodePeers", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy", "SupportClusterNetworkPolicyEgressNodePeers"}, Manifests: []string{"base/admin_tier/experimental-egress-selector-rules.yaml"}, Steps: []CNPStep{
		{Name: "Should support an 'allow-egress' rule policy for egress-node-peer", Actions: []CNPAction{
			probe("gryffindor/harry-potter-1", "forbidden-forrest/centaur-1", "TCP", 34345, true),
		}},
		{Name: "Should support a 'pass-egress' rule policy for egress-node-peer", Actions: []CNPAction{
			probe("gryffindor/harry-potter-1", "forbidden-forrest/centaur-1", "UDP", 34347, true),
		}},
		{Name: "Should support a 'deny-egress' rule policy for egress-node-peer", Actions: []CNPAction{
			probe("gryffindor/harry-potter-1", "forbidden-forrest/centaur-1", "TCP", 34346, false),
			probe("gryffindor/harry-potter-1", "forbidden-forrest/centaur-1", "UDP", 34349, false),
			probe("gryffindor/harry-potter-1", "forbidden-forrest/centaur-1", "SCTP", 34351, false),
		}},
	}},
	{Name: "CNPAdminTierIngressNamedPort", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy", "SupportClusterNetworkPolicyNamedPorts"}, Manifests: []string{"base/admin_tier/standard-ingress-udp-rules.yaml"}, Steps: []CNPStep{
		{Name: "Should support an 'allow-ingress' policy for named port", Actions: []CNPAction{
			setNamedPort("ingress-udp", policy.Ingress, 5, "dns"),
			probe("gryffindor/harry-potter-0", "hufflepuff/cedric-diggory-1", "UDP", 53, true),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-1", "UDP", 5353, false),
		}},
	}},
	{Name: "CNPAdminTierEgressInlineCIDRPeers", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/admin_tier/standard-egress-inline-cidr-rules.yaml"}, Steps: []CNPStep{
		{Name: "Should support a 'deny-egress' rule policy for egress-cidr-peer", Actions: []CNPAction{
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-0", "TCP", 80, false),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-0", "UDP", 53, false),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-0", "SCTP", 9003, false),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-0", "TCP", 80, false),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-0", "UDP", 53, false),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-0", "SCTP", 9003, false),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "UDP", 53, true),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "SCTP", 9003, true),
			namespaceLabels("slytherin", "conformance-house", "denied-namespace-label"),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "TCP", 80, false),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "UDP", 53, false),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "SCTP", 9003, false),
			namespaceLabels("slytherin", "conformance-house", "slytherin"),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "UDP", 53, true),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "SCTP", 9003, true),
		}},
		{Name: "Should support an 'allow-egress' rule policy for egress-cidr-peer", Actions: []CNPAction{
			prependNetworksRule("inline-cidr-as-peers-example", "allow-egress-to-specific-podIPs", policy.ActionAccept, "ravenclaw/luna-lovegood-0", "hufflepuff/cedric-diggory-0"),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-0", "UDP", 53, true),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-0", "SCTP", 9003, true),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-0", "UDP", 53, true),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-0", "SCTP", 9003, true),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-1", "TCP", 80, false),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-1", "UDP", 53, false),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-1", "SCTP", 9003, false),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-1", "TCP", 80, false),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-1", "UDP", 53, false),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-1", "SCTP", 9003, false),
		}},
	}},
	{Name: "CNPAdminTierEgressSCTP", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/admin_tier/standard-egress-sctp-rules.yaml"}, Steps: []CNPStep{
		{Name: "Should support an 'allow-egress' policy for SCTP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			probe("ravenclaw/luna-lovegood-0", "gryffindor/harry-potter-0", "SCTP", 9003, true),
			probe("ravenclaw/luna-lovegood-1", "gryffindor/harry-potter-0", "SCTP", 9005, true),
		}},
		{Name: "Should support an 'allow-egress' policy for SCTP protocol at the specified port", Actions: []CNPAction{
			probe("ravenclaw/luna-lovegood-0", "hufflepuff/cedric-diggory-1", "SCTP", 9003, true),
			probe("ravenclaw/luna-lovegood-1", "hufflepuff/cedric-diggory-1", "SCTP", 9005, false),
		}},
		{Name: "Should support an 'deny-egress' policy for SCTP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			reorder("egress-sctp", policy.Egress, 1, 0),
			probe("ravenclaw/luna-lovegood-0", "gryffindor/harry-potter-1", "SCTP", 9003, false),
			probe("ravenclaw/luna-lovegood-1", "gryffindor/harry-potter-1", "SCTP", 9005, false),
		}},
		{Name: "Should support a 'deny-egress' policy for SCTP protocol at the specified port", Actions: []CNPAction{
			probe("ravenclaw/luna-lovegood-0", "slytherin/draco-malfoy-0", "SCTP", 9003, false),
			probe("ravenclaw/luna-lovegood-1", "slytherin/draco-malfoy-0", "SCTP", 9005, true),
		}},
		{Name: "Should support an 'pass-egress' policy for SCTP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			reorder("egress-sctp", policy.Egress, 2, 1, 0),
			probe("ravenclaw/luna-lovegood-0", "gryffindor/harry-potter-1", "SCTP", 9003, true),
			probe("ravenclaw/luna-lovegood-1", "gryffindor/harry-potter-1", "SCTP", 9005, true),
		}},
		{Name: "Should support a 'pass-egress' policy for SCTP protocol at the specified port", Actions: []CNPAction{
			reorder("egress-sctp", policy.Egress, 0, 1, 2, 4, 3),
			probe("ravenclaw/luna-lovegood-0", "slytherin/draco-malfoy-0", "SCTP", 9003, true),
			probe("ravenclaw/luna-lovegood-1", "slytherin/draco-malfoy-0", "SCTP", 9005, true),
		}},
	}},
	{Name: "CNPAdminTierEgressTCP", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/admin_tier/standard-egress-tcp-rules.yaml"}, Steps: []CNPStep{
		{Name: "Should support an 'allow-egress' policy for TCP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-0", "TCP", 8080, true),
		}},
		{Name: "Should support an 'allow-egress' policy for TCP protocol at the specified port", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "hufflepuff/cedric-diggory-1", "TCP", 8080, true),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-1", "TCP", 80, false),
		}},
		{Name: "Should not affect ingress traffic when only egress rules are specified", Actions: []CNPAction{
			probe("ravenclaw/luna-lovegood-0", "gryffindor/harry-potter-0", "TCP", 80, true),
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-1", "TCP", 80, true),
		}},
		{Name: "Should support an 'deny-egress' policy for TCP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			reorder("egress-tcp", policy.Egress, 1, 0),
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-1", "TCP", 80, false),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-1", "TCP", 8080, false),
		}},
		{Name: "Should support a 'deny-egress' policy for TCP protocol at the specified port", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-0", "TCP", 80, false),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "TCP", 8080, true),
		}},
		{Name: "Should support an 'pass-egress' policy for TCP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			reorder("egress-tcp", policy.Egress, 2, 1, 0),
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-0", "TCP", 8080, true),
		}},
		{Name: "Should support a 'pass-egress' policy for TCP protocol at the specified port", Actions: []CNPAction{
			reorder("egress-tcp", policy.Egress, 0, 1, 2, 4, 3),
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "TCP", 8080, true),
		}},
	}},
	{Name: "CNPAdminTierEgressUDP", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/admin_tier/standard-egress-udp-rules.yaml"}, Steps: []CNPStep{
		{Name: "Should support an 'allow-egress' policy for UDP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			probe("hufflepuff/cedric-diggory-0", "ravenclaw/luna-lovegood-0", "UDP", 53, true),
			probe("hufflepuff/cedric-diggory-1", "ravenclaw/luna-lovegood-0", "UDP", 5353, true),
		}},
		{Name: "Should support an 'allow-egress' policy for UDP protocol at the specified port", Actions: []CNPAction{
			probe("hufflepuff/cedric-diggory-0", "gryffindor/harry-potter-1", "UDP", 53, true),
			probe("hufflepuff/cedric-diggory-1", "gryffindor/harry-potter-1", "UDP", 5353, false),
		}},
		{Name: "Should support an 'deny-egress' policy for UDP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			reorder("egress-udp", policy.Egress, 1, 0),
			probe("hufflepuff/cedric-diggory-0", "ravenclaw/luna-lovegood-1", "UDP", 53, false),
			probe("hufflepuff/cedric-diggory-1", "ravenclaw/luna-lovegood-1", "UDP", 5353, false),
		}},
		{Name: "Should support a 'deny-egress' policy for UDP protocol at the specified port", Actions: []CNPAction{
			probe("hufflepuff/cedric-diggory-0", "slytherin/draco-malfoy-0", "UDP", 5353, false),
			probe("hufflepuff/cedric-diggory-1", "slytherin/draco-malfoy-0", "UDP", 53, true),
		}},
		{Name: "Should support an 'pass-egress' policy for UDP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			reorder("egress-udp", policy.Egress, 2, 1, 0),
			probe("hufflepuff/cedric-diggory-0", "ravenclaw/luna-lovegood-1", "UDP", 5353, true),
			probe("hufflepuff/cedric-diggory-1", "ravenclaw/luna-lovegood-1", "UDP", 53, true),
		}},
		{Name: "Should support a 'pass-egress' policy for UDP protocol at the specified port", Actions: []CNPAction{
			reorder("egress-udp", policy.Egress, 0, 1, 2, 4, 3),
			probe("hufflepuff/cedric-diggory-0", "slytherin/draco-malfoy-0", "UDP", 5353, true),
			probe("hufflepuff/cedric-diggory-1", "slytherin/draco-malfoy-0", "UDP", 53, true),
		}},
	}},
	{Name: "CNPAdminTierGress", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/admin_tier/standard-gress-rules-combined.yaml"}, Steps: []CNPStep{
		{Name: "Should support an 'allow-gress' policy across different protocols", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-0", "UDP", 53, true),
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-0", "SCTP", 9003, true),
			probe("ravenclaw/luna-lovegood-0", "gryffindor/harry-potter-0", "TCP", 80, true),
			probe("ravenclaw/luna-lovegood-1", "gryffindor/harry-potter-0", "UDP", 53, true),
			probe("ravenclaw/luna-lovegood-1", "gryffindor/harry-potter-0", "SCTP", 9003, true),
		}},
		{Name: "Should support an 'allow-gress' policy across different protocols at the specified ports", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "hufflepuff/cedric-diggory-1", "TCP", 8080, true),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-1", "TCP", 80, false),
			probe("gryffindor/harry-potter-0", "hufflepuff/cedric-diggory-1", "UDP", 5353, true),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-1", "UDP", 53, false),
			probe("gryffindor/harry-potter-0", "hufflepuff/cedric-diggory-1", "SCTP", 9003, true),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-1", "SCTP", 9005, false),
			probe("hufflepuff/cedric-diggory-0", "gryffindor/harry-potter-1", "TCP", 80, true),
			probe("hufflepuff/cedric-diggory-1", "gryffindor/harry-potter-1", "TCP", 8080, false),
			probe("hufflepuff/cedric-diggory-0", "gryffindor/harry-potter-1", "UDP", 5353, true),
			probe("hufflepuff/cedric-diggory-1", "gryffindor/harry-potter-1", "UDP", 53, false),
			probe("hufflepuff/cedric-diggory-0", "gryffindor/harry-potter-1", "SCTP", 9003, true),
			probe("hufflepuff/cedric-diggory-1", "gryffindor/harry-potter-1", "SCTP", 9005, false),
		}},
		{Name: "Should support an 'deny-gress' policy across different protocols", Actions: []CNPAction{
			reorder("gress-rules", policy.Egress, 1, 0),
			reorder("gress-rules", policy.Ingress, 1, 0),
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-1", "TCP", 80, false),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-1", "UDP", 53, false),
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-1", "SCTP", 9003, false),
			probe("ravenclaw/luna-lovegood-0", "gryffindor/harry-potter-1", "TCP", 80, false),
			probe("ravenclaw/luna-lovegood-1", "gryffindor/harry-potter-1", "UDP", 53, false),
			probe("ravenclaw/luna-lovegood-1", "gryffindor/harry-potter-1", "SCTP", 9003, false),
		}},
		{Name: "Should support a 'deny-gress' policy across different protocols at the specified ports", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-0", "TCP", 80, false),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "TCP", 8080, true),
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-0", "UDP", 53, false),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "UDP", 5353, true),
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-0", "SCTP", 9003, false),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "SCTP", 9005, true),
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "TCP", 80, false),
			probe("slytherin/draco-malfoy-1", "gryffindor/harry-potter-0", "TCP", 8080, true),
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "UDP", 53, false),
			probe("slytherin/draco-malfoy-1", "gryffindor/harry-potter-0", "UDP", 5353, true),
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "SCTP", 9003, false),
			probe("slytherin/draco-malfoy-1", "gryffindor/harry-potter-0", "SCTP", 9005, true),
		}},
		{Name: "Should support an 'pass-gress' policy across different protocols", Actions: []CNPAction{
			reorder("gress-rules", policy.Egress, 2, 1, 0),
			reorder("gress-rules", policy.Ingress, 2, 1, 0),
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-0", "UDP", 5353, true),
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-0", "SCTP", 9003, true),
			probe("ravenclaw/luna-lovegood-0", "gryffindor/harry-potter-0", "TCP", 80, true),
			probe("ravenclaw/luna-lovegood-1", "gryffindor/harry-potter-0", "UDP", 53, true),
			probe("ravenclaw/luna-lovegood-1", "gryffindor/harry-potter-0", "SCTP", 9003, true),
		}},
		{Name: "Should support a 'pass-gress' policy across different protocols at the specified ports", Actions: []CNPAction{
			reorder("gress-rules", policy.Egress, 0, 1, 2, 4, 3),
			reorder("gress-rules", policy.Ingress, 0, 1, 2, 4, 3),
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "TCP", 8080, true),
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-0", "UDP", 53, true),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "UDP", 5353, true),
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-0", "SCTP", 9003, true),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "SCTP", 9005, true),
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "TCP", 80, true),
			probe("slytherin/draco-malfoy-1", "gryffindor/harry-potter-0", "TCP", 8080, true),
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "UDP", 53, true),
			probe("slytherin/draco-malfoy-1", "gryffindor/harry-potter-0", "UDP", 5353, true),
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "SCTP", 9003, true),
			probe("slytherin/draco-malfoy-1", "gryffindor/harry-potter-0", "SCTP", 9005, true),
		}},
	}},
	{Name: "CNPAdminTierIngressSCTP", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/admin_tier/standard-ingress-sctp-rules.yaml"}, Steps: []CNPStep{
		{Name: "Should support an 'allow-ingress' policy for SCTP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-0", "SCTP", 9003, true),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-0", "SCTP", 9005, true),
		}},
		{Name: "Should support an 'allow-ingress' policy for SCTP protocol at the specified port", Actions: []CNPAction{
			probe("hufflepuff/cedric-diggory-0", "ravenclaw/luna-lovegood-1", "SCTP", 9003, true),
			probe("hufflepuff/cedric-diggory-1", "ravenclaw/luna-lovegood-1", "SCTP", 9005, false),
		}},
		{Name: "Should support an 'deny-ingress' policy for SCTP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			reorder("ingress-sctp", policy.Ingress, 1, 0),
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-1", "SCTP", 9003, false),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-1", "SCTP", 9005, false),
		}},
		{Name: "Should support a 'deny-ingress' policy for SCTP protocol at the specified port", Actions: []CNPAction{
			probe("slytherin/draco-malfoy-0", "ravenclaw/luna-lovegood-0", "SCTP", 9003, false),
			probe("slytherin/draco-malfoy-1", "ravenclaw/luna-lovegood-0", "SCTP", 9005, true),
		}},
		{Name: "Should support an 'pass-ingress' policy for SCTP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			reorder("ingress-sctp", policy.Ingress, 2, 1, 0),
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-1", "SCTP", 9003, true),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-1", "SCTP", 9005, true),
		}},
		{Name: "Should support a 'pass-ingress' policy for SCTP protocol at the specified port", Actions: []CNPAction{
			reorder("ingress-sctp", policy.Ingress, 0, 1, 2, 4, 3),
			probe("slytherin/draco-malfoy-0", "ravenclaw/luna-lovegood-0", "SCTP", 9003, true),
			probe("slytherin/draco-malfoy-1", "ravenclaw/luna-lovegood-0", "SCTP", 9005, true),
		}},
	}},
	{Name: "CNPAdminTierIngressTCP", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/admin_tier/standard-ingress-tcp-rules.yaml"}, Steps: []CNPStep{
		{Name: "Should support an 'allow-ingress' policy for TCP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			probe("ravenclaw/luna-lovegood-0", "gryffindor/harry-potter-0", "TCP", 80, true),
			probe("ravenclaw/luna-lovegood-1", "gryffindor/harry-potter-0", "TCP", 8080, true),
		}},
		{Name: "Should support an 'allow-ingress' policy for TCP protocol at the specified port", Actions: []CNPAction{
			probe("hufflepuff/cedric-diggory-0", "gryffindor/harry-potter-1", "TCP", 80, true),
			probe("hufflepuff/cedric-diggory-1", "gryffindor/harry-potter-1", "TCP", 8080, false),
		}},
		{Name: "Should not affect egress traffic when only ingress rules are specified", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "TCP", 80, true),
		}},
		{Name: "Should support an 'deny-ingress' policy for TCP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			reorder("ingress-tcp", policy.Ingress, 1, 0),
			probe("ravenclaw/luna-lovegood-0", "gryffindor/harry-potter-1", "TCP", 80, false),
			probe("ravenclaw/luna-lovegood-1", "gryffindor/harry-potter-1", "TCP", 8080, false),
		}},
		{Name: "Should support a 'deny-ingress' policy for TCP protocol at the specified port", Actions: []CNPAction{
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "TCP", 80, false),
			probe("slytherin/draco-malfoy-1", "gryffindor/harry-potter-0", "TCP", 8080, true),
		}},
		{Name: "Should support an 'pass-ingress' policy for TCP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			reorder("ingress-tcp", policy.Ingress, 2, 1, 0),
			probe("ravenclaw/luna-lovegood-0", "gryffindor/harry-potter-0", "TCP", 80, true),
			probe("ravenclaw/luna-lovegood-1", "gryffindor/harry-potter-0", "TCP", 8080, true),
		}},
		{Name: "Should support a 'pass-ingress' policy for TCP protocol at the specified port", Actions: []CNPAction{
			reorder("ingress-tcp", policy.Ingress, 0, 1, 2, 4, 3),
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "TCP", 80, true),
			probe("slytherin/draco-malfoy-1", "gryffindor/harry-potter-0", "TCP", 8080, true),
		}},
	}},
	{Name: "CNPAdminTierIngressUDP", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/admin_tier/standard-ingress-udp-rules.yaml"}, Steps: []CNPStep{
		{Name: "Should support an 'allow-ingress' policy for UDP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			probe("ravenclaw/luna-lovegood-0", "hufflepuff/cedric-diggory-0", "UDP", 53, true),
			probe("ravenclaw/luna-lovegood-1", "hufflepuff/cedric-diggory-0", "UDP", 5353, true),
		}},
		{Name: "Should support an 'allow-ingress' policy for UDP protocol at the specified port", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "hufflepuff/cedric-diggory-1", "UDP", 53, true),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-1", "UDP", 5353, false),
		}},
		{Name: "Should support an 'deny-ingress' policy for UDP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			reorder("ingress-udp", policy.Ingress, 1, 0),
			probe("ravenclaw/luna-lovegood-0", "hufflepuff/cedric-diggory-1", "UDP", 53, false),
			probe("ravenclaw/luna-lovegood-1", "hufflepuff/cedric-diggory-1", "UDP", 5353, false),
		}},
		{Name: "Should support a 'deny-ingress' policy for UDP protocol at the specified port", Actions: []CNPAction{
			probe("slytherin/draco-malfoy-0", "hufflepuff/cedric-diggory-0", "UDP", 5353, false),
			probe("slytherin/draco-malfoy-1", "hufflepuff/cedric-diggory-0", "UDP", 53, true),
		}},
		{Name: "Should support an 'pass-ingress' policy for UDP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			reorder("ingress-udp", policy.Ingress, 2, 1, 0),
			probe("ravenclaw/luna-lovegood-0", "hufflepuff/cedric-diggory-1", "UDP", 5353, true),
			probe("ravenclaw/luna-lovegood-1", "hufflepuff/cedric-diggory-1", "UDP", 53, true),
		}},
		{Name: "Should support a 'pass-ingress' policy for UDP protocol at the specified port", Actions: []CNPAction{
			reorder("ingress-udp", policy.Ingress, 0, 1, 2, 4, 3),
			probe("slytherin/draco-malfoy-0", "hufflepuff/cedric-diggory-0", "UDP", 5353, true),
			probe("slytherin/draco-malfoy-1", "hufflepuff/cedric-diggory-0", "UDP", 53, true),
		}},
	}},
	{Name: "CNPAdminTierIntegration", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/api_integration/standard-anp-np-banp.yaml"}, Steps: []CNPStep{
		{Name: "Should Deny traffic from slytherin to gryffindor respecting admin CNP", Actions: []CNPAction{
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "TCP", 80, false),
			probe("slytherin/draco-malfoy-1", "gryffindor/harry-potter-0", "TCP", 8080, false),
		}},
		{Name: "Should Deny traffic to slytherin from gryffindor respecting admin CNP", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-0", "TCP", 80, false),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "TCP", 8080, false),
		}},
		{Name: "Should support a 'pass-ingress' policy for admin CNP and respect the match for network policy", Actions: []CNPAction{
			setAction("pass-example", policy.Ingress, 0, policy.ActionPass),
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "TCP", 80, true),
			probe("slytherin/draco-malfoy-1", "gryffindor/harry-potter-0", "TCP", 8080, true),
		}},
		{Name: "Should support a 'pass-egress' policy for admin CNP and respect the match for network policy", Actions: []CNPAction{
			setAction("pass-example", policy.Egress, 0, policy.ActionPass),
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "TCP", 8080, true),
		}},
		{Name: "Should support a 'pass-ingress' policy for admin CNP and respect the match for baseline cluster network policy", Actions: []CNPAction{
			deletePolicy("network-policy-conformance-gryffindor", "allow-gress-from-to-slytherin-to-gryffindor"),
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "TCP", 80, false),
			probe("slytherin/draco-malfoy-1", "gryffindor/harry-potter-0", "TCP", 8080, false),
		}},
		{Name: "Should support a 'pass-egress' policy for admin CNP and respect the match for baseline cluster network policy", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-0", "TCP", 80, false),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "TCP", 8080, false),
		}},
	}},
	{Name: "CNPAdminTierPodSelector", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/admin_tier/standard-pod-selector-rules.yaml"}, Steps: []CNPStep{
		{Name: "Should support pod selectors in egress peers", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-0", "TCP", 8080, false),
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-1", "TCP", 80, false),
		}},
		{Name: "Should support pod selectors in ingress peers", Actions: []CNPAction{
			probe("slytherin/draco-malfoy-1", "gryffindor/harry-potter-1", "TCP", 80, false),
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "TCP", 80, true),
			podLabel("hufflepuff/cedric-diggory-0", "blocked"),
			probe("hufflepuff/cedric-diggory-0", "gryffindor/harry-potter-0", "TCP", 80, false),
			probe("hufflepuff/cedric-diggory-1", "gryffindor/harry-potter-0", "TCP", 80, true),
			podLabel("hufflepuff/cedric-diggory-0", ""),
			probe("hufflepuff/cedric-diggory-0", "gryffindor/harry-potter-0", "TCP", 80, true),
			podLabel("hufflepuff/cedric-diggory-1", "blocked"),
			probe("hufflepuff/cedric-diggory-1", "gryffindor/harry-potter-0", "TCP", 80, false),
			podLabel("hufflepuff/cedric-diggory-0", ""),
			podLabel("hufflepuff/cedric-diggory-1", ""),
		}},
		{Name: "Should support pod selectors in the subject", Actions: []CNPAction{
			probe("slytherin/draco-malfoy-0", "ravenclaw/luna-lovegood-1", "TCP", 80, true),
			podLabel("ravenclaw/luna-lovegood-0", "restricted"),
			probe("ravenclaw/luna-lovegood-0", "slytherin/draco-malfoy-0", "TCP", 80, false),
			probe("ravenclaw/luna-lovegood-1", "slytherin/draco-malfoy-0", "TCP", 80, true),
			podLabel("ravenclaw/luna-lovegood-0", ""),
			probe("ravenclaw/luna-lovegood-0", "slytherin/draco-malfoy-0", "TCP", 80, true),
			podLabel("ravenclaw/luna-lovegood-1", "restricted"),
			probe("ravenclaw/luna-lovegood-1", "slytherin/draco-malfoy-0", "TCP", 80, false),
			podLabel("ravenclaw/luna-lovegood-0", ""),
			podLabel("ravenclaw/luna-lovegood-1", ""),
		}},
	}},
	{Name: "CNPAdminTierPortRange", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/admin_tier/standard-port-range-rules-combined.yaml"}, Steps: []CNPStep{
		{Name: "Should support egress port range rules across different protocols", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-0", "TCP", 8080, true),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-0", "UDP", 53, false),
			probe("gryffindor/harry-potter-0", "hufflepuff/cedric-diggory-0", "UDP", 53, true),
			probe("gryffindor/harry-potter-0", "hufflepuff/cedric-diggory-0", "UDP", 5353, true),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-0", "TCP", 80, false),
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-0", "SCTP", 9003, true),
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-0", "SCTP", 9005, true),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "TCP", 80, false),
		}},
		{Name: "Should support ingress port range rules across different protocols", Actions: []CNPAction{
			probe("ravenclaw/luna-lovegood-0", "gryffindor/harry-potter-0", "TCP", 80, true),
			probe("ravenclaw/luna-lovegood-0", "gryffindor/harry-potter-0", "TCP", 8080, true),
			probe("ravenclaw/luna-lovegood-1", "gryffindor/harry-potter-0", "UDP", 53, false),
			probe("hufflepuff/cedric-diggory-0", "gryffindor/harry-potter-0", "UDP", 53, true),
			probe("hufflepuff/cedric-diggory-0", "gryffindor/harry-potter-0", "UDP", 5353, true),
			probe("hufflepuff/cedric-diggory-1", "gryffindor/harry-potter-0", "TCP", 80, false),
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "SCTP", 9003, true),
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "SCTP", 9005, true),
			probe("slytherin/draco-malfoy-1", "gryffindor/harry-potter-0", "TCP", 80, false),
		}},
	}},
	{Name: "CNPAdminTierPriorityField", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/admin_tier/standard-priority-field.yaml"}, Steps: []CNPStep{
		{Name: "Should Deny traffic from slytherin to gryffindor respecting admin CNP", Actions: []CNPAction{
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "TCP", 80, false),
			probe("slytherin/draco-malfoy-1", "gryffindor/harry-potter-0", "TCP", 8080, false),
		}},
		{Name: "Should Deny traffic to slytherin from gryffindor respecting admin CNP", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-0", "TCP", 80, false),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "TCP", 8080, false),
		}},
		{Name: "Should respect admin CNP priority field; thus passing both ingress and egress traffic over to baseline CNP", Actions: []CNPAction{
			setPriority("old-priority-60-new-priority-40-example", 40),
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "TCP", 80, true),
			probe("slytherin/draco-malfoy-1", "gryffindor/harry-potter-0", "TCP", 8080, true),
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "TCP", 8080, true),
		}},
	}},
	{Name: "CNPAdminTierSamePriority", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/admin_tier/standard-same-priority.yaml"}, Steps: []CNPStep{
		{Name: "Should deny traffic in both directions for each same-priority policy", Actions: []CNPAction{
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "TCP", 80, false),
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-0", "TCP", 80, false),
			probe("hufflepuff/cedric-diggory-0", "gryffindor/harry-potter-0", "TCP", 80, false),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-0", "TCP", 80, false),
			probe("slytherin/draco-malfoy-1", "hufflepuff/cedric-diggory-0", "TCP", 8080, false),
			probe("hufflepuff/cedric-diggory-1", "slytherin/draco-malfoy-0", "TCP", 8080, false),
		}},
		{Name: "Should not apply one same-priority policy's rules to another policy's subject", Actions: []CNPAction{
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "TCP", 8080, true),
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-0", "TCP", 8080, true),
			probe("slytherin/draco-malfoy-1", "hufflepuff/cedric-diggory-0", "TCP", 80, true),
			probe("hufflepuff/cedric-diggory-0", "slytherin/draco-malfoy-0", "TCP", 80, true),
		}},
		{Name: "Should not affect traffic matching no same-priority policy", Actions: []CNPAction{
			probe("ravenclaw/luna-lovegood-0", "gryffindor/harry-potter-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-0", "TCP", 80, true),
		}},
	}},
	{Name: "CNPBaselineTierEgressNamedPort", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy", "SupportClusterNetworkPolicyNamedPorts"}, Manifests: []string{"base/baseline_tier/standard-egress-udp-rules.yaml"}, Steps: []CNPStep{
		{Name: "Should support an 'allow-egress' policy for named port", Actions: []CNPAction{
			setNamedPort("default", policy.Egress, 3, "dns"),
			probe("hufflepuff/cedric-diggory-0", "gryffindor/harry-potter-1", "UDP", 53, true),
			probe("hufflepuff/cedric-diggory-1", "gryffindor/harry-potter-1", "UDP", 5353, false),
		}},
	}},
	{Name: "CNPBaselineTierEgressNodePeers", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy", "SupportClusterNetworkPolicyEgressNodePeers"}, Manifests: []string{"base/baseline_tier/experimental-egress-selector-rules.yaml"}, Steps: []CNPStep{
		{Name: "Should support an 'allow-egress' rule policy for egress-node-peer", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "forbidden-forrest/centaur-1", "TCP", 34345, true),
			probe("gryffindor/harry-potter-1", "forbidden-forrest/centaur-1", "TCP", 34346, true),
		}},
		{Name: "Should support a 'deny-egress' rule policy for egress-node-peer", Actions: []CNPAction{
			probe("gryffindor/harry-potter-1", "forbidden-forrest/centaur-1", "UDP", 34349, false),
			probe("gryffindor/harry-potter-1", "forbidden-forrest/centaur-1", "SCTP", 34351, false),
		}},
	}},
	{Name: "CNPBaselineTierIngressNamedPort", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy", "SupportClusterNetworkPolicyNamedPorts"}, Manifests: []string{"base/baseline_tier/standard-ingress-tcp-rules.yaml"}, Steps: []CNPStep{
		{Name: "Should support an 'allow-ingress' policy for named port", Actions: []CNPAction{
			setNamedPort("default", policy.Ingress, 3, "web"),
			probe("hufflepuff/cedric-diggory-0", "gryffindor/harry-potter-1", "TCP", 80, true),
			probe("hufflepuff/cedric-diggory-1", "gryffindor/harry-potter-1", "TCP", 8080, false),
		}},
	}},
	{Name: "CNPBaselineTierEgressInlineCIDRPeers", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/baseline_tier/standard-egress-inline-cidr-rules.yaml"}, Steps: []CNPStep{
		{Name: "Should support a 'deny-egress' rule policy for egress-cidr-peer", Actions: []CNPAction{
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-0", "TCP", 80, false),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-0", "UDP", 53, false),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-0", "SCTP", 9003, false),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-0", "TCP", 80, false),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-0", "UDP", 53, false),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-0", "SCTP", 9003, false),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "UDP", 53, true),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "SCTP", 9003, true),
			namespaceLabels("slytherin", "conformance-house", "denied-namespace-label"),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "TCP", 80, false),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "UDP", 53, false),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "SCTP", 9003, false),
			namespaceLabels("slytherin", "conformance-house", "slytherin"),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "UDP", 53, true),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "SCTP", 9003, true),
		}},
		{Name: "Should support an 'allow-egress' rule policy for egress-cidr-peer", Actions: []CNPAction{
			prependNetworksRule("default", "allow-egress-to-specific-podIPs", policy.ActionAccept, "ravenclaw/luna-lovegood-0", "hufflepuff/cedric-diggory-0"),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-0", "UDP", 53, true),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-0", "SCTP", 9003, true),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-0", "UDP", 53, true),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-0", "SCTP", 9003, true),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-1", "TCP", 80, false),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-1", "UDP", 53, false),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-1", "SCTP", 9003, false),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-1", "TCP", 80, false),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-1", "UDP", 53, false),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-1", "SCTP", 9003, false),
		}},
	}},
	{Name: "CNPBaselineTierEgressSCTP", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/baseline_tier/standard-egress-sctp-rules.yaml"}, Steps: []CNPStep{
		{Name: "Should support an 'allow-egress' policy for SCTP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			probe("ravenclaw/luna-lovegood-0", "gryffindor/harry-potter-0", "SCTP", 9003, true),
			probe("ravenclaw/luna-lovegood-1", "gryffindor/harry-potter-0", "SCTP", 9005, true),
		}},
		{Name: "Should support an 'allow-egress' policy for SCTP protocol at the specified port", Actions: []CNPAction{
			probe("ravenclaw/luna-lovegood-0", "hufflepuff/cedric-diggory-1", "SCTP", 9003, true),
			probe("ravenclaw/luna-lovegood-1", "hufflepuff/cedric-diggory-1", "SCTP", 9005, false),
		}},
		{Name: "Should support an 'deny-egress' policy for SCTP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			reorder("default", policy.Egress, 1, 0),
			probe("ravenclaw/luna-lovegood-0", "gryffindor/harry-potter-1", "SCTP", 9003, false),
			probe("ravenclaw/luna-lovegood-1", "gryffindor/harry-potter-1", "SCTP", 9005, false),
		}},
		{Name: "Should support a 'deny-egress' policy for SCTP protocol at the specified port", Actions: []CNPAction{
			probe("ravenclaw/luna-lovegood-0", "slytherin/draco-malfoy-0", "SCTP", 9003, false),
			probe("ravenclaw/luna-lovegood-1", "slytherin/draco-malfoy-0", "SCTP", 9005, true),
		}},
	}},
	{Name: "CNPBaselineTierEgressTCP", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/baseline_tier/standard-egress-tcp-rules.yaml"}, Steps: []CNPStep{
		{Name: "Should support an 'allow-egress' policy for TCP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-0", "TCP", 8080, true),
		}},
		{Name: "Should support an 'allow-egress' policy for TCP protocol at the specified port", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "hufflepuff/cedric-diggory-1", "TCP", 8080, true),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-1", "TCP", 80, false),
		}},
		{Name: "Should not affect ingress traffic when only egress rules are specified", Actions: []CNPAction{
			probe("ravenclaw/luna-lovegood-0", "gryffindor/harry-potter-0", "TCP", 80, true),
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-1", "TCP", 80, true),
		}},
		{Name: "Should support an 'deny-egress' policy for TCP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			reorder("default", policy.Egress, 1, 0),
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-1", "TCP", 80, false),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-1", "TCP", 8080, false),
		}},
		{Name: "Should support a 'deny-egress' policy for TCP protocol at the specified port", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-0", "TCP", 80, false),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "TCP", 8080, true),
		}},
	}},
	{Name: "CNPBaselineTierEgressUDP", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/baseline_tier/standard-egress-udp-rules.yaml"}, Steps: []CNPStep{
		{Name: "Should support an 'allow-egress' policy for UDP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			probe("hufflepuff/cedric-diggory-0", "ravenclaw/luna-lovegood-0", "UDP", 53, true),
			probe("hufflepuff/cedric-diggory-1", "ravenclaw/luna-lovegood-0", "UDP", 5353, true),
		}},
		{Name: "Should support an 'allow-egress' policy for UDP protocol at the specified port", Actions: []CNPAction{
			probe("hufflepuff/cedric-diggory-0", "gryffindor/harry-potter-1", "UDP", 53, true),
			probe("hufflepuff/cedric-diggory-1", "gryffindor/harry-potter-1", "UDP", 5353, false),
		}},
		{Name: "Should support an 'deny-egress' policy for UDP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			reorder("default", policy.Egress, 1, 0),
			probe("hufflepuff/cedric-diggory-0", "ravenclaw/luna-lovegood-1", "UDP", 53, false),
			probe("hufflepuff/cedric-diggory-1", "ravenclaw/luna-lovegood-1", "UDP", 5353, false),
		}},
		{Name: "Should support a 'deny-egress' policy for UDP protocol at the specified port", Actions: []CNPAction{
			probe("hufflepuff/cedric-diggory-0", "slytherin/draco-malfoy-0", "UDP", 5353, false),
			probe("hufflepuff/cedric-diggory-1", "slytherin/draco-malfoy-0", "UDP", 53, true),
		}},
	}},
	{Name: "CNPBaselineTierGress", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/baseline_tier/standard-gress-rules-combined.yaml"}, Steps: []CNPStep{
		{Name: "Should support an 'allow-gress' policy across different protocols", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-0", "UDP", 53, true),
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-0", "SCTP", 9003, true),
			probe("ravenclaw/luna-lovegood-0", "gryffindor/harry-potter-0", "TCP", 80, true),
			probe("ravenclaw/luna-lovegood-1", "gryffindor/harry-potter-0", "UDP", 53, true),
			probe("ravenclaw/luna-lovegood-1", "gryffindor/harry-potter-0", "SCTP", 9003, true),
		}},
		{Name: "Should support an 'allow-gress' policy across different protocols at the specified ports", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "hufflepuff/cedric-diggory-1", "TCP", 8080, true),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-1", "TCP", 80, false),
			probe("gryffindor/harry-potter-0", "hufflepuff/cedric-diggory-1", "UDP", 5353, true),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-1", "UDP", 53, false),
			probe("gryffindor/harry-potter-0", "hufflepuff/cedric-diggory-1", "SCTP", 9003, true),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-1", "SCTP", 9005, false),
			probe("hufflepuff/cedric-diggory-0", "gryffindor/harry-potter-1", "TCP", 80, true),
			probe("hufflepuff/cedric-diggory-1", "gryffindor/harry-potter-1", "TCP", 8080, false),
			probe("hufflepuff/cedric-diggory-0", "gryffindor/harry-potter-1", "UDP", 5353, true),
			probe("hufflepuff/cedric-diggory-1", "gryffindor/harry-potter-1", "UDP", 53, false),
			probe("hufflepuff/cedric-diggory-0", "gryffindor/harry-potter-1", "SCTP", 9003, true),
			probe("hufflepuff/cedric-diggory-1", "gryffindor/harry-potter-1", "SCTP", 9005, false),
		}},
		{Name: "Should support an 'deny-gress' policy across different protocols", Actions: []CNPAction{
			reorder("default", policy.Egress, 1, 0),
			reorder("default", policy.Ingress, 1, 0),
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-1", "TCP", 80, false),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-1", "UDP", 53, false),
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-1", "SCTP", 9003, false),
			probe("ravenclaw/luna-lovegood-0", "gryffindor/harry-potter-1", "TCP", 80, false),
			probe("ravenclaw/luna-lovegood-1", "gryffindor/harry-potter-1", "UDP", 53, false),
			probe("ravenclaw/luna-lovegood-1", "gryffindor/harry-potter-1", "SCTP", 9003, false),
		}},
		{Name: "Should support a 'deny-gress' policy across different protocols at the specified ports", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-0", "TCP", 80, false),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "TCP", 8080, true),
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-0", "UDP", 53, false),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "UDP", 5353, true),
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-0", "SCTP", 9003, false),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "SCTP", 9005, true),
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "TCP", 80, false),
			probe("slytherin/draco-malfoy-1", "gryffindor/harry-potter-0", "TCP", 8080, true),
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "UDP", 53, false),
			probe("slytherin/draco-malfoy-1", "gryffindor/harry-potter-0", "UDP", 5353, true),
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "SCTP", 9003, false),
			probe("slytherin/draco-malfoy-1", "gryffindor/harry-potter-0", "SCTP", 9005, true),
		}},
	}},
	{Name: "CNPBaselineTierIngressSCTP", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/baseline_tier/standard-ingress-sctp-rules.yaml"}, Steps: []CNPStep{
		{Name: "Should support an 'allow-ingress' policy for SCTP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-0", "SCTP", 9003, true),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-0", "SCTP", 9005, true),
		}},
		{Name: "Should support an 'allow-ingress' policy for SCTP protocol at the specified port", Actions: []CNPAction{
			probe("hufflepuff/cedric-diggory-0", "ravenclaw/luna-lovegood-1", "SCTP", 9003, true),
			probe("hufflepuff/cedric-diggory-1", "ravenclaw/luna-lovegood-1", "SCTP", 9005, false),
		}},
		{Name: "Should support an 'deny-ingress' policy for SCTP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			reorder("default", policy.Ingress, 1, 0),
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-1", "SCTP", 9003, false),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-1", "SCTP", 9005, false),
		}},
		{Name: "Should support a 'deny-ingress' policy for SCTP protocol at the specified port", Actions: []CNPAction{
			probe("slytherin/draco-malfoy-0", "ravenclaw/luna-lovegood-0", "SCTP", 9003, false),
			probe("slytherin/draco-malfoy-1", "ravenclaw/luna-lovegood-0", "SCTP", 9005, true),
		}},
	}},
	{Name: "CNPBaselineTierIngressTCP", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/baseline_tier/standard-ingress-tcp-rules.yaml"}, Steps: []CNPStep{
		{Name: "Should support an 'allow-ingress' policy for TCP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			probe("ravenclaw/luna-lovegood-0", "gryffindor/harry-potter-0", "TCP", 80, true),
			probe("ravenclaw/luna-lovegood-1", "gryffindor/harry-potter-0", "TCP", 8080, true),
		}},
		{Name: "Should support an 'allow-ingress' policy for TCP protocol at the specified port", Actions: []CNPAction{
			probe("hufflepuff/cedric-diggory-0", "gryffindor/harry-potter-1", "TCP", 80, true),
			probe("hufflepuff/cedric-diggory-1", "gryffindor/harry-potter-1", "TCP", 8080, false),
		}},
		{Name: "Should not affect egress traffic when only ingress rules are specified", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "TCP", 80, true),
		}},
		{Name: "Should support an 'deny-ingress' policy for TCP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			reorder("default", policy.Ingress, 1, 0),
			probe("ravenclaw/luna-lovegood-0", "gryffindor/harry-potter-1", "TCP", 80, false),
			probe("ravenclaw/luna-lovegood-1", "gryffindor/harry-potter-1", "TCP", 8080, false),
		}},
		{Name: "Should support a 'deny-ingress' policy for TCP protocol at the specified port", Actions: []CNPAction{
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "TCP", 80, false),
			probe("slytherin/draco-malfoy-1", "gryffindor/harry-potter-0", "TCP", 8080, true),
		}},
	}},
	{Name: "CNPBaselineTierIngressUDP", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/baseline_tier/standard-ingress-udp-rules.yaml"}, Steps: []CNPStep{
		{Name: "Should support an 'allow-ingress' policy for UDP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			probe("ravenclaw/luna-lovegood-0", "hufflepuff/cedric-diggory-0", "UDP", 53, true),
			probe("ravenclaw/luna-lovegood-1", "hufflepuff/cedric-diggory-0", "UDP", 5353, true),
		}},
		{Name: "Should support an 'allow-ingress' policy for UDP protocol at the specified port", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "hufflepuff/cedric-diggory-1", "UDP", 53, true),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-1", "UDP", 5353, false),
		}},
		{Name: "Should support an 'deny-ingress' policy for UDP protocol; ensure rule ordering is respected", Actions: []CNPAction{
			reorder("default", policy.Ingress, 1, 0),
			probe("ravenclaw/luna-lovegood-0", "hufflepuff/cedric-diggory-1", "UDP", 53, false),
			probe("ravenclaw/luna-lovegood-1", "hufflepuff/cedric-diggory-1", "UDP", 5353, false),
		}},
		{Name: "Should support a 'deny-ingress' policy for UDP protocol at the specified port", Actions: []CNPAction{
			probe("slytherin/draco-malfoy-0", "hufflepuff/cedric-diggory-0", "UDP", 5353, false),
			probe("slytherin/draco-malfoy-1", "hufflepuff/cedric-diggory-0", "UDP", 53, true),
		}},
	}},
	{Name: "CNPBaselineTierPodSelector", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/baseline_tier/standard-pod-selector-rules.yaml"}, Steps: []CNPStep{
		{Name: "Should support pod selectors in egress peers", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-0", "TCP", 8080, false),
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-1", "TCP", 80, false),
		}},
		{Name: "Should support pod selectors in ingress peers", Actions: []CNPAction{
			probe("slytherin/draco-malfoy-1", "gryffindor/harry-potter-1", "TCP", 80, false),
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "TCP", 80, true),
			podLabel("hufflepuff/cedric-diggory-0", "blocked"),
			probe("hufflepuff/cedric-diggory-0", "gryffindor/harry-potter-0", "TCP", 80, false),
			probe("hufflepuff/cedric-diggory-1", "gryffindor/harry-potter-0", "TCP", 80, true),
			podLabel("hufflepuff/cedric-diggory-0", ""),
			probe("hufflepuff/cedric-diggory-0", "gryffindor/harry-potter-0", "TCP", 80, true),
			podLabel("hufflepuff/cedric-diggory-1", "blocked"),
			probe("hufflepuff/cedric-diggory-1", "gryffindor/harry-potter-0", "TCP", 80, false),
			podLabel("hufflepuff/cedric-diggory-0", ""),
			podLabel("hufflepuff/cedric-diggory-1", ""),
		}},
		{Name: "Should support pod selectors in the subject", Actions: []CNPAction{
			probe("slytherin/draco-malfoy-0", "ravenclaw/luna-lovegood-1", "TCP", 80, true),
			podLabel("ravenclaw/luna-lovegood-0", "restricted"),
			probe("ravenclaw/luna-lovegood-0", "slytherin/draco-malfoy-0", "TCP", 80, false),
			probe("ravenclaw/luna-lovegood-1", "slytherin/draco-malfoy-0", "TCP", 80, true),
			podLabel("ravenclaw/luna-lovegood-0", ""),
			probe("ravenclaw/luna-lovegood-0", "slytherin/draco-malfoy-0", "TCP", 80, true),
			podLabel("ravenclaw/luna-lovegood-1", "restricted"),
			probe("ravenclaw/luna-lovegood-1", "slytherin/draco-malfoy-0", "TCP", 80, false),
			podLabel("ravenclaw/luna-lovegood-0", ""),
			podLabel("ravenclaw/luna-lovegood-1", ""),
		}},
	}},
	{Name: "CNPBaselineTierPortRange", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/baseline_tier/standard-port-range-rules-combined.yaml"}, Steps: []CNPStep{
		{Name: "Should support egress port range rules across different protocols", Actions: []CNPAction{
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-0", "TCP", 80, true),
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-0", "TCP", 8080, true),
			probe("gryffindor/harry-potter-1", "ravenclaw/luna-lovegood-0", "UDP", 53, false),
			probe("gryffindor/harry-potter-0", "hufflepuff/cedric-diggory-0", "UDP", 53, true),
			probe("gryffindor/harry-potter-0", "hufflepuff/cedric-diggory-0", "UDP", 5353, true),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-0", "TCP", 80, false),
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-0", "SCTP", 9003, true),
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-0", "SCTP", 9005, true),
			probe("gryffindor/harry-potter-1", "slytherin/draco-malfoy-0", "TCP", 80, false),
		}},
		{Name: "Should support ingress port range rules across different protocols", Actions: []CNPAction{
			probe("ravenclaw/luna-lovegood-0", "gryffindor/harry-potter-0", "TCP", 80, true),
			probe("ravenclaw/luna-lovegood-0", "gryffindor/harry-potter-0", "TCP", 8080, true),
			probe("ravenclaw/luna-lovegood-1", "gryffindor/harry-potter-0", "UDP", 53, false),
			probe("hufflepuff/cedric-diggory-0", "gryffindor/harry-potter-0", "UDP", 53, true),
			probe("hufflepuff/cedric-diggory-0", "gryffindor/harry-potter-0", "UDP", 5353, true),
			probe("hufflepuff/cedric-diggory-1", "gryffindor/harry-potter-0", "TCP", 80, false),
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "SCTP", 9003, true),
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-0", "SCTP", 9005, true),
			probe("slytherin/draco-malfoy-1", "gryffindor/harry-potter-0", "TCP", 80, false),
		}},
	}},
	{Name: "CNPBaselineTierSamePriority", Features: []string{"SupportedFeature", "SupportClusterNetworkPolicy"}, Manifests: []string{"base/baseline_tier/standard-same-priority.yaml"}, Steps: []CNPStep{
		{Name: "Should deny traffic in both directions for each same-priority policy", Actions: []CNPAction{
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-1", "TCP", 80, false),
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-1", "TCP", 80, false),
			probe("hufflepuff/cedric-diggory-0", "gryffindor/harry-potter-1", "TCP", 80, false),
			probe("gryffindor/harry-potter-1", "hufflepuff/cedric-diggory-1", "TCP", 80, false),
			probe("slytherin/draco-malfoy-1", "hufflepuff/cedric-diggory-1", "TCP", 8080, false),
			probe("hufflepuff/cedric-diggory-1", "slytherin/draco-malfoy-1", "TCP", 8080, false),
		}},
		{Name: "Should not apply one same-priority policy's rules to another policy's subject", Actions: []CNPAction{
			probe("slytherin/draco-malfoy-0", "gryffindor/harry-potter-1", "TCP", 8080, true),
			probe("gryffindor/harry-potter-0", "slytherin/draco-malfoy-1", "TCP", 8080, true),
			probe("slytherin/draco-malfoy-1", "hufflepuff/cedric-diggory-1", "TCP", 80, true),
			probe("hufflepuff/cedric-diggory-0", "slytherin/draco-malfoy-1", "TCP", 80, true),
		}},
		{Name: "Should not affect traffic matching no same-priority policy", Actions: []CNPAction{
			probe("ravenclaw/luna-lovegood-0", "gryffindor/harry-potter-1", "TCP", 80, true),
			probe("gryffindor/harry-potter-0", "ravenclaw/luna-lovegood-1", "TCP", 80, true),
		}},
	}},
}

// NotPortedCNP are the upstream tests not in cnpCases (none).
var NotPortedCNP = []string{}
