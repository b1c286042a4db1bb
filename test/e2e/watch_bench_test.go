//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/internal/agentclient"
	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

// benchFlows is how many flows one Observe carries in the benchmark.
const benchFlows = 100_000

// benchFlow is a typical denied flow: both endpoints with labels and
// workloads, a Service, the isolating policy.
func benchFlow(i int) *flowv1.Flow {
	return &flowv1.Flow{
		Time: timestamppb.New(time.Date(2026, 11, 25, 14, 0, 0, i, time.UTC)), Node: framework.NodeName,
		Verdict: flowv1.Verdict_VERDICT_DENIED, Reason: flowv1.Reason_REASON_NO_RULE_MATCHED,
		Direction: flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS,
		Ip:        &flowv1.IP{Source: "10.244.0.9", Destination: "10.244.0.10"},
		L4:        &flowv1.Layer4{Protocol: flowv1.Protocol_PROTOCOL_TCP, SourcePort: uint32(30000 + i%30000), DestinationPort: 5432},
		Source: &flowv1.Endpoint{Namespace: "default", Pod: "curl-7d9f8b6c5d-x2x4z", Labels: map[string]string{"app": "curl", "pod-template-hash": "7d9f8b6c5d"},
			Workload: &flowv1.Workload{Kind: "Deployment", Name: "curl"}},
		Destination: &flowv1.Endpoint{Namespace: "shop", Pod: "db-0", Labels: map[string]string{"app": "db", "tier": "data"},
			Workload: &flowv1.Workload{Kind: "StatefulSet", Name: "db"}},
		Service:    &flowv1.Service{Namespace: "shop", Name: "db", Ip: "10.96.0.20", Port: 5432},
		IsolatedBy: []*flowv1.PolicyRef{{Kind: "NetworkPolicy", Namespace: "shop", Name: "db-allow-api"}},
	}
}

// BenchmarkLiveFlowsThroughPortForward: how fast one agent's flows reach
// the CLI through the real API server's pods/portforward (websocket tunnel
// or SPDY, kubelet, containerd) versus gRPC on loopback directly: each op is
// one Observe of benchFlows flows from a flow.Hub's history, read through
// flow.ClientSource as watch does.
//
//	KUBECONFIG=$PWD/.cluster/kubeconfig go test -tags e2e ./test/e2e -run '^$' -bench LiveFlows -benchtime 3x -count 3
func BenchmarkLiveFlowsThroughPortForward(b *testing.B) {
	c := framework.Connect(b)
	ns := c.NewNamespace(b, "watchbench")
	hub, _, port := serveHubCapacity(b, benchFlows)
	for i := range benchFlows {
		hub.Publish(benchFlow(i))
	}
	size := proto.Size(benchFlow(0))
	c.StartPod(b, framework.AgentStandInPod(ns, "agent-bench", "v9.9.9-e2e"))
	ctx := framework.Context(b, 10*time.Minute)
	agents, err := agentclient.Discover(ctx, c.Client, ns)
	if err != nil {
		b.Fatal(err)
	}
	pf, err := agentclient.DialPort(ctx, c.Config, agents[0], port)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pf.Close() })
	direct, err := grpc.NewClient(fmt.Sprintf("passthrough:///127.0.0.1:%d", port), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { direct.Close() })
	for _, bc := range []struct {
		name string
		conn grpc.ClientConnInterface
	}{{"portforward", pf}, {"loopback", direct}} {
		b.Run(bc.name, func(b *testing.B) {
			src := &flow.ClientSource{Client: flowv1.NewObserverClient(bc.conn), Node: framework.NodeName}
			start, cpu0 := time.Now(), processCPU()
			for range b.N {
				n := 0
				err := src.Observe(ctx, &flowv1.ObserveRequest{Last: benchFlows}, func(bt flow.Batch) error {
					n += len(bt.Flows)
					return nil
				})
				if err != nil || n != benchFlows {
					b.Fatalf("%d flows, %v", n, err)
				}
			}
			secs, cpu := time.Since(start).Seconds(), processCPU()-cpu0
			b.ReportMetric(float64(b.N*benchFlows)/secs, "flows/s")
			b.ReportMetric(float64(b.N*benchFlows*size)/secs/1e6, "MB/s")
			// This process's CPU (server and client; not the API server's,
			// kubelet's or containerd's) per flow: load on the shared machine
			// inflates wall time, not this.
			b.ReportMetric(cpu.Seconds()*1e6/float64(b.N*benchFlows), "cpu-µs/flow")
		})
	}
}

// processCPU is this process's user+system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serveHubCapacity serves a flow.Hub with a ring of capacity flows.
func serveHubCapacity(tb testing.TB, capacity int) (*flow.Hub, *grpc.Server, int) {
	tb.Helper()
	hub := flow.NewHub(capacity, func(context.Context) (*flowv1.StatusResponse, error) {
		return &flowv1.StatusResponse{Node: framework.NodeName, Version: "v9.9.9-e2e"}, nil
	})
	s, port := framework.ServeHub(tb, "127.0.0.1:0", hub)
	return hub, s, port
}
