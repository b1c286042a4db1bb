//go:build linux

package probe

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/kubectl-netpol/kubectl-netpol/internal/privileged"
)

// requireRoot fails in CI (env CI set) and skips elsewhere when the test
// cannot create namespaces and load BPF programs.
func requireRoot(t testing.TB) {
	t.Helper()
	privileged.Require(t, "datapath", "ip", "nft")
}

var nsSeq atomic.Int64

// testNS is a named network namespace the test created.
type testNS struct {
	name string
	h    netns.NsHandle
}

func newNS(t testing.TB, role string) *testNS {
	t.Helper()
	name := fmt.Sprintf("%s%d-%s%d", nsPrefix(), os.Getpid(), role, nsSeq.Add(1))
	return &testNS{name: name, h: privileged.NewNamedNS(t, name)}
}

// in runs fn inside the namespace.
func (n *testNS) in(fn func() error) error { return privileged.In(n.h, fn) }

func (n *testNS) run(t testing.TB, args ...string) string {
	t.Helper()
	return privileged.RunIn(t, n.name, args...)
}

func (n *testNS) try(args ...string) (string, error) { return privileged.TryIn(n.name, args...) }

func (n *testNS) nft(t testing.TB, script string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "rules.nft")
	if err := os.WriteFile(f, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	n.run(t, "nft", "-f", f)
}

// pod is a pod network namespace wired to the node namespace.
type pod struct {
	*testNS
	podName string
	ip4     netip.Addr
	ip6     netip.Addr
	hostIf  string // host-side interface in the node namespace
}

// topology is a node namespace with pods, in the routed /32 layout (each
// pod its own veth and host routes) or the bridge layout.
type topology struct {
	node   *testNS
	bridge bool
	pods   map[string]*pod
	n      int
}

func newTopology(t testing.TB, bridge bool) *topology {
	t.Helper()
	tp := &topology{node: newNS(t, "node"), bridge: bridge, pods: map[string]*pod{}}
	tp.node.run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	// The kernel's conntrack is switched on in a namespace by rules that
	// need it (kube-proxy's, in a cluster); this table does it here.
	tp.node.nft(t, `table inet netpolct {
  chain ctforward {
    type filter hook forward priority 0;
    ct state new counter
  }
  chain ctoutput {
    type filter hook output priority 0;
    ct state new counter
  }
  chain ctinput {
    type filter hook input priority 0;
    ct state new counter
  }
}
`)
	if bridge {
		tp.node.run(t, "ip", "link", "add", "br0", "type", "bridge")
		tp.node.run(t, "ip", "addr", "add", "10.77.1.1/24", "dev", "br0")
		tp.node.run(t, "ip", "-6", "addr", "add", "fd77:1::1/64", "dev", "br0", "nodad")
		tp.node.run(t, "ip", "link", "set", "br0", "up")
		tp.node.run(t, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1", "net.bridge.bridge-nf-call-ip6tables=1")
	}
	return tp
}

// addPod creates pod name with the next addresses.
func (tp *topology) addPod(t testing.TB, name string) *pod {
	t.Helper()
	tp.n++
	i := tp.n
	p := &pod{testNS: newNS(t, "pod"), podName: name, hostIf: fmt.Sprintf("h%d", i)}
	if tp.bridge {
		p.ip4 = netip.MustParseAddr(fmt.Sprintf("10.77.1.%d", 10+i))
		p.ip6 = netip.MustParseAddr(fmt.Sprintf("fd77:1::%x", 0x10+i))
	} else {
		p.ip4 = netip.MustParseAddr(fmt.Sprintf("10.77.0.%d", 10+i))
		p.ip6 = netip.MustParseAddr(fmt.Sprintf("fd77::%x", 0x10+i))
	}
	tp.node.run(t, "ip", "link", "add", p.hostIf, "type", "veth", "peer", "name", "eth0", "netns", p.name)
	tp.node.run(t, "ip", "link", "set", p.hostIf, "up")
	p.run(t, "ip", "link", "set", "eth0", "up")
	p.run(t, "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1")
	if tp.bridge {
		tp.node.run(t, "ip", "link", "set", p.hostIf, "master", "br0")
		p.run(t, "ip", "addr", "add", p.ip4.String()+"/24", "dev", "eth0")
		p.run(t, "ip", "-6", "addr", "add", p.ip6.String()+"/64", "dev", "eth0", "nodad")
		// Only test ranges are routed, and only to the node: no default route.
		for _, dst := range []string{"10.77.0.0/16", "192.0.2.0/24"} {
			p.run(t, "ip", "route", "add", dst, "via", "10.77.1.1")
		}
	} else {
		tp.node.run(t, "ip", "addr", "add", "169.254.1.1/32", "dev", p.hostIf)
		tp.node.run(t, "ip", "-6", "addr", "add", "fe80::1/64", "dev", p.hostIf, "nodad")
		tp.node.run(t, "ip", "route", "add", p.ip4.String()+"/32", "dev", p.hostIf)
		tp.node.run(t, "ip", "-6", "route", "add", p.ip6.String()+"/128", "dev", p.hostIf)
		p.run(t, "ip", "addr", "add", p.ip4.String()+"/32", "dev", "eth0")
		p.run(t, "ip", "-6", "addr", "add", p.ip6.String()+"/128", "dev", "eth0", "nodad")
		p.run(t, "ip", "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
		for _, dst := range []string{"10.77.0.0/16", "192.0.2.0/24"} {
			p.run(t, "ip", "route", "add", dst, "via", "169.254.1.1", "dev", "eth0", "onlink")
		}
		p.run(t, "ip", "-6", "route", "add", "fd77::/32", "via", "fe80::1", "dev", "eth0")
	}
	tp.pods[name] = p
	return p
}

// waitReachable waits until from reaches every target over TCP on port (the
// datapath not yet restricting anything), so that neighbour discovery is
// done before verdicts are measured.
func waitReachable(t testing.TB, from *pod, port int, targets ...*pod) {
	t.Helper()
	for _, to := range targets {
		for _, ip := range []netip.Addr{to.ip4, to.ip6} {
			deadline := time.Now().Add(5 * time.Second)
			for {
				got, err := from.connect("tcp", ip, port, 300*time.Millisecond)
				if err == nil && got == to.podName {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("topology broken: %s cannot reach %s (%s:%d): %q %v", from.podName, to.podName, ip, port, got, err)
				}
			}
		}
	}
}

// acceptLoop listens on addr (in the calling thread's namespace) and hands
// every connection to handle until the test ends, when it also closes the
// connections still open (a revoked one never sees the peer's FIN).
func acceptLoop(t testing.TB, netw, addr string, handle func(net.Conn)) error {
	l, err := net.Listen(netw, addr)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			handle(c)
		}
	}()
	return nil
}

// serve starts TCP and UDP servers on the ports, answering with the pod
// name, until the test ends.
func (p *pod) serve(t testing.TB, ports ...int) {
	t.Helper()
	var wg sync.WaitGroup
	var closers []func()
	err := p.in(func() error {
		for _, port := range ports {
			for _, netw := range []string{"tcp", "tcp6"} {
				addr := fmt.Sprintf("%s:%d", p.ip4, port)
				if netw == "tcp6" {
					addr = fmt.Sprintf("[%s]:%d", p.ip6, port)
				}
				err := acceptLoop(t, netw, addr, func(c net.Conn) {
					fmt.Fprintf(c, "%s\n", p.podName)
					c.Close()
				})
				if err != nil {
					return err
				}
			}
			for _, netw := range []string{"udp", "udp6"} {
				addr := fmt.Sprintf("%s:%d", p.ip4, port)
				if netw == "udp6" {
					addr = fmt.Sprintf("[%s]:%d", p.ip6, port)
				}
				c, err := net.ListenPacket(netw, addr)
				if err != nil {
					return err
				}
				closers = append(closers, func() { c.Close() })
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, 64)
					for {
						_, from, err := c.ReadFrom(buf)
						if err != nil {
							return
						}
						c.WriteTo([]byte(p.podName+"\n"), from)
					}
				}()
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("serving in %s: %v", p.podName, err)
	}
	t.Cleanup(func() {
		for _, c := range closers {
			c()
		}
		wg.Wait()
	})
}

// connect opens a connection from p to addr:port over proto ("tcp" or
// "udp") and returns the answering pod's name, or an error when the
// datapath (or anything else) stopped it within timeout.
func (p *pod) connect(proto string, addr netip.Addr, port int, timeout time.Duration) (string, error) {
	var answer string
	err := p.in(func() error {
		target := netip.AddrPortFrom(addr, uint16(port)).String()
		c, err := net.DialTimeout(proto, target, timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		if proto == "udp" {
			if _, err := c.Write([]byte("hi\n")); err != nil {
				return err
			}
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		answer = strings.TrimSpace(line)
		return nil
	})
	return answer, err
}

// isTimeout reports a connection that got no answer (dropped packets).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, unix.ETIMEDOUT)
}

// nsPrefix starts every namespace name the tests create:
// NETPOL_TEST_NS_PREFIX, or "np" (engineers sharing a machine set their own).
func nsPrefix() string {
	if p := os.Getenv("NETPOL_TEST_NS_PREFIX"); p != "" {
		return p
	}
	return "np"
}
