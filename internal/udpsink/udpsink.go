// Package udpsink is a helper of the privileged tests that send real
// packets between network namespaces: a UDP receiver that counts datagrams
// by source address, and a sender that can use any source address the
// sending namespace holds (its own, or one it forges). It lets a test tell
// "this source gets through" from "this source is dropped".
package udpsink

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// In runs a function inside a network namespace (on a thread in it).
type In func(func() error) error

// Sink counts the datagrams received, by source address.
type Sink struct {
	mu   sync.Mutex
	from map[netip.Addr]int
}

// Listen receives on every address in addrs, inside the namespace of in,
// until the test ends.
func Listen(t testing.TB, in In, addrs ...netip.AddrPort) *Sink {
	t.Helper()
	s := &Sink{from: map[netip.Addr]int{}}
	for _, addr := range addrs {
		err := in(func() error {
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
			if err != nil {
				return err
			}
			t.Cleanup(func() { c.Close() })
			go func() {
				buf := make([]byte, 16)
				for {
					_, from, err := c.ReadFromUDPAddrPort(buf)
					if err != nil {
						return
					}
					s.mu.Lock()
					s.from[from.Addr().Unmap()]++
					s.mu.Unlock()
				}
			}()
			return nil
		})
		if err != nil {
			t.Fatalf("listening on %s: %v", addr, err)
		}
	}
	return s
}

// Count is how many datagrams came from src.
func (s *Sink) Count(src netip.Addr) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.from[src]
}

// Send sends n datagrams from src (an address of the namespace of in) to
// dst.
func Send(t testing.TB, in In, src netip.Addr, dst netip.AddrPort, n int) {
	t.Helper()
	err := in(func() error {
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		for range n {
			c.Write([]byte("s"))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("sending from %s to %s: %v", src, dst, err)
	}
}

// Reaches reports whether datagrams sent from src reach the sink at dst
// within about half a second (a few rounds, so a first packet waiting for
// neighbour resolution does not count as a drop).
func (s *Sink) Reaches(t testing.TB, in In, src netip.Addr, dst netip.AddrPort) bool {
	t.Helper()
	before := s.Count(src)
	for range 10 {
		Send(t, in, src, dst, 3)
		time.Sleep(50 * time.Millisecond)
		if s.Count(src) > before {
			return true
		}
	}
	return false
}
