//go:build linux

package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubectl-netpol/kubectl-netpol/probe"
)

// TestAgentRetiresOlderLayout: an older agent's datapath (another layout
// version under the same pin root) keeps enforcing beside the new agent's
// until the new one has applied the policy, and is removed then: its links
// detached from the kernel and its pins gone. Left attached, it would go on
// enforcing the last policy it knew.
func TestAgentRetiresOlderLayout(t *testing.T) {
	requirePrivileged(t)
	node := newFeNode(t)
	pinRoot := fmt.Sprintf("/sys/fs/bpf/netpol-agent-upgrade-%d", os.Getpid())
	t.Cleanup(func() { os.RemoveAll(pinRoot) })

	// The older agent: this layout, attached, then moved to another
	// version's directory, as an agent of another layout leaves it.
	older := filepath.Join(pinRoot, "v0")
	var oldLinks []link.ID
	err := node.in(func() error {
		p, err := probe.Load(probe.Options{PinRoot: pinRoot})
		if err != nil {
			return err
		}
		if err := p.Attach("node"); err != nil {
			return errors.Join(err, p.Uninstall())
		}
		if err := p.Close(); err != nil {
			return err
		}
		return os.Rename(filepath.Join(pinRoot, probe.LayoutVersion), older)
	})
	if err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(filepath.Join(older, "links"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			t.Errorf("older layout's link %s: %v", path, err)
			return nil
		}
		if info, err := l.Info(); err == nil {
			oldLinks = append(oldLinks, info.ID)
		}
		l.Close()
		return nil
	})
	if len(oldLinks) == 0 {
		t.Fatal("the older layout pinned no links")
	}

	var a *Agent
	var onReady atomic.Int32 // the agent's niceness is set there: once, when ready
	err = node.in(func() error {
		var err error
		a, err = New(Config{Client: fake.NewClientset(), NodeName: feNodeName, PinRoot: pinRoot, Datapath: probe.DefaultConfig,
			OnReady: func() {
				if !a.ready.Load() {
					t.Error("OnReady ran before the agent was ready")
				}
				onReady.Add(1)
			}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	t.Cleanup(func() {
		close(stop)
		a.queue.ShutDown()
		if err := a.probe.Uninstall(); err != nil {
			t.Errorf("uninstall: %v", err)
		}
	})
	// Both layouts run side by side before the first apply.
	if _, err := os.Stat(older); err != nil {
		t.Fatalf("the new agent removed the older layout before enforcing: %v", err)
	}
	if !a.cluster.Start(stop) {
		t.Fatal("informer caches did not sync")
	}
	go func() {
		for a.processNext() {
		}
	}()
	a.enqueue()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := os.Stat(older)
		if a.ready.Load() && errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("15 s after start: ready=%v, older layout %v", a.ready.Load(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, id := range oldLinks {
		if l, err := link.NewFromID(id); err == nil {
			info, _ := l.Info()
			l.Close()
			t.Errorf("the older layout's link %d is still in the kernel: %+v", id, info)
		}
	}
	if _, err := os.Stat(filepath.Join(pinRoot, probe.LayoutVersion)); err != nil {
		t.Errorf("the agent's own layout: %v", err)
	}
	since := time.Now()
	a.enqueue() // a second apply: OnReady does not run again
	waitFor(t, 10*time.Second, "a second apply", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.applyStart.After(since)
	})
	if n := onReady.Load(); n != 1 {
		t.Errorf("OnReady ran %d times, want once", n)
	}
}
