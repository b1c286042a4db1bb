//go:build linux

package probe

import (
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
)

// TestUpgradeAcrossLayouts: pins of an older layout version (simulated by
// moving this version's pins to v1) keep enforcing while a new process loads
// fresh maps, applies, and attaches beside the old links (the hook priority
// they hold is busy); Attach then detaches the old links and removes the old
// layout, and RetireOtherLayouts removes one left from another namespace.
// Probers b -> a (allowed) and c -> a (denied) run throughout and never see
// a wrong verdict.
func TestUpgradeAcrossLayouts(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t, false)
	a, b, c := tp.addPod(t, "a"), tp.addPod(t, "b"), tp.addPod(t, "c")
	a.serve(t, 80)
	waitReachable(t, b, 80, a)
	waitReachable(t, c, 80, a)
	dp := aOnlyFromB(t, a, b, c)
	root := testPinRoot(t)

	p1, err := Load(Options{PinRoot: root, Config: testCfg})
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.node.in(func() error { return p1.Attach("node") }); err != nil {
		t.Fatal(err)
	}
	if _, err := p1.Apply(dp); err != nil {
		t.Fatal(err)
	}
	if err := p1.Close(); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(root, "v1")
	if err := os.Rename(filepath.Join(root, LayoutVersion), old); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unpinLinks(filepath.Join(old, "links")); os.RemoveAll(old) })
	var oldIDs []link.ID
	pins, _ := filepath.Glob(filepath.Join(old, "links", "node", "*"))
	for _, pin := range pins {
		l, err := link.LoadPinnedLink(pin, nil)
		if err != nil {
			t.Fatal(err)
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		oldIDs = append(oldIDs, info.ID)
	}
	if len(oldIDs) != len(hooks) {
		t.Fatalf("old layout has %d links, want %d", len(oldIDs), len(hooks))
	}

	var wrong, probes atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, from := range []*pod{b, c} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := from.connect("tcp", a.ip4, 80, 200*time.Millisecond)
				allowed := err == nil && got == "a"
				if allowed != (from == b) {
					wrong.Add(1)
				}
				probes.Add(1)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)

	p2, err := Load(Options{PinRoot: root, Config: testCfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p2.Uninstall() })
	if _, err := p2.Apply(dp); err != nil {
		t.Fatal(err)
	}
	if err := tp.node.in(func() error { return p2.Attach("node") }); err != nil {
		t.Fatalf("attaching beside the old layout: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()

	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("old layout directory left: %v", err)
	}
	for _, id := range oldIDs {
		if l, err := link.NewFromID(id); err == nil {
			l.Close()
			t.Errorf("old layout link %d still attached", id)
		}
	}
	// An old layout attached elsewhere (a directory of links nobody
	// attaches through any more) goes with RetireOtherLayouts.
	stale := filepath.Join(root, "v0", "links", "gone")
	if err := os.MkdirAll(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	retired, err := p2.RetireOtherLayouts()
	if err != nil || !slices.Equal(retired, []string{"v0"}) {
		t.Errorf("RetireOtherLayouts: %v %v, want [v0]", retired, err)
	}
	before, _ := p2.Stats()
	if _, err := c.connect("tcp", a.ip4, 80, 300*time.Millisecond); err == nil {
		t.Error("after retiring the old layout c -> a is allowed")
	}
	if after, _ := p2.Stats(); after.NewDenied <= before.NewDenied {
		t.Error("c -> a was not denied by the new layout's programs")
	}
	t.Logf("%d probes, %d wrong", probes.Load(), wrong.Load())
	if wrong.Load() != 0 || probes.Load() < 10 {
		t.Errorf("%d wrong verdicts in %d probes across the upgrade", wrong.Load(), probes.Load())
	}
}
