//go:build linux

package probe

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// This kernel has no SCTP sockets (CONFIG_IP_SCTP is off) but conntrack
// tracks SCTP, so SCTP probes are raw INIT chunks: the sender writes one
// with a raw socket, the destination pod's raw socket records its arrival.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sctpInit is an SCTP packet with one INIT chunk; tag identifies the probe.
func sctpInit(sport, dport uint16, tag uint32) []byte {
	b := make([]byte, 12+20)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	// verification tag 0 for INIT; checksum at 8..12 computed last
	c := b[12:]
	c[0] = 1 // INIT
	binary.BigEndian.PutUint16(c[2:], 20)
	binary.BigEndian.PutUint32(c[4:], tag)    // initiate tag
	binary.BigEndian.PutUint32(c[8:], 65536)  // a_rwnd
	binary.BigEndian.PutUint16(c[12:], 1)     // outbound streams
	binary.BigEndian.PutUint16(c[14:], 1)     // inbound streams
	binary.BigEndian.PutUint32(c[16:], tag+1) // initial TSN
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b, castagnoli))
	return b
}

// sctpSink records the SCTP INITs that reach a pod.
type sctpSink struct {
	mu   sync.Mutex
	seen map[uint32]bool // initiate tags
}

// sctpSinks listens for SCTP INITs over IPv4 and IPv6.
func (p *pod) sctpSinks(t testing.TB) *sctpSink {
	t.Helper()
	s := &sctpSink{seen: map[uint32]bool{}}
	p.sctpListen(t, s, unix.AF_INET)
	p.sctpListen(t, s, unix.AF_INET6)
	return s
}

func (p *pod) sctpListen(t testing.TB, s *sctpSink, family int) {
	t.Helper()
	var fd int
	err := p.in(func() error {
		var err error
		fd, err = unix.Socket(family, unix.SOCK_RAW, unix.IPPROTO_SCTP)
		return err
	})
	if err != nil {
		t.Fatalf("raw SCTP socket in %s: %v", p.podName, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				return
			}
			// IPv4 raw sockets receive the IP header, IPv6 ones do not.
			ihl := 0
			if family == unix.AF_INET {
				if n < 20 {
					continue
				}
				ihl = int(buf[0]&0xf) * 4
			}
			if n < ihl+12+20 || buf[ihl+12] != 1 {
				continue
			}
			tag := binary.BigEndian.Uint32(buf[ihl+12+4:])
			s.mu.Lock()
			s.seen[tag] = true
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		unix.Shutdown(fd, unix.SHUT_RDWR)
		unix.Close(fd)
		<-done
	})
}

func (s *sctpSink) got(tag uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[tag]
}

// sendSCTP sends one INIT from p to dst:port.
func (p *pod) sendSCTP(dst netip.Addr, sport, dport uint16, tag uint32) error {
	return p.in(func() error {
		family := unix.AF_INET6
		var sa unix.Sockaddr = &unix.SockaddrInet6{Addr: dst.As16()}
		if dst.Is4() {
			family, sa = unix.AF_INET, &unix.SockaddrInet4{Addr: dst.As4()}
		}
		fd, err := unix.Socket(family, unix.SOCK_RAW, unix.IPPROTO_SCTP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, sctpInit(sport, dport, tag), 0, sa)
	})
}

// probeSCTP reports whether an INIT from p reaches sink within timeout.
func (p *pod) probeSCTP(sink *sctpSink, dst netip.Addr, dport uint16, tag uint32, timeout time.Duration) (bool, error) {
	if err := p.sendSCTP(dst, uint16(30000+tag%20000), dport, tag); err != nil {
		return false, fmt.Errorf("sending SCTP INIT: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if sink.got(tag) {
			return true, nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return sink.got(tag), nil
}
