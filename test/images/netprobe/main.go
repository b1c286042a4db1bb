// Command netprobe is the connectivity probe image of kubectl-netpol's tests and demo.
//
// "netprobe serve" listens on TCP, UDP and SCTP ports and answers every "ping" with
// "pong <identity>", and serves HTTP on the -http ports. "netprobe connect" tries each target
// and prints one JSON line per attempt:
//
//	{"from":"a","to":"10.244.0.7","port":80,"protocol":"tcp","ok":true,"reply":"pong b","ms":0.4}
//
// "netprobe spoof" sends TCP SYNs or UDP datagrams with a forged IPv4 source address through
// a raw socket, for the anti-spoofing tests.
//
// It is stdlib only, runs as a static binary in a one-file image, and logs to stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const usage = `netprobe: connectivity probe for kubectl-netpol tests

  netprobe serve   [-tcp 80,81] [-udp 80,81] [-sctp 80,81] [-http 8080]
  netprobe connect [-protocol tcp] [-timeout 1s] [-count 1] [-interval 200ms] HOST:PORT|PROTO://HOST:PORT ...
  netprobe spoof   -source IPv4 [-sport 40000] [-protocol tcp|udp] [-count 3] IPv4:PORT

connect prints one JSON line per attempt and exits 1 when any attempt failed.
spoof sends packets with a forged source address (raw socket, needs CAP_NET_RAW) and prints one
JSON line.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	logger := log.New(stderr, "netprobe: ", log.LstdFlags|log.Lmsgprefix)
	switch args[0] {
	case "serve":
		return runServe(ctx, args[1:], logger)
	case "connect":
		return runConnect(ctx, args[1:], stdout, stderr)
	case "spoof":
		return runSpoof(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "netprobe: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

func runServe(ctx context.Context, args []string, logger *log.Logger) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	tcp := fs.String("tcp", "80,81", "comma-separated TCP ports")
	udp := fs.String("udp", "80,81", "comma-separated UDP ports")
	sctp := fs.String("sctp", "", "comma-separated SCTP ports (fail soft when the kernel lacks SCTP)")
	httpPorts := fs.String("http", "8080", "comma-separated HTTP ports")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ports := map[string][]int{}
	for proto, s := range map[string]string{"tcp": *tcp, "udp": *udp, "sctp": *sctp, "http": *httpPorts} {
		p, err := parsePorts(s)
		if err != nil {
			logger.Printf("-%s: %v", proto, err)
			return 2
		}
		ports[proto] = p
	}
	srv := &server{id: identity(), logger: logger}
	if err := srv.serve(ctx, ports); err != nil {
		logger.Print(err)
		return 1
	}
	return 0
}

func runConnect(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("connect", flag.ContinueOnError)
	fs.SetOutput(stderr)
	proto := fs.String("protocol", "tcp", "default protocol: tcp, udp, sctp or http")
	timeout := fs.Duration("timeout", time.Second, "timeout of one attempt")
	count := fs.Int("count", 1, "attempts per target")
	interval := fs.Duration("interval", 200*time.Millisecond, "pause between attempts")
	keep := fs.Bool("keep", false, "tcp: make every attempt on one connection per target (dialled once), to check that an established connection survives")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 || *count < 1 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var targets []target
	for _, a := range fs.Args() {
		t, err := parseTarget(a, *proto)
		if err != nil {
			fmt.Fprintln(stderr, "netprobe:", err)
			return 2
		}
		targets = append(targets, t)
	}
	c := client{from: identity(), timeout: *timeout}
	if *keep {
		c.kept = map[target]*keptConn{}
		defer c.closeKept()
	}
	failed := false
	for i := 0; i < *count; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return 1
			case <-time.After(*interval):
			}
		}
		for _, t := range targets {
			r := c.attempt(ctx, t)
			failed = failed || !r.OK
			if err := r.write(stdout); err != nil {
				fmt.Fprintln(stderr, "netprobe:", err)
				return 1
			}
		}
	}
	if failed {
		return 1
	}
	return 0
}

// identity names this probe in replies and reports: the pod name when the
// downward API sets POD_NAME, else the host name (a pod's name by default).
func identity() string {
	if n := os.Getenv("POD_NAME"); n != "" {
		return n
	}
	h, _ := os.Hostname()
	return h
}

func parsePorts(s string) ([]int, error) {
	var ports []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("invalid port %q (want 1-65535)", f)
		}
		ports = append(ports, p)
	}
	return ports, nil
}

// errNoSCTP reports a kernel without SCTP sockets.
var errNoSCTP = errors.New("this kernel has no SCTP sockets (module sctp not loaded or not built)")
