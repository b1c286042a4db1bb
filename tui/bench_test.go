package tui_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/colorprofile"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/tui"
)

// benchTemplates makes n distinct flows between 1000 pods in 20 namespaces,
// a quarter of them default-deny drops, some through Services.
func benchTemplates(n int) []*flowv1.Flow {
	rng := rand.New(rand.NewPCG(1, 2))
	ep := func() (*flowv1.Endpoint, string) {
		ns, pod := rng.IntN(20), rng.IntN(50)
		return &flowv1.Endpoint{
			Namespace: fmt.Sprintf("team-%02d", ns), Pod: fmt.Sprintf("app-%02d-7d9f8c6b5-%05d", pod, rng.IntN(100000)),
			Labels:   map[string]string{"app": fmt.Sprintf("app-%02d", pod), "tier": "backend"},
			Workload: &flowv1.Workload{Kind: "Deployment", Name: fmt.Sprintf("app-%02d", pod)},
		}, fmt.Sprintf("10.%d.%d.%d", 100+ns, pod, rng.IntN(250))
	}
	out := make([]*flowv1.Flow, n)
	for i := range out {
		src, sip := ep()
		dst, dip := ep()
		f := &flowv1.Flow{
			Node: fmt.Sprintf("node-%d", rng.IntN(10)), Type: flowv1.EventType_EVENT_TYPE_NEW,
			Verdict: flowv1.Verdict_VERDICT_ALLOWED, Reason: flowv1.Reason_REASON_ALLOWED_BY_RULE,
			Direction: flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS,
			Ip:        &flowv1.IP{Source: sip, Destination: dip, Version: flowv1.IPVersion_IP_VERSION_IPV4},
			L4: &flowv1.Layer4{Protocol: flowv1.Protocol_PROTOCOL_TCP, SourcePort: uint32(32768 + rng.IntN(28000)),
				DestinationPort: 8080, TcpFlags: &flowv1.TCPFlags{Syn: true}},
			Source: src, Destination: dst,
			AllowedBy: []*flowv1.PolicyRef{{Kind: "NetworkPolicy", Namespace: dst.Namespace, Name: "allow-frontend", Direction: flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS}},
		}
		if i%4 == 0 {
			f.Verdict, f.Reason, f.AllowedBy, f.Type = flowv1.Verdict_VERDICT_DENIED, flowv1.Reason_REASON_NO_RULE_MATCHED, nil, flowv1.EventType_EVENT_TYPE_DROP
			f.IsolatedBy = []*flowv1.PolicyRef{{Kind: "NetworkPolicy", Namespace: dst.Namespace, Name: "default-deny", Direction: flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS}}
		}
		if i%3 == 0 {
			f.Service = &flowv1.Service{Namespace: dst.Namespace, Name: "app", Ip: "10.96.1.1", Port: 80}
		}
		out[i] = f
	}
	return out
}

// BenchmarkTUI20kFlowsPerSecond feeds the TUI model 30 s of flows at
// 20,000 flows/s as the Source delivers them (one batch per 1/30 s frame),
// renders a frame after every batch at 160×50, and reports the CPU used per
// second of traffic, the time to render a frame, the heap in use (garbage
// included) at its peak, and the live heap of the model after 30 s. Flow
// allocation (the source's work) is outside the timer.
//
//	go test ./tui -run '^$' -bench TUI20k -benchtime 3x
func BenchmarkTUI20kFlowsPerSecond(b *testing.B) { bench20k(b) }

// BenchmarkTUI20kMapAndChart is BenchmarkTUI20kFlowsPerSecond with the map
// view open (key 3) and the chart beside the detail (the wide layout's
// default), over the 1-hour range (key r twice): the views the issue
// budgets at 0.5 core.
//
//	go test ./tui -run '^$' -bench TUI20kMapAndChart -benchtime 3x
func BenchmarkTUI20kMapAndChart(b *testing.B) { bench20k(b, "3", "r", "r") }

func bench20k(b *testing.B, keys ...string) {
	const (
		rate     = 20000
		seconds  = 30
		frames   = seconds * tui.FPS
		perFrame = rate / tui.FPS
	)
	templates := benchTemplates(8192)
	start := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	var cpu, renderTime time.Duration
	var peakHeap, modelHeap uint64
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	baseline := heap() // the templates
	for b.Loop() {
		m := tui.New(tui.Config{Loc: time.UTC})
		m.Update(tea.WindowSizeMsg{Width: 160, Height: 50})
		for _, k := range keys {
			m.Update(tea.KeyPressMsg{Code: rune(k[0]), Text: k})
		}
		next := 0
		var ms runtime.MemStats
		for fr := range frames {
			b.StopTimer()
			batch := make([]*flowv1.Flow, perFrame)
			base := start.Add(time.Duration(fr) * time.Second / tui.FPS)
			for i := range batch {
				t := templates[next%len(templates)]
				next++
				batch[i] = &flowv1.Flow{
					Time: timestamppb.New(base.Add(time.Duration(i) * time.Second / rate)),
					Node: t.Node, Type: t.Type, Verdict: t.Verdict, Reason: t.Reason, Direction: t.Direction,
					Ip: t.Ip, L4: t.L4, Source: t.Source, Destination: t.Destination, Service: t.Service,
					AllowedBy: t.AllowedBy, IsolatedBy: t.IsolatedBy,
				}
			}
			if fr%tui.FPS == 0 {
				runtime.ReadMemStats(&ms)
				peakHeap = max(peakHeap, ms.HeapInuse)
			}
			c0 := processCPU()
			b.StartTimer()
			m.Update(tui.BatchMsg(flow.Batch{Flows: batch}))
			r0 := time.Now()
			m.Render()
			renderTime += time.Since(r0)
			b.StopTimer()
			cpu += processCPU() - c0
			b.StartTimer()
		}
		if m.Table().Total() != 10000 {
			b.Fatalf("ring holds %d flows, want its capacity 10000", m.Table().Total())
		}
		b.StopTimer()
		modelHeap = max(modelHeap, heap()-baseline) // the model, alive, after 30 s
		runtime.KeepAlive(m)
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(cpu.Seconds()/n/seconds, "cpu-s/traffic-s")
	b.ReportMetric(float64(renderTime.Microseconds())/n/frames, "µs/frame")
	b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(modelHeap)/(1<<20), "model-heap-MiB")
}

// BenchmarkTUIProgramRealTime runs the real Bubble Tea program (model,
// frame pacing and the terminal renderer, writing to a discarded output at
// 160×50) for 30 s of wall time while a source delivers 20,000 flows/s in
// 30 batches a second, and reports the process CPU per second of traffic
// and the peak heap. One op is the whole 30 s.
//
//	go test ./tui -run '^$' -bench TUIProgramRealTime -benchtime 1x
func BenchmarkTUIProgramRealTime(b *testing.B) { benchProgram(b) }

// BenchmarkTUIProgramRealTimeMapAndChart is BenchmarkTUIProgramRealTime
// with the map view open and the chart over the 1-hour range.
//
//	go test ./tui -run '^$' -bench TUIProgramRealTimeMapAndChart -benchtime 1x
func BenchmarkTUIProgramRealTimeMapAndChart(b *testing.B) { benchProgram(b, "3", "r", "r") }

func benchProgram(b *testing.B, keys ...string) {
	const (
		rate     = 20000
		seconds  = 30
		perFrame = rate / tui.FPS
	)
	templates := benchTemplates(8192)
	for b.Loop() {
		m := tui.New(tui.Config{Loc: time.UTC})
		p := tea.NewProgram(m, tea.WithInput(nil), tea.WithOutput(io.Discard), tea.WithWindowSize(160, 50),
			tea.WithColorProfile(colorprofile.ANSI256), tea.WithoutSignals(), tea.WithFPS(tui.FPS))
		done := make(chan error, 1)
		go func() { _, err := p.Run(); done <- err }()
		for _, k := range keys {
			p.Send(tea.KeyPressMsg{Code: rune(k[0]), Text: k})
		}
		cpu0 := processCPU()
		var peakHeap uint64
		var ms runtime.MemStats
		tick := time.NewTicker(time.Second / tui.FPS)
		next, sent := 0, 0
		start := time.Now()
		for fr := 0; fr < seconds*tui.FPS; fr++ {
			<-tick.C
			batch := make([]*flowv1.Flow, perFrame)
			now := time.Now()
			for i := range batch {
				t := templates[next%len(templates)]
				next++
				batch[i] = &flowv1.Flow{
					Time: timestamppb.New(now), Node: t.Node, Type: t.Type, Verdict: t.Verdict, Reason: t.Reason,
					Direction: t.Direction, Ip: t.Ip, L4: t.L4, Source: t.Source, Destination: t.Destination,
					Service: t.Service, AllowedBy: t.AllowedBy, IsolatedBy: t.IsolatedBy,
				}
			}
			p.Send(tui.BatchMsg(flow.Batch{Flows: batch}))
			sent += len(batch)
			if fr%tui.FPS == 0 {
				runtime.ReadMemStats(&ms)
				peakHeap = max(peakHeap, ms.HeapInuse)
			}
		}
		tick.Stop()
		wall := time.Since(start)
		cpu := processCPU() - cpu0
		p.Quit()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cpu-s/traffic-s")
		b.ReportMetric(float64(sent)/wall.Seconds(), "flows/s")
		b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MiB")
	}
}
