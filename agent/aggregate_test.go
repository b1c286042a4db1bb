//go:build linux

package agent

import (
	"io"
	"net"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	pt "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

// TestAggregatedFlowsThroughTheAgent: with --flow-aggregation, c opening
// many connections to a gives the hub the first connection's own NEW and
// END records and then, per interval, one record of each type standing for
// the repeats (Flow.connections), attributed to the rule that allowed them
// and, for the END, with their bytes summed. Every connection is counted
// exactly once, in the hub, the verdict metric and the history; the drops
// of another client stay one record each.
func TestAggregatedFlowsThroughTheAgent(t *testing.T) {
	requirePrivileged(t)
	node := newFeNode(t)
	const aIP, cIP, dIP, conns, sent = "10.78.1.21", "10.78.1.22", "10.78.1.23", 30, 7
	podA, podC, podD := node.addPod(t, aIP), node.addPod(t, cIP), node.addPod(t, dIP)
	a := onNodeFE(pt.Pod("shop", "a", pt.WithLabels("app=db"), pt.WithIP(aIP)))
	c := onNodeFE(pt.Pod("shop", "c", pt.WithLabels("app=web"), pt.WithIP(cIP)))
	d := onNodeFE(pt.Pod("shop", "d", pt.WithLabels("app=other"), pt.WithIP(dIP)))
	allow := pt.Policy("shop", "db-from-web", pt.Selecting(pt.Sel("app=db")),
		pt.IngressRule(pt.Peers(pt.PodPeer(pt.Sel("app=web"))), pt.Port(corev1.ProtocolTCP, 8080)))
	ag := startFlowEndAgentWith(t, node, func(cfg *Config) {
		cfg.FlowEndSource = FlowEndSourceKernelTCP
		cfg.Datapath.AggregateInterval = 300 * time.Millisecond
	}, pt.Namespace("shop"), a, c, d, allow)

	var l net.Listener
	if err := podA.in(func() (err error) { l, err = net.Listen("tcp", aIP+":8080"); return err }); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, conn); conn.Close() }()
		}
	}()
	for range conns {
		if err := podC.in(func() error {
			conn, err := net.DialTimeout("tcp", aIP+":8080", 5*time.Second)
			if err != nil {
				return err
			}
			conn.Write(make([]byte, sent))
			return conn.Close()
		}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if err := podD.in(func() error {
			conn, err := net.DialTimeout("tcp", aIP+":8080", 100*time.Millisecond)
			if err == nil {
				conn.Close()
			}
			return err
		}); err == nil {
			t.Fatal("d -> a connected: the policy admits only web")
		}
	}

	// Sum what the hub has for c -> a, by type, until every connection is
	// accounted for (or the wait ends).
	type sums struct{ records, conns, aggregates, bytes uint64 }
	var news, endSums sums
	var drops int
	deadline := time.Now().Add(10 * time.Second)
	for {
		news, endSums, drops = sums{}, sums{}, 0
		var c collect
		if err := ag.hub.ObserveBatches(&flowv1.ObserveRequest{}, &c); err != nil {
			t.Fatal(err)
		}
		for _, f := range c.flows {
			if f.GetIp().GetDestination() != aIP || f.GetL4().GetDestinationPort() != 8080 {
				continue
			}
			if f.GetIp().GetSource() == dIP {
				if f.GetType() == flowv1.EventType_EVENT_TYPE_DROP {
					drops++
					if f.GetConnections() != 0 {
						t.Errorf("an aggregated drop: %v", f)
					}
				}
				continue
			}
			var s *sums
			switch f.GetType() {
			case flowv1.EventType_EVENT_TYPE_NEW:
				s = &news
			case flowv1.EventType_EVENT_TYPE_END:
				s = &endSums
			default:
				t.Fatalf("c -> a: a %v record: %v", f.GetType(), f)
			}
			s.records++
			s.conns += flow.Connections(f)
			s.bytes += f.GetBytes()
			if f.GetConnections() > 0 {
				s.aggregates++
				if f.GetL4().GetSourcePort() != 0 || f.GetSource().GetPod() != "c" || f.GetDestination().GetPod() != "a" ||
					len(f.GetAllowedBy()) != 1 || f.GetAllowedBy()[0].GetName() != "db-from-web" {
					t.Fatalf("an aggregate: want c -> a:8080 without the client's port, allowed by db-from-web: %v", f)
				}
			}
		}
		if news.conns >= conns && endSums.conns >= conns || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if news.conns != conns || endSums.conns != conns {
		t.Fatalf("c -> a: NEW records stand for %d connections, END for %d; want %d each", news.conns, endSums.conns, conns)
	}
	// 30 connections take well under a second here: a handful of intervals,
	// so a handful of records, the aggregates among them.
	if news.aggregates == 0 || news.records > conns/3 || endSums.aggregates == 0 || endSums.records > conns/3 {
		t.Fatalf("c -> a: NEW %+v, END %+v: want a few records, aggregates among them", news, endSums)
	}
	t.Logf("c -> a: NEW %+v, END %+v", news, endSums)
	if endSums.bytes != conns*sent {
		t.Errorf("c -> a: the ENDs' bytes sum to %d, want %d (%d connections of %d bytes)", endSums.bytes, conns*sent, conns, sent)
	}
	if drops < 3 {
		t.Errorf("d -> a: %d drop records, want one per attempt (>= 3)", drops)
	}
	if got := labelledCounter(t, ag, "kubectl_netpol_flows_total", map[string]string{"verdict": "ALLOWED"}); got < conns {
		t.Errorf("kubectl_netpol_flows_total{ALLOWED} = %v, want >= %d: an aggregate counts its connections", got, conns)
	}
}

// labelledCounter sums the counter name of the agent's registry over the
// series whose labels include want.
func labelledCounter(t testing.TB, a *Agent, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := a.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue series
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
