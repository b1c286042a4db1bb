package tui_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// tmuxSession runs a command in a detached tmux session on a private server
// (its own socket), so the test never touches anyone else's tmux.
type tmuxSession struct {
	t      *testing.T
	socket string
	// exitFile receives the program's exit status, written by a shell
	// wrapper: tmux 3.3 sometimes marks a pane dead on EOF of its terminal
	// before it has reaped the process, leaving #{pane_dead_status} empty.
	exitFile string
}

func (s *tmuxSession) tmux(args ...string) (string, error) {
	out, err := exec.Command("tmux", append([]string{"-L", s.socket, "-f", "/dev/null"}, args...)...).CombinedOutput()
	return string(out), err
}

func (s *tmuxSession) send(keys ...string) {
	s.t.Helper()
	if out, err := s.tmux(append([]string{"send-keys", "-t", "w"}, keys...)...); err != nil {
		s.t.Fatalf("send-keys %v: %v %s", keys, err, out)
	}
}

func (s *tmuxSession) sendText(text string) {
	s.t.Helper()
	if out, err := s.tmux("send-keys", "-t", "w", "-l", text); err != nil {
		s.t.Fatalf("send-keys -l %q: %v %s", text, err, out)
	}
}

func (s *tmuxSession) screen(escapes bool) string {
	args := []string{"capture-pane", "-p", "-t", "w"}
	if escapes {
		args = append(args, "-e")
	}
	out, _ := s.tmux(args...)
	return out
}

// waitFor polls the screen until cond holds, failing with the screen after 10 s.
func (s *tmuxSession) waitFor(what string, cond func(screen string) bool) string {
	s.t.Helper()
	scr, ok := s.poll(10*time.Second, cond)
	if !ok {
		s.t.Fatalf("timed out waiting for %s; screen:\n%s", what, scr)
	}
	return scr
}

// poll polls the screen until cond holds or d passes, returning the last
// screen and whether cond held.
func (s *tmuxSession) poll(d time.Duration, cond func(screen string) bool) (string, bool) {
	deadline := time.Now().Add(d)
	for {
		scr := s.screen(false)
		if cond(scr) {
			return scr, true
		}
		if time.Now().After(deadline) {
			return scr, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *tmuxSession) waitText(text string) string {
	s.t.Helper()
	return s.waitFor(fmt.Sprintf("%q", text), func(scr string) bool { return strings.Contains(scr, text) })
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// TestMain removes the plugin built for the real-terminal tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// buildPlugin builds the real kubectl-netpol binary once per test binary.
func buildPlugin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "netpol-tui-test"); buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(buildDir, "kubectl-netpol"), "../cmd/kubectl-netpol").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("%w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building the plugin: %v", buildErr)
	}
	return filepath.Join(buildDir, "kubectl-netpol")
}

func startTmux(t *testing.T, w, h int, env []string, command ...string) *tmuxSession {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("tmux not found: hack/install-deps.sh installs it")
		}
		t.Skip("tmux not found: install tmux (hack/install-deps.sh) to run the real-terminal test")
	}
	s := &tmuxSession{
		t:        t,
		socket:   fmt.Sprintf("netpol-tui-test-%d-%d", os.Getpid(), time.Now().UnixNano()),
		exitFile: filepath.Join(t.TempDir(), "exit-status"),
	}
	t.Cleanup(func() { _, _ = s.tmux("kill-server") })
	// sh -c '"$@"; echo $? >FILE; sleep' runs the program, records its exit
	// status, and keeps the pane (and its last screen) open for the test.
	wrapper := `"$@"; echo $? >"` + s.exitFile + `"; exec sleep 60`
	args := []string{"new-session", "-d", "-s", "w", "-x", fmt.Sprint(w), "-y", fmt.Sprint(h), "sh", "-c", wrapper, "sh", "env"}
	args = append(append(args, env...), command...)
	if out, err := s.tmux(args...); err != nil {
		t.Fatalf("tmux new-session: %v %s", err, out)
	}
	return s
}

// TestRealTerminal runs the built plugin in tmux on the sample capture and
// drives it as a person would: filter, select, explain, help, panels, quit.
func TestRealTerminal(t *testing.T) {
	bin := buildPlugin(t)
	sample, _ := filepath.Abs(sampleCapture)
	s := startTmux(t, 80, 24, []string{"TERM=xterm-256color", "TZ=UTC"}, bin, "watch", "--input-file", sample)

	scr := s.waitText("(done)")
	lines := strings.Split(scr, "\n")
	for _, col := range []string{"TIME", "SOURCE", "DESTINATION", "PORT", "VERDICT"} {
		if !strings.Contains(lines[0], col) {
			t.Fatalf("header lacks %s: %q", col, lines[0])
		}
	}
	if !strings.Contains(scr, " FOLLOW ") || !strings.Contains(scr, "708/726 flows") {
		t.Fatalf("status bar should say FOLLOW and 708/726 flows (node health checks hidden):\n%s", scr)
	}

	s.send("/")
	s.sendText("verdict=denied to-ns=shop")
	s.send("Enter")
	scr = s.waitText("filter: verdict=denied to-ns=shop")
	rows := strings.Split(scr, "\n")[1:14]
	for _, r := range rows {
		if !strings.Contains(r, "DENIED") || !strings.Contains(r, " shop/") {
			t.Fatalf("filtered row %q is not a drop into shop", r)
		}
	}

	s.send("k")
	s.waitText(" SCROLL ")
	s.send("Enter")
	scr = s.waitText("Recorded")
	for _, want := range []string{"is isolated for ingress by 2 policies", "isolated by    shop/default-deny-ingress (ingress)"} {
		if !strings.Contains(scr, want) {
			t.Fatalf("full detail lacks %q:\n%s", want, scr)
		}
	}
	s.send("Escape")
	s.waitFor("the main screen", func(scr string) bool { return !strings.Contains(scr, "Recorded") && strings.Contains(scr, "VERDICT") })

	// Wait for whole screens, not a line of one: capture-pane can catch a
	// frame half redrawn, and the next key must not race the last one.
	s.send("?")
	s.waitFor("the help screen", func(scr string) bool {
		return strings.Contains(scr, "watch — keys") && !strings.Contains(scr, "VERDICT")
	})
	s.send("Escape")
	s.waitFor("the main screen", func(scr string) bool {
		return strings.Contains(scr, "VERDICT") && !strings.Contains(scr, "watch — keys")
	})

	s.send("Tab")
	s.waitText("Flows/s")
	s.send("Tab")
	s.waitText("From ↓ to →")

	switchViews(t, s)
	s.send("q")
	s.waitFor("the program to exit with status 0", func(string) bool {
		out, err := os.ReadFile(s.exitFile)
		return err == nil && strings.TrimSpace(string(out)) == "0"
	})
}

// switchViews walks the views as a person would: top rules, top pairs,
// drill into a pair's flows, back, the map, an edge's flows, back to the
// flows; then the chart's ranges.
func switchViews(t *testing.T, s *tmuxSession) {
	t.Helper()
	s.send("2")
	s.waitText("Top policy rules")
	s.send("t")
	s.waitText("Top policies")
	s.send("t")
	scr := s.waitText("Top workload pairs")
	if !strings.Contains(scr, "monitoring/prometheus → shop/api") {
		t.Fatalf("top pairs lack the busiest drop:\n%s", scr)
	}
	s.send("Enter") // the first row: prometheus → api, the most denied
	scr = s.waitFor("the drilled-down flows", func(scr string) bool {
		return strings.Contains(scr, "filter: from-workload=") && strings.Contains(scr, "VERDICT")
	})
	for _, r := range strings.Split(scr, "\n")[1:8] {
		if !strings.Contains(r, "monitoring/prometheus") || !strings.Contains(r, "DENIED") {
			t.Fatalf("drilled row %q is not prometheus's drop:\n%s", r, scr)
		}
	}
	s.send("Escape")
	s.waitFor("the filter cleared", func(scr string) bool { return !strings.Contains(scr, "filter: ") })
	s.send("3")
	scr = s.waitText("EDGES (→)")
	if !strings.Contains(scr, "Map shop/api") || !strings.Contains(scr, "DENIED") {
		t.Fatalf("map should focus shop/api and label a denied edge:\n%s", scr)
	}
	s.send("1")
	s.waitFor("the flows table", func(scr string) bool { return strings.Contains(scr, "VERDICT") && !strings.Contains(scr, "EDGES") })
}

var colourSGRTmux = regexp.MustCompile(`\x1b\[[0-9;]*(3[0-7]|9[0-7]|38;[25];[0-9;]+)m`)

// TestRealTerminalNoColor: with NO_COLOR set, the real terminal shows no
// colour, and without it drops are coloured.
func TestRealTerminalNoColor(t *testing.T) {
	bin := buildPlugin(t)
	sample, _ := filepath.Abs(sampleCapture)
	for _, tc := range []struct {
		env    []string
		colour bool
	}{
		{[]string{"TERM=xterm-256color", "NO_COLOR=1"}, false},
		{[]string{"TERM=xterm-256color"}, true},
	} {
		s := startTmux(t, 80, 24, tc.env, bin, "watch", "--input-file", sample)
		s.waitText("(done)")
		got := colourSGRTmux.MatchString(s.screen(true))
		if got != tc.colour {
			t.Errorf("env %v: colour on screen = %v, want %v:\n%q", tc.env, got, tc.colour, s.screen(true))
		}
		s.send("q")
	}
}

// TestRealTerminalViews runs the plugin at 160×45 on the sample capture and
// shows each view; with NETPOL_TUI_SCREENS=DIR it saves each screen's text
// (tmux capture-pane) there, for notes and reviews.
func TestRealTerminalViews(t *testing.T) {
	bin := buildPlugin(t)
	sample, _ := filepath.Abs(sampleCapture)
	dir := os.Getenv("NETPOL_TUI_SCREENS")
	for _, size := range [][2]int{{80, 24}, {160, 45}} {
		s := startTmux(t, size[0], size[1], []string{"TERM=xterm-256color", "TZ=UTC"}, bin, "watch", "--input-file", sample)
		save := func(name string, scr string) {
			if dir == "" {
				return
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%dx%d-%s.txt", size[0], size[1], name)), []byte(scr), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		save("flows", s.waitText("(done)"))
		if size[0] < 120 {
			s.send("Tab")
		}
		save("chart-1m", s.waitText("last 1m (r)"))
		s.send("r")
		save("chart-5m", s.waitText("last 5m (r)"))
		s.send("r")
		save("chart-1h", s.waitText("last 1h (r)"))
		s.send("2")
		save("top-rules", s.waitText("Top policy rules"))
		s.send("t")
		save("top-policies", s.waitText("Top policies"))
		s.send("t")
		save("top-pairs", s.waitText("Top workload pairs"))
		s.send("3")
		scr := s.waitText("EDGES (→)")
		save("map", scr)
		if size[0] < 120 {
			s.send("Tab")
			s.send("Tab") // chart → matrix → the detail pane
			s.waitText("Why")
		}
		s.send("j")
		save("map-edge", s.waitFor("the second edge explained", func(scr string) bool {
			return strings.Contains(scr, "prometheus") && strings.Contains(scr, "isolated")
		}))
		s.send("?")
		save("help", s.waitText("watch — keys"))
		s.send("q")
		s.waitFor("the program to exit with status 0", func(string) bool {
			out, err := os.ReadFile(s.exitFile)
			return err == nil && strings.TrimSpace(string(out)) == "0"
		})
	}
}
