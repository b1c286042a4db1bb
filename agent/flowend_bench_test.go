//go:build linux

package agent

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	pt "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

// BenchmarkFlowEndEvents measures the flow-end summaries the agent
// publishes per second when conntrack destroys entries of local pods in
// bursts: each round creates a batch of UDP entries over ctnetlink in a
// node namespace (not timed), then one flush destroys them all at once and
// the clock runs from the first summary in the hub to the last (the time to
// the first is reported as first-ms). Events lost (queue full or socket
// overrun) are reported; a figure is only "sustained" at 0 lost.
//
// started=recorded: each connection's new-flow event is known, as for
// connections that lived past a ring-buffer poll (the usual case);
// started=unknown: none is, so every end is parked for 2 polls + 50 ms in
// case its start is still unread, then attributed from the datapath.
func BenchmarkFlowEndEvents(b *testing.B) {
	for _, recorded := range []bool{true, false} {
		for _, batch := range []int{1000, 10000, 50000} {
			name := fmt.Sprintf("started=recorded/burst=%d", batch)
			if !recorded {
				name = fmt.Sprintf("started=unknown/burst=%d", batch)
			}
			b.Run(name, func(b *testing.B) { flowEndEvents(b, batch, recorded) })
		}
	}
}

func flowEndEvents(b *testing.B, batch int, recorded bool) {
	requirePrivileged(b)
	node := newFeNode(b)
	node.run(b, "sysctl", "-qw", fmt.Sprintf("net.netfilter.nf_conntrack_max=%d", 4*batch))
	const pods = 100
	objs := []k8sruntime.Object{pt.Namespace("bench")}
	var ips []netip.Addr
	for i := range pods {
		ip := netip.AddrFrom4([4]byte{10, 78, 1, byte(10 + i)})
		ips = append(ips, ip)
		objs = append(objs, onNodeFE(pt.Pod("bench", fmt.Sprintf("p%d", i), pt.WithLabels("app=bench"), pt.WithIP(ip.String()))))
	}
	a := startFlowEndAgent(b, node, objs...)
	ct, err := conntrack.Dial(&netlink.Config{NetNS: int(node.h)})
	if err != nil {
		b.Fatal(err)
	}
	defer ct.Close()
	const mark = 0x4e50
	peer := netip.MustParseAddr("10.78.9.9")
	// Read the counters directly: a registry Gather per poll would cost
	// more CPU than the listener.
	published := func() float64 { return counterValue(a.metrics.FlowEnds) }
	lost := func() float64 {
		return counterValue(a.metrics.FlowEndsLost.WithLabelValues(lostQueueFull)) +
			counterValue(a.metrics.FlowEndsLost.WithLabelValues(lostSocketOverrun))
	}
	var timed, first time.Duration
	events, rounds := 0, 0
	b.ResetTimer()
	b.StopTimer()
	for events < b.N {
		n := min(batch, b.N-events)
		for i := range n {
			f := conntrack.NewFlow(unix.IPPROTO_UDP, 0, ips[i%pods], peer, uint16(1024+i/pods), 53, 120, mark)
			if err := ct.Create(f); err != nil {
				b.Fatalf("creating conntrack entry %d: %v", i, err)
			}
			if recorded {
				a.newFlows.remember(keyOfConntrack(&f), &flowv1.Flow{Verdict: flowv1.Verdict_VERDICT_ALLOWED,
					Source: &flowv1.Endpoint{Namespace: "bench", Pod: fmt.Sprintf("p%d", i%pods)}, L4: &flowv1.Layer4{Protocol: flowv1.Protocol_PROTOCOL_UDP}})
			}
		}
		before := published()
		b.StartTimer()
		start := time.Now()
		if err := ct.FlushFilter(conntrack.NewFilter().Mark(mark)); err != nil {
			b.Fatal(err)
		}
		// Done when all are in, or, once some were lost (a socket overrun
		// counts once for many), when none has come for 200 ms.
		deadline, last, lastChange := start.Add(30*time.Second), before, time.Now()
		var firstOut time.Time
		for {
			p := published()
			if p > before && firstOut.IsZero() {
				firstOut = time.Now()
			}
			if p >= before+float64(n) {
				break
			}
			if p != last {
				last, lastChange = p, time.Now()
			} else if lost() > 0 && time.Since(lastChange) > 200*time.Millisecond {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%v of %d summaries published within 30 s, none lost", p-before, n)
			}
			time.Sleep(200 * time.Microsecond)
		}
		end := lastChange
		if published() >= before+float64(n) {
			end = time.Now()
		}
		if !firstOut.IsZero() {
			timed += end.Sub(firstOut)
			first += firstOut.Sub(start)
		}
		b.StopTimer()
		events += n
		rounds++
	}
	b.ReportMetric(published()/timed.Seconds(), "ends/s")
	b.ReportMetric(float64(first.Milliseconds())/float64(rounds), "first-ms")
	b.ReportMetric(published(), "published")
	b.ReportMetric(counterValue(a.metrics.FlowEndsLost.WithLabelValues(lostQueueFull)), "lost-queue")
	b.ReportMetric(counterValue(a.metrics.FlowEndsLost.WithLabelValues(lostSocketOverrun)), "overruns")
}

func counterValue(c prometheus.Metric) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}
