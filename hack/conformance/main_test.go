package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

const ginkgoReport = `[{"SpecReports":[
 {"ContainerHierarchyTexts":["[sig-network] Netpol","NetworkPolicy between server and client"],"LeafNodeType":"It","LeafNodeText":"should deny ingress","State":"passed"},
 {"ContainerHierarchyTexts":["[sig-network] Netpol","NetworkPolicy between server and client"],"LeafNodeType":"It","LeafNodeText":"should allow egress","State":"failed"},
 {"ContainerHierarchyTexts":["[sig-network] Netpol [Feature:SCTPConnectivity]"],"LeafNodeType":"It","LeafNodeText":"should serve SCTP","State":"skipped"},
 {"ContainerHierarchyTexts":["[sig-storage] Volumes"],"LeafNodeType":"It","LeafNodeText":"should mount","State":"skipped"},
 {"ContainerHierarchyTexts":[],"LeafNodeType":"SynchronizedBeforeSuite","LeafNodeText":"","State":"passed"}
]}]`

func TestGinkgoSummary(t *testing.T) {
	report := writeFile(t, "report.json", ginkgoReport)
	var out strings.Builder
	err := run([]string{"-label", "netpol e2e", "-ginkgo", report, "-focus", `\[sig-network\] Netpol`,
		"-allow-skip", `\[Feature:SCTPConnectivity\]`, "-skip-reason", "need SCTP"}, &out)
	if !errors.Is(err, errTestsFailed) {
		t.Fatalf("err = %v, want errTestsFailed (one spec failed)", err)
	}
	want := "netpol e2e: passed 1 of 2 (skipped: 1 that need SCTP: [sig-network] Netpol [Feature:SCTPConnectivity] should serve SCTP)"
	if got := lastLine(out.String()); got != want {
		t.Errorf("last line\n got %q\nwant %q", got, want)
	}
	if !strings.Contains(out.String(), "FAILED: [sig-network] Netpol NetworkPolicy between server and client should allow egress\n") {
		t.Errorf("the failed spec is not named:\n%s", out.String())
	}
}

func TestGinkgoUnexpectedSkip(t *testing.T) {
	report := writeFile(t, "report.json", ginkgoReport)
	err := run([]string{"-label", "netpol e2e", "-ginkgo", report, "-focus", `\[sig-network\] Netpol`,
		"-allow-skip", `nothing`}, &strings.Builder{})
	if err == nil || errors.Is(err, errTestsFailed) || !strings.Contains(err.Error(), "should serve SCTP") {
		t.Fatalf("err = %v, want an error naming the skipped spec", err)
	}
}

const events = `{"Action":"run","Test":"TestConformance"}
{"Action":"pass","Test":"TestConformance/A/sub"}
{"Action":"pass","Test":"TestConformance/A"}
{"Action":"fail","Test":"TestConformance/B"}
{"Action":"pass","Test":"TestConformance/N"}
not json: a line go test printed
{"Action":"fail","Test":"TestConformance"}
`

func TestGotestSummary(t *testing.T) {
	ev := writeFile(t, "events.json", events)
	all := writeFile(t, "all", "A\nB\nN\nS\n")
	var out strings.Builder
	err := run([]string{"-label", "cnp conformance", "-left-out-word", "exempt", "-gotest", ev, "-parent", "TestConformance",
		"-all", all, "-exempt", "S=need SCTP", "-exempt", "N/deny=need SCTP"}, &out)
	if !errors.Is(err, errTestsFailed) {
		t.Fatalf("err = %v, want errTestsFailed (B failed)", err)
	}
	want := "cnp conformance: passed 2 of 3 (exempt: 2 that need SCTP: S; N/deny)"
	if got := lastLine(out.String()); got != want {
		t.Errorf("last line\n got %q\nwant %q", got, want)
	}
}

func TestGotestNothingHidden(t *testing.T) {
	ev := writeFile(t, "events.json", events)
	for name, tc := range map[string]struct {
		all    string
		exempt string
		want   string
	}{
		"a test neither run nor exempt": {all: "A\nB\nN\nS\nMissing\n", exempt: "S=r", want: "Missing"},
		"an exempt test that ran":       {all: "A\nB\nN\nS\n", exempt: "A=r", want: "A ran although it is exempt"},
		"an exempt test not in suite":   {all: "A\nB\nN\n", exempt: "S=r", want: "S is not in the suite"},
	} {
		t.Run(name, func(t *testing.T) {
			err := run([]string{"-label", "cnp", "-gotest", ev, "-parent", "TestConformance",
				"-all", writeFile(t, "all", tc.all), "-exempt", tc.exempt}, &strings.Builder{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
