//go:build e2e

package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	corev1 "k8s.io/api/core/v1"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/internal/agentclient"
	"github.com/kubectl-netpol/kubectl-netpol/probe"
	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

// The installed agent guards every pod's interface on the cluster's bridge:
// a SYN that `other` forges with web's address (which db-policy admits)
// never reaches the policy as web's, while the same raw SYN with other's
// own address is seen and denied. The flows are the evidence: a packet
// that got through would be an allowed web -> db:3306 flow, as it is once
// other's guard is removed by hand (which the agent then undoes).
func TestAgentDropsSpoofedSource(t *testing.T) {
	c := framework.Connect(t)
	installAgent(t, c)
	s := newShop(t, c)
	s.applyPolicy(t, c)
	waitGuarded(t, c)

	sport := uint32(41000 + time.Now().UnixNano()%20000)
	spoof := func(from *corev1.Pod, source string, sport uint32) {
		t.Helper()
		ctx := framework.Context(t, 30*time.Second)
		out, errOut, err := c.Exec(ctx, from, "/netprobe", "spoof", "-source", source, "-sport", fmt.Sprint(sport),
			"-protocol", "tcp", "-count", "3", s.dbIP+":3306")
		if err != nil {
			t.Fatalf("netprobe spoof in %s: %v\n%s%s", from.Name, err, out, errOut)
		}
	}
	// Control: other's own address through the same raw socket is seen.
	spoof(s.other, s.other.Status.PodIP, sport)
	denied := waitFlow(t, c, "other's raw SYN to db:3306", &flowv1.FlowFilter{
		SourceIp: []string{s.other.Status.PodIP}, DestinationIp: []string{s.dbIP}, SourcePort: []uint32{sport}})
	if denied.GetVerdict() != flowv1.Verdict_VERDICT_DENIED {
		t.Errorf("other's own raw SYN: %s, want denied by db-policy", describeFlow(denied))
	}

	// Forged: web's address from other's interface.
	forged := sport + 1
	spoof(s.other, s.web.Status.PodIP, forged)
	time.Sleep(3 * time.Second) // the control's flow showed up well within this
	fs := observe(t, c, &flowv1.ObserveRequest{Allowlist: []*flowv1.FlowFilter{{
		SourceIp: []string{s.web.Status.PodIP}, DestinationIp: []string{s.dbIP}, SourcePort: []uint32{forged}}}})
	for _, f := range fs {
		t.Errorf("a SYN other forged with web's address reached the policy: %s", describeFlow(f))
	}

	// Without other's guard (removed by hand, as root on the node) the same
	// forged SYN passes db-policy as web's: what the check above rules out.
	// The agent then puts the guard back.
	node := framework.NodeOf(t, s.other) // the guard lives on other's node
	ifindex := guardedInterface(t, node, s.other.Status.PodIP)
	pin := node.Path(t, filepath.Join(probe.DefaultPinRoot, probe.LayoutVersion, "links", "node", fmt.Sprintf("spoof_%d", ifindex)))
	var passed *flowv1.Flow
	for attempt := uint32(2); attempt < 5 && passed == nil; attempt++ {
		// The agent's resync may re-attach it at any moment: retried.
		l, err := link.LoadPinnedLink(pin, nil)
		if err != nil {
			t.Fatalf("other's guard %s: %v", pin, err)
		}
		if err := l.Unpin(); err != nil {
			t.Fatal(err)
		}
		l.Close()
		spoof(s.other, s.web.Status.PodIP, sport+attempt)
		for deadline := time.Now().Add(5 * time.Second); passed == nil && time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
			if fs := observe(t, c, &flowv1.ObserveRequest{Allowlist: []*flowv1.FlowFilter{{
				SourceIp: []string{s.web.Status.PodIP}, DestinationIp: []string{s.dbIP}, SourcePort: []uint32{sport + attempt}}}}); len(fs) > 0 {
				passed = fs[0]
			}
		}
	}
	if passed == nil {
		t.Error("with other's guard removed the forged SYN is not seen either: this test cannot tell a guard from a broken path")
	} else if passed.GetVerdict() != flowv1.Verdict_VERDICT_ALLOWED || passed.GetSource().GetPod() != s.web.Name {
		t.Errorf("unguarded forged SYN: %s, want allowed as web's", describeFlow(passed))
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(pin); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not put other's guard back within 20 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// guardedInterface is the interface the agent guards with addr, read from
// its pinned anti-spoofing map (the test runs as root on the node).
func guardedInterface(t *testing.T, node framework.Node, addr string) int {
	t.Helper()
	m, err := ebpf.LoadPinnedMap(node.Path(t, filepath.Join(probe.DefaultPinRoot, probe.LayoutVersion, "netpol_spoof_guard")), nil)
	if err != nil {
		t.Fatalf("opening the agent's anti-spoofing map (needs root on the node): %v", err)
	}
	defer m.Close()
	want := netip.MustParseAddr(addr)
	var key [20]byte // struct netpol_spoof_key: ifindex, address (IPv4-mapped)
	var val uint8
	it := m.Iterate()
	for it.Next(&key, &val) {
		if netip.AddrFrom16([16]byte(key[4:])).Unmap() == want {
			return int(binary.NativeEndian.Uint32(key[:4]))
		}
	}
	t.Fatalf("no guard holds %s (iteration: %v)", addr, it.Err())
	return 0
}

// waitGuarded waits until every agent's anti-spoofing check passes with no
// pod still being looked up.
func waitGuarded(t *testing.T, c *framework.Cluster) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		if last = spoofCheck(t, c); strings.HasPrefix(last, "ok:") && !strings.Contains(last, "looked up") {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("anti-spoofing not in place 30 s after the pods started: %s", last)
}

// spoofCheck is the agents' anti-spoofing check as "ok: detail" or
// "failed: detail".
func spoofCheck(t *testing.T, c *framework.Cluster) string {
	t.Helper()
	var out []string
	eachAgent(t, c, func(ctx context.Context, a agentclient.Agent, client flowv1.ObserverClient) {
		st, err := client.Status(ctx, &flowv1.StatusRequest{})
		if err != nil {
			t.Fatalf("Status of %s: %v", a, err)
		}
		found := false
		for _, ch := range st.GetChecks() {
			if ch.GetName() == "anti-spoofing" {
				found = true
				state := "ok"
				if !ch.GetOk() {
					state = "failed"
				}
				out = append(out, state+": "+ch.GetDetail())
			}
		}
		if !found {
			out = append(out, "failed: agent "+a.Name+" has no anti-spoofing check (an agent image without it?)")
		}
	})
	if len(out) == 0 {
		return "failed: no ready agent"
	}
	for _, o := range out {
		if !strings.HasPrefix(o, "ok:") {
			return o
		}
	}
	return out[0]
}
