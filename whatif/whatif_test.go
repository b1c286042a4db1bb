package whatif

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
	pt "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func engine(t testing.TB, pods []*corev1.Pod, pols ...*networkingv1.NetworkPolicy) *policy.Engine {
	t.Helper()
	e, err := policy.NewEngine(&policy.Snapshot{Namespaces: []*corev1.Namespace{pt.Namespace("shop")}, Pods: pods, Policies: pols})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func key(node string, src, dst *flowv1.Endpoint, port uint32, proto flowv1.Protocol, v flowv1.Verdict) *flowv1.Flow {
	return &flowv1.Flow{Node: node, Verdict: v, Ip: &flowv1.IP{Source: "10.0.0.1", Destination: "10.0.0.2"},
		L4: &flowv1.Layer4{Protocol: proto, DestinationPort: port}, Source: src, Destination: dst}
}

func workload(ns, kind, name string, kv ...string) *flowv1.Endpoint {
	return &flowv1.Endpoint{Namespace: ns, Labels: pt.Labels(kv...), Workload: &flowv1.Workload{Kind: kind, Name: name}}
}

func rec(k *flowv1.Flow, at time.Time, n uint64) history.Record {
	return history.Record{Key: k, Start: at.Truncate(time.Hour), Width: time.Hour,
		Counters: history.Counters{Connections: n, First: at.UnixNano(), Last: at.UnixNano()}}
}

// TestRunJudgesWorkloadsOnce: a cross-node connection recorded by both
// nodes counts once; the destination's current pod gives its named port;
// protocols NetworkPolicy does not judge are said, not guessed.
func TestRunJudgesWorkloadsOnce(t *testing.T) {
	web := workload("shop", "Deployment", "web", "app", "web")
	db := workload("shop", "StatefulSet", "db", "app", "db")
	owner := true
	dbPod := pt.Pod("shop", "db-0", pt.WithLabels("app", "db", "controller-revision-hash", "db-6f"), pt.WithIP("10.0.0.9"), pt.WithPort("sql", 5432, corev1.ProtocolTCP))
	dbPod.OwnerReferences = []metav1.OwnerReference{{Kind: "StatefulSet", Name: "db", Controller: &owner}}
	allowSQL := pt.Policy("shop", "db", pt.Selecting(pt.Sel("app", "db")),
		pt.IngressRule(pt.Peers(pt.PodPeer(pt.Sel("app", "web"))), pt.NamedPort("sql", corev1.ProtocolTCP)))
	denyAll := pt.Policy("shop", "db", pt.Selecting(pt.Sel("app", "db")), pt.Types(networkingv1.PolicyTypeIngress))
	cur := engine(t, []*corev1.Pod{dbPod}, allowSQL)
	next := engine(t, []*corev1.Pod{dbPod}, denyAll)
	set := &history.Set{Records: []history.Record{
		// node-a judged egress, node-b ingress: the same 10 connections.
		rec(key("node-a", web, db, 5432, flowv1.Protocol_PROTOCOL_TCP, flowv1.Verdict_VERDICT_ALLOWED), t0, 10),
		rec(key("node-b", web, db, 5432, flowv1.Protocol_PROTOCOL_TCP, flowv1.Verdict_VERDICT_ALLOWED), t0, 10),
		rec(key("node-a", web, db, 5432, flowv1.Protocol_PROTOCOL_TCP, flowv1.Verdict_VERDICT_ALLOWED), t0.Add(time.Hour), 4),
		rec(key("node-a", web, db, 0, flowv1.Protocol_PROTOCOL_ICMP, flowv1.Verdict_VERDICT_ALLOWED), t0, 1),
		// Outside the window.
		rec(key("node-a", web, db, 9999, flowv1.Protocol_PROTOCOL_TCP, flowv1.Verdict_VERDICT_DENIED), t0.Add(-48*time.Hour), 1),
	}}
	r, err := Run(Input{Current: cur, Proposed: next, History: set, Since: t0.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.NewlyDenied) != 1 || !r.Breaks {
		t.Fatalf("report = %+v, want one newly denied pair that breaks", r)
	}
	c := r.NewlyDenied[0]
	if c.Source != "shop/deploy/web" || c.Destination != "shop/sts/db" || c.Connections != 14 || c.ObservedAllowed != 14 ||
		len(c.Nodes) != 2 || c.Direction != "ingress" || c.DecidedBy[0] != "shop/db" {
		t.Errorf("change = %+v, want web->db 14 connections (not 24) on 2 nodes, denied at db's ingress by shop/db", c)
	}
	if !c.LastSeen.Equal(t0.Add(time.Hour)) {
		t.Errorf("last seen %v", c.LastSeen)
	}
	if len(r.Coverage.Errors) != 1 || r.Coverage.Pairs != 2 || r.Coverage.Records != 4 {
		t.Errorf("coverage = %+v, want 2 pairs, 4 records, the ICMP pair noted", r.Coverage)
	}
	// Today's policies judged with the named port resolved on the live pod:
	// swapping the states opens, and breaks nothing.
	r, _ = Run(Input{Current: next, Proposed: cur, History: set, Since: t0.Add(-time.Hour)})
	if len(r.NewlyAllowed) != 1 || r.Breaks || r.NewlyAllowed[0].DecidedBy[0] != "shop/db ingress[0]" {
		t.Errorf("reverse report = %+v", r)
	}
}

// BenchmarkWhatif1M: 1M aggregated records from 3 nodes (100k distinct
// workload pairs and ports, 10 buckets each... spread over the nodes),
// 200 workloads, 100 policies; judged under today's and a proposed state.
func BenchmarkWhatif1M(b *testing.B) {
	const workloads, records, nodes = 200, 1_000_000, 3
	var pods []*corev1.Pod
	var pols []*networkingv1.NetworkPolicy
	for i := range workloads {
		pods = append(pods, pt.Pod("shop", fmt.Sprintf("w%d-0", i), pt.WithLabels("app", fmt.Sprintf("w%d", i), "tier", fmt.Sprint(i%5)), pt.WithIP(fmt.Sprintf("10.1.%d.%d", i/250, i%250+1))))
	}
	for i := range 100 {
		pols = append(pols, pt.Policy("shop", fmt.Sprintf("p%d", i), pt.Selecting(pt.Sel("app", fmt.Sprintf("w%d", i))),
			pt.IngressRule(pt.Peers(pt.PodPeer(pt.Sel("tier", fmt.Sprint(i%5)))), pt.Port(corev1.ProtocolTCP, int32(8000+i%20)))))
	}
	cur := engine(b, pods, pols...)
	proposed := append([]*networkingv1.NetworkPolicy(nil), pols...)
	proposed[0] = pt.Policy("shop", "p0", pt.Selecting(pt.Sel("app", "w0")), pt.Types(networkingv1.PolicyTypeIngress))
	next := engine(b, pods, proposed...)
	ends := make([]*flowv1.Endpoint, workloads)
	for i := range ends {
		ends[i] = workload("shop", "Deployment", fmt.Sprintf("w%d", i), "app", fmt.Sprintf("w%d", i), "tier", fmt.Sprint(i%5))
	}
	// 100k distinct keys per node (pair x port), 10 buckets each over 3 nodes.
	keys := make([][]*flowv1.Flow, nodes)
	for n := range nodes {
		for k := range 100_000 / nodes * 1 {
			src, dst := ends[k%workloads], ends[(k/workloads)%workloads]
			keys[n] = append(keys[n], key(fmt.Sprintf("node-%d", n), src, dst, uint32(8000+k/(workloads*workloads)%20),
				flowv1.Protocol_PROTOCOL_TCP, flowv1.Verdict_VERDICT_ALLOWED))
		}
	}
	set := &history.Set{}
	for i := range records {
		n := i % nodes
		k := keys[n][(i/nodes)%len(keys[n])]
		set.Records = append(set.Records, rec(k, t0.Add(-time.Duration(i%10)*time.Hour), 1))
	}
	cpu := cpuTime()
	for b.Loop() {
		r, err := Run(Input{Current: cur, Proposed: next, History: set})
		if err != nil || r.Coverage.Records != records {
			b.Fatal(err, r.Coverage.Records)
		}
	}
	// CPU besides wall time: the shared 2-core machine is often oversubscribed.
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N)/1e9, "cpu-s/op")
}

// TestRunNamesClusterPolicies: a proposed Admin ClusterNetworkPolicy that
// denies an observed connection is named as what decides, with the tiers'
// sentence, not the NetworkPolicies isolating the pod.
func TestRunNamesClusterPolicies(t *testing.T) {
	web := workload("shop", "Deployment", "web", "app", "web")
	db := workload("shop", "StatefulSet", "db", "app", "db")
	dbPod := pt.Pod("shop", "db-0", pt.WithLabels("app", "db"), pt.WithIP("10.0.0.9"))
	cur := engine(t, []*corev1.Pod{dbPod})
	deny := &cnpv1beta1.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "guard-db"},
		Spec: cnpv1beta1.ClusterNetworkPolicySpec{Tier: cnpv1beta1.AdminTier, Priority: 5,
			Subject: cnpv1beta1.ClusterNetworkPolicySubject{Namespaces: pt.Sel("kubernetes.io/metadata.name=shop")},
			Ingress: []cnpv1beta1.ClusterNetworkPolicyIngressRule{{Name: "no-one", Action: cnpv1beta1.ClusterNetworkPolicyRuleActionDeny,
				From: []cnpv1beta1.ClusterNetworkPolicyIngressPeer{{Namespaces: pt.Sel()}}}}}}
	next, err := policy.NewEngine(&policy.Snapshot{Namespaces: []*corev1.Namespace{pt.Namespace("shop")}, Pods: []*corev1.Pod{dbPod},
		ClusterPolicies: []*cnpv1beta1.ClusterNetworkPolicy{deny}})
	if err != nil {
		t.Fatal(err)
	}
	set := &history.Set{Records: []history.Record{rec(key("node-a", web, db, 5432, flowv1.Protocol_PROTOCOL_TCP, flowv1.Verdict_VERDICT_ALLOWED), t0, 3)}}
	r, err := Run(Input{Current: cur, Proposed: next, History: set, Since: t0.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.NewlyDenied) != 1 || !r.Breaks {
		t.Fatalf("report = %+v, want web -> db newly denied", r)
	}
	if c := r.NewlyDenied[0]; len(c.DecidedBy) != 1 || c.DecidedBy[0] != "clusternetworkpolicy/guard-db ingress[0]" || c.Direction != "ingress" ||
		!strings.Contains(c.Why, "guard-db") {
		t.Errorf("change = %+v, want decided by clusternetworkpolicy/guard-db ingress[0] with the tiers' sentence", c)
	}
}
