package flow_test

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

var update = flag.Bool("update", false, "rewrite testdata/flows/sample.jsonl and golden files")

const samplePath = "../testdata/flows/sample.jsonl"

// pod is one endpoint of the sample cluster.
type pod struct {
	ns, name, ip, node string
	labels             map[string]string
	kind, workload     string
}

func (p pod) endpoint() *flowv1.Endpoint {
	if p.name == "" {
		return &flowv1.Endpoint{}
	}
	ep := &flowv1.Endpoint{Namespace: p.ns, Pod: p.name, Labels: p.labels, NodeName: p.node}
	if p.kind != "" {
		ep.Workload = &flowv1.Workload{Kind: p.kind, Name: p.workload}
	}
	return ep
}

func ref(ns, name string, dir flowv1.TrafficDirection, rule int) *flowv1.PolicyRef {
	r := &flowv1.PolicyRef{Kind: "NetworkPolicy", Namespace: ns, Name: name, Direction: dir}
	if rule >= 0 {
		idx := uint32(rule)
		r.RuleIndex = &idx
	}
	return r
}

const (
	in  = flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS
	out = flowv1.TrafficDirection_TRAFFIC_DIRECTION_EGRESS
)

// sampleFlows is a realistic minute of a small cluster: a shop namespace
// isolated for ingress (default-deny plus allow rules), a payments namespace
// isolated for egress, Service traffic, DNS to an unisolated kube-system,
// default-deny drops naming the isolating policies, and flow-end summaries.
func sampleFlows() []*flowv1.Flow {
	web := pod{"shop", "web-7d9f8c6b5-x2k4q", "10.244.1.11", "node-a", map[string]string{"app": "web", "tier": "frontend"}, "Deployment", "web"}
	api := pod{"shop", "api-5c6d7f9b8-m8n2p", "10.244.2.21", "node-b", map[string]string{"app": "api", "tier": "backend"}, "Deployment", "api"}
	db := pod{"shop", "db-0", "10.244.2.30", "node-b", map[string]string{"app": "db"}, "StatefulSet", "db"}
	curl := pod{"default", "curl", "10.244.1.40", "node-a", map[string]string{"run": "curl"}, "", ""}
	prom := pod{"monitoring", "prometheus-0", "10.244.1.50", "node-a", map[string]string{"app.kubernetes.io/name": "prometheus"}, "StatefulSet", "prometheus"}
	dns := pod{"kube-system", "coredns-6f6b679f8f-9qz7w", "10.244.0.5", "node-a", map[string]string{"k8s-app": "kube-dns"}, "Deployment", "coredns"}
	worker := pod{"payments", "worker-84d5c-7h2lp", "10.244.2.60", "node-b", map[string]string{"app": "worker"}, "Deployment", "worker"}
	external := pod{ip: "203.0.113.10"}
	bank := pod{ip: "198.51.100.7"}

	type scenario struct {
		src, dst      pod
		port          uint32
		proto         flowv1.Protocol
		verdict       flowv1.Verdict
		reason        flowv1.Reason
		dir           flowv1.TrafficDirection
		svc           *flowv1.Service
		allowed       []*flowv1.PolicyRef
		isolated      []*flowv1.PolicyRef
		weight        int
		reportingNode string
	}
	TCP, UDP := flowv1.Protocol_PROTOCOL_TCP, flowv1.Protocol_PROTOCOL_UDP
	A, D := flowv1.Verdict_VERDICT_ALLOWED, flowv1.Verdict_VERDICT_DENIED
	byRule := flowv1.Reason_REASON_ALLOWED_BY_RULE
	noRule := flowv1.Reason_REASON_NO_RULE_MATCHED
	notIso := flowv1.Reason_REASON_NOT_ISOLATED
	svc := func(ns, name, ip string, port uint32) *flowv1.Service {
		return &flowv1.Service{Namespace: ns, Name: name, Ip: ip, Port: port}
	}
	scenarios := []scenario{
		// curl -> Service shop/web -> web: allowed from anywhere on 8080.
		{curl, web, 8080, TCP, A, byRule, in, svc("shop", "web", "10.96.12.34", 80),
			[]*flowv1.PolicyRef{ref("shop", "allow-web-from-anywhere", in, 0)}, nil, 8, "node-a"},
		// web -> Service shop/api -> api: allowed by rule 0.
		{web, api, 8080, TCP, A, byRule, in, svc("shop", "api", "10.96.40.2", 8080),
			[]*flowv1.PolicyRef{ref("shop", "api-allow-web", in, 0)}, nil, 10, "node-b"},
		// api -> db on 5432: allowed by rule 0 of db-allow-api.
		{api, db, 5432, TCP, A, byRule, in, nil,
			[]*flowv1.PolicyRef{ref("shop", "db-allow-api", in, 0)}, nil, 8, "node-b"},
		// curl -> Service shop/db: default-deny drop, isolated by two policies.
		{curl, db, 5432, TCP, D, noRule, in, svc("shop", "db", "10.96.40.9", 5432),
			nil, []*flowv1.PolicyRef{ref("shop", "default-deny-ingress", in, -1), ref("shop", "db-allow-api", in, -1)}, 3, "node-b"},
		// prometheus scraping api metrics: no rule allows port 9090.
		{prom, api, 9090, TCP, D, noRule, in, nil,
			nil, []*flowv1.PolicyRef{ref("shop", "default-deny-ingress", in, -1), ref("shop", "api-allow-web", in, -1)}, 4, "node-b"},
		// DNS: kube-system is not isolated.
		{web, dns, 53, UDP, A, notIso, in, svc("kube-system", "kube-dns", "10.96.0.10", 53), nil, nil, 6, "node-a"},
		{api, dns, 53, UDP, A, notIso, in, svc("kube-system", "kube-dns", "10.96.0.10", 53), nil, nil, 6, "node-a"},
		// api egress to an outside API: shop is not isolated for egress.
		{api, external, 443, TCP, A, notIso, out, nil, nil, nil, 3, "node-b"},
		// payments is isolated for egress: the bank is allowed by rule 1, anything else is dropped.
		{worker, bank, 443, TCP, A, byRule, out, nil,
			[]*flowv1.PolicyRef{ref("payments", "worker-egress", out, 1)}, nil, 3, "node-b"},
		{worker, external, 443, TCP, D, noRule, out, nil,
			nil, []*flowv1.PolicyRef{ref("payments", "default-deny-egress", out, -1), ref("payments", "worker-egress", out, -1)}, 2, "node-b"},
		// worker -> Service shop/api: egress allowed by rule 0, ingress then dropped at api.
		{worker, api, 8080, TCP, D, noRule, in, svc("shop", "api", "10.96.40.2", 8080),
			nil, []*flowv1.PolicyRef{ref("shop", "default-deny-ingress", in, -1), ref("shop", "api-allow-web", in, -1)}, 2, "node-b"},
	}
	total := 0
	for _, s := range scenarios {
		total += s.weight
	}
	rng := rand.New(rand.NewPCG(4, 2))
	start := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	var flows []*flowv1.Flow
	for i := 0; i < 600; i++ {
		// 10 flows/s over the minute, with a burst of drops from 30 s to 40 s.
		at := start.Add(time.Duration(i)*100*time.Millisecond + time.Duration(rng.IntN(90))*time.Millisecond)
		pick := rng.IntN(total)
		var s scenario
		for _, c := range scenarios {
			if pick < c.weight {
				s = c
				break
			}
			pick -= c.weight
		}
		if i >= 300 && i < 400 && i%2 == 0 {
			s = scenarios[4] // prometheus rolled out a new scrape target
		}
		sport := uint32(32768 + rng.IntN(28000))
		f := &flowv1.Flow{
			Time: timestamppb.New(at), Node: s.reportingNode,
			Type: flowv1.EventType_EVENT_TYPE_NEW, Verdict: s.verdict, Reason: s.reason, Direction: s.dir,
			Ip:          &flowv1.IP{Source: s.src.ip, Destination: s.dst.ip, Version: flowv1.IPVersion_IP_VERSION_IPV4},
			L4:          &flowv1.Layer4{Protocol: s.proto, SourcePort: sport, DestinationPort: s.port},
			Source:      s.src.endpoint(),
			Destination: s.dst.endpoint(),
			Service:     s.svc,
			AllowedBy:   s.allowed,
			IsolatedBy:  s.isolated,
			RuleId:      0,
		}
		if s.proto == TCP {
			f.L4.TcpFlags = &flowv1.TCPFlags{Syn: true}
		}
		if s.verdict == D {
			f.Type = flowv1.EventType_EVENT_TYPE_DROP
		}
		if len(s.allowed) > 0 {
			f.RuleId = uint32(100 + s.allowed[0].GetRuleIndex() + uint32(len(s.allowed[0].GetName())))
		}
		flows = append(flows, f)
		// Some allowed TCP connections end within the minute: a summary.
		if s.verdict == A && s.proto == TCP && rng.IntN(3) == 0 {
			lasted := time.Duration(50+rng.IntN(400)) * time.Millisecond
			end := &flowv1.Flow{
				Time: timestamppb.New(at.Add(lasted)), Node: f.Node,
				Type: flowv1.EventType_EVENT_TYPE_END, Verdict: A, Reason: s.reason, Direction: s.dir,
				Ip: f.Ip, L4: &flowv1.Layer4{Protocol: TCP, SourcePort: sport, DestinationPort: s.port, TcpFlags: &flowv1.TCPFlags{Fin: true, Ack: true}},
				Source: f.Source, Destination: f.Destination, Service: f.Service, AllowedBy: f.AllowedBy, RuleId: f.RuleId,
				Packets: uint64(6 + rng.IntN(40)), Bytes: uint64(600 + rng.IntN(60000)),
				Duration: durationpb.New(lasted),
			}
			flows = append(flows, end)
		}
	}
	// The kubelets probe their own pods every 10 s from the node's cni0
	// address (not subject to policy: the TUI hides these by default).
	for sec := 0; sec < 60; sec += 10 {
		for _, p := range []struct {
			target pod
			port   uint32
			from   string
		}{{web, 8080, "10.244.1.1"}, {api, 8080, "10.244.2.1"}, {db, 5432, "10.244.2.1"}} {
			flows = append(flows, &flowv1.Flow{
				Time: timestamppb.New(start.Add(time.Duration(sec)*time.Second + 5*time.Millisecond)), Node: p.target.node,
				Type: flowv1.EventType_EVENT_TYPE_NEW, Verdict: A, Reason: flowv1.Reason_REASON_NOT_SUBJECT,
				Direction: in,
				Ip:        &flowv1.IP{Source: p.from, Destination: p.target.ip, Version: flowv1.IPVersion_IP_VERSION_IPV4},
				L4: &flowv1.Layer4{Protocol: TCP, SourcePort: uint32(40000 + sec), DestinationPort: p.port,
					TcpFlags: &flowv1.TCPFlags{Syn: true}},
				Source:      &flowv1.Endpoint{NodeName: p.target.node, HostNetwork: true, Identity: 2},
				Destination: p.target.endpoint(),
			})
		}
	}
	sortByTime(flows)
	return flows
}

func sortByTime(flows []*flowv1.Flow) {
	slices.SortStableFunc(flows, func(a, b *flowv1.Flow) int { return a.GetTime().AsTime().Compare(b.GetTime().AsTime()) })
}

// TestSampleCapture checks the committed sample capture is what the generator
// produces (run with -update to rewrite it) and that it reads back whole.
func TestSampleCapture(t *testing.T) {
	want := sampleFlows()
	if *update {
		f, err := os.Create(samplePath)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := flow.NewPrinter(flow.OutputJSON, f, time.UTC)
		for _, fl := range want {
			if err := p.Print(fl); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	got := readAll(t, samplePath)
	if len(got) != len(want) {
		t.Fatalf("%s holds %d flows, the generator makes %d: run go test ./flow -run TestSampleCapture -update", filepath.Base(samplePath), len(got), len(want))
	}
	for i := range got {
		if a, b := flow.CompactLine(got[i], time.UTC), flow.CompactLine(want[i], time.UTC); a != b {
			t.Fatalf("flow %d differs:\n got %s\nwant %s", i, a, b)
		}
	}
}

func readAll(t testing.TB, path string) []*flowv1.Flow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := flow.NewReader(f, path)
	var out []*flowv1.Flow
	for {
		fl, err := r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatal(fmt.Errorf("reading sample: %w", err))
		}
		out = append(out, fl)
	}
}
