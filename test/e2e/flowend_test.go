//go:build e2e

package e2e

import (
	"encoding/json"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protojson"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

// A connection that ends on the node shows in `watch -o json` as an END
// flow: web -> db:3306 with its pods, the rule that admitted it, and
// counters exactly when the node counts (nf_conntrack_acct, which status
// reports as the conntrack-accounting check) or TCP ends come from the
// sockets (flow-end-source kernel-tcp: as soon as the sockets close).
//
// The connection is ended by deleting its conntrack entries (this test's
// own pods' only; `conntrack -D` does the same): from conntrack, the node's
// TIME_WAIT would keep it two minutes.
func TestAgentFlowEndSummary(t *testing.T) {
	runBesideConformance(t)
	c := framework.Connect(t)
	installAgent(t, c)
	s := newShop(t, c)
	s.applyPolicy(t, c)
	// db's node judges the ingress db-policy decides; on several nodes web's node sees the
	// connection too (its egress), and both end it.
	dbNode := framework.NodeOf(t, s.db)
	acct := strings.TrimSpace(dbNode.Run(t, "cat", "/proc/sys/net/netfilter/nf_conntrack_acct")) == "1"

	expect(t, c, s.web, true, s.podDB)
	webIP, dbIP := netip.MustParseAddr(s.web.Status.PodIP), netip.MustParseAddr(s.dbIP)
	deleted := deleteConntrack(t, func(f conntrack.Flow) bool {
		o := f.TupleOrig
		return o.Proto.Protocol == unix.IPPROTO_TCP && o.IP.SourceAddress.Unmap() == webIP &&
			o.IP.DestinationAddress.Unmap() == dbIP && o.Proto.DestinationPort == 3306
	})
	if deleted == 0 {
		t.Fatalf("no conntrack entry of web -> db:3306 on the node after a connection")
	}

	var end *flowv1.Flow
	deadline := time.Now().Add(20 * time.Second)
	for end == nil {
		out, err := netpol(t, c, "", "watch", "-o", "json", "--last", "500", "--to-namespace", s.ns, "--from-pod", s.ns+"/web")
		if err != nil {
			t.Fatalf("watch: %v\n%s", err, out)
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var f flowv1.Flow
			if line == "" || protojson.Unmarshal([]byte(line), &f) != nil {
				continue
			}
			// Across nodes, db's node records the ingress decision db-policy makes: its own END, or
			// the END watch paired from both nodes' records (one node's may come first, alone).
			if f.GetType() == flowv1.EventType_EVENT_TYPE_END && f.GetDestination().GetPod() == "db" && f.GetL4().GetDestinationPort() == 3306 &&
				(f.GetNode() == dbNode.Name || len(f.GetObservations()) > 1) {
				end = &f
			}
		}
		if end == nil && time.Now().After(deadline) {
			t.Fatalf("watch -o json shows no END flow of web -> db:3306 20 s after its conntrack entries were deleted:\n%s", out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("END: %s packets=%d bytes=%d duration=%v", describeFlow(end), end.GetPackets(), end.GetBytes(), end.GetDuration().AsDuration())
	if end.GetSource().GetPod() != "web" || end.GetVerdict() != flowv1.Verdict_VERDICT_ALLOWED ||
		len(end.GetAllowedBy()) != 1 || end.GetAllowedBy()[0].GetName() != "db-policy" {
		t.Errorf("END flow should be web -> db allowed by db-policy: %s", describeFlow(end))
	}
	if end.GetDuration() == nil || end.GetDuration().AsDuration() <= 0 {
		t.Errorf("END flow has no duration: its connection's new-flow event was not matched: %s", describeFlow(end))
	}
	// status agrees with the node's setting.
	out, err := netpol(t, c, "", "status", "-o", "json")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	var st struct {
		Nodes []struct {
			Agent struct {
				Checks []struct {
					Name   string `json:"name"`
					OK     bool   `json:"ok"`
					Detail string `json:"detail"`
				} `json:"checks"`
			} `json:"agent"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	found, tcpFromSockets := false, false
	for _, n := range st.Nodes {
		for _, ch := range n.Agent.Checks {
			if ch.Name == "conntrack-accounting" {
				found = true
				if ch.OK != acct {
					t.Errorf("conntrack-accounting check ok=%v with nf_conntrack_acct=%v: %s", ch.OK, acct, ch.Detail)
				}
			}
			// Kernels that refuse fentry programs (this project's test machines): TCP ends come
			// from the sockets, whose counters need no conntrack accounting.
			if ch.Name == "flow-end-source" {
				t.Logf("flow-end-source: %s", ch.Detail)
				tcpFromSockets = tcpFromSockets || strings.Contains(ch.Detail, "tcp from kernel-tcp")
			}
		}
	}
	if !found {
		t.Errorf("status has no conntrack-accounting check:\n%s", out)
	}
	counted := acct || tcpFromSockets
	if counted && (end.GetPackets() == 0 || end.GetBytes() == 0) {
		t.Errorf("nf_conntrack_acct=%v, TCP from sockets %v, but the summary has %d packets, %d bytes", acct, tcpFromSockets, end.GetPackets(), end.GetBytes())
	}
	if !counted && end.GetPackets() != 0 {
		t.Errorf("nf_conntrack_acct=0 on the node but the summary has %d packets", end.GetPackets())
	}
}

// deleteConntrack deletes the conntrack entries that match on every node and
// returns how many.
func deleteConntrack(t *testing.T, match func(conntrack.Flow) bool) int {
	t.Helper()
	n := 0
	for _, node := range framework.Nodes {
		cfg := &netlink.Config{}
		if node.NetNS != "" {
			f, err := os.Open(node.NetNS)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			cfg.NetNS = int(f.Fd())
		}
		ct, err := conntrack.Dial(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer ct.Close()
		flows, err := ct.Dump(nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range flows {
			if match(f) {
				if err := ct.Delete(f); err != nil {
					t.Fatalf("deleting conntrack entry %v on %s: %v", f.TupleOrig, node.Name, err)
				}
				n++
			}
		}
	}
	return n
}
