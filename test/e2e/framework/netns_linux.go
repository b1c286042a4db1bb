package framework

import (
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// ListenOnNode listens on addr in the node's network namespace (the host's for the host node),
// where a hostNetwork pod on that node and its port-forward land. The socket stays in that
// namespace after the calling thread switches back.
func ListenOnNode(n Node, addr string) (net.Listener, error) {
	if n.NetNS == "" {
		return net.Listen("tcp", addr)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, err
	}
	defer self.Close()
	target, err := os.Open(n.NetNS)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("entering the network namespace of node %s: %w", n.Name, err)
	}
	lis, lerr := net.Listen("tcp", addr)
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// This thread is in the wrong namespace: never hand it back to the runtime.
		runtime.Goexit()
	}
	return lis, lerr
}
