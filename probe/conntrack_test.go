//go:build linux

package probe

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ctFixture is a conntrack entry a test creates over ctnetlink: orig
// src:sport -> dst:dport, answered by replySrc:replySport (DNAT when it
// differs from dst).
type ctFixture struct {
	proto                    uint8
	src, dst, replySrc       string
	sport, dport, replySport uint16
}

func (f ctFixture) create(t testing.TB, h *netlink.Handle) {
	t.Helper()
	src, dst, rsrc := net.ParseIP(f.src), net.ParseIP(f.dst), net.ParseIP(f.replySrc)
	var fam netlink.InetFamily = netlink.FAMILY_V6
	if src.To4() != nil {
		// netlink writes the slice as given: an IPv4 attribute takes 4 bytes.
		fam, src, dst, rsrc = netlink.FAMILY_V4, src.To4(), dst.To4(), rsrc.To4()
	}
	fl := &netlink.ConntrackFlow{FamilyType: uint8(fam), TimeOut: 600,
		Forward: netlink.IPTuple{Protocol: f.proto, SrcIP: src, DstIP: dst, SrcPort: f.sport, DstPort: f.dport},
		Reverse: netlink.IPTuple{Protocol: f.proto, SrcIP: rsrc, DstIP: src, SrcPort: f.replySport, DstPort: f.sport}}
	if f.proto == unix.IPPROTO_TCP {
		fl.ProtoInfo = &netlink.ProtoInfoTCP{State: 3} // established
	}
	if err := h.ConntrackCreate(netlink.ConntrackTable, fam, fl); err != nil {
		t.Fatalf("creating conntrack entry %+v: %v", f, err)
	}
}

func (e *ctEntry) String() string {
	return fmt.Sprintf("%d %s:%d->%s:%d reply from %s:%d", e.proto, e.origSrc, e.origSport, e.origDst, e.origDport, e.replySrc, e.replySport)
}

// TestConntrackFilteredDump: the kernel returns only the entries of an
// address on the chosen side (as the original source; as the reply's
// source, which a DNAT entry's backend is), the tuples decode, and an entry
// deleted by its dump attributes goes while the others stay.
func TestConntrackFilteredDump(t *testing.T) {
	requireRoot(t)
	ns := newNS(t, "ct")
	h, err := netlink.NewHandleAt(ns.h, unix.NETLINK_NETFILTER)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fixtures := []ctFixture{
		{proto: unix.IPPROTO_UDP, src: "10.1.0.1", sport: 1000, dst: "10.1.0.2", dport: 80, replySrc: "10.1.0.2", replySport: 80},
		// to a ClusterIP, DNATed to 10.1.0.1:5353
		{proto: unix.IPPROTO_UDP, src: "10.1.0.3", sport: 1001, dst: "10.96.0.10", dport: 53, replySrc: "10.1.0.1", replySport: 5353},
		{proto: unix.IPPROTO_TCP, src: "10.1.0.4", sport: 1002, dst: "10.1.0.5", dport: 443, replySrc: "10.1.0.5", replySport: 443},
		{proto: unix.IPPROTO_TCP, src: "fd00::1", sport: 1003, dst: "fd00::2", dport: 443, replySrc: "fd00::2", replySport: 443},
	}
	for _, f := range fixtures {
		f.create(t, h)
	}
	c, err := openConntrack(ns.h)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	type read struct {
		e     ctEntry
		attrs []byte
	}
	dump := func(fam uint8, side ctSide, addr string) []read {
		t.Helper()
		var a netip.Addr
		if addr != "" {
			a = netip.MustParseAddr(addr)
		}
		var got []read
		if err := c.dump(fam, side, a, func(e *ctEntry, attrs []byte) error {
			got = append(got, read{*e, slices.Clone(attrs)})
			return nil
		}); err != nil {
			t.Fatalf("dump %d %d %q: %v", fam, side, addr, err)
		}
		return got
	}
	sources := func(rs []read) []string {
		var s []string
		for _, r := range rs {
			s = append(s, r.e.origSrc.String())
		}
		slices.Sort(s)
		return s
	}

	all := dump(unix.AF_INET, 0, "")
	if got := sources(all); !slices.Equal(got, []string{"10.1.0.1", "10.1.0.3", "10.1.0.4"}) {
		t.Fatalf("whole IPv4 table: sources %v", got)
	}
	for _, r := range all {
		if r.e.origSrc.String() != "10.1.0.3" {
			continue
		}
		want := ctEntry{proto: unix.IPPROTO_UDP, origSrc: netip.MustParseAddr("10.1.0.3"), origSport: 1001,
			origDst: netip.MustParseAddr("10.96.0.10"), origDport: 53, replySrc: netip.MustParseAddr("10.1.0.1"), replySport: 5353}
		if r.e != want {
			t.Errorf("DNAT entry decoded as %s, want %s", &r.e, &want)
		}
	}
	if got := sources(dump(unix.AF_INET, ctOrigSource, "10.1.0.1")); !slices.Equal(got, []string{"10.1.0.1"}) {
		t.Errorf("entries from 10.1.0.1: sources %v, want only its own", got)
	}
	backend := dump(unix.AF_INET, ctReplySource, "10.1.0.1")
	if got := sources(backend); !slices.Equal(got, []string{"10.1.0.3"}) {
		t.Errorf("entries answered by 10.1.0.1: sources %v, want the DNAT entry's client 10.1.0.3", got)
	}
	// What revocation reads for a change concerning 10.1.0.1 and fd00::2:
	// each entry with either as its source or as its reply's source, once
	// (IPv6 filtered in Go: the kernel's IPv6 address filter is inverted).
	var scope revokeScope
	scope.add(netip.MustParseAddr("10.1.0.1"), ctBothSides)
	scope.add(netip.MustParseAddr("fd00::2"), ctBothSides)
	var scoped []string
	if err := readEntries(c, &scope, func(fam uint8, e *ctEntry, _ []byte) {
		scoped = append(scoped, fmt.Sprintf("%d %s", fam, e.origSrc))
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(scoped)
	if want := []string{"10 fd00::1", "2 10.1.0.1", "2 10.1.0.3"}; !slices.Equal(scoped, want) {
		t.Errorf("entries read for 10.1.0.1 and fd00::2: %v, want %v", scoped, want)
	}
	// A change to their ingress only (the connections they answered): the
	// DNAT entry 10.1.0.1 answered, fd00::2's; not 10.1.0.1's own.
	var ingress revokeScope
	ingress.add(netip.MustParseAddr("10.1.0.1"), ctReplySource)
	ingress.add(netip.MustParseAddr("fd00::2"), ctReplySource)
	scoped = nil
	if err := readEntries(c, &ingress, func(fam uint8, e *ctEntry, _ []byte) {
		scoped = append(scoped, fmt.Sprintf("%d %s", fam, e.origSrc))
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(scoped)
	if want := []string{"10 fd00::1", "2 10.1.0.3"}; !slices.Equal(scoped, want) {
		t.Errorf("entries answered by 10.1.0.1 and fd00::2: %v, want %v", scoped, want)
	}
	if got := dump(unix.AF_INET, ctOrigSource, "10.9.9.9"); len(got) != 0 {
		t.Errorf("entries from an address with none: %d", len(got))
	}

	if len(backend) == 1 {
		if err := c.delete(unix.AF_INET, backend[0].attrs); err != nil {
			t.Fatal(err)
		}
		if got := sources(dump(unix.AF_INET, 0, "")); !slices.Equal(got, []string{"10.1.0.1", "10.1.0.4"}) {
			t.Errorf("after deleting the DNAT entry: sources %v", got)
		}
		if err := c.delete(unix.AF_INET, backend[0].attrs); err != nil {
			t.Errorf("deleting an entry gone already: %v", err)
		}
	}
	if err := c.delete(unix.AF_INET, nil); err == nil {
		t.Error("a delete without a tuple (a flush) was sent")
	}
	if got := sources(dump(unix.AF_INET6, 0, "")); !slices.Equal(got, []string{"fd00::1"}) {
		t.Errorf("IPv6 table: sources %v", got)
	}
}

// noMatch is a vishvananda/netlink filter that keeps every entry.
type noMatch struct{}

func (noMatch) MatchConntrackFlow(*netlink.ConntrackFlow) bool { return false }

// BenchmarkConntrackRevoke: reading a conntrack table of
// NETPOL_BENCH_CONNTRACK entries (default 120,000: a node's TIME_WAIT at
// 1,000 connections a second) for revocation: the whole table through
// vishvananda/netlink (before), the whole table through ctConn, and one
// address's entries filtered by the kernel (two dumps).
func BenchmarkConntrackRevoke(b *testing.B) {
	requireRoot(b)
	n := 120000
	if v, err := strconv.Atoi(os.Getenv("NETPOL_BENCH_CONNTRACK")); err == nil {
		n = v
	}
	ns := newNS(b, "ctb")
	h, err := netlink.NewHandleAt(ns.h, unix.NETLINK_NETFILTER)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	for i := range n {
		// 250 clients by 250 servers, another source port every 62,500.
		src, dst := fmt.Sprintf("10.2.1.%d", i%250+1), fmt.Sprintf("10.3.1.%d", i/250%250+1)
		ctFixture{proto: unix.IPPROTO_TCP, src: src, sport: uint16(1024 + i/62500), dst: dst, dport: 80,
			replySrc: dst, replySport: 80}.create(b, h)
	}
	c, err := openConntrack(ns.h)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var read int
	count := func(*ctEntry, []byte) error { read++; return nil }
	report := func(b *testing.B) {
		b.ReportMetric(float64(read)/float64(b.N), "entries/op")
		read = 0
	}
	b.Run("netlink-whole", func(b *testing.B) {
		for b.Loop() {
			if _, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, netlink.FAMILY_V4, noMatch{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("whole", func(b *testing.B) {
		for b.Loop() {
			if err := c.dump(unix.AF_INET, 0, netip.Addr{}, count); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("one-address-one-side", func(b *testing.B) {
		a := netip.MustParseAddr("10.2.1.7")
		for b.Loop() {
			if err := c.dump(unix.AF_INET, ctReplySource, a, count); err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	b.Run("one-address", func(b *testing.B) {
		a := netip.MustParseAddr("10.2.1.7")
		for b.Loop() {
			for _, side := range []ctSide{ctOrigSource, ctReplySource} {
				if err := c.dump(unix.AF_INET, side, a, count); err != nil {
					b.Fatal(err)
				}
			}
		}
		report(b)
	})
}
