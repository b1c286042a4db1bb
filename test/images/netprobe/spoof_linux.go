package main

import (
	"net/netip"
	"syscall"
)

// sendRaw sends a complete IPv4 packet (header included) toward dst.
func sendRaw(pkt []byte, dst netip.Addr) error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, syscall.IPPROTO_RAW)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, syscall.IP_HDRINCL, 1); err != nil {
		return err
	}
	return syscall.Sendto(fd, pkt, 0, &syscall.SockaddrInet4{Addr: dst.As4()})
}
