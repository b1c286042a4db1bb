//go:build linux

package nodefacts

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/mdlayher/netlink"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kubectl-netpol/kubectl-netpol/internal/cni"
)

// Options say where to look; zero values are the node's usual places.
type Options struct {
	// ConfDir holds the CNI configuration files (default /etc/cni/net.d).
	ConfDir string
	// BPFFS is the bpffs root (default /sys/fs/bpf).
	BPFFS string
	// OwnPrefix names the programs to leave out: the agent's own (default "netpol_").
	OwnPrefix string
}

// Bounds keep one gathering cheap on a node with many pods: the CNI shows
// itself on a few pod interfaces as well as on all of them.
const (
	maxConfBytes  = 64 << 10
	maxPodLinksTC = 16
	maxPins       = 256
	maxChains     = 4096
	maxConfFiles  = 32
)

// Gather reads the facts in the calling thread's network namespace (lock
// the thread to be sure of it). What cannot be read is left out; the error
// joins what went wrong, for the log.
func Gather(o Options) (cni.Facts, error) {
	if o.ConfDir == "" {
		o.ConfDir = "/etc/cni/net.d"
	}
	if o.BPFFS == "" {
		o.BPFFS = "/sys/fs/bpf"
	}
	if o.OwnPrefix == "" {
		o.OwnPrefix = "netpol_"
	}
	var f cni.Facts
	var errs []error
	var err error
	f.ConfFiles, err = confFiles(o.ConfDir)
	errs = append(errs, err)
	f.Links, err = links(o.OwnPrefix)
	errs = append(errs, err)
	f.Pins = pins(o.BPFFS)
	f.Chains, err = NFTChains()
	errs = append(errs, err)
	return f, errors.Join(errs...)
}

func confFiles(dir string) (map[string]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, e := range ents {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".conf" && ext != ".conflist" && ext != ".json") || len(out) >= maxConfFiles {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil || len(b) > maxConfBytes {
			continue
		}
		out[e.Name()] = string(b)
	}
	return out, nil
}

func links(own string) ([]cni.Link, error) {
	ls, err := vnl.LinkList()
	if err != nil {
		return nil, err
	}
	names := map[int]string{}
	for _, l := range ls {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	out := make([]cni.Link, 0, len(ls))
	podLinks := 0
	for _, l := range ls {
		a := l.Attrs()
		cl := cni.Link{Name: a.Name, Kind: l.Type(), Master: names[a.MasterIndex]}
		cl.PodPeer = cl.Kind == "veth" && a.NetNsID >= 0
		if !cl.PodPeer || podLinks < maxPodLinksTC {
			if cl.PodPeer {
				podLinks++
			}
			cl.TCPrograms = tcPrograms(l, own)
		}
		out = append(out, cl)
	}
	return out, nil
}

// tcPrograms are the names of the tcx programs and the legacy tc BPF
// filters (cls_bpf) at the link's ingress and egress.
func tcPrograms(l vnl.Link, own string) []string {
	var out []string
	seen := map[string]bool{}
	addName := func(n string) {
		if n != "" && !strings.HasPrefix(n, own) && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		res, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: at})
		if err != nil {
			continue
		}
		for _, p := range res.Programs {
			prog, err := ebpf.NewProgramFromID(p.ID)
			if err != nil {
				continue
			}
			if info, err := prog.Info(); err == nil {
				addName(info.Name)
			}
			prog.Close()
		}
	}
	for _, parent := range []uint32{vnl.HANDLE_MIN_INGRESS, vnl.HANDLE_MIN_EGRESS} {
		filters, err := vnl.FilterList(l, parent)
		if err != nil {
			continue
		}
		for _, fl := range filters {
			if b, ok := fl.(*vnl.BpfFilter); ok {
				name := b.Name
				if prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(b.Id)); err == nil {
					if info, err := prog.Info(); err == nil && info.Name != "" {
						name = info.Name
					}
					prog.Close()
				}
				addName(name)
			}
		}
	}
	return out
}

// pins lists bpffs entries where datapaths keep their maps: tc/globals (the
// iproute2 convention Cilium and Calico follow) and the root's directories.
func pins(root string) []string {
	var out []string
	if ents, err := os.ReadDir(filepath.Join(root, "tc", "globals")); err == nil {
		for _, e := range ents {
			if len(out) >= maxPins {
				break
			}
			out = append(out, "tc/globals/"+e.Name())
		}
	}
	if ents, err := os.ReadDir(root); err == nil {
		for _, e := range ents {
			if e.IsDir() && e.Name() != "tc" && len(out) < maxPins {
				out = append(out, e.Name()+"/")
			}
		}
	}
	sort.Strings(out)
	return out
}

// nftables over netlink (linux/netfilter/nf_tables.h).
const (
	nfnlSubsysNFTables = 10
	nftMsgGetChain     = 4
	nftaChainTable     = 1
	nftaChainName      = 3
)

var nfprotoNames = map[uint8]string{unix.NFPROTO_INET: "inet", unix.NFPROTO_IPV4: "ip", unix.NFPROTO_ARP: "arp",
	unix.NFPROTO_NETDEV: "netdev", unix.NFPROTO_BRIDGE: "bridge", unix.NFPROTO_IPV6: "ip6"}

// NFTChains dumps every nftables chain of the namespace (iptables-nft's
// too; legacy iptables is not read).
func NFTChains() ([]cni.Chain, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysNFTables<<8 | nftMsgGetChain), Flags: netlink.Request | netlink.Dump},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		return nil, err
	}
	var out []cni.Chain
	for _, m := range msgs {
		if len(m.Data) < 4 || len(out) >= maxChains {
			continue
		}
		ch := cni.Chain{Family: nfprotoNames[m.Data[0]]}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			continue
		}
		for ad.Next() {
			switch ad.Type() {
			case nftaChainTable:
				ch.Table = ad.String()
			case nftaChainName:
				ch.Name = ad.String()
			}
		}
		if ch.Name != "" {
			out = append(out, ch)
		}
	}
	return out, nil
}
