package scale

import (
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

func TestFakeNodesHaveUniqueAddresses(t *testing.T) {
	base := netip.MustParseAddr("10.250.100.1")
	seen := map[string]string{}
	for i := range 1000 {
		n := FakeNode(i, base)
		if n.Labels[FakeNodeLabel] != FakeNodeValue || len(n.Spec.Taints) != 1 || n.Spec.Taints[0].Key != FakeNodeTaint {
			t.Fatalf("node %d: labels %v, taints %v: kwok would not manage it or workloads would land on it", i, n.Labels, n.Spec.Taints)
		}
		ip := n.Status.Addresses[0].Address
		if other, ok := seen[ip]; ok {
			t.Fatalf("%s and %s share InternalIP %s", other, n.Name, ip)
		}
		seen[ip] = n.Name
		if !netip.MustParsePrefix("10.250.0.0/16").Contains(netip.MustParseAddr(ip)) {
			t.Fatalf("%s has %s, outside the blackholed node range", n.Name, ip)
		}
	}
	if got := FakeNode(999, base).Status.Addresses[0].Address; got != "10.250.103.232" {
		t.Errorf("node 999: %s, want 10.250.103.232", got)
	}
}

func TestFakePodLeavesStatusToKwok(t *testing.T) {
	src := policytest.Pod("ns-000", "pod-00000", policytest.WithIP("10.128.0.1"), policytest.WithLabels("app=app-0"))
	p := FakePod(src, "kwok-node-0007")
	if p.Status.PodIP != "" || p.Status.Phase != "" {
		t.Errorf("status %+v: kwok writes it, the pod must be created Pending", p.Status)
	}
	if p.Spec.NodeName != "kwok-node-0007" || len(p.Spec.Tolerations) != 1 || p.Spec.Tolerations[0].Key != FakeNodeTaint {
		t.Errorf("spec %+v: the pod must be bound to the fake node and tolerate its taint", p.Spec)
	}
	if src.Status.PodIP != "10.128.0.1" || src.Spec.NodeName != "" {
		t.Errorf("FakePod changed its argument: %+v", src)
	}
	if p.Labels["app"] != "app-0" || p.Spec.Containers[0].Name == "" {
		t.Errorf("labels %v, containers %v: the pod lost what policies select on", p.Labels, p.Spec.Containers)
	}
}

func TestParallelStopsAtTheFirstError(t *testing.T) {
	var done atomic.Int64
	boom := errors.New("boom")
	err := Parallel(context.Background(), 10000, 8, func(i int) error {
		done.Add(1)
		if i == 100 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if n := done.Load(); n >= 10000 {
		t.Errorf("all %d items ran after the error", n)
	}
	done.Store(0)
	if err := Parallel(context.Background(), 1000, 8, func(int) error { done.Add(1); return nil }); err != nil || done.Load() != 1000 {
		t.Errorf("err %v, %d of 1000 ran", err, done.Load())
	}
}
