package flow_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

func TestCompactLine(t *testing.T) {
	flows := sampleFlows()
	find := func(pred func(*flowv1.Flow) bool) *flowv1.Flow {
		for _, f := range flows {
			if pred(f) {
				return f
			}
		}
		t.Fatal("no such sample flow")
		return nil
	}
	for _, tc := range []struct {
		name string
		f    *flowv1.Flow
		want string
	}{
		{"default-deny drop through a Service", find(func(f *flowv1.Flow) bool {
			return f.GetSource().GetPod() == "curl" && f.GetDestination().GetPod() == "db-0"
		}), "default/curl:{SPORT} -> shop/db-0:5432 (svc shop/db) TCP SYN DENIED NO_RULE_MATCHED isolated-by shop/default-deny-ingress (ingress), shop/db-allow-api (ingress)"},
		{"allowed by rule", find(func(f *flowv1.Flow) bool {
			return f.GetSource().GetPod() != "" && f.GetDestination().GetPod() == "db-0" && f.GetType() == flowv1.EventType_EVENT_TYPE_NEW && f.GetVerdict() == flowv1.Verdict_VERDICT_ALLOWED
		}), "shop/api-5c6d7f9b8-m8n2p:{SPORT} -> shop/db-0:5432 TCP SYN ALLOWED ALLOWED_BY_RULE allowed-by shop/db-allow-api (ingress rule 0)"},
		{"egress to an outside address", find(func(f *flowv1.Flow) bool {
			return f.GetIp().GetDestination() == "203.0.113.10" && f.GetVerdict() == flowv1.Verdict_VERDICT_DENIED
		}), "payments/worker-84d5c-7h2lp:{SPORT} -> 203.0.113.10:443 TCP SYN DENIED NO_RULE_MATCHED isolated-by payments/default-deny-egress (egress), payments/worker-egress (egress)"},
		{"kubelet probe from the node", find(func(f *flowv1.Flow) bool {
			return f.GetSource().GetNodeName() != "" && f.GetSource().GetPod() == "" && f.GetDestination().GetPod() == "db-0"
		}), "node/node-b:{SPORT} -> shop/db-0:5432 TCP SYN ALLOWED NOT_SUBJECT"},
		{"flow-end summary", find(func(f *flowv1.Flow) bool { return f.GetType() == flowv1.EventType_EVENT_TYPE_END }), "duration="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := flow.CompactLine(tc.f, time.UTC)
			want := strings.ReplaceAll(tc.want, "{SPORT}", strconv.FormatUint(uint64(tc.f.GetL4().GetSourcePort()), 10))
			prefix := tc.f.GetTime().AsTime().UTC().Format(time.StampMilli) + " " + tc.f.GetNode() + " "
			if !strings.HasPrefix(got, prefix) {
				t.Errorf("line %q does not start with time and node %q", got, prefix)
			}
			if !strings.Contains(got, want) {
				t.Errorf("line\n %q\nlacks\n %q", got, want)
			}
		})
	}
}

// TestCompactLineAggregate: a kernel aggregate says how many connections
// it stands for, and has no client port to show.
func TestCompactLineAggregate(t *testing.T) {
	f := &flowv1.Flow{Type: flowv1.EventType_EVENT_TYPE_END, Verdict: flowv1.Verdict_VERDICT_ALLOWED, Connections: 19,
		Source: &flowv1.Endpoint{Namespace: "shop", Pod: "web"}, Destination: &flowv1.Endpoint{Namespace: "shop", Pod: "db-0"},
		L4: &flowv1.Layer4{Protocol: flowv1.Protocol_PROTOCOL_TCP, DestinationPort: 5432}, Packets: 190, Bytes: 9500}
	got := flow.CompactLine(f, time.UTC)
	if want := "shop/web -> shop/db-0:5432 TCP ALLOWED"; !strings.Contains(got, want) {
		t.Errorf("line %q lacks %q", got, want)
	}
	if want := " x19 connections packets=190 bytes=9500"; !strings.Contains(got, want) {
		t.Errorf("line %q lacks %q", got, want)
	}
	f.Connections = 0
	if got := flow.CompactLine(f, time.UTC); strings.Contains(got, " x") {
		t.Errorf("one connection's line %q shows a count", got)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	want := sampleFlows()
	var buf bytes.Buffer
	p, err := flow.NewPrinter(flow.OutputJSON, &buf, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range want {
		if err := p.Print(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(buf.Bytes(), []byte("\n")); n != len(want) {
		t.Fatalf("%d lines for %d flows", n, len(want))
	}
	r := flow.NewReader(&buf, "buf")
	for i, w := range want {
		got, err := r.Next()
		if err != nil {
			t.Fatalf("flow %d: %v", i, err)
		}
		if !proto.Equal(got, w) {
			t.Fatalf("flow %d changed in the round trip:\n got %v\nwant %v", i, got, w)
		}
	}
}

func TestReaderErrorsNameFileAndLine(t *testing.T) {
	in := `{"node":"a"}` + "\n\n" + `{"node": 3}` + "\n"
	r := flow.NewReader(strings.NewReader(in), "capture.jsonl")
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	_, err := r.Next()
	if err == nil || !strings.Contains(err.Error(), "capture.jsonl:3: not a flow") {
		t.Fatalf("err = %v, want capture.jsonl:3", err)
	}
	if _, err := flow.NewPrinter("yaml", &bytes.Buffer{}, nil); err == nil || !strings.Contains(err.Error(), "use compact or json") {
		t.Fatalf("unknown format error = %v", err)
	}
}

func collect(t *testing.T, src flow.Source, req *flowv1.ObserveRequest) ([]*flowv1.Flow, int) {
	t.Helper()
	var got []*flowv1.Flow
	batches := 0
	err := src.Observe(context.Background(), req, func(b flow.Batch) error {
		batches++
		got = append(got, b.Flows...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, batches
}

func TestFileSource(t *testing.T) {
	all := sampleFlows()
	src := &flow.FileSource{Path: samplePath}
	got, _ := collect(t, src, &flowv1.ObserveRequest{})
	if len(got) != len(all) {
		t.Fatalf("replay returned %d flows, want %d", len(got), len(all))
	}
	got, _ = collect(t, src, &flowv1.ObserveRequest{Last: 5,
		Allowlist: []*flowv1.FlowFilter{{Verdict: []flowv1.Verdict{flowv1.Verdict_VERDICT_DENIED}}}})
	var wantLast []*flowv1.Flow
	for _, f := range all {
		if f.GetVerdict() == flowv1.Verdict_VERDICT_DENIED {
			wantLast = append(wantLast, f)
		}
	}
	wantLast = wantLast[len(wantLast)-5:]
	if len(got) != 5 {
		t.Fatalf("last 5 denied: got %d flows", len(got))
	}
	for i := range got {
		if !proto.Equal(got[i], wantLast[i]) {
			t.Fatalf("last 5 denied, flow %d: got %s want %s", i, flow.CompactLine(got[i], time.UTC), flow.CompactLine(wantLast[i], time.UTC))
		}
	}
	since := all[0].GetTime().AsTime().Add(30 * time.Second)
	got, _ = collect(t, src, &flowv1.ObserveRequest{Since: timestamppb.New(since)})
	for _, f := range got {
		if f.GetTime().AsTime().Before(since) {
			t.Fatalf("flow before since: %s", flow.CompactLine(f, time.UTC))
		}
	}
	if len(got) == 0 || len(got) == len(all) {
		t.Fatalf("since kept %d of %d flows", len(got), len(all))
	}
	err := (&flow.FileSource{Path: filepath.Join(t.TempDir(), "missing.jsonl")}).Observe(context.Background(), &flowv1.ObserveRequest{}, func(flow.Batch) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "missing.jsonl") {
		t.Fatalf("missing file error = %v", err)
	}
}

func TestFileSourceFollow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "live.jsonl")
	flows := sampleFlows()[:10]
	write := func(fs []*flowv1.Flow) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := flow.NewPrinter(flow.OutputJSON, f, nil)
		for _, fl := range fs {
			_ = p.Print(fl)
		}
		_ = p.Flush()
		f.Close()
	}
	write(flows[:4])
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []*flowv1.Flow
	errc := make(chan error, 1)
	appended := false
	go func() {
		errc <- (&flow.FileSource{Path: path, Poll: 10 * time.Millisecond}).Observe(ctx,
			&flowv1.ObserveRequest{Follow: true, Last: 2}, func(b flow.Batch) error {
				got = append(got, b.Flows...)
				if len(got) == 2 && !appended {
					appended = true
					write(flows[4:])
				}
				if len(got) == 8 {
					cancel()
				}
				return nil
			})
	}()
	err := <-errc
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Observe = %v (got %d flows), want context.Canceled after 8 flows", err, len(got))
	}
	want := append([]*flowv1.Flow{flows[2], flows[3]}, flows[4:]...)
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("flow %d: got %s want %s", i, flow.CompactLine(got[i], time.UTC), flow.CompactLine(want[i], time.UTC))
		}
	}
}
