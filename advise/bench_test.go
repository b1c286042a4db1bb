package advise

import (
	"fmt"
	"io"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
	"github.com/kubectl-netpol/kubectl-netpol/internal/cputime"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// BenchmarkAdvise: advise for every workload, both directions, over
// aggregated history from 3 nodes: `workloads` workloads in 50 namespaces,
// each talking to 10 others on one or two ports (20 per workload), each key
// in `buckets` time buckets; the cluster has one pod per workload. Measured:
// aggregation, selectors, rules and the commented YAML (written to
// io.Discard, yaml=true); building the history is not.
func BenchmarkAdvise(b *testing.B) {
	for _, c := range []struct{ workloads, buckets int }{{1_000, 17}, {1_000, 50}} {
		set, snap := syntheticHistory(c.workloads, c.buckets)
		e, err := policy.NewEngine(snap)
		if err != nil {
			b.Fatal(err)
		}
		for _, render := range []bool{false, true} {
			b.Run(fmt.Sprintf("workloads=%d/records=%d/yaml=%v", c.workloads, len(set.Records), render), func(b *testing.B) {
				b.ReportAllocs()
				var policies int
				cpu := cputime.Process()
				for b.Loop() {
					r, err := Advise(Input{History: set, Engine: e, Ingress: true, Egress: true, Audit: true,
						Since: time.Unix(0, 0)})
					if err != nil {
						b.Fatal(err)
					}
					if render {
						if err := WriteYAML(io.Discard, r); err != nil {
							b.Fatal(err)
						}
					}
					policies = len(r.Proposals)
				}
				b.ReportMetric(float64(cputime.Process()-cpu)/float64(b.N)/1e9, "cpu-s/op")
				b.ReportMetric(float64(policies), "policies")
				b.ReportMetric(float64(len(set.Records)), "records")
			})
		}
	}
}

func syntheticHistory(workloads, buckets int) (*history.Set, *policy.Snapshot) {
	snap := &policy.Snapshot{}
	eps := make([]*flowv1.Endpoint, workloads)
	ips := make([]string, workloads)
	yes := true
	for i := range eps {
		ns := fmt.Sprintf("ns-%02d", i%50)
		name := fmt.Sprintf("w%d", i)
		l := map[string]string{"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": ns}
		eps[i] = &flowv1.Endpoint{Namespace: ns, Labels: l, Workload: &flowv1.Workload{Kind: "Deployment", Name: name}}
		ips[i] = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}).String()
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-7c9d-x", Labels: map[string]string{
			"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": ns, "pod-template-hash": "7c9d"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: name + "-7c9d", Controller: &yes}}}}
		p.Spec.Containers = []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}
		p.Status.PodIP = ips[i]
		snap.Pods = append(snap.Pods, p)
	}
	set := &history.Set{}
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	nodes := []string{"node-a", "node-b", "node-c"}
	for i := range workloads {
		for j := 1; j <= 10; j++ {
			dst := (i + j*37) % workloads
			for _, port := range []uint32{8080, uint32(9000 + j%2)} {
				k := &flowv1.Flow{Node: nodes[(i+j)%3], Type: flowv1.EventType_EVENT_TYPE_NEW, Verdict: flowv1.Verdict_VERDICT_ALLOWED,
					Ip: &flowv1.IP{Source: ips[i], Destination: ips[dst]}, L4: &flowv1.Layer4{Protocol: flowv1.Protocol_PROTOCOL_TCP, DestinationPort: port},
					Source: eps[i], Destination: eps[dst]}
				for bk := range buckets {
					start := t0.Add(time.Duration(bk) * time.Hour)
					set.Records = append(set.Records, history.Record{Key: k, Start: start, Width: time.Hour,
						Counters: history.Counters{Connections: 3, First: start.UnixNano(), Last: start.Add(time.Minute).UnixNano()}})
				}
			}
		}
	}
	return set, snap
}
