//go:build !linux

package main

import (
	"errors"
	"net/netip"
)

// errNoRaw reports a platform without raw IPv4 sockets here.
var errNoRaw = errors.New("raw IPv4 sockets are only implemented on Linux")

func sendRaw([]byte, netip.Addr) error { return errNoRaw }
