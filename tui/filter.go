package tui

import (
	"fmt"
	"strings"
	"time"

	"github.com/kubectl-netpol/kubectl-netpol/flow"
	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/tui/stats"
)

// filterKeys maps the `/` filter's key=value terms to the same filters as
// the command-line flags, so the two agree.
var filterKeys = map[string]flow.FilterKind{
	"ns": flow.Namespace, "namespace": flow.Namespace,
	"from-ns": flow.FromNamespace, "from-namespace": flow.FromNamespace,
	"to-ns": flow.ToNamespace, "to-namespace": flow.ToNamespace,
	"pod": flow.Pod, "from-pod": flow.FromPod, "to-pod": flow.ToPod,
	"label": flow.Label, "from-label": flow.FromLabel, "to-label": flow.ToLabel,
	"ip": flow.IP, "from-ip": flow.FromIP, "to-ip": flow.ToIP,
	"port": flow.Port, "from-port": flow.FromPort, "to-port": flow.ToPort,
	"verdict": flow.Verdict, "reason": flow.Reason,
	"proto": flow.Protocol, "protocol": flow.Protocol,
	"policy": flow.Policy, "node": flow.Node, "svc": flow.Service, "service": flow.Service,
}

// workloadKeys are the TUI's own terms: a workload as the map and the top
// view name it (stats.WorkloadKey: "ns/name" of a Deployment, "node/NAME", an
// address), matched exactly.
var workloadKeys = map[string]int{"workload": 0, "from-workload": 1, "to-workload": 2}

// FilterHelp is shown in the filter prompt's placeholder and help.
const FilterHelp = "terms AND together: ns=shop verdict=denied port=5432 policy=ns/name (cnp/name) from-workload=ns/deploy !ns=kube-system, or free text"

// ParseFilter compiles a `/` expression: whitespace-separated terms, all of
// which must match. key=value terms are the command-line filters (ns=, pod=,
// label=, ip=, port=, verdict=, proto=, policy=, node=, svc=, reason=, and
// from-/to- variants) and workload= (from-, to-); a leading ! negates one; any other term is a
// case-insensitive substring of the flow's compact line. Empty: nil (all).
func ParseFilter(expr string) (func(*flowv1.Flow) bool, error) {
	var b flow.FilterBuilder
	var texts, notTexts []string
	var wl []func(*flowv1.Flow) bool
	used := false
	for _, term := range strings.Fields(expr) {
		neg := strings.HasPrefix(term, "!")
		term = strings.TrimPrefix(term, "!")
		if term == "" {
			continue
		}
		k, v, isKV := strings.Cut(term, "=")
		if side, ok := workloadKeys[strings.ToLower(k)]; isKV && ok {
			if v == "" {
				return nil, fmt.Errorf("%s= needs a value", k)
			}
			wl = append(wl, workloadMatch(side, v, neg))
			continue
		}
		if kind, ok := filterKeys[strings.ToLower(k)]; isKV && ok {
			if v == "" {
				return nil, fmt.Errorf("%s= needs a value", k)
			}
			if neg {
				b.Not()
			}
			if err := b.Add(kind, v); err != nil {
				return nil, err
			}
			used = true
			continue
		}
		if neg {
			notTexts = append(notTexts, strings.ToLower(term))
		} else {
			texts = append(texts, strings.ToLower(term))
		}
	}
	if !used && len(texts) == 0 && len(notTexts) == 0 && len(wl) == 0 {
		return nil, nil
	}
	compiled, err := flow.CompileFilter(b.Allowlist(), b.Denylist())
	if err != nil {
		return nil, err
	}
	return func(f *flowv1.Flow) bool {
		if !compiled.Match(f) {
			return false
		}
		for _, w := range wl {
			if !w(f) {
				return false
			}
		}
		if len(texts) == 0 && len(notTexts) == 0 {
			return true
		}
		line := strings.ToLower(flow.CompactLine(f, time.UTC))
		for _, t := range texts {
			if !strings.Contains(line, t) {
				return false
			}
		}
		for _, t := range notTexts {
			if strings.Contains(line, t) {
				return false
			}
		}
		return true
	}, nil
}

// workloadMatch matches a flow whose source (side 1), destination (2) or
// either end (0) is workload w; neg inverts it.
func workloadMatch(side int, w string, neg bool) func(*flowv1.Flow) bool {
	return func(f *flowv1.Flow) bool {
		src := stats.WorkloadKey(f.GetSource(), f.GetIp().GetSource()) == w
		dst := stats.WorkloadKey(f.GetDestination(), f.GetIp().GetDestination()) == w
		hit := (side != 2 && src) || (side != 1 && dst)
		return hit != neg
	}
}
