//go:build e2e

package e2e

import (
	"math/rand/v2"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

// The stand-in for "the outside": a network namespace reachable from the node through a veth,
// addressed in TEST-NET-2 (198.51.100.0/24, documentation range, routed nowhere).
const (
	outsideIP = "198.51.100.1"
	hostSide  = "198.51.100.2"
)

// TestPodCannotReachOutside proves the cluster's network safety with real packets: the node can
// reach a namespace standing in for the outside world, but a pod cannot, neither through the
// routes the CNI gives it (no default route) nor with a default route forced into its network
// namespace (the FORWARD guard drops it and nothing is masqueraded). A counter in the outside
// namespace must see 0 packets from the pod range, while it does count the node's own probe.
func TestPodCannotReachOutside(t *testing.T) {
	runBesideConformance(t)
	framework.RequireRoot(t)
	expectPodCannotReachOutside(t, framework.Connect(t), nil)
}

// expectPodCannotReachOutside is TestPodCannotReachOutside's check; prepare,
// when set, runs on the escaping pod's namespace before the pod starts
// (policies for an enforcer under test).
func expectPodCannotReachOutside(t *testing.T, c *framework.Cluster, prepare func(ns string)) {

	id := strconv.Itoa(rand.IntN(1 << 20))
	nsName, hostVeth := "npe2e-outside-"+id, "npe2eh"+id
	framework.Run(t, "ip", "netns", "add", nsName)
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", nsName).Run() })
	framework.Run(t, "ip", "link", "add", hostVeth, "type", "veth", "peer", "name", "out0", "netns", nsName)
	t.Cleanup(func() { exec.Command("ip", "link", "delete", hostVeth).Run() })
	framework.Run(t, "sysctl", "-qw", "net.ipv6.conf."+hostVeth+".disable_ipv6=1")
	framework.Run(t, "ip", "netns", "exec", nsName, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
	framework.Run(t, "ip", "addr", "add", hostSide+"/30", "dev", hostVeth)
	framework.Run(t, "ip", "link", "set", hostVeth, "up")
	framework.Run(t, "ip", "-n", nsName, "addr", "add", outsideIP+"/30", "dev", "out0")
	framework.Run(t, "ip", "-n", nsName, "link", "set", "out0", "up")
	framework.Run(t, "ip", "-n", nsName, "link", "set", "lo", "up")
	// Count every IPv4 packet arriving, and those from pods (or the node IP) separately.
	framework.Run(t, "ip", "netns", "exec", nsName, "nft", "add table ip outside; "+
		"add chain ip outside in { type filter hook prerouting priority -300; }; "+
		"add rule ip outside in ip saddr { 10.244.0.0/16, 10.250.0.0/16 } counter; "+
		"add rule ip outside in counter")
	counters := func() (fromPods, all int) {
		out := framework.Run(t, "ip", "netns", "exec", nsName, "nft", "list", "table", "ip", "outside")
		m := regexp.MustCompile(`counter packets (\d+)`).FindAllStringSubmatch(out, -1)
		if len(m) != 2 {
			t.Fatalf("reading counters: %s", out)
		}
		fromPods, _ = strconv.Atoi(m[0][1])
		all, _ = strconv.Atoi(m[1][1])
		return fromPods, all
	}

	// Sanity: the outside is reachable from the node, and the counter sees it.
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort(outsideIP, "9"), 2*time.Second); err == nil {
		conn.Close()
	}
	if _, all := counters(); all == 0 {
		t.Fatalf("the node's own connection to %s was not counted: the test cannot see packets", outsideIP)
	}

	ns := c.NewNamespace(t, "outside")
	if prepare != nil {
		prepare(ns)
	}
	pod := c.StartProbe(t, ns, "escaper", map[string]string{"app": "escaper"})
	targets := []framework.Target{
		{Host: outsideIP, Port: 80, Protocol: "tcp"},
		{Host: outsideIP, Port: 53, Protocol: "udp"},
		{Host: outsideIP, Port: 8080, Protocol: "http"},
	}
	check := func(stage string) {
		t.Helper()
		for _, r := range c.ProbeWithTimeout(t, pod, time.Second, targets...) {
			if r.OK {
				t.Errorf("%s: pod reached the outside: %+v", stage, r)
			}
		}
		if fromPods, _ := counters(); fromPods != 0 {
			t.Errorf("%s: %d packets from the pod range arrived outside", stage, fromPods)
		}
	}
	check("CNI routes")

	// Force a default route into the pod, as a misconfigured CNI or a pod with NET_ADMIN could:
	// the packets now reach the pod's node.
	podNS, node := framework.PodNetns(t, pod.Status.PodIP)
	gw := net.ParseIP(pod.Status.PodIP).To4()
	gw[3] = 1 // the node's bridge: the pod subnet's first address (bridge and flannel CNIs alike)
	node.Run(t, "ip", "-n", podNS, "route", "add", "default", "via", gw.String())
	if !framework.MultiNode() {
		// One node: the host is the node; its FORWARD guard must drop them.
		before := guardDrops(t)
		check("forced default route")
		if after := guardDrops(t); after <= before {
			t.Errorf("the FORWARD guard dropped nothing (%d -> %d): the packets did not take the path under test", before, after)
		}
		return
	}
	// Several nodes: a node has no default route either. Force one towards the host as well:
	// the host must not forward them (ip_forward=0, the guard), whether flannel masqueraded them
	// or not. A counter on the host proves they got that far.
	node.Run(t, "ip", "route", "add", "default", "via", framework.ControlPlaneIP)
	t.Cleanup(func() { node.Command("ip", "route", "del", "default", "via", framework.ControlPlaneIP).Run() })
	table := "npe2e_outside_" + id
	framework.Run(t, "nft", "add table ip "+table+"; "+
		"add chain ip "+table+" pre { type filter hook prerouting priority -300; }; "+
		"add rule ip "+table+" pre ip daddr "+outsideIP+" iifname "+framework.Bridge+" counter")
	t.Cleanup(func() { exec.Command("nft", "delete", "table", "ip", table).Run() })
	check("forced default routes in the pod and its node")
	out := framework.Run(t, "nft", "list", "table", "ip", table)
	if m := regexp.MustCompile(`counter packets (\d+)`).FindStringSubmatch(out); m == nil || m[1] == "0" {
		t.Errorf("no packet for the outside reached the host from the nodes: the packets did not take the path under test\n%s", out)
	}
}

// guardDrops sums the packet counters of the cluster's FORWARD guard chain.
func guardDrops(t *testing.T) int {
	out := framework.Run(t, "iptables", "-w", "-L", "NETPOL-CLUSTER-GUARD", "-v", "-x", "-n")
	total := 0
	for _, m := range regexp.MustCompile(`(?m)^\s*(\d+)\s+\d+\s+DROP`).FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(m[1])
		total += n
	}
	return total
}
