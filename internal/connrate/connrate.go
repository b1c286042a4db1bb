// Package connrate is the TCP connect-rate load of the A/B benchmarks
// (probe's BenchmarkDatapathAB, agent's BenchmarkAgentAB, e2e's
// BenchmarkInstalledAgentCost): a server that accepts, writes one byte and
// closes, and a client that connects, reads the byte and closes in a loop
// for a given time, then prints how many connections it made.
//
// Both run as child processes of the benchmark's test binary, so the
// caller can pin them to a CPU and start them in a network namespace: each
// benchmark package declares
//
//	func TestConnectRateProcess(t *testing.T) { connrate.Child(t) }
//
// and starts its children with Args and Env.
package connrate

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Mode is the role of a child process.
type Mode string

const (
	Server Mode = "server"
	Client Mode = "client"
)

// Ready is the line the server prints once it accepts connections.
const Ready = "ready"

const (
	envMode = "NETPOL_CONNRATE"
	envAddr = "NETPOL_CONNRATE_ADDR"
	envTime = "NETPOL_CONNRATE_TIME"
)

// Args is the command line of a child: this test binary running only
// TestConnectRateProcess.
func Args() []string {
	return []string{os.Args[0], "-test.run=^TestConnectRateProcess$", "-test.count=1"}
}

// Env is a child's environment: the server listening on addr, or the
// client connecting to addr for d.
func Env(mode Mode, addr string, d time.Duration) []string {
	env := append(os.Environ(), envMode+"="+string(mode), envAddr+"="+addr)
	if mode == Client {
		env = append(env, envTime+"="+d.String())
	}
	return env
}

// Connections is the count a client printed.
func Connections(out []byte) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		return 0, fmt.Errorf("connect-rate client printed %q", out)
	}
	return n, nil
}

// Child runs the server or the client when the process was started with
// Env, and exits; otherwise it skips t (the test does nothing on its own).
func Child(t *testing.T) {
	mode := Mode(os.Getenv(envMode))
	if mode == "" {
		t.Skip("run as a child of an A/B benchmark (internal/connrate)")
	}
	var err error
	switch mode {
	case Server:
		err = serve(os.Getenv(envAddr))
	case Client:
		var d time.Duration
		if d, err = time.ParseDuration(os.Getenv(envTime)); err == nil {
			var n int
			if n, err = connect(os.Getenv(envAddr), d); err == nil {
				fmt.Println(n)
			}
		}
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// serve accepts, writes one byte and closes, until it fails.
func serve(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println(Ready)
	return serveOn(l)
}

func serveOn(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		c.Write([]byte{'x'})
		c.Close()
	}
}

// connect opens, reads one byte from and closes connections to addr for d.
func connect(addr string, d time.Duration) (int, error) {
	n := 0
	buf := make([]byte, 1)
	for end := time.Now().Add(d); time.Now().Before(end); n++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return n, err
		}
		if _, err := c.Read(buf); err != nil {
			c.Close()
			return n, err
		}
		c.Close()
	}
	return n, nil
}
