//go:build !linux

package main

import "net/netip"

func sendRaw([]byte, netip.Addr) error { return errNoRaw }
