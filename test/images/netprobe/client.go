package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// target is one HOST:PORT to probe over a protocol.
type target struct {
	host  string
	port  int
	proto string
}

// parseTarget accepts HOST:PORT (with the default protocol) or PROTO://HOST:PORT.
func parseTarget(s, defaultProto string) (target, error) {
	proto := defaultProto
	if p, rest, ok := strings.Cut(s, "://"); ok {
		proto, s = p, rest
	}
	switch proto {
	case "tcp", "udp", "sctp", "http":
	default:
		return target{}, fmt.Errorf("target %q: unknown protocol %q (want tcp, udp, sctp or http)", s, proto)
	}
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		return target{}, fmt.Errorf("target %q: want HOST:PORT: %v", s, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return target{}, fmt.Errorf("target %q: invalid port %q", s, portStr)
	}
	return target{host: host, port: port, proto: proto}, nil
}

// result is the JSON report of one attempt.
type result struct {
	From     string  `json:"from"`
	To       string  `json:"to"`
	Port     int     `json:"port"`
	Protocol string  `json:"protocol"`
	OK       bool    `json:"ok"`
	Error    string  `json:"error,omitempty"`
	Reply    string  `json:"reply,omitempty"`
	Ms       float64 `json:"ms"`
}

func (r result) write(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// client runs attempts; every attempt is bounded by timeout, name resolution included.
type client struct {
	from    string
	timeout time.Duration
	kept    map[target]*keptConn // with -keep: one TCP connection per target
}

// keptConn is a TCP connection reused by every attempt; once it fails it
// stays failed (a reset must show, not be hidden by a new dial).
type keptConn struct {
	conn net.Conn
	r    *bufio.Reader
	err  error
}

func (c client) closeKept() {
	for _, k := range c.kept {
		if k.conn != nil {
			k.conn.Close()
		}
	}
}

// exchangeKept does one ping/pong on the target's kept connection.
func (c client) exchangeKept(ctx context.Context, t target) (string, error) {
	k := c.kept[t]
	if k == nil {
		k = &keptConn{}
		c.kept[t] = k
		var d net.Dialer
		if k.conn, k.err = d.DialContext(ctx, "tcp", net.JoinHostPort(t.host, strconv.Itoa(t.port))); k.err == nil {
			k.r = bufio.NewReader(k.conn)
		}
	}
	if k.err != nil {
		return "", k.err
	}
	if dl, ok := ctx.Deadline(); ok {
		k.conn.SetDeadline(dl)
	}
	if _, k.err = k.conn.Write([]byte("ping\n")); k.err != nil {
		return "", k.err
	}
	var line string
	if line, k.err = k.r.ReadString('\n'); k.err != nil {
		return "", k.err
	}
	return strings.TrimSpace(line), nil
}

func (c client) attempt(ctx context.Context, t target) result {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	start := time.Now()
	var reply string
	var err error
	switch t.proto {
	case "tcp", "udp":
		if c.kept != nil && t.proto == "tcp" {
			reply, err = c.exchangeKept(ctx, t)
		} else {
			reply, err = c.exchange(ctx, t)
		}
	case "sctp":
		reply, err = exchangeSCTP(ctx, t.host, t.port)
	case "http":
		reply, err = c.httpGet(ctx, t)
	}
	r := result{From: c.from, To: t.host, Port: t.port, Protocol: t.proto, OK: err == nil, Reply: reply,
		Ms: float64(time.Since(start).Microseconds()) / 1000}
	if err != nil {
		r.Error = describe(err)
	}
	return r
}

// exchange sends "ping" and reads one reply line, over TCP or UDP.
func (c client) exchange(ctx context.Context, t target) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, t.proto, net.JoinHostPort(t.host, strconv.Itoa(t.port)))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return pingPong(ctx, conn)
}

// pingPong writes the probe and reads the server's reply before the context's deadline.
func pingPong(ctx context.Context, conn net.Conn) (string, error) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil && line == "" {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

func (c client) httpGet(ctx context.Context, t target) (string, error) {
	u := "http://" + net.JoinHostPort(t.host, strconv.Itoa(t.port)) + "/"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("http status %s", resp.Status)
	}
	return strings.TrimSpace(string(body)), nil
}

// describe turns an error into a short stable word for the report where one applies.
func describe(err error) string {
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable"
	case errors.As(err, &dnsErr):
		if dnsErr.IsTimeout {
			return "timeout (dns)"
		}
		return "dns: " + dnsErr.Err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return err.Error()
}
