//go:build linux

package nodefacts

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/kubectl-netpol/kubectl-netpol/internal/cni"
	"github.com/kubectl-netpol/kubectl-netpol/internal/privileged"
)

func nsName(role string) string {
	p := os.Getenv("NETPOL_TEST_NS_PREFIX")
	if p == "" {
		p = "np"
	}
	return fmt.Sprintf("%snf%d-%s", p, os.Getpid(), role)
}

// TestGatherOnRealNode builds a node namespace the way a CNI would leave it
// (a bridge with a pod's veth, a conf file, nftables chains, a tcx program
// on the pod's interface) and checks what Gather reads and how it is
// classified: the bridge alone, then Calico's chains and eBPF program.
func TestGatherOnRealNode(t *testing.T) {
	privileged.Require(t, "CNI facts", "ip", "nft")
	node, podNS := nsName("node"), nsName("pod")
	nodeH := privileged.NewNamedNS(t, node)
	privileged.NewNamedNS(t, podNS)
	privileged.RunIn(t, node, "ip", "link", "add", "k8sbr0", "type", "bridge")
	privileged.RunIn(t, node, "ip", "link", "add", "veth0a1b", "type", "veth", "peer", "name", "eth0", "netns", podNS)
	privileged.RunIn(t, node, "ip", "link", "set", "veth0a1b", "master", "k8sbr0")
	privileged.RunIn(t, node, "ip", "link", "set", "veth0a1b", "up")
	conf := t.TempDir()
	if err := os.WriteFile(filepath.Join(conf, "10-netpol.conflist"), []byte(`{"name":"x","plugins":[{"type":"bridge"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	bpffs := t.TempDir() // no other datapath's pins
	gather := func() (cni.Facts, cni.Result) {
		t.Helper()
		var f cni.Facts
		err := privileged.In(nodeH, func() error {
			var err error
			f, err = Gather(Options{ConfDir: conf, BPFFS: bpffs})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return f, cni.Classify(f)
	}
	f, r := gather()
	t.Logf("facts: %+v\nresult: %s %v", f, r, r.Evidence)
	if r.String() != "bridge" || r.Coverage != cni.CoverageFull {
		t.Errorf("plain bridge node classified as %s (%s)", r, r.Coverage)
	}
	i := slices.IndexFunc(f.Links, func(l cni.Link) bool { return l.Name == "veth0a1b" })
	if i < 0 || !f.Links[i].PodPeer || f.Links[i].Master != "k8sbr0" || f.Links[i].Kind != "veth" {
		t.Errorf("pod link read as %+v", f.Links)
	}

	// Calico's iptables-nft chains: Calico (iptables), both enforce.
	privileged.RunIn(t, node, "nft", "add table ip filter; add chain ip filter cali-FORWARD")
	if _, r = gather(); r.String() != "Calico (iptables)" || !r.EnforcesPolicy {
		t.Errorf("with cali-FORWARD: %s enforces %v (%v)", r, r.EnforcesPolicy, r.Evidence)
	}
	// Felix's eBPF program on the pod's interface: Calico (eBPF), no coverage.
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "cali_tc_preamble", Type: ebpf.SchedCLS, License: "Apache-2.0",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}}) // TCX_NEXT
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	var l link.Link
	err = privileged.In(nodeH, func() error {
		ifc, err := netlink.LinkByName("veth0a1b")
		if err != nil {
			return err
		}
		l, err = link.AttachTCX(link.TCXOptions{Interface: ifc.Attrs().Index, Program: prog, Attach: ebpf.AttachTCXIngress})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, r = gather()
	if r.String() != "Calico (eBPF)" || r.Coverage != cni.CoverageNone {
		t.Errorf("with cali_tc_preamble on the pod interface: %s (%s), links %+v", r, r.Coverage, f.Links)
	}
}
