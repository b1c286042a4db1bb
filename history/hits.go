package history

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// hitKey is one rule (rule < 0: an isolating policy's default deny) and verdict.
type hitKey struct {
	kind, namespace, name string
	dir                   flowv1.TrafficDirection
	rule                  int64
	verdict               flowv1.Verdict
}

func keyOfRef(r *flowv1.PolicyRef, v flowv1.Verdict) hitKey {
	k := hitKey{kind: r.GetKind(), namespace: r.GetNamespace(), name: r.GetName(), dir: r.GetDirection(), rule: -1, verdict: v}
	if r.RuleIndex != nil {
		k.rule = int64(r.GetRuleIndex())
	}
	return k
}

// hit counts f's deciding rules (callers hold mu): every rule that allowed
// it, or, for a default-deny drop, each isolating policy.
func (s *Store) hit(f *flowv1.Flow, at time.Time) {
	for _, refs := range [][]*flowv1.PolicyRef{f.GetAllowedBy(), f.GetDeniedBy(), f.GetIsolatedBy()} {
		for _, r := range refs {
			k := keyOfRef(r, f.GetVerdict())
			h := s.hits[k]
			if h == nil {
				h = &flowv1.RuleHit{Rule: proto.Clone(r).(*flowv1.PolicyRef), Verdict: f.GetVerdict(), FirstHit: timestamp(at.UnixNano())}
				s.hits[k] = h
			}
			h.Hits++
			if h.LastHit == nil || h.LastHit.AsTime().Before(at) {
				h.LastHit = timestamp(at.UnixNano())
			}
		}
	}
}

// RuleHits returns a copy of the rule counters, sorted, and since when
// they are counted.
func (s *Store) RuleHits() ([]*flowv1.RuleHit, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ruleHits(), s.since
}

func (s *Store) ruleHits() []*flowv1.RuleHit {
	out := make([]*flowv1.RuleHit, 0, len(s.hits))
	for _, h := range s.hits {
		out = append(out, proto.Clone(h).(*flowv1.RuleHit))
	}
	slices.SortFunc(out, func(a, b *flowv1.RuleHit) int {
		return strings.Compare(hitString(a), hitString(b))
	})
	return out
}

func hitString(h *flowv1.RuleHit) string {
	r := h.GetRule()
	rule := int64(-1)
	if r.RuleIndex != nil {
		rule = int64(r.GetRuleIndex())
	}
	return fmt.Sprintf("%s/%s/%s/%d/%06d/%d", r.GetKind(), r.GetNamespace(), r.GetName(), r.GetDirection(), rule, h.GetVerdict())
}
