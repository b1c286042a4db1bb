package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// TestWatchVerdictAudit: `--verdict audit` selects the flows audited
// policies would decide otherwise, printed as AUDIT.
func TestWatchVerdictAudit(t *testing.T) {
	src, dst := &flowv1.Endpoint{Namespace: "shop", Pod: "web"}, &flowv1.Endpoint{Namespace: "shop", Pod: "db-0"}
	l4 := &flowv1.Layer4{Protocol: flowv1.Protocol_PROTOCOL_TCP, SourcePort: 40000, DestinationPort: 5432}
	capture := filepath.Join(t.TempDir(), "audit.jsonl")
	file, err := os.Create(capture)
	if err != nil {
		t.Fatal(err)
	}
	p, err := flow.NewPrinter("json", file, time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range []flowv1.Verdict{flowv1.Verdict_VERDICT_ALLOWED, flowv1.Verdict_VERDICT_AUDIT, flowv1.Verdict_VERDICT_DENIED, flowv1.Verdict_VERDICT_AUDIT} {
		f := &flowv1.Flow{Time: timestamppb.New(time.Date(2026, 11, 25, 14, 0, i, 0, time.UTC)), Node: "n1", Type: flowv1.EventType_EVENT_TYPE_NEW,
			Verdict: v, Source: src, Destination: dst, L4: l4}
		if v == flowv1.Verdict_VERDICT_AUDIT {
			f.Audit = &flowv1.Audit{WouldBe: flowv1.Verdict_VERDICT_DENIED, Reason: flowv1.Reason_REASON_NO_RULE_MATCHED}
		}
		if err := p.Print(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(p.Flush(), file.Close()); err != nil {
		t.Fatal(err)
	}
	out, err := runWatch(t, false, nil, "--input-file", capture, "--verdict", "audit", "-o", "compact")
	if err != nil {
		t.Fatal(err)
	}
	got := lines(out)
	if len(got) != 2 || !strings.Contains(got[0], " AUDIT") || !strings.Contains(got[1], " AUDIT") {
		t.Errorf("--verdict audit printed %q, want the 2 AUDIT flows", got)
	}
}
