package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
)

// spoof sends IPv4 packets with a source address of the caller's choosing
// through a raw socket (IP_HDRINCL): the tests' forged packets, to show that
// a pod cannot pass as another. Nothing is read back: a forged packet's
// answer goes to the address it claimed.

func runSpoof(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("spoof", flag.ContinueOnError)
	fs.SetOutput(stderr)
	source := fs.String("source", "", "source address to put in the packets (IPv4; required)")
	sport := fs.Int("sport", 40000, "source port")
	proto := fs.String("protocol", "tcp", "tcp (a SYN) or udp (a datagram \"ping\")")
	count := fs.Int("count", 3, "packets to send")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	src, err := netip.ParseAddr(*source)
	if err != nil || !src.Is4() || fs.NArg() != 1 || *count < 1 || *sport < 1 || *sport > 65535 || (*proto != "tcp" && *proto != "udp") {
		fmt.Fprint(stderr, "netprobe spoof -source IPv4 [-sport N] [-protocol tcp|udp] [-count N] IPv4:PORT\n")
		return 2
	}
	dst, err := netip.ParseAddrPort(fs.Arg(0))
	if err != nil || !dst.Addr().Is4() {
		fmt.Fprintf(stderr, "netprobe: target %q: want IPv4:PORT\n", fs.Arg(0))
		return 2
	}
	pkt := forgedPacket(*proto, netip.AddrPortFrom(src, uint16(*sport)), dst)
	for range *count {
		if err := sendRaw(pkt, dst.Addr()); err != nil {
			fmt.Fprintln(stderr, "netprobe: sending a forged packet (needs CAP_NET_RAW):", err)
			return 1
		}
	}
	out, _ := json.Marshal(map[string]any{"from": identity(), "source": src.String(), "sport": *sport,
		"to": dst.Addr().String(), "port": dst.Port(), "protocol": *proto, "sent": *count})
	fmt.Fprintf(stdout, "%s\n", out)
	return 0
}

// forgedPacket is an IPv4 packet from src to dst: a TCP SYN or a UDP
// datagram carrying "ping".
func forgedPacket(proto string, src, dst netip.AddrPort) []byte {
	var l4 []byte
	var num byte
	switch proto {
	case "udp":
		num = 17
		payload := []byte("ping\n")
		l4 = make([]byte, 8+len(payload))
		binary.BigEndian.PutUint16(l4[0:], src.Port())
		binary.BigEndian.PutUint16(l4[2:], dst.Port())
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		copy(l4[8:], payload)
		binary.BigEndian.PutUint16(l4[6:], l4Checksum(src.Addr(), dst.Addr(), num, l4))
	default:
		num = 6
		l4 = make([]byte, 20)
		binary.BigEndian.PutUint16(l4[0:], src.Port())
		binary.BigEndian.PutUint16(l4[2:], dst.Port())
		binary.BigEndian.PutUint32(l4[4:], 0x4e50534e) // sequence number
		l4[12] = 5 << 4                                // data offset: 5 words
		l4[13] = 0x02                                  // SYN
		binary.BigEndian.PutUint16(l4[14:], 64240)     // window
		binary.BigEndian.PutUint16(l4[16:], l4Checksum(src.Addr(), dst.Addr(), num, l4))
	}
	ip := make([]byte, 20, 20+len(l4))
	ip[0] = 0x45 // version 4, 5 words
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
	binary.BigEndian.PutUint16(ip[4:], 0x4e50) // identification
	ip[8] = 64                                 // TTL
	ip[9] = num
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip, 0))
	return append(ip, l4...)
}

// l4Checksum is the TCP/UDP checksum over the IPv4 pseudo-header and seg.
func l4Checksum(src, dst netip.Addr, proto byte, seg []byte) uint16 {
	s, d := src.As4(), dst.As4()
	pseudo := append(append(s[:], d[:]...), 0, proto, byte(len(seg)>>8), byte(len(seg)))
	var sum uint32
	for i := 0; i < len(pseudo); i += 2 {
		sum += uint32(pseudo[i])<<8 | uint32(pseudo[i+1])
	}
	c := checksum(seg, sum)
	if proto == 17 && c == 0 {
		c = 0xffff // UDP: 0 means no checksum
	}
	return c
}

// checksum is the Internet checksum of b, starting from sum.
func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
