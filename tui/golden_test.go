package tui_test

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/colorprofile"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/charmbracelet/x/exp/teatest/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
	"github.com/kubectl-netpol/kubectl-netpol/tui"
	"github.com/kubectl-netpol/kubectl-netpol/tui/stats"
)

// colourSGR matches SGR sequences that set a foreground or background colour.
var colourSGR = regexp.MustCompile(`\x1b\[[0-9;]*(3[0-7]|9[0-7]|38;[25];[0-9;]+|4[0-7])m`)

// runProgram runs the real Bubble Tea program (teatest) on the sample at a
// pinned size and colour profile, scrolls up three rows, and quits. It
// returns the final frame and everything written to the terminal.
func runProgram(t *testing.T, w, h int, profile colorprofile.Profile) (frame string, stream []byte) {
	return runProgramKeys(t, w, h, profile, "")
}

// runProgramKeys is runProgram that then types keys before quitting (the
// program handles them in order, so the final frame shows their effect).
func runProgramKeys(t *testing.T, w, h int, profile colorprofile.Profile, keys string) (frame string, stream []byte) {
	t.Helper()
	return runProgramWith(t, tui.Config{SourceName: "replay sample.jsonl", Loc: time.UTC}, sampleBatches(t), w, h, profile, "kkk", keys, nil)
}

// runProgramWith runs the real Bubble Tea program (teatest) with cfg on
// batches, types first (then waits for the table to say SCROLL when it is
// not empty) and keys, waits until the screen satisfies ready (nil: no
// wait), and quits.
func runProgramWith(t *testing.T, cfg tui.Config, batches []flow.Batch, w, h int, profile colorprofile.Profile, first, keys string, ready func(plain string) bool) (frame string, stream []byte) {
	t.Helper()
	tm := teatest.NewTestModel(t, tui.New(cfg),
		teatest.WithInitialTermSize(w, h),
		teatest.WithProgramOptions(tea.WithColorProfile(profile)))
	for _, b := range batches {
		tm.Send(tui.BatchMsg(b))
	}
	tm.Send(tui.SourceDoneMsg{})
	var out bytes.Buffer
	teatest.WaitFor(t, io.TeeReader(tm.Output(), &out), func(b []byte) bool { return bytes.Contains(b, []byte("(done)")) },
		teatest.WithDuration(10*time.Second))
	if first != "" {
		tm.Type(first)
		teatest.WaitFor(t, io.TeeReader(tm.Output(), &out), func(b []byte) bool { return bytes.Contains(b, []byte("SCROLL")) },
			teatest.WithDuration(10*time.Second))
	}
	for _, r := range keys {
		switch r {
		case '\t':
			tm.Send(tea.KeyPressMsg{Code: tea.KeyTab})
		case '\r':
			tm.Send(tea.KeyPressMsg{Code: tea.KeyEnter})
		default:
			tm.Send(tea.KeyPressMsg{Code: r, Text: string(r)})
		}
	}
	if ready != nil {
		teatest.WaitFor(t, io.TeeReader(tm.Output(), &out), func(b []byte) bool { return ready(ansi.Strip(string(b))) },
			teatest.WithDuration(10*time.Second))
	}
	tm.Send(tea.KeyPressMsg{Code: 'q', Text: "q"})
	final := tm.FinalModel(t, teatest.WithFinalTimeout(10*time.Second)).(*tui.Model)
	rest, _ := io.ReadAll(tm.FinalOutput(t))
	out.Write(rest)
	return final.View().Content, out.Bytes()
}

// TestGolden pins the screens at 80×24 (the smallest supported) and 160×40
// (the wide layout: detail beside the rates), styles included (escaped).
// Regenerate with: go test ./tui -run TestGolden -update
func TestGolden(t *testing.T) {
	for _, size := range [][2]int{{80, 24}, {160, 40}} {
		t.Run(fmt.Sprintf("%dx%d", size[0], size[1]), func(t *testing.T) {
			frame, _ := runProgram(t, size[0], size[1], colorprofile.ANSI)
			checkScreen(t, frame, size[0], size[1])
			golden.RequireEqual(t, []byte(frame))
		})
	}
}

// TestGoldenViews pins the chart, the top view (rules, then workload
// pairs) and the map at 80×24 and 160×40.
// Regenerate with: go test ./tui -run TestGoldenViews -update
func TestGoldenViews(t *testing.T) {
	for _, size := range [][2]int{{80, 24}, {160, 40}} {
		for _, v := range []struct{ name, keys, want string }{
			{"chart", "\tr", "last 5m"},
			{"top", "2", "Top policy rules"},
			{"top-policies", "2t", "Top policies"},
			{"top-pairs", "2tt", "Top workload pairs"},
			{"map", "3", "EDGES"},
		} {
			t.Run(fmt.Sprintf("%dx%d-%s", size[0], size[1], v.name), func(t *testing.T) {
				frame, _ := runProgramKeys(t, size[0], size[1], colorprofile.ANSI, v.keys)
				checkScreen(t, frame, size[0], size[1])
				if !strings.Contains(ansi.Strip(frame), v.want) {
					t.Fatalf("final frame lacks %q:\n%s", v.want, ansi.Strip(frame))
				}
				golden.RequireEqual(t, []byte(frame))
			})
		}
	}
}

// TestNoColorViews: the chart (asciigraph writes its own colour codes),
// the top view and the map write no colour under the Ascii profile, and
// still tell allowed from denied: the chart's legend marks, the words on
// the map's edges.
func TestNoColorViews(t *testing.T) {
	for _, keys := range []string{"\t", "2", "3"} {
		frame, stream := runProgramKeys(t, 80, 24, colorprofile.Ascii, keys)
		if loc := colourSGR.FindIndex(stream); loc != nil {
			t.Fatalf("keys %q: colour code %q written under the Ascii profile", keys, stream[loc[0]:loc[1]])
		}
		plain := ansi.Strip(frame)
		for _, want := range map[string][]string{"\t": {"── allowed", "•• denied", "•"}, "2": {"DENIED/s"}, "3": {"DENIED 91", "╳▶", "ALLOWED"}}[keys] {
			if !strings.Contains(plain, want) {
				t.Errorf("keys %q: screen lacks %q:\n%s", keys, want, plain)
			}
		}
	}
}

// TestNoColor: under the profile NO_COLOR selects (Ascii) the terminal gets
// no colour codes, and verdicts still read as words; under ANSI drops are red.
func TestNoColor(t *testing.T) {
	_, stream := runProgram(t, 80, 24, colorprofile.Ascii)
	if loc := colourSGR.FindIndex(stream); loc != nil {
		t.Fatalf("colour code %q written under the Ascii profile", stream[loc[0]:loc[1]])
	}
	if !bytes.Contains(stream, []byte("DENIED")) || !bytes.Contains(stream, []byte("ALLOWED")) {
		t.Fatal("verdicts missing from the screen")
	}
	_, stream = runProgram(t, 80, 24, colorprofile.ANSI)
	if !bytes.Contains(stream, []byte("\x1b[1;31mDENIED")) && !bytes.Contains(stream, []byte("\x1b[31;1mDENIED")) && !colourSGR.Match(stream) {
		t.Fatal("no colour under the ANSI profile")
	}
}

// sampleHistory is a week of history ending with the sample: every hour
// replays part of the sample's flows (more by day than by night), shifted
// in time and aggregated hourly by the agents' own code.
func sampleHistory(t *testing.T) *history.Set {
	t.Helper()
	flows := allFlows(sampleBatches(t))
	newest := flows[len(flows)-1].GetTime().AsTime()
	var all []*flowv1.Flow
	for h := 7 * 24; h >= 0; h-- {
		at := newest.Add(-time.Duration(h) * time.Hour)
		n := len(flows) * (3 + at.Hour()%12) / 15
		for _, f := range flows[:n] {
			g := proto.Clone(f).(*flowv1.Flow)
			g.Time = timestamppb.New(g.GetTime().AsTime().Add(-time.Duration(h)*time.Hour - time.Minute))
			all = append(all, g)
		}
	}
	i := 0
	set, err := history.FromFlows(func() (*flowv1.Flow, error) {
		if i == len(all) {
			return nil, io.EOF
		}
		i++
		return all[i-1], nil
	}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// historyRates matches a value-axis label of the loaded history (2 flows
// per minute or hour or more; the empty chart drawn while reading tops out
// at 1): the chart has its answer.
var historyRates = regexp.MustCompile(`([2-9]\.[0-9]|[0-9]{2,})k?/(min|h)`)

// TestGoldenHistoryRanges: the chart's range key goes on from 1h to 24h and
// 7d when the watch has a history (the agents'), and those ranges draw it
// (flows per minute, per hour; hours and days on the time axis), at 80×24
// and 160×40. Regenerate with: go test ./tui -run TestGoldenHistoryRanges -update
func TestGoldenHistoryRanges(t *testing.T) {
	set := sampleHistory(t)
	for _, size := range [][2]int{{80, 24}, {160, 40}} {
		for _, v := range []struct{ name, keys, want string }{
			{"24h", "\trrr", "last 24h from history"},
			{"7d", "\trrrr", "last 7d from history"},
		} {
			t.Run(fmt.Sprintf("%dx%d-%s", size[0], size[1], v.name), func(t *testing.T) {
				cfg := tui.Config{SourceName: "replay sample.jsonl", Loc: time.UTC, History: stats.SetHistory{Set: set}}
				// The history is read in a command: wait for its answer on screen.
				frame, _ := runProgramWith(t, cfg, sampleBatches(t), size[0], size[1], colorprofile.ANSI, "", v.keys, func(plain string) bool {
					return strings.Contains(plain, v.want) && historyRates.MatchString(plain)
				})
				checkScreen(t, frame, size[0], size[1])
				plain := ansi.Strip(frame)
				if !strings.Contains(plain, v.want) || strings.Contains(plain, "reading the agents' history") {
					t.Fatalf("final frame lacks %q or still reads:\n%s", v.want, plain)
				}
				golden.RequireEqual(t, []byte(frame))
			})
		}
	}
}
