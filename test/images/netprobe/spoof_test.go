package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// The forged packets are well formed: valid IPv4 header and TCP/UDP
// checksums, the addresses and ports asked for.
func TestForgedPacket(t *testing.T) {
	src, dst := netip.MustParseAddrPort("10.244.0.7:41000"), netip.MustParseAddrPort("10.244.0.9:3306")
	for _, proto := range []string{"tcp", "udp"} {
		p := forgedPacket(proto, src, dst)
		if checksum(p[:20], 0) != 0 {
			t.Errorf("%s: IPv4 header checksum does not verify", proto)
		}
		if got := netip.AddrFrom4([4]byte(p[12:16])); got != src.Addr() {
			t.Errorf("%s: source %s", proto, got)
		}
		if int(binary.BigEndian.Uint16(p[2:])) != len(p) {
			t.Errorf("%s: total length %d, packet %d", proto, binary.BigEndian.Uint16(p[2:]), len(p))
		}
		l4 := p[20:]
		if l4Checksum(src.Addr(), dst.Addr(), p[9], l4) != 0 && !(proto == "udp" && l4Checksum(src.Addr(), dst.Addr(), p[9], l4) == 0xffff) {
			t.Errorf("%s: checksum does not verify", proto)
		}
		if binary.BigEndian.Uint16(l4[0:]) != src.Port() || binary.BigEndian.Uint16(l4[2:]) != dst.Port() {
			t.Errorf("%s: ports %d -> %d", proto, binary.BigEndian.Uint16(l4[0:]), binary.BigEndian.Uint16(l4[2:]))
		}
	}
	if p := forgedPacket("tcp", src, dst); p[9] != 6 || p[20+13] != 0x02 {
		t.Errorf("tcp: protocol %d flags %#x, want 6 and SYN", p[9], p[20+13])
	}
}

// A forged datagram really arrives, from the forged address (over loopback:
// the kernel takes it as any other packet).
func TestSpoofSendsForgedSource(t *testing.T) {
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI is set but sending raw packets needs Linux and root (CAP_NET_RAW)")
		}
		t.Skip("sending raw packets needs Linux and root (CAP_NET_RAW)")
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := c.LocalAddr().(*net.UDPAddr).Port
	var out, errOut bytes.Buffer
	args := []string{"spoof", "-source", "127.0.0.99", "-sport", "41234", "-protocol", "udp", "-count", "1", "127.0.0.1:" + strconv.Itoa(port)}
	if code := run(context.Background(), args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 16)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("the forged datagram did not arrive: %v", err)
	}
	if from != netip.MustParseAddrPort("127.0.0.99:41234") || string(buf[:n]) != "ping\n" {
		t.Errorf("got %q from %s, want \"ping\\n\" from 127.0.0.99:41234", buf[:n], from)
	}
	if !bytes.Contains(out.Bytes(), []byte(`"source":"127.0.0.99"`)) {
		t.Errorf("report %q", out.String())
	}
}

func TestSpoofBadInput(t *testing.T) {
	for _, args := range [][]string{{"spoof", "10.0.0.1:80"}, {"spoof", "-source", "fd00::1", "10.0.0.1:80"},
		{"spoof", "-source", "10.0.0.2", "nohost"}, {"spoof", "-source", "10.0.0.2", "-protocol", "sctp", "10.0.0.1:80"}} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), args, &out, &errOut); code != 2 || errOut.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut.String())
		}
	}
}
