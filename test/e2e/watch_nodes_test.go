//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

// watchFlows runs a one-shot `kubectl netpol watch -o json` with args and
// parses its lines.
func watchFlows(t *testing.T, c *framework.Cluster, args ...string) []*flowv1.Flow {
	t.Helper()
	out, err := netpol(t, c, "", append([]string{"watch", "-o", "json"}, args...)...)
	if err != nil {
		t.Fatalf("watch %v: %v\n%s", args, err, out)
	}
	var flows []*flowv1.Flow
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var f flowv1.Flow
		if line != "" && protojson.Unmarshal([]byte(line), &f) == nil {
			flows = append(flows, &f)
		}
	}
	return flows
}

// TestWatchAcrossNodes: db on one node, web and other on another. watch
// shows each cross-node connection once with both observation points (egress
// on the client's node, ingress on db's), the drop naming db-policy at db's
// node; --per-node gives each node's own record; the kubelet's readiness
// probes of db show as node/<db's node>.
func TestWatchAcrossNodes(t *testing.T) {
	runBesideConformance(t)
	if !framework.MultiNode() {
		t.Skip("needs several nodes (make cluster-up NODES=3)")
	}
	c := framework.Connect(t)
	installAgent(t, c)
	s := newShop(t, c)
	s.applyPolicy(t, c)
	clientNode, dbNode := s.web.Spec.NodeName, s.db.Spec.NodeName
	if clientNode == dbNode {
		t.Fatalf("web and db on one node (%s): the placement should put them apart", dbNode)
	}

	var paired, pairedDrop, probe *flowv1.Flow
	deadline := time.Now().Add(30 * time.Second)
	for paired == nil || pairedDrop == nil || probe == nil {
		expect(t, c, s.web, true, s.podDB)
		expect(t, c, s.other, false, s.podDB)
		for _, f := range watchFlows(t, c, "--last", "1000", "--to-namespace", s.ns) {
			obs := f.GetObservations()
			twoPoints := len(obs) == 2 && obs[0].GetNode() == clientNode && obs[0].GetDirection() == flowv1.TrafficDirection_TRAFFIC_DIRECTION_EGRESS &&
				obs[1].GetNode() == dbNode && obs[1].GetDirection() == flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS
			switch {
			case twoPoints && f.GetSource().GetPod() == "web" && f.GetDestination().GetPod() == "db" && f.GetL4().GetDestinationPort() == 3306 &&
				f.GetType() == flowv1.EventType_EVENT_TYPE_NEW:
				paired = f
			case twoPoints && f.GetSource().GetPod() == "other" && f.GetDestination().GetPod() == "db" && f.GetVerdict() == flowv1.Verdict_VERDICT_DENIED:
				pairedDrop = f
			case f.GetSource().GetPod() == "" && f.GetSource().GetNodeName() == dbNode && f.GetDestination().GetPod() == "db" &&
				f.GetL4().GetDestinationPort() == 8080:
				probe = f
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: web -> db paired %v, other -> db paired drop %v, kubelet probe of db as node/%s %v",
				paired != nil, pairedDrop != nil, dbNode, probe != nil)
		}
		time.Sleep(time.Second)
	}
	t.Logf("paired: %s", describeFlow(paired))
	t.Logf("paired drop: %s", describeFlow(pairedDrop))
	t.Logf("probe: %s", describeFlow(probe))
	if in := paired.GetObservations()[1]; in.GetVerdict() != flowv1.Verdict_VERDICT_ALLOWED || len(in.GetAllowedBy()) != 1 ||
		in.GetAllowedBy()[0].GetName() != "db-policy" || in.GetAllowedBy()[0].GetRuleIndex() != 0 {
		t.Errorf("web -> db: the ingress point should be allowed by db-policy rule 0: %s", describeFlow(paired))
	}
	if paired.GetVerdict() != flowv1.Verdict_VERDICT_ALLOWED {
		t.Errorf("web -> db: %s", describeFlow(paired))
	}
	if pairedDrop.GetDirection() != flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS || len(pairedDrop.GetIsolatedBy()) != 1 ||
		pairedDrop.GetIsolatedBy()[0].GetName() != "db-policy" || pairedDrop.GetObservations()[0].GetVerdict() != flowv1.Verdict_VERDICT_ALLOWED {
		t.Errorf("other -> db: egress at %s allowed, the drop at %s isolated by db-policy: %s", clientNode, dbNode, describeFlow(pairedDrop))
	}

	// --per-node: each node's record of web -> db, unpaired.
	nodes := map[string]bool{}
	for _, f := range watchFlows(t, c, "--last", "1000", "--per-node", "--from-pod", s.ns+"/web", "--to-pod", s.ns+"/db", "--to-port", "3306") {
		if len(f.GetObservations()) != 0 {
			t.Errorf("--per-node printed a paired flow: %s", describeFlow(f))
		}
		nodes[f.GetNode()] = true
	}
	if !nodes[clientNode] || !nodes[dbNode] {
		t.Errorf("--per-node: records of web -> db from %v, want from %s and %s", nodes, clientNode, dbNode)
	}

	// Compact: the pair on one line, the probe as node/NAME.
	out, err := netpol(t, c, "", "watch", "-o", "compact", "--last", "1000", "--to-namespace", s.ns)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, clientNode+"+"+dbNode+" "+s.ns+"/web:") || !strings.Contains(out, "node/"+dbNode+":") {
		t.Errorf("compact output lacks the paired web -> db line or node/%s:\n%s", dbNode, out)
	}
}
