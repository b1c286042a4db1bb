package agent

import (
	"runtime"
	"slices"
	"strings"
	"sync"
	"weak"
)

// podShape is what the replicas of one workload have in common: namespace,
// workload, labels and (mostly) named ports. The records of pods of one
// shape share one copy of each (podShapes.share): decoding gives every pod
// its own labels map and strings, ~300 bytes for three labels, the largest
// part of a record at 100k pods (docs/perf.md, "The agent at 100k pods").
type podShape struct {
	first *CachedPod // the record the others share with
}

// podShapes interns shapes while some cached record uses them: the table
// holds them weakly, and a shape no record holds is collected and its
// entry removed, so churn leaves nothing behind.
type podShapes struct {
	mu    sync.Mutex
	byKey map[string]weak.Pointer[podShape]
}

// shapes is the process's one table: shapes are pure values, so pods of
// several Clusters (tests) may share them too.
var shapes = &podShapes{byKey: map[string]weak.Pointer[podShape]{}}

// share points p's namespace, workload, labels and ports at those of the
// first record of its shape, and p at the shape, which keeps it in the
// table.
func (s *podShapes) share(p *CachedPod) {
	key := shapeKey(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	if sh := s.byKey[key].Value(); sh != nil {
		f := sh.first
		p.Namespace, p.WorkloadKind, p.WorkloadName = f.Namespace, f.WorkloadKind, f.WorkloadName
		p.Pod.ShareWith(&f.Pod)
		p.shape = sh
		return
	}
	sh := &podShape{first: p}
	p.shape = sh
	s.byKey[key] = weak.Make(sh)
	runtime.AddCleanup(sh, s.forget, key)
}

// forget removes key's entry once its shape was collected (and not made
// again since).
func (s *podShapes) forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if wp, ok := s.byKey[key]; ok && wp.Value() == nil {
		delete(s.byKey, key)
	}
}

// shapeKey identifies p's shape: namespace, workload and labels (label keys
// and values never hold a NUL: the API server validates them).
func shapeKey(p *CachedPod) string {
	keys := make([]string, 0, len(p.Labels))
	n := len(p.Namespace) + len(p.WorkloadKind) + len(p.WorkloadName) + 3
	for k, v := range p.Labels {
		keys = append(keys, k)
		n += len(k) + len(v) + 2
	}
	slices.Sort(keys)
	var b strings.Builder
	b.Grow(n)
	for _, s := range []string{p.Namespace, p.WorkloadKind, p.WorkloadName} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(p.Labels[k])
		b.WriteByte(0)
	}
	return b.String()
}
