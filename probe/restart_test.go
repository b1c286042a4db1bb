//go:build linux

package probe

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// TestAgentProcess is the agent run as a child process by TestRestartUpgrade
// (it does nothing otherwise): load, attach in the named namespace, apply
// the datapath from a file, say "ready", then wait to be killed.
func TestAgentProcess(t *testing.T) {
	if os.Getenv("NETPOL_TEST_AGENT") == "" {
		t.Skip("run as a child of TestRestartUpgrade")
	}
	fail := func(err error) {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	raw, err := os.ReadFile(os.Getenv("NETPOL_TEST_DATAPATH"))
	if err != nil {
		fail(err)
	}
	var dp policy.Datapath
	if err := json.Unmarshal(raw, &dp); err != nil {
		fail(err)
	}
	p, err := Load(Options{PinRoot: os.Getenv("NETPOL_TEST_PINROOT"), Config: testCfg,
		ReplaceLinks: os.Getenv("NETPOL_TEST_REPLACE") != ""})
	if err != nil {
		fail(err)
	}
	ns, err := netns.GetFromName(os.Getenv("NETPOL_TEST_NETNS"))
	if err != nil {
		fail(err)
	}
	if err := lockedNetns(ns, func() error { return p.Attach("node") }); err != nil {
		fail(err)
	}
	if _, err := p.Apply(&dp); err != nil {
		fail(err)
	}
	fmt.Println("ready")
	select {}
}

type agentProc struct {
	cmd *exec.Cmd
}

func startAgent(t *testing.T, pinRoot, nsName, dpFile string, replace bool) *agentProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestAgentProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "NETPOL_TEST_AGENT=1", "NETPOL_TEST_PINROOT="+pinRoot,
		"NETPOL_TEST_NETNS="+nsName, "NETPOL_TEST_DATAPATH="+dpFile)
	if replace {
		cmd.Env = append(cmd.Env, "NETPOL_TEST_REPLACE=1")
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a := &agentProc{cmd: cmd}
	t.Cleanup(a.kill)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("agent did not start: %q %v", line, err)
	}
	return a
}

// kill is kill -9 of the agent by its PID.
func (a *agentProc) kill() {
	if a.cmd.ProcessState == nil {
		a.cmd.Process.Signal(syscall.SIGKILL)
		a.cmd.Wait()
	}
}

// TestRestartUpgrade runs probers through an agent kill -9, a time with no
// agent, a restart (links kept) and an upgrade (new links attached before
// the old pins are replaced): no wrong verdict and no established
// connection broken.
func TestRestartUpgrade(t *testing.T) {
	requireRoot(t)
	tp := newTopology(t, false)
	a, b, c := tp.addPod(t, "a"), tp.addPod(t, "b"), tp.addPod(t, "c")
	a.serve(t, 80)
	a.serveEcho(t, 7)
	waitReachable(t, b, 80, a)
	waitReachable(t, c, 80, a)
	raw, _ := json.Marshal(aOnlyFromB(t, a, b, c))
	dpFile := filepath.Join(t.TempDir(), "dp.json")
	if err := os.WriteFile(dpFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	pinRoot := testPinRoot(t)
	t.Cleanup(func() {
		// Remove everything the agents left pinned.
		p, err := Load(Options{PinRoot: pinRoot})
		if err != nil {
			t.Errorf("loading for uninstall: %v", err)
			return
		}
		if err := p.Uninstall(); err != nil {
			t.Errorf("Uninstall: %v", err)
		}
	})

	agent1 := startAgent(t, pinRoot, tp.node.name, dpFile, false)
	echo, err := b.dialEcho(a.ip4, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()

	var stop atomic.Bool
	var wrong, probes, echoErrs, echoes atomic.Int64
	var wg sync.WaitGroup
	var wrongMu sync.Mutex
	var wrongLog []string
	prober := func(from *pod, allow bool) {
		defer wg.Done()
		for !stop.Load() {
			got, err := from.connect("tcp", a.ip4, 80, 300*time.Millisecond)
			ok := err == nil && got == "a"
			probes.Add(1)
			if ok != allow {
				wrong.Add(1)
				wrongMu.Lock()
				wrongLog = append(wrongLog, fmt.Sprintf("%s %s -> a: %q %v", time.Now().Format("15:04:05.000"), from.podName, got, err))
				wrongMu.Unlock()
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	wg.Add(3)
	go prober(b, true)
	go prober(c, false)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			if err := echo.roundTrip(fmt.Sprintf("m%d", i)); err != nil {
				echoErrs.Add(1)
			}
			echoes.Add(1)
			time.Sleep(10 * time.Millisecond)
		}
	}()
	phase := func(name string, d time.Duration) {
		before := probes.Load()
		time.Sleep(d)
		t.Logf("%s: %d probes", name, probes.Load()-before)
	}
	phase("agent 1 running", 500*time.Millisecond)
	agent1.kill()
	phase("no agent (killed with SIGKILL)", time.Second)
	agent2 := startAgent(t, pinRoot, tp.node.name, dpFile, false)
	phase("agent 2 (restart)", 500*time.Millisecond)
	startAgent(t, pinRoot, tp.node.name, dpFile, true)
	agent2.kill()
	phase("agent 3 (upgrade: links replaced)", 500*time.Millisecond)
	stop.Store(true)
	wg.Wait()
	t.Logf("%d probes, %d wrong; %d echo round trips, %d failed", probes.Load(), wrong.Load(), echoes.Load(), echoErrs.Load())
	if wrong.Load() != 0 {
		t.Errorf("%d wrong verdicts: %v", wrong.Load(), wrongLog)
	}
	if echoErrs.Load() != 0 {
		t.Errorf("established connection failed %d times", echoErrs.Load())
	}
	if probes.Load() < 50 {
		t.Errorf("only %d probes", probes.Load())
	}
	// Exactly one set of links is left attached: the upgrade's.
	links, _ := filepath.Glob(filepath.Join(pinRoot, LayoutVersion, "links", "node", "*"))
	if len(links) != len(hooks) {
		t.Errorf("pinned links %v, want %d", links, len(hooks))
	}
}
