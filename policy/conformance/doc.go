// Package conformance holds the upstream Kubernetes NetworkPolicy e2e
// connectivity cases (k8s.io/kubernetes v1.37.2,
// test/e2e/network/netpol/network_policy.go) as plain data, so that the
// policy engine, the eBPF datapath and a real cluster are all judged by the
// same cases.
//
// The cases are written here, not generated from the engine: every expected
// TruthTable is built the way upstream builds its reachability (start from
// "everything allowed", then e.g. deny all ingress to x/a, then allow x/b to
// x/a), so an engine bug cannot leak into the expectations.
//
// The model is upstream's: namespaces x, y and z, labelled only with
// kubernetes.io/metadata.name; pods named a, b and c labelled pod=<name>, with
// one container declaring every (port, protocol) of the case as
// serve-<port>-<protocol> (serve-80-tcp, serve-81-udp, ...). Each case creates
// only the pods it needs, as upstream does since v1.35.
//
// A Case is a sequence of Steps. A Step is the full state in force when it is
// validated (every policy that exists, every extra label on a namespace or
// pod), not a delta, so each Step can be evaluated on its own; a runner that
// must apply it to a live cluster creates, updates or deletes policies by
// namespace/name to reach it. Step 0 of every case is upstream's readiness
// check: no policies, every (port, protocol) of the model allowed between
// every pair of pods.
//
// What is ported, and how it was counted: network_policy.go has 49 f.It
// connectivity tests (grep -c 'f.It(' on the file: 43 in the TCP context, 3
// in "using UDP", 3 in "using SCTP"); all 49 are here, in upstream's order,
// and TestUpstreamNames checks the count and each name against the source
// when it is in the module cache. Not ported: the two tests of
// network_policy_api.go ("should support creating NetworkPolicy API
// operations", "... API with endport field"), which exercise API server CRUD
// and field round-trips and probe no traffic.
//
// Policies are built for an Env: the pod IPs (ipBlock cases are written
// relative to real pod IPs, as upstream does) and, for a shared cluster, the
// real names of the logical namespaces x, y and z. Truth tables always use the
// logical names ("x/a").
//
// Two upstream conventions to keep when running the cases elsewhere:
// upstream ignores loopback cells (a pod connecting to itself: semantics not
// defined, see kubernetes/kubernetes#95879), and it probes each pod through a
// ClusterIP Service in front of it, so policy applies after DNAT to the pod
// IP. TruthTable.Mismatches skips loopback cells for that reason.
//
// ClusterNetworkPolicy: CNPCases are the 30 tests of the
// sigs.k8s.io/network-policy-api v0.3.0 conformance suite (CNPUpstreamSource),
// 397 probes: each t.Run's actions in order (rule reorders; action,
// priority and named-port patches; a rule prepended with pod IPs as
// networks; namespace relabels; pod label changes; NetworkPolicy deletion;
// probes with upstream's expectation, node peers through the hostNetwork
// pods on the model's nodes), extracted from the suite's sources and
// reviewed. The model (base/manifests.yaml, rendered with upstream's default
// host ports) and each test's policies are read from the module
// (NewCNPWorld); TestCNPCasesCoverUpstream checks every upstream test is
// ported or listed in NotPortedCNP.
package conformance
