// Command conformance summarizes a run of an upstream conformance suite (hack/conformance.sh)
// into one last line the lead and CI read:
//
//	netpol e2e: passed P of T (skipped: ...)
//	cnp conformance: passed P of T (exempt: ...)
//
// T counts the tests that ran; tests left out are named after the parenthesis with their
// reason, and a test left out that the harness did not mean to leave out is an error, as is
// a suite test that neither ran nor was left out, so the line never hides one.
//
// Two report formats:
//
//	-ginkgo FILE   a Ginkgo JSON report (e2e.test --ginkgo.json-report); -focus selects the
//	               suite's specs by full text, -allow-skip the ones that may be skipped
//	-gotest FILE   `go tool test2json` events of a `go test` binary; -parent names the test
//	               whose direct subtests are counted, -all lists every one of them,
//	               -exempt NAME=REASON (repeatable) the ones deliberately not run
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
)

func main() {
	err := run(os.Args[1:], os.Stdout)
	if errors.Is(err, errTestsFailed) {
		os.Exit(1)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		os.Exit(2)
	}
}

// result is one counted test: its name, whether it passed, and why it was left out ("" if run).
type result struct {
	name    string
	passed  bool
	leftOut string
}

type exemptFlag map[string]string

func (e exemptFlag) String() string { return fmt.Sprint(map[string]string(e)) }
func (e exemptFlag) Set(v string) error {
	name, reason, ok := strings.Cut(v, "=")
	if !ok || name == "" || reason == "" {
		return fmt.Errorf("-exempt %q: want NAME=REASON", v)
	}
	e[name] = reason
	return nil
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("conformance", flag.ContinueOnError)
	label := fs.String("label", "", "what the last line starts with, e.g. \"netpol e2e\"")
	leftOutWord := fs.String("left-out-word", "skipped", "the word naming the tests left out: skipped or exempt")
	ginkgoReport := fs.String("ginkgo", "", "Ginkgo JSON report")
	focus := fs.String("focus", "", "with -ginkgo: regexp on a spec's full text selecting the suite's specs")
	allowSkip := fs.String("allow-skip", "", "with -ginkgo: regexp on the full text of specs that may be skipped")
	skipReason := fs.String("skip-reason", "", "with -ginkgo: why the -allow-skip specs are skipped")
	gotest := fs.String("gotest", "", "test2json events")
	parent := fs.String("parent", "", "with -gotest: the test whose direct subtests are counted")
	all := fs.String("all", "", "with -gotest: file listing every direct subtest of -parent, one per line")
	exempt := exemptFlag{}
	fs.Var(exempt, "exempt", "with -gotest: NAME=REASON of a test deliberately not run (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *label == "" {
		return errors.New("-label is required")
	}
	var results []result
	var err error
	switch {
	case *ginkgoReport != "":
		results, err = ginkgoResults(*ginkgoReport, *focus, *allowSkip, *skipReason)
	case *gotest != "":
		results, err = gotestResults(*gotest, *parent, *all, exempt)
	default:
		err = errors.New("one of -ginkgo or -gotest is required")
	}
	if err != nil {
		return err
	}
	if len(results) == 0 {
		return errors.New("no test of the suite in the report")
	}
	if failed := summarize(out, *label, *leftOutWord, results); failed > 0 {
		return errTestsFailed
	}
	return nil
}

// errTestsFailed: the summary is printed, and the exit status says some test failed.
var errTestsFailed = errors.New("")

// summarize prints each failure, each test left out, then the last line, where the tests left
// out are grouped by reason; it returns how many tests failed.
func summarize(out io.Writer, label, leftOutWord string, results []result) int {
	var passed, ran int
	var reasons []string
	byReason := map[string][]string{}
	for _, r := range results {
		switch {
		case r.leftOut != "":
			if _, seen := byReason[r.leftOut]; !seen {
				reasons = append(reasons, r.leftOut)
			}
			byReason[r.leftOut] = append(byReason[r.leftOut], r.name)
			fmt.Fprintf(out, "%s: %s\n", strings.ToUpper(leftOutWord), r.name)
		case r.passed:
			ran++
			passed++
		default:
			ran++
			fmt.Fprintf(out, "FAILED: %s\n", r.name)
		}
	}
	groups := []string{}
	for _, reason := range reasons {
		groups = append(groups, fmt.Sprintf("%d that %s: %s", len(byReason[reason]), reason, strings.Join(byReason[reason], "; ")))
	}
	if len(groups) == 0 {
		groups = append(groups, "none")
	}
	fmt.Fprintf(out, "%s: passed %d of %d (%s: %s)\n", label, passed, ran, leftOutWord, strings.Join(groups, "; "))
	return ran - passed
}

// ginkgoSpec is the part of a Ginkgo SpecReport read here.
type ginkgoSpec struct {
	ContainerHierarchyTexts []string
	LeafNodeType            string
	LeafNodeText            string
	State                   string
}

func ginkgoResults(file, focus, allowSkip, skipReason string) ([]result, error) {
	if focus == "" {
		return nil, errors.New("-ginkgo needs -focus")
	}
	focusRE, err := regexp.Compile(focus)
	if err != nil {
		return nil, fmt.Errorf("-focus: %w", err)
	}
	var allowRE *regexp.Regexp
	if allowSkip != "" {
		if allowRE, err = regexp.Compile(allowSkip); err != nil {
			return nil, fmt.Errorf("-allow-skip: %w", err)
		}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var reports []struct{ SpecReports []ginkgoSpec }
	if err := json.Unmarshal(data, &reports); err != nil {
		return nil, fmt.Errorf("%s: not a Ginkgo JSON report: %w", file, err)
	}
	var results []result
	var unexpected []string
	for _, rep := range reports {
		for _, s := range rep.SpecReports {
			if s.LeafNodeType != "It" {
				continue
			}
			text := strings.Join(append(slices.Clone(s.ContainerHierarchyTexts), s.LeafNodeText), " ")
			if !focusRE.MatchString(text) {
				continue
			}
			r := result{name: text, passed: s.State == "passed"}
			if s.State == "skipped" || s.State == "pending" {
				if allowRE == nil || !allowRE.MatchString(text) {
					unexpected = append(unexpected, text)
				}
				r.leftOut = skipReason
			}
			results = append(results, r)
		}
	}
	if len(unexpected) > 0 {
		return nil, fmt.Errorf("specs skipped that only SCTP may be: %s", strings.Join(unexpected, "; "))
	}
	return results, nil
}

// testEvent is one `go tool test2json` event.
type testEvent struct {
	Action string
	Test   string
}

func gotestResults(file, parent, allFile string, exempt map[string]string) ([]result, error) {
	if parent == "" || allFile == "" {
		return nil, errors.New("-gotest needs -parent and -all")
	}
	allData, err := os.ReadFile(allFile)
	if err != nil {
		return nil, err
	}
	all := strings.Fields(string(allData))
	for name := range exempt {
		top, _, _ := strings.Cut(name, "/")
		if !slices.Contains(all, top) {
			return nil, fmt.Errorf("exempt test %s is not in the suite (%s)", name, allFile)
		}
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	outcome := map[string]string{} // direct subtest of parent -> pass/fail/skip
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev testEvent
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue // go test prints non-JSON lines too (e.g. a build failure)
		}
		name, ok := strings.CutPrefix(ev.Test, parent+"/")
		if !ok || strings.Contains(name, "/") {
			continue
		}
		switch ev.Action {
		case "pass", "fail", "skip":
			outcome[name] = ev.Action
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	var results []result
	var missing, skipped []string
	for _, name := range all {
		reason, isExempt := exempt[name]
		got, ran := outcome[name]
		switch {
		case isExempt && ran:
			return nil, fmt.Errorf("%s ran although it is exempt", name)
		case isExempt:
			results = append(results, result{name: name, leftOut: reason})
		case !ran:
			missing = append(missing, name)
		case got == "skip":
			skipped = append(skipped, name)
		default:
			results = append(results, result{name: name, passed: got == "pass"})
		}
	}
	// Subtests of a counted test left out on purpose: named, the test still counted.
	for _, name := range slices.Sorted(maps.Keys(exempt)) {
		if strings.Contains(name, "/") {
			results = append(results, result{name: name, leftOut: exempt[name]})
		}
	}
	if len(missing) > 0 || len(skipped) > 0 {
		return nil, fmt.Errorf("tests neither run nor exempt: %s; skipped by the suite: %s",
			strings.Join(missing, ", "), strings.Join(skipped, ", "))
	}
	return results, nil
}
