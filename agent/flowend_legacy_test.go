//go:build linux

package agent

import (
	"errors"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// legacyFlowEnds is the netlink listener as it was before issue 19 (one
// wake-up of the runtime poller and one recvmsg per event, decoded by
// ti-mo/conntrack), kept only so BenchmarkAgentAB measures old and new in
// one run. It feeds the same summaries (a.flowEnds).
func (a *Agent) legacyFlowEnds(netnsFD int) (stop func(), err error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netnsFD})
	if err != nil {
		return nil, err
	}
	if err := c.JoinGroup(uint32(netfilter.GroupCTDestroy)); err != nil {
		c.Close()
		return nil, err
	}
	if rc, err := c.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, flowEndSocketBuffer)
		})
	}
	events := make(chan flowEnd, flowEndQueue)
	recvDone, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(recvDone)
		defer close(events)
		rc, err := c.SyscallConn()
		if err != nil {
			return
		}
		buf := make([]byte, 64<<10)
		for {
			var n int
			var rerr error
			if err := rc.Read(func(fd uintptr) bool {
				n, _, _, _, rerr = unix.Recvmsg(int(fd), buf, nil, unix.MSG_DONTWAIT)
				return rerr != unix.EAGAIN && rerr != unix.EWOULDBLOCK
			}); err != nil {
				return
			}
			if errors.Is(rerr, unix.ENOBUFS) {
				a.metrics.FlowEndsLost.WithLabelValues(lostSocketOverrun).Inc()
				continue
			}
			if rerr != nil {
				continue
			}
			raw, err := syscall.ParseNetlinkMessage(buf[:n])
			if err != nil {
				continue
			}
			for _, r := range raw {
				var ev conntrack.Event
				m := netlink.Message{Header: netlink.Header{Length: r.Header.Len, Type: netlink.HeaderType(r.Header.Type),
					Flags: netlink.HeaderFlags(r.Header.Flags), Sequence: r.Header.Seq, PID: r.Header.Pid}, Data: r.Data}
				if ev.Unmarshal(m) != nil || ev.Type != conntrack.EventDestroy || ev.Flow == nil {
					continue
				}
				e := endOfConntrack(ev.Flow)
				e.at = time.Now()
				select {
				case events <- e:
				default:
					a.metrics.FlowEndsLost.WithLabelValues(lostQueueFull).Inc()
				}
			}
		}
	}()
	go func() { defer close(done); a.flowEnds(events) }()
	return func() { c.Close(); <-recvDone; <-done }, nil
}
