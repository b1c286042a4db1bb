//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

// TestStatusShowsCNI: every agent identifies the test cluster's CNI from
// what its node shows (bridge on one node, Flannel's vxlan on several) and,
// with pods exchanging traffic through the hooks (a client connecting to a
// server on its node, and the kubelet's probes), reports "enforcing" from
// a measured window, in status's table and -o json.
func TestStatusShowsCNI(t *testing.T) {
	runBesideConformance(t)
	c := framework.Connect(t)
	installAgent(t, c)
	want := "bridge"
	if framework.MultiNode() {
		want = "Flannel (vxlan)"
	}
	ns := c.NewNamespace(t, "cni")
	node := framework.Nodes[0].Name
	server := c.StartProbeOn(t, ns, "server", map[string]string{"app": "server"}, node)
	client := c.StartProbeOn(t, ns, "client", map[string]string{"app": "client"}, node)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, stderr, err := c.Exec(ctx, client, "/netprobe", "connect", "-count", "120", "-interval", "250ms", "-timeout", "2s",
			fmt.Sprintf("%s:80", server.Status.PodIP))
		if err != nil {
			err = fmt.Errorf("%w: %s", err, stderr)
		}
		done <- err
	}()

	type report struct {
		Nodes []struct {
			Node  string
			Agent *struct {
				CNI *struct {
					Name, Mode, Coverage string
					Evidence             []string
				}
				Enforcement *struct {
					State, Detail string
					ActivePods    uint32
					Checked       *time.Time
				}
			}
		}
	}
	var last string
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, err := netpol(t, c, "", "status", "-o", "json")
		last = out
		var r report
		ok := err == nil && json.Unmarshal([]byte(out), &r) == nil && len(r.Nodes) == len(framework.Nodes)
		for _, n := range r.Nodes {
			a := n.Agent
			ok = ok && a != nil && a.CNI != nil && a.Enforcement != nil && a.Enforcement.State == "enforcing"
			if !ok {
				break
			}
			name := a.CNI.Name
			if a.CNI.Mode != "" {
				name += " (" + a.CNI.Mode + ")"
			}
			if name != want || a.CNI.Coverage != "full" {
				t.Fatalf("node %s: CNI %s (coverage %s, evidence %v), want %s", n.Node, name, a.CNI.Coverage, a.CNI.Evidence, want)
			}
			// The client's node must have judged a window with pod traffic.
			if n.Node == node && (a.Enforcement.Checked == nil || a.Enforcement.ActivePods == 0) {
				ok = false
			}
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed %s and a measured \"enforcing\" on every node:\n%s", want, last)
		}
		time.Sleep(2 * time.Second)
	}
	t.Logf("status -o json:\n%s", last)
	out, err := netpol(t, c, "", "status")
	if err != nil || !strings.Contains(out, want) || !strings.Contains(out, "enforcing") || strings.Contains(out, "not enforcing") ||
		strings.Contains(out, "partially enforcing") {
		t.Errorf("status table: %v\n%s", err, out)
	}
	t.Logf("status:\n%s", out)
	cancel()
	<-done
}
