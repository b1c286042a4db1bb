package agent

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

const metricsNamespace = "kubectl_netpol"

// Metrics are the agent's Prometheus metrics, in their own registry (no
// global state: tests run several agents in one process).
type Metrics struct {
	Registry *prometheus.Registry

	Flows          *prometheus.CounterVec // verdict, direction
	PolicyVerdicts *prometheus.CounterVec // namespace, policy, direction, rule, verdict
	// AuditFlows counts AUDIT flows per audited policy that would decide
	// them otherwise, by the would-be verdict.
	AuditFlows      *prometheus.CounterVec // namespace, policy, would_be
	ApplyDuration   prometheus.Histogram
	ApplyErrors     prometheus.Counter
	Revoked         prometheus.Counter
	Endpoints       prometheus.Gauge
	Policies        prometheus.Gauge
	ClusterPolicies prometheus.Gauge
	// DomainNames is 1 per ClusterNetworkPolicy whose domainNames peers
	// are not enforced (its other rules are).
	DomainNames     *prometheus.GaugeVec // policy
	Identities      prometheus.Gauge
	DecodeErrors    prometheus.Counter
	SlowClientDrops prometheus.CounterFunc
	FlowEnds        prometheus.Counter
	FlowEndsLost    *prometheus.CounterVec // reason
	FlowEndSource   *prometheus.GaugeVec   // source, protocols: 1 for each in use

	// verdicts caches Flows' and PolicyVerdicts' children by their label
	// values: WithLabelValues hashes every label value on each call.
	verdictsMu sync.Mutex
	flows      map[flowCounterKey]prometheus.Counter
	policies   map[policyCounterKey]prometheus.Counter
}

type flowCounterKey struct {
	verdict   flowv1.Verdict
	direction flowv1.TrafficDirection
}

type policyCounterKey struct {
	namespace, name string
	direction       flowv1.TrafficDirection
	rule            int64 // -1: none
	verdict         flowv1.Verdict
}

// CountVerdict counts one verdict event: flows_total, and
// policy_verdicts_total for each deciding policy reference.
func (m *Metrics) CountVerdict(f *flowv1.Flow) {
	verdict := f.GetVerdict()
	m.verdictsMu.Lock()
	defer m.verdictsMu.Unlock()
	fk := flowCounterKey{verdict: verdict, direction: f.GetDirection()}
	c, ok := m.flows[fk]
	if !ok {
		c = m.Flows.WithLabelValues(flow.VerdictName(verdict), flow.DirectionName(fk.direction))
		m.flows[fk] = c
	}
	n := float64(flow.Connections(f))
	c.Add(n)
	if a := f.GetAudit(); a != nil {
		would := flow.VerdictName(a.GetWouldBe())
		refs := a.GetIsolatedBy()
		if a.GetRule() != nil {
			refs = []*flowv1.PolicyRef{a.GetRule()}
		}
		for _, r := range refs {
			m.AuditFlows.WithLabelValues(r.GetNamespace(), r.GetName(), would).Inc()
		}
	}
	for _, group := range [3][]*flowv1.PolicyRef{f.GetAllowedBy(), f.GetDeniedBy(), f.GetIsolatedBy()} {
		for _, r := range group {
			pk := policyCounterKey{namespace: r.GetNamespace(), name: r.GetName(), direction: r.GetDirection(), rule: -1, verdict: verdict}
			if r.RuleIndex != nil {
				pk.rule = int64(r.GetRuleIndex())
			}
			c, ok := m.policies[pk]
			if !ok {
				rule := ""
				if pk.rule >= 0 {
					rule = strconv.FormatInt(pk.rule, 10)
				}
				c = m.PolicyVerdicts.WithLabelValues(pk.namespace, pk.name, flow.DirectionName(pk.direction), rule, flow.VerdictName(verdict))
				m.policies[pk] = c
			}
			c.Add(n)
		}
	}
}

// NewMetrics registers every metric; datapath and mapUsage are read at
// scrape time (the kernel counters are the source of truth).
func NewMetrics(datapath func() map[string]uint64, mapUsage func() []MapUsage, slowClientDrops func() float64) *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		flows:    map[flowCounterKey]prometheus.Counter{},
		policies: map[policyCounterKey]prometheus.Counter{},
		Flows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "flows_total",
			Help: "Flow verdict events received from the datapath (new allowed flows and drops).",
		}, []string{"verdict", "direction"}),
		AuditFlows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "audit_flows_total",
			Help: "New flows an audited policy (netpol.kubectl.io/mode: audit) would decide otherwise were it enforced, per audited policy (namespace=\"\" for a ClusterNetworkPolicy) and would-be verdict.",
		}, []string{"namespace", "policy", "would_be"}),
		PolicyVerdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "policy_verdicts_total",
			Help: "Verdicts by deciding policy: the rule that allowed or (ClusterNetworkPolicy, namespace=\"\") denied a flow, or the isolating policy of a drop (rule=\"\").",
		}, []string{"namespace", "policy", "direction", "rule", "verdict"}),
		ApplyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "policy_apply_duration_seconds",
			Help:    "Time from a cluster change being picked up to the datapath enforcing it (compile + map updates).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		ApplyErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "policy_apply_errors_total",
			Help: "Failed compiles or map updates (the previous policy stays enforced).",
		}),
		Revoked: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "conntrack_revoked_total",
			Help: "Established connections deleted from conntrack because a new policy denies them.",
		}),
		Endpoints: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: "endpoints", Help: "Local pods the datapath enforces."}),
		Policies:  prometheus.NewGauge(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: "policies", Help: "NetworkPolicies in the cluster, compiled into the datapath."}),
		ClusterPolicies: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: "cluster_policies",
			Help: "ClusterNetworkPolicies in the cluster, compiled into the datapath (0 without their CRD)."}),
		DomainNames: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: "cluster_policy_domain_names_unenforced",
			Help: "1 for each ClusterNetworkPolicy with domainNames peers: those peers match nothing here, the policy's other rules are enforced."},
			[]string{"policy"}),
		Identities: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: "identities", Help: "Groups of pods that policies treat alike."}),
		DecodeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "event_decode_errors_total",
			Help: "Ring-buffer records the agent could not decode.",
		}),
		SlowClientDrops: prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "flows_dropped_slow_clients_total",
			Help: "Flows not delivered to a gRPC client that read too slowly (the datapath never waits).",
		}, slowClientDrops),
		FlowEnds: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "flow_end_summaries_total",
			Help: "Flow-end summaries published (conntrack entries of local pods that ended).",
		}),
		FlowEndSource: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: "flow_end_source",
			Help: "Where flow-end summaries come from: 1 for each source in use and the protocols it serves (kernel: BPF records on conntrack's destructor; kernel-tcp: BPF records on TCP socket states; netlink: conntrack events)."}, []string{"source", "protocols"}),
		FlowEndsLost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "flow_end_events_lost_total",
			Help: "Conntrack destroy events lost: queue_full (the agent fell behind, one event each) or socket_overrun (the kernel reported ENOBUFS, one or more events each).",
		}, []string{"reason"}),
	}
	r.MustRegister(m.Flows, m.PolicyVerdicts, m.AuditFlows, m.ApplyDuration, m.ApplyErrors, m.Revoked,
		m.Endpoints, m.Policies, m.ClusterPolicies, m.DomainNames, m.Identities, m.DecodeErrors, m.SlowClientDrops, m.FlowEnds, m.FlowEndsLost, m.FlowEndSource,
		&datapathCollector{read: datapath, usage: mapUsage},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

var (
	datapathDesc = prometheus.NewDesc(metricsNamespace+"_datapath_total",
		"Datapath counters summed over CPUs (packets, established, new_allowed, new_denied, untracked, events, ring_full, rate_limited, not_parsed, spoof_dropped, flow_ends, flow_ends_lost, aggregated, flow_ends_aggregated).",
		[]string{"counter"}, nil)
	mapEntriesDesc = prometheus.NewDesc(metricsNamespace+"_map_entries",
		"Entries in use per BPF map.", []string{"map"}, nil)
	mapMaxDesc = prometheus.NewDesc(metricsNamespace+"_map_max_entries",
		"Capacity per BPF map.", []string{"map"}, nil)
)

// datapathCollector reads the kernel's counters at scrape time.
type datapathCollector struct {
	read  func() map[string]uint64
	usage func() []MapUsage
}

func (c *datapathCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- datapathDesc
	ch <- mapEntriesDesc
	ch <- mapMaxDesc
}

func (c *datapathCollector) Collect(ch chan<- prometheus.Metric) {
	for name, v := range c.read() {
		ch <- prometheus.MustNewConstMetric(datapathDesc, prometheus.CounterValue, float64(v), name)
	}
	for _, u := range c.usage() {
		ch <- prometheus.MustNewConstMetric(mapEntriesDesc, prometheus.GaugeValue, float64(u.Entries), u.Name)
		ch <- prometheus.MustNewConstMetric(mapMaxDesc, prometheus.GaugeValue, float64(u.Max), u.Name)
	}
}

// MapUsage is how full one BPF map is.
type MapUsage struct {
	Name         string
	Entries, Max uint64
}
