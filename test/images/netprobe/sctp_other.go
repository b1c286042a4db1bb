//go:build !linux

package main

import (
	"context"
	"net"
)

func listenSCTP(int) (net.Listener, error) { return nil, errNoSCTP }

func exchangeSCTP(context.Context, string, int) (string, error) { return "", errNoSCTP }
