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

// ruleHit is one rule's counter (times in Unix ns: no allocation per hit).
type ruleHit struct {
	ref         *flowv1.PolicyRef
	verdict     flowv1.Verdict
	hits        uint64
	first, last int64
}

func (h *ruleHit) proto() *flowv1.RuleHit {
	return &flowv1.RuleHit{Rule: proto.Clone(h.ref).(*flowv1.PolicyRef), Verdict: h.verdict, Hits: h.hits,
		FirstHit: timestamp(h.first), LastHit: timestamp(h.last)}
}

func ruleHitOf(h *flowv1.RuleHit) *ruleHit {
	return &ruleHit{ref: h.GetRule(), verdict: h.GetVerdict(), hits: h.GetHits(),
		first: h.GetFirstHit().AsTime().UnixNano(), last: h.GetLastHit().AsTime().UnixNano()}
}

// hit counts f's deciding rules (callers hold mu): every rule that allowed
// it, or, for a default-deny drop, each isolating policy.
func (s *Store) hit(f *flowv1.Flow, at int64, n uint64) {
	for _, refs := range [][]*flowv1.PolicyRef{f.GetAllowedBy(), f.GetDeniedBy(), f.GetIsolatedBy()} {
		for _, r := range refs {
			k := keyOfRef(r, f.GetVerdict())
			h := s.hits[k]
			if h == nil {
				h = &ruleHit{ref: proto.Clone(r).(*flowv1.PolicyRef), verdict: f.GetVerdict(), first: at}
				s.hits[k] = h
			}
			h.hits += n
			h.first = min(h.first, at)
			h.last = max(h.last, at)
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
		out = append(out, h.proto())
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
