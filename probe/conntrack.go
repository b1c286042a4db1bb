//go:build linux

package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/kubectl-netpol/kubectl-netpol/internal/ctnetlink"
)

// Conntrack over ctnetlink, for revocation. vishvananda/netlink's
// ConntrackDeleteFilters holds the whole table as one []byte per entry and
// decodes each into a ConntrackFlow before the filter sees it: at 120k
// entries (a node's TIME_WAIT at 1,000 connections a second) ~100 ms and
// tens of MB per stricter policy change. ctConn streams the dump through one
// buffer, decodes only the tuples, and can ask the kernel to filter by
// address (CTA_FILTER, Linux 5.8+), so a change that concerns a few
// addresses reads only their entries.

// ctEntry is the part of a conntrack entry revocation judges.
type ctEntry struct {
	proto            uint8
	origSrc, origDst netip.Addr
	origSport        uint16
	origDport        uint16
	replySrc         netip.Addr // the destination the datapath judged (after DNAT)
	replySport       uint16
}

// ctSide is a tuple of an entry an address is matched on; as a set of
// bits, the tuples a revocation reads for an address.
type ctSide uint8

const (
	ctOrigSource  ctSide = 1 << iota // the original direction's source: the address started the connection
	ctReplySource                    // the reply direction's source: it answered (the destination after DNAT)
	ctBothSides   = ctOrigSource | ctReplySource
)

// ctConn is a ctnetlink socket in one network namespace.
type ctConn struct {
	fd    int
	seq   uint32
	buf   []byte
	req   []byte
	entry ctEntry // the one dump passes to its callback, reused
}

// openConntrack opens ctnetlink in ns. Entering another namespace (setns)
// needs CAP_SYS_ADMIN, which the agent does not have: it runs in the node's
// namespace already, so that case opens the socket in place.
func openConntrack(ns netns.NsHandle) (*ctConn, error) {
	same := false
	if cur, err := netns.Get(); err == nil {
		same = cur.Equal(ns)
		cur.Close()
	}
	var fd int
	if same {
		var err error
		if fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER); err != nil {
			return nil, fmt.Errorf("opening a ctnetlink socket: %w", err)
		}
	} else {
		s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_NETFILTER)
		if err != nil {
			return nil, fmt.Errorf("opening a ctnetlink socket: %w", err)
		}
		// The socket stays open as fd; s only created it in ns.
		if fd, err = unix.Dup(s.GetFd()); err != nil {
			s.Close()
			return nil, fmt.Errorf("opening a ctnetlink socket: %w", err)
		}
		s.Close()
	}
	// Unbound: the first send binds it. The kernel fills each dump batch up
	// to the reader's buffer, at most 32 KiB less overhead (netlink_recvmsg's
	// max_recvmsg_len).
	return &ctConn{fd: fd, buf: make([]byte, 64<<10)}, nil
}

func (c *ctConn) Close() error { return unix.Close(c.fd) }

// request starts a message of type typ with the nfgenmsg header for family.
func (c *ctConn) request(typ uint16, flags uint16, family uint8) {
	c.seq++
	c.req = c.req[:0]
	c.req = binary.NativeEndian.AppendUint32(c.req, 0) // length, set by send
	c.req = binary.NativeEndian.AppendUint16(c.req, typ)
	c.req = binary.NativeEndian.AppendUint16(c.req, unix.NLM_F_REQUEST|flags)
	c.req = binary.NativeEndian.AppendUint32(c.req, c.seq)
	c.req = binary.NativeEndian.AppendUint32(c.req, 0)
	c.req = append(c.req, family, unix.NFNETLINK_V0, 0, 0)
}

// attr appends an attribute; nested ones are built by nest/end.
func (c *ctConn) attr(typ uint16, value []byte) {
	c.req = binary.NativeEndian.AppendUint16(c.req, uint16(unix.NLA_HDRLEN+len(value)))
	c.req = binary.NativeEndian.AppendUint16(c.req, typ)
	c.req = append(c.req, value...)
	for len(c.req)%unix.NLA_ALIGNTO != 0 {
		c.req = append(c.req, 0)
	}
}

func (c *ctConn) nest(typ uint16) int {
	at := len(c.req)
	c.attr(typ|unix.NLA_F_NESTED, nil)
	return at
}

func (c *ctConn) end(at int) {
	binary.NativeEndian.PutUint16(c.req[at:], uint16(len(c.req)-at))
}

func (c *ctConn) send() error {
	binary.NativeEndian.PutUint32(c.req, uint32(len(c.req)))
	return unix.Sendto(c.fd, c.req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

// dump walks the table of family (unix.AF_INET or AF_INET6), calling fn
// with each entry and its attributes (valid during the call only). With a
// valid addr, the kernel returns only the entries whose side tuple has addr
// as its source.
func (c *ctConn) dump(family uint8, side ctSide, addr netip.Addr, fn func(e *ctEntry, attrs []byte) error) error {
	c.request(ctnetlink.MsgGet, unix.NLM_F_DUMP, family)
	if addr.IsValid() {
		tuple, flags := uint16(ctnetlink.TupleOrig), uint16(ctnetlink.FilterOrigFlags)
		if side == ctReplySource {
			tuple, flags = ctnetlink.TupleReply, ctnetlink.FilterReplyFlags
		}
		t := c.nest(tuple)
		ip := c.nest(ctnetlink.TupleIP)
		if addr.Is4() {
			a := addr.As4()
			c.attr(ctnetlink.IPv4Src, a[:])
		} else {
			a := addr.As16()
			c.attr(ctnetlink.IPv6Src, a[:])
		}
		c.end(ip)
		c.end(t)
		f := c.nest(ctnetlink.Filter)
		c.attr(flags, binary.NativeEndian.AppendUint32(nil, ctnetlink.FilterFlagIPSrc))
		c.end(f)
	}
	if err := c.send(); err != nil {
		return fmt.Errorf("requesting the conntrack table: %w", err)
	}
	var fnErr error
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("reading the conntrack table: %w", err)
		}
		for b := c.buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
			l := int(binary.NativeEndian.Uint32(b))
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				return fmt.Errorf("reading the conntrack table: a message of %d bytes in %d", l, len(b))
			}
			typ := binary.NativeEndian.Uint16(b[4:])
			seq := binary.NativeEndian.Uint32(b[8:])
			msg := b[unix.NLMSG_HDRLEN:l]
			b = b[min(nlmsgAlign(l), len(b)):]
			if seq != c.seq {
				continue
			}
			switch typ {
			case unix.NLMSG_DONE:
				return fnErr
			case unix.NLMSG_ERROR:
				if len(msg) >= 4 {
					if errno := -int32(binary.NativeEndian.Uint32(msg)); errno != 0 {
						return fmt.Errorf("reading the conntrack table: %w", unix.Errno(errno))
					}
				}
				return fnErr
			}
			if len(msg) < 4 || fnErr != nil {
				continue // the nfgenmsg header; after an error, drain to DONE
			}
			attrs := msg[4:]
			c.entry = ctEntry{}
			if parseCtEntry(attrs, &c.entry) {
				fnErr = fn(&c.entry, attrs)
			}
		}
	}
}

// delete removes the entry whose dump attributes are attrs (its original
// tuple, zone and id: a newer entry with the same tuple is left alone). An
// entry gone already is not an error.
func (c *ctConn) delete(family uint8, attrs []byte) error {
	c.request(ctnetlink.MsgDelete, unix.NLM_F_ACK, family)
	tuple := false
	ctnetlink.Attrs(attrs, func(typ uint16, v []byte) {
		switch typ {
		case ctnetlink.TupleOrig:
			c.attr(typ|unix.NLA_F_NESTED, v)
			tuple = true
		case ctnetlink.Zone, ctnetlink.ID:
			c.attr(typ, v)
		}
	})
	if !tuple {
		// A delete without a tuple is a flush of the whole table.
		return errors.New("deleting a conntrack entry: its dump has no original tuple")
	}
	if err := c.send(); err != nil {
		return fmt.Errorf("deleting a conntrack entry: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("deleting a conntrack entry: %w", err)
		}
		for b := c.buf[:n]; len(b) >= unix.NLMSG_HDRLEN+4; {
			l := int(binary.NativeEndian.Uint32(b))
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				break
			}
			typ := binary.NativeEndian.Uint16(b[4:])
			seq := binary.NativeEndian.Uint32(b[8:])
			if typ == unix.NLMSG_ERROR && seq == c.seq {
				switch errno := unix.Errno(-int32(binary.NativeEndian.Uint32(b[unix.NLMSG_HDRLEN:]))); errno {
				case 0, unix.ENOENT:
					return nil
				default:
					return fmt.Errorf("deleting a conntrack entry: %w", errno)
				}
			}
			b = b[min(nlmsgAlign(l), len(b)):]
		}
	}
}

func nlmsgAlign(l int) int { return (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// parseCtEntry reads the tuples of one dumped entry; false when either is
// missing or malformed.
func parseCtEntry(attrs []byte, e *ctEntry) bool {
	var orig, reply ctnetlink.Tuple
	ctnetlink.Attrs(attrs, func(typ uint16, v []byte) {
		switch typ {
		case ctnetlink.TupleOrig:
			ctnetlink.DecodeTuple(v, &orig)
		case ctnetlink.TupleReply:
			ctnetlink.DecodeTuple(v, &reply)
		}
	})
	if !orig.Src.IsValid() || !orig.Dst.IsValid() || !reply.Src.IsValid() {
		return false
	}
	*e = ctEntry{proto: orig.Proto, origSrc: orig.Src, origDst: orig.Dst, origSport: orig.Sport, origDport: orig.Dport,
		replySrc: reply.Src, replySport: reply.Sport}
	return true
}
