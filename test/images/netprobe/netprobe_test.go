package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// freePort returns a port that was free on loopback a moment ago, for the given network.
func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startServer runs "netprobe serve" on real loopback sockets until the test ends.
func startServer(t *testing.T, args ...string) *bytes.Buffer {
	t.Helper()
	t.Setenv("POD_NAME", "probe-b")
	ctx, cancel := context.WithCancel(context.Background())
	logs := &bytes.Buffer{}
	done := make(chan int)
	go func() { done <- run(ctx, append([]string{"serve"}, args...), &bytes.Buffer{}, logs) }()
	t.Cleanup(func() { cancel(); <-done })
	time.Sleep(100 * time.Millisecond) // listeners are bound synchronously before serving
	return logs
}

func connect(t *testing.T, args ...string) ([]result, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"connect", "-timeout", "500ms"}, args...), &out, &errOut)
	var rs []result
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if line == "" {
			continue
		}
		var r result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %q is not JSON: %v (stderr %s)", line, err, errOut.String())
		}
		rs = append(rs, r)
	}
	return rs, code
}

func TestConnectTCPUDPHTTP(t *testing.T) {
	tcp, udp, httpPort := freePort(t, "tcp"), freePort(t, "udp"), freePort(t, "tcp")
	startServer(t, "-tcp", strconv.Itoa(tcp), "-udp", strconv.Itoa(udp), "-http", strconv.Itoa(httpPort))
	t.Setenv("POD_NAME", "probe-a")

	rs, code := connect(t, "127.0.0.1:"+strconv.Itoa(tcp), "udp://127.0.0.1:"+strconv.Itoa(udp), "http://127.0.0.1:"+strconv.Itoa(httpPort))
	if code != 0 || len(rs) != 3 {
		t.Fatalf("exit %d, results %+v", code, rs)
	}
	for i, proto := range []string{"tcp", "udp", "http"} {
		r := rs[i]
		if !r.OK || r.Protocol != proto || r.From != "probe-a" || r.To != "127.0.0.1" || r.Reply == "" || !strings.Contains(r.Reply, "probe-b") {
			t.Errorf("%s attempt: %+v", proto, r)
		}
	}
}

func TestConnectFailuresAreReported(t *testing.T) {
	closedTCP, closedUDP := freePort(t, "tcp"), freePort(t, "udp")
	rs, code := connect(t, "-count", "2", "127.0.0.1:"+strconv.Itoa(closedTCP), "udp://127.0.0.1:"+strconv.Itoa(closedUDP))
	if code != 1 || len(rs) != 4 {
		t.Fatalf("exit %d, results %+v", code, rs)
	}
	for _, r := range rs {
		if r.OK || r.Error != "connection refused" {
			t.Errorf("want refused, got %+v", r)
		}
	}
}

func TestConnectTimeout(t *testing.T) {
	// A UDP listener that never answers: the attempt must end at the timeout.
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	rs, _ := connect(t, "udp://"+c.LocalAddr().String())
	if len(rs) != 1 || rs[0].OK || rs[0].Error != "timeout" {
		t.Fatalf("got %+v", rs)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("attempt took %v with a 500ms timeout", d)
	}
}

func TestSCTPFailsSoft(t *testing.T) {
	tcp := freePort(t, "tcp")
	logs := startServer(t, "-tcp", strconv.Itoa(tcp), "-udp", "", "-http", "", "-sctp", "9999")
	rs, _ := connect(t, "127.0.0.1:"+strconv.Itoa(tcp))
	if len(rs) != 1 || !rs[0].OK {
		t.Fatalf("tcp listener must serve whatever SCTP does: %+v", rs)
	}
	if _, err := sctpSocket(); err == errNoSCTP && !strings.Contains(logs.String(), "no SCTP sockets") {
		t.Fatalf("kernel without SCTP must be logged clearly, logs: %s", logs.String())
	}
}

func TestBadInput(t *testing.T) {
	for _, args := range [][]string{{"connect", "nohost"}, {"connect", "ftp://a:1"}, {"connect", "a:99999"}, {"serve", "-tcp", "x"}, {"bogus"}} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut); code != 2 || errOut.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut.String())
		}
	}
}

// -keep makes every attempt on one connection: it keeps working while the
// connection lives, and once the server side is gone every later attempt
// fails instead of quietly dialling a new connection.
func TestConnectKeepUsesOneConnection(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
			go func() { // answer every line, like `netprobe serve`
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					c.Write([]byte("pong\n"))
				}
			}()
		}
	}()
	t.Cleanup(func() { l.Close() })
	addr := l.Addr().String()
	rs, code := connect(t, "-keep", "-count", "3", "-interval", "10ms", addr)
	if code != 0 || len(rs) != 3 || len(accepted) != 1 {
		t.Fatalf("exit %d, %d connections accepted, results %+v", code, len(accepted), rs)
	}
	<-accepted
	// Server closes after the first attempt: attempts 2 and 3 fail, no redial.
	go func() {
		c := <-accepted
		time.Sleep(150 * time.Millisecond)
		c.Close()
	}()
	rs, code = connect(t, "-keep", "-count", "3", "-interval", "300ms", addr)
	if code != 1 || len(rs) != 3 || !rs[0].OK || rs[1].OK || rs[2].OK {
		t.Fatalf("exit %d, results %+v", code, rs)
	}
	if len(accepted) != 0 {
		t.Errorf("a failed kept connection was re-dialled")
	}
}
