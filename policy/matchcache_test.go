package policy

import (
	"sync"
	"testing"
)

// TestMatchCacheAllocatesOnFirstAnswer: no bits until a peer is first asked,
// then every answer as put, from concurrent writers (the first allocation
// raced for); out-of-range and nil caches know nothing.
func TestMatchCacheAllocatesOnFirstAnswer(t *testing.T) {
	const n = 1000
	c := newMatchCache(n)
	if _, known := c.get(5); known || c.words.Load() != nil {
		t.Fatal("an unasked cache knows an answer or holds bits")
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for id := w; id < n; id += 8 {
				c.put(id, id%3 == 0)
			}
		})
	}
	wg.Wait()
	for id := range n {
		if m, known := c.get(id); !known || m != (id%3 == 0) {
			t.Fatalf("identity %d: match=%v known=%v, want %v", id, m, known, id%3 == 0)
		}
	}
	c.put(n, true)
	if _, known := c.get(n); known {
		t.Fatal("an identity past the cache's size is known")
	}
	var none *matchCache
	none.put(1, true)
	if _, known := none.get(1); known {
		t.Fatal("a nil cache knows an answer")
	}
}
