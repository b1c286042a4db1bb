package main

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"syscall"
)

// SCTP has no stdlib support: these open one-to-one (SOCK_STREAM) SCTP sockets with syscalls
// and wrap them as net.Conn/net.Listener through os.File, so the TCP code paths serve them.

func sctpSocket() (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, syscall.IPPROTO_SCTP)
	if errors.Is(err, syscall.EPROTONOSUPPORT) || errors.Is(err, syscall.ESOCKTNOSUPPORT) {
		return -1, errNoSCTP
	}
	return fd, err
}

func listenSCTP(port int) (net.Listener, error) {
	fd, err := sctpSocket()
	if err != nil {
		return nil, err
	}
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: port}); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	if err := syscall.Listen(fd, 128); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "sctp-listener-"+strconv.Itoa(port))
	defer f.Close()
	return net.FileListener(f)
}

func exchangeSCTP(ctx context.Context, host string, port int) (string, error) {
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip4", host)
	if err != nil {
		return "", err
	}
	fd, err := sctpSocket()
	if err != nil {
		return "", err
	}
	var sa syscall.SockaddrInet4
	copy(sa.Addr[:], ips[0].To4())
	sa.Port = port
	// A blocking connect in a goroutine; closing the socket ends it when the context expires.
	done := make(chan error, 1)
	go func() { done <- syscall.Connect(fd, &sa) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		syscall.Shutdown(fd, syscall.SHUT_RDWR)
		syscall.Close(fd)
		<-done
		return "", ctx.Err()
	}
	if err != nil {
		syscall.Close(fd)
		return "", err
	}
	f := os.NewFile(uintptr(fd), "sctp-conn")
	defer f.Close()
	conn, err := net.FileConn(f)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return pingPong(ctx, conn)
}
