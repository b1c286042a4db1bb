//go:build e2e

package tui_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

// TestRealTerminalLive runs the built plugin's TUI in tmux against the real
// test cluster: `watch` finds the agent pod (a hostNetwork stand-in, see
// framework.AgentStandInPod) and streams through pods/portforward from a
// flow.Hub on the node's loopback; the status bar counts the node and
// warns of version skew; the detail of a drop is re-evaluated by the policy
// engine against the cluster's real pods and NetworkPolicy.
//
//	KUBECONFIG=$PWD/.cluster/kubeconfig go test -tags e2e ./tui -run TestRealTerminalLive
func TestRealTerminalLive(t *testing.T) {
	c := framework.Connect(t)
	ns := c.NewNamespace(t, "tuilive")
	ctx := framework.Context(t, 3*time.Minute)
	client := c.StartProbe(t, ns, "client", map[string]string{"app": "client"})
	server := c.StartProbe(t, ns, "server", map[string]string{"app": "server"})
	port80 := intstr.FromInt32(80)
	if _, err := c.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "server-from-api"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "api"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &port80}},
			}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	hub := flow.NewHub(1024, func(context.Context) (*flowv1.StatusResponse, error) {
		return &flowv1.StatusResponse{Node: framework.NodeName, Version: "v9.9.9-e2e"}, nil
	})
	drop := &flowv1.Flow{
		Time: timestamppb.Now(), Node: framework.NodeName, Type: flowv1.EventType_EVENT_TYPE_DROP,
		Verdict: flowv1.Verdict_VERDICT_DENIED, Reason: flowv1.Reason_REASON_NO_RULE_MATCHED,
		Direction:   flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS,
		Source:      &flowv1.Endpoint{Namespace: ns, Pod: client.Name, Labels: client.Labels},
		Destination: &flowv1.Endpoint{Namespace: ns, Pod: server.Name, Labels: server.Labels},
		Ip:          &flowv1.IP{Source: client.Status.PodIP, Destination: server.Status.PodIP},
		L4:          &flowv1.Layer4{Protocol: flowv1.Protocol_PROTOCOL_TCP, SourcePort: 40000, DestinationPort: 80},
		IsolatedBy:  []*flowv1.PolicyRef{{Kind: "NetworkPolicy", Namespace: ns, Name: "server-from-api"}},
	}
	hub.Publish(drop) // history: the TUI's follow starts with it
	// The agent's connection history: 600 allowed connections client ->
	// server 3 hours ago, which the chart's 24 h range reads (10/min or more
	// over the one or two 24-minute steps they fall in).
	store := history.NewStore(history.Config{Node: framework.NodeName})
	for i := range 600 {
		old := proto.Clone(drop).(*flowv1.Flow)
		old.Type, old.Verdict, old.Reason, old.IsolatedBy = flowv1.EventType_EVENT_TYPE_NEW, flowv1.Verdict_VERDICT_ALLOWED, flowv1.Reason_REASON_NOT_ISOLATED, nil
		old.Time = timestamppb.New(time.Now().Add(-3*time.Hour + time.Duration(i)*time.Second))
		store.Record(old)
	}
	store.Record(drop)
	_, port := framework.ServeHubWithHistory(t, "127.0.0.1:0", hub, store)
	c.StartPod(t, framework.AgentStandInPod(ns, "agent-1", "v9.9.9-e2e"))

	bin := buildPlugin(t)
	s := startTmux(t, 160, 70, []string{"TERM=xterm-256color", "TZ=UTC", "KUBECONFIG=" + c.Kubeconfig},
		bin, "watch", "--agent-namespace", ns, "--agent-port", fmt.Sprint(port))
	scr := s.waitFor("the node connected and the drop listed", func(scr string) bool {
		return strings.Contains(scr, "1/1 nodes") && strings.Contains(scr, "DENIED")
	})
	if !strings.Contains(scr, "⚠ skew: agent v9.9.9-e2e") {
		t.Errorf("no skew warning in the status bar:\n%s", scr)
	}
	s.send("Enter")
	wants := []string{
		fmt.Sprintf("ingress to %s/server: denied (isolated for Ingress and no rule allows this traffic)", ns),
		ns + "/server-from-api selects pod " + ns + "/server",
		"ingress[0].from[0]:",
	}
	// The pane wraps where the (random) namespace name puts the words:
	// compare the detail column's text with line breaks and padding removed.
	scr = s.waitFor("the engine's explanation in the detail pane", func(scr string) bool {
		return strings.Contains(detailText(scr), wants[len(wants)-1])
	})
	for _, want := range wants {
		if !strings.Contains(detailText(scr), want) {
			t.Errorf("full detail lacks %q:\n%s", want, scr)
		}
	}

	// The views on the live stream: the drop is the map's edge, explained
	// by the engine like the flow, and the top view's rule.
	// On a loaded machine the terminal may deliver Escape and the next key
	// close enough together to read as one (alt+3): then the full-screen
	// detail is still up. Leave it and press 3 again, up to three times.
	mapShown := func(scr string) bool {
		return strings.Contains(scr, "EDGES (→)") && strings.Contains(scr, "─DENIED 1 (<0.1/s) ╳")
	}
	for attempt := 1; ; attempt++ {
		s.send("Escape") // leave the full-screen detail
		s.waitFor("the main screen", func(scr string) bool { return strings.Contains(scr, "VERDICT") && !strings.Contains(scr, "Recorded") })
		time.Sleep(200 * time.Millisecond)
		s.send("3")
		var ok bool
		if scr, ok = s.poll(10*time.Second, mapShown); ok {
			break
		}
		if attempt == 3 {
			t.Fatalf("timed out waiting for the map with the drop's edge; screen:\n%s", scr)
		}
		t.Logf("attempt %d: no map after pressing 3; screen:\n%s", attempt, scr)
	}
	for _, want := range []string{"Map " + ns + "/", ns + "/" + client.Name, ns + "/" + server.Name} {
		if !strings.Contains(scr, want) {
			t.Errorf("map lacks %q:\n%s", want, scr)
		}
	}
	if !strings.Contains(detailText(scr), wants[0]) {
		t.Errorf("the map's detail pane should explain the edge's flow:\n%s", scr)
	}
	s.send("2")
	scr = s.waitText("Top policy rules")
	if !strings.Contains(scr, ns+"/server-from-api (") {
		t.Errorf("top rules lack the isolating policy:\n%s", scr)
	}
	s.send("t", "t")
	s.waitText("Top workload pairs")
	s.send("Enter")
	s.waitFor("the drilled-down flows", func(scr string) bool {
		return strings.Contains(scr, "filter: from-workload=") && strings.Contains(scr, "DENIED")
	})
	// The chart's long ranges read the agent's history through the same
	// port-forward: r from 1m goes 5m, 1h, 24h.
	s.send("1")
	s.waitText("VERDICT")
	s.send("r", "r", "r")
	scr = s.waitFor("the 24h chart drawn from the history", func(scr string) bool {
		return strings.Contains(scr, "last 24h from history") && historyRates.MatchString(scr)
	})
	if !strings.Contains(scr, "Flows/min cluster") || strings.Contains(scr, "reading the agents' history") {
		t.Errorf("24h chart:\n%s", scr)
	}
	s.send("q")
	s.waitFor("the program to exit with status 0", func(string) bool {
		out, err := os.ReadFile(s.exitFile)
		return err == nil && strings.TrimSpace(string(out)) == "0"
	})
}

// detailText is the left column of the screen's lines from the detail pane
// (or the whole screen when it is all detail) down (the text before the "│" that borders the rates panel), joined with
// single spaces; a word cut by a wrap ("tuilive-" / "8dmbv") is joined back.
func detailText(scr string) string {
	var parts []string
	// Beside the flows table the pane starts at its "─ Detail" header; on a
	// tall terminal the explanation may take the whole screen.
	in := !strings.Contains(scr, "─ Detail")
	for _, line := range strings.Split(scr, "\n") {
		if strings.Contains(line, "─ Detail") {
			in = true
			continue
		}
		if !in {
			continue
		}
		if i := strings.Index(line, "│"); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" {
			parts = append(parts, line)
		}
	}
	var b strings.Builder
	for i, p := range parts {
		if i > 0 && !strings.HasSuffix(parts[i-1], "-") {
			b.WriteByte(' ')
		}
		b.WriteString(p)
	}
	return strings.Join(strings.Fields(b.String()), " ")
}
