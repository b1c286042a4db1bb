//go:build linux

package agent

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// Paths of the sysctls the checks read (the agent shares the node's network
// namespace, so /proc/sys/net is the node's).
var (
	sysctlBridgeNFv4 = "/proc/sys/net/bridge/bridge-nf-call-iptables"
	sysctlBridgeNFv6 = "/proc/sys/net/bridge/bridge-nf-call-ip6tables"
	sysctlConntrack  = "/proc/sys/net/netfilter/nf_conntrack_max"
	sysctlCTAcct     = "/proc/sys/net/netfilter/nf_conntrack_acct"
)

// nodeChecks verifies what enforcement relies on outside the agent.
func nodeChecks() []*flowv1.NodeCheck {
	return []*flowv1.NodeCheck{bridgeCheck(), conntrackCheck()}
}

// bridgeCheck: with a bridge CNI, traffic between two pods of the node is
// switched by the bridge and reaches the netfilter hooks (and so the
// datapath) only when br_netfilter passes it to them.
func bridgeCheck() *flowv1.NodeCheck {
	c := &flowv1.NodeCheck{Name: "bridge-nf-call-iptables", Ok: true}
	bridges := bridgesWithPorts()
	if len(bridges) == 0 {
		c.Detail = "no bridge with pod interfaces on this node: not needed"
		return c
	}
	v4, v6 := readSysctl(sysctlBridgeNFv4), readSysctl(sysctlBridgeNFv6)
	if v4 == "1" && v6 == "1" {
		c.Detail = fmt.Sprintf("on (bridges %s)", strings.Join(bridges, ", "))
		return c
	}
	c.Ok = false
	c.Detail = fmt.Sprintf("bridge %s carries pod traffic but bridge-nf-call-iptables=%s, bridge-nf-call-ip6tables=%s: "+
		"traffic between pods on this node bypasses policy; fix: modprobe br_netfilter && sysctl -w net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1",
		strings.Join(bridges, ", "), orMissing(v4, "br_netfilter"), orMissing(v6, "br_netfilter"))
	return c
}

func conntrackCheck() *flowv1.NodeCheck {
	c := &flowv1.NodeCheck{Name: "conntrack", Ok: true, Detail: "nf_conntrack loaded"}
	if readSysctl(sysctlConntrack) == "" {
		c.Ok = false
		c.Detail = "nf_conntrack is not loaded in the node's network namespace: established connections cannot be told from new ones; fix: modprobe nf_conntrack"
	}
	return c
}

// conntrackAcctCheck: flow-end summaries take their packet and byte counts
// from conntrack, which counts only with nf_conntrack_acct=1. The agent's
// /proc/sys is read-only, so it reports rather than sets it.
// tcpFromSockets: TCP summaries come from the sockets (kernel-tcp), whose
// counters need no conntrack accounting.
func conntrackAcctCheck(tcpFromSockets bool) *flowv1.NodeCheck {
	c := &flowv1.NodeCheck{Name: "conntrack-accounting", Ok: true, Detail: "on: flow-end summaries carry packet and byte counts"}
	if v := readSysctl(sysctlCTAcct); v != "1" {
		which := "flow-end summaries carry"
		if tcpFromSockets {
			which = "flow-end summaries of UDP, SCTP and ICMP carry (TCP's come from the sockets)"
		}
		c.Ok = false
		c.Detail = fmt.Sprintf("net.netfilter.nf_conntrack_acct=%s: %s no packet/byte counts; fix: sysctl -w net.netfilter.nf_conntrack_acct=1 on the node (new connections are counted from then on)", orMissing(v, "nf_conntrack"), which)
	}
	return c
}

func bridgesWithPorts() []string {
	links, err := netlink.LinkList()
	if err != nil {
		return nil
	}
	names := map[int]string{}
	for _, l := range links {
		if l.Type() == "bridge" {
			names[l.Attrs().Index] = l.Attrs().Name
		}
	}
	used := map[string]bool{}
	for _, l := range links {
		if n, ok := names[l.Attrs().MasterIndex]; ok && l.Type() == "veth" {
			used[n] = true
		}
	}
	return slices.Sorted(maps.Keys(used))
}

func readSysctl(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// orMissing is a sysctl's value, or says that module (which provides it)
// is not loaded.
func orMissing(s, module string) string {
	if s == "" {
		return "missing (" + module + " not loaded)"
	}
	return s
}
