//go:build linux

package probe

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nfPriority is the hook priority of the netfilter programs: after
// conntrack (-200) and DNAT (-100) at LOCAL_OUT, before SNAT (100) at
// LOCAL_IN; FORWARD has no NAT hooks. The kernel refuses two BPF links at
// one hook and priority (EBUSY), so an upgrade attaches the new program at
// nfPriorityAlt (or back at nfPriority) next to the old one.
const (
	nfPriority    = -50
	nfPriorityAlt = -49
)

// nfDefrag is the kernel's NF_BPF_LINK_F_IP_DEFRAG (cilium/ebpf v0.22.0's
// NetfilterIPDefrag constant is 0): programs see reassembled packets.
const nfDefrag link.NetfilterAttachFlags = 1

type hook struct {
	name   string
	family link.NetfilterProtocolFamily
	hook   link.NetfilterInetHook
}

var hooks = []hook{
	{"ipv4_forward", link.NetfilterProtoIPv4, link.NetfilterInetForward},
	{"ipv4_local_in", link.NetfilterProtoIPv4, link.NetfilterInetLocalIn},
	{"ipv4_local_out", link.NetfilterProtoIPv4, link.NetfilterInetLocalOut},
	{"ipv6_forward", link.NetfilterProtoIPv6, link.NetfilterInetForward},
	{"ipv6_local_in", link.NetfilterProtoIPv6, link.NetfilterInetLocalIn},
	{"ipv6_local_out", link.NetfilterProtoIPv6, link.NetfilterInetLocalOut},
}

// attachment is the set of links of one network namespace.
type attachment struct {
	name  string
	ns    netns.NsHandle
	links []link.Link
}

func (a *attachment) close() {
	for _, l := range a.links {
		l.Close()
	}
	a.ns.Close()
}

var attachName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// Attach enforces policy in the network namespace of the calling OS thread
// (lock it with runtime.LockOSThread and enter the namespace first). name
// identifies the namespace in the pin directory (e.g. "node").
//
// Links are pinned, so enforcement outlives the process. When pins from a
// previous run exist and run the same program, they are kept; when they run
// another program (an upgrade), the new links are attached first and then
// replace the old pins, so there is no moment without enforcement. Links
// that another LayoutVersion pinned under the same name (an upgrade across
// layouts: they still enforce with maps nobody updates) hold the hooks at
// the usual priority, so the new links take the alternate one; once all are
// attached and this process has applied a policy (now, or at the first
// Apply after Attach), the old layout's links of that name are removed, and
// its directory too when nothing else is attached through it.
func (p *Probe) Attach(name string) error {
	if !attachName.MatchString(name) {
		return fmt.Errorf("attach name %q: use 1-64 letters, digits, '_' or '-' (bpffs refuses dots)", name)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ns, err := netns.Get()
	if err != nil {
		return fmt.Errorf("opening the current network namespace: %w", err)
	}
	a := &attachment{name: name, ns: ns}
	dir := filepath.Join(p.dir, "links", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		a.close()
		return fmt.Errorf("creating link pin directory: %w", err)
	}
	tag, err := progTag(p.objs.NetpolNf)
	if err != nil {
		a.close()
		return err
	}
	for _, h := range hooks {
		l, err := p.attachHook(h, filepath.Join(dir, h.name), tag)
		if err != nil {
			a.close()
			return fmt.Errorf("attaching %s in %q: %w", h.name, name, err)
		}
		a.links = append(a.links, l)
	}
	p.attach = append(p.attach, a)
	if p.state.dp == nil {
		// These maps hold no policy yet: the new links allow everything
		// while the older layout's still enforce (a packet passes only
		// if every program accepts it). The first Apply retires them.
		p.pendingRetire = append(p.pendingRetire, name)
		return nil
	}
	if err := p.retireLayouts(name); err != nil {
		return fmt.Errorf("attached in %q, but removing an older layout's links: %w", name, err)
	}
	return nil
}

func (p *Probe) attachHook(h hook, pin string, tag string) (link.Link, error) {
	if old, err := link.LoadPinnedLink(pin, nil); err == nil {
		if same, _ := linkRunsTag(old, tag); same && !p.replaceLinks {
			return old, nil
		}
		// Upgrade: attach the new program next to the old one, then let the
		// new pin replace the old (rename is atomic in bpffs); closing the
		// last reference to the old link detaches it.
		prio := int32(nfPriority)
		if info, err := old.Info(); err == nil {
			if nf := info.Netfilter(); nf != nil && nf.Priority == nfPriority {
				prio = nfPriorityAlt
			}
		}
		nl, err := p.attachNetfilter(h, prio)
		if err != nil {
			old.Close()
			return nil, err
		}
		tmp := pin + "_new" // bpffs refuses names with dots
		os.Remove(tmp)
		if err := nl.Pin(tmp); err != nil {
			nl.Close()
			old.Close()
			return nil, fmt.Errorf("pinning: %w", err)
		}
		if err := os.Rename(tmp, pin); err != nil {
			nl.Unpin()
			nl.Close()
			old.Close()
			return nil, fmt.Errorf("replacing pin: %w", err)
		}
		old.Close()
		return nl, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("opening pinned link %s: %w", pin, err)
	}
	l, err := p.attachNetfilter(h, nfPriority)
	if errors.Is(err, unix.EBUSY) {
		// Another layout version's link holds the hook at this priority
		// (an upgrade across layouts): run beside it until
		// RetireOtherLayouts removes it.
		l, err = p.attachNetfilter(h, nfPriorityAlt)
	}
	if err != nil {
		return nil, err
	}
	if err := l.Pin(pin); err != nil {
		l.Close()
		return nil, fmt.Errorf("pinning link: %w", err)
	}
	return l, nil
}

func (p *Probe) attachNetfilter(h hook, prio int32) (link.Link, error) {
	return link.AttachNetfilter(link.NetfilterOptions{
		Program:        p.objs.NetpolNf,
		ProtocolFamily: h.family,
		Hook:           h.hook,
		Priority:       prio,
		NetfilterFlags: nfDefrag,
	})
}

func progTag(prog *ebpf.Program) (string, error) {
	info, err := prog.Info()
	if err != nil {
		return "", fmt.Errorf("reading program info: %w", err)
	}
	return info.Tag, nil
}

func linkRunsTag(l link.Link, tag string) (bool, error) {
	info, err := l.Info()
	if err != nil {
		return false, err
	}
	prog, err := ebpf.NewProgramFromID(info.Program)
	if err != nil {
		return false, err
	}
	defer prog.Close()
	t, err := progTag(prog)
	return t == tag, err
}

// unpinLinks removes every pinned link under dir, detaching those no process
// holds open.
var layoutDir = regexp.MustCompile(`^v[0-9]+$`)

// otherLayouts lists the pin directories of other layout versions.
func (p *Probe) otherLayouts() ([]string, error) {
	root := filepath.Dir(p.dir)
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("reading pin root: %w", err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && layoutDir.MatchString(e.Name()) && e.Name() != LayoutVersion {
			out = append(out, filepath.Join(root, e.Name()))
		}
	}
	return out, nil
}

// retireLayouts removes the links other layout versions pinned under name
// (which detaches their programs), and a layout's whole directory (its
// maps) once no attachment is left in it.
func (p *Probe) retireLayouts(name string) error {
	dirs, err := p.otherLayouts()
	if err != nil {
		return err
	}
	var errs []error
	for _, dir := range dirs {
		links := filepath.Join(dir, "links", name)
		if err := unpinLinks(links); err != nil {
			errs = append(errs, fmt.Errorf("detaching layout %s: %w", filepath.Base(dir), err))
			continue
		}
		if err := os.RemoveAll(links); err != nil {
			errs = append(errs, err)
			continue
		}
		if left, _ := os.ReadDir(filepath.Join(dir, "links")); len(left) == 0 {
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// RetireOtherLayouts removes everything other layout versions left under the
// pin root, whatever namespace they were attached in: links (detaching their
// programs) and maps. Attach already does this for its own name; this is
// for the rest. It returns the directories removed.
func (p *Probe) RetireOtherLayouts() ([]string, error) {
	dirs, err := p.otherLayouts()
	if err != nil {
		return nil, err
	}
	var retired []string
	var errs []error
	for _, dir := range dirs {
		if err := unpinLinks(filepath.Join(dir, "links")); err != nil {
			errs = append(errs, fmt.Errorf("detaching layout %s: %w", filepath.Base(dir), err))
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("removing layout %s: %w", filepath.Base(dir), err))
			continue
		}
		retired = append(retired, filepath.Base(dir))
	}
	return retired, errors.Join(errs...)
}

func unpinLinks(dir string) error {
	var errs []error
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if l, err := link.LoadPinnedLink(path, nil); err == nil {
			errs = append(errs, l.Unpin())
			l.Close()
		}
		return nil
	})
	return errors.Join(errs...)
}

// addr16 is the map form of an address: IPv4 as IPv4-mapped IPv6.
func addr16(a netip.Addr) [16]uint8 {
	if a.Is4() {
		return netip.AddrFrom16(a.As16()).As16()
	}
	return a.As16()
}

// lockedNetns runs fn on a locked OS thread inside ns.
func lockedNetns(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is left locked (and so discarded) if restoring fails.
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if orig.Equal(ns) {
			// Already there: no setns, which needs CAP_SYS_ADMIN (the
			// agent runs in the node's namespace without it).
			err = fn()
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
