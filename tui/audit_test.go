package tui_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/colorprofile"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/golden"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/tui"
	"github.com/kubectl-netpol/kubectl-netpol/tui/components/detail"
)

// auditBatches: shop/web -> shop/db allowed, but an audited policy
// (shop/lockdown) would deny it (AUDIT); monitoring/prometheus -> shop/db
// denied; default/curl -> shop/web allowed. db is the busiest workload, so
// the map focuses it.
func auditBatches() []flow.Batch {
	t0 := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	ep := func(ns, pod, kind, wl, app string) *flowv1.Endpoint {
		e := &flowv1.Endpoint{Namespace: ns, Pod: pod, Labels: map[string]string{"app": app}}
		if wl != "" {
			e.Workload = &flowv1.Workload{Kind: kind, Name: wl}
		}
		return e
	}
	web, db := ep("shop", "web-7d9f8c6b5-x2k4q", "Deployment", "web", "web"), ep("shop", "db-0", "StatefulSet", "db", "db")
	prom, curl := ep("monitoring", "prometheus-0", "StatefulSet", "prometheus", "prometheus"), ep("default", "curl", "", "", "curl")
	zero := uint32(0)
	mk := func(i int, src, dst *flowv1.Endpoint, port uint32, v flowv1.Verdict) *flowv1.Flow {
		f := &flowv1.Flow{Time: timestamppb.New(t0.Add(time.Duration(i) * 500 * time.Millisecond)), Node: "node-a",
			Type: flowv1.EventType_EVENT_TYPE_NEW, Verdict: v, Direction: flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS,
			Source: src, Destination: dst, Ip: &flowv1.IP{Source: fmt.Sprintf("10.244.0.%d", 10+i%3), Destination: "10.244.0.2"},
			L4: &flowv1.Layer4{Protocol: flowv1.Protocol_PROTOCOL_TCP, SourcePort: uint32(40000 + i), DestinationPort: port}}
		switch v {
		case flowv1.Verdict_VERDICT_AUDIT:
			f.Reason = flowv1.Reason_REASON_ALLOWED_BY_RULE
			f.AllowedBy = []*flowv1.PolicyRef{{Kind: "NetworkPolicy", Namespace: "shop", Name: "db-allow-web", Direction: f.Direction, RuleIndex: &zero}}
			f.Audit = &flowv1.Audit{WouldBe: flowv1.Verdict_VERDICT_DENIED, Reason: flowv1.Reason_REASON_NO_RULE_MATCHED,
				IsolatedBy: []*flowv1.PolicyRef{{Kind: "NetworkPolicy", Namespace: "shop", Name: "lockdown", Direction: f.Direction}}}
		case flowv1.Verdict_VERDICT_DENIED:
			f.Type, f.Reason = flowv1.EventType_EVENT_TYPE_DROP, flowv1.Reason_REASON_NO_RULE_MATCHED
			f.IsolatedBy = []*flowv1.PolicyRef{{Kind: "NetworkPolicy", Namespace: "shop", Name: "db-allow-web", Direction: f.Direction}}
		default:
			f.Reason = flowv1.Reason_REASON_NOT_ISOLATED
		}
		return f
	}
	var flows []*flowv1.Flow
	for i := range 30 {
		switch i % 3 {
		case 0:
			flows = append(flows, mk(i, web, db, 5432, flowv1.Verdict_VERDICT_AUDIT))
		case 1:
			flows = append(flows, mk(i, prom, db, 5432, flowv1.Verdict_VERDICT_DENIED))
		default:
			flows = append(flows, mk(i, curl, web, 8080, flowv1.Verdict_VERDICT_ALLOWED))
		}
	}
	return []flow.Batch{{Flows: flows}}
}

// TestAuditVerdict: AUDIT is a verdict of its own in the flows table (the
// word, in its own colour), the `/` filter selects it (verdict=audit), the
// map labels the edge "AUDIT n" with a dotted shaft, and the detail says
// what enforcing the audited policies would do; all readable without
// colour. Goldens at 80×24 and 160×40.
// Regenerate with: go test ./tui -run TestAuditVerdict -update
func TestAuditVerdict(t *testing.T) {
	cfg := tui.Config{SourceName: "replay audit", Loc: time.UTC}
	for _, size := range [][2]int{{80, 24}, {160, 40}} {
		for _, v := range []struct{ name, keys string }{
			{"flows", "/verdict=audit\r"},
			{"map", "3"},
		} {
			t.Run(fmt.Sprintf("%dx%d-%s", size[0], size[1], v.name), func(t *testing.T) {
				frame, _ := runProgramWith(t, cfg, auditBatches(), size[0], size[1], colorprofile.ANSI, "", v.keys, nil)
				checkScreen(t, frame, size[0], size[1])
				plain := ansi.Strip(frame)
				switch v.name {
				case "flows":
					if strings.Count(plain, "AUDIT") < 5 || strings.Contains(plain, "8080/TCP") || strings.Contains(plain, "prometheus") {
						t.Errorf("verdict=audit should list the AUDIT flows only:\n%s", plain)
					}
					if !strings.Contains(frame, "\x1b[35mAUDIT") {
						t.Errorf("AUDIT is not in its own colour (magenta):\n%q", frame)
					}
				case "map":
					if !strings.Contains(plain, "─AUDIT 10 (0.2/s) ┄┄") || !strings.Contains(plain, "DENIED 10") {
						t.Errorf("map edges:\n%s", plain)
					}
				}
				golden.RequireEqual(t, []byte(frame))
			})
		}
	}
	// Without colour: no colour code, and AUDIT still reads apart.
	_, stream := runProgramWith(t, cfg, auditBatches(), 80, 24, colorprofile.Ascii, "", "3", nil)
	if loc := colourSGR.FindIndex(stream); loc != nil {
		t.Fatalf("colour code %q written under the Ascii profile", stream[loc[0]:loc[1]])
	}
	if !bytes.Contains(stream, []byte("AUDIT 10")) || !bytes.Contains(stream, []byte("┄")) {
		t.Errorf("the audit edge does not read without colour:\n%s", ansi.Strip(string(stream)))
	}
}

// TestAuditDetail: the detail pane of an AUDIT flow says what was enforced
// and what the audited policies would do, and by which policies.
func TestAuditDetail(t *testing.T) {
	f := auditBatches()[0].Flows[0]
	got := detail.Explain(f)
	want := "Audit: the packets were allowed; enforcing the audited policies would deny it (isolated by shop/lockdown, no rule allowing it)."
	if !strings.HasPrefix(got, "AUDIT: shop/web-7d9f8c6b5-x2k4q → shop/db-0 on TCP 5432") || !strings.Contains(got, want) {
		t.Errorf("explanation:\n%s\nwant it to contain %q", got, want)
	}
}
