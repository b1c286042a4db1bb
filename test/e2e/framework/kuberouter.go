package framework

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// kube-router v2.1.0 is the peer NetworkPolicy enforcer of the same-run benchmarks (make
// bench-peers-datapath): iptables rules and ipsets in the filter table of every node, no
// BPF. It runs here with only its network-policy controller, as a host process in each node's
// namespaces, beside Flannel and kube-proxy. It leaves its rules and ipsets behind when it
// stops: StopKubeRouter removes them and proves that each node's firewall is as before.

// What kube-router's network-policy controller creates: chains in the filter table (its
// top-level chains, jumped to from INPUT, FORWARD and OUTPUT; one per pod; one per policy,
// named with a sync version) and ipsets (per policy and rule).
var (
	kubeRouterChain = regexp.MustCompile(`^(KUBE-ROUTER-|KUBE-POD-FW-|KUBE-NWPLCY-)`)
	kubeRouterSet   = regexp.MustCompile(`^(inet6:)?(KUBE-SRC-|KUBE-DST-)`)
	kubeRouterTrace = regexp.MustCompile(`KUBE-ROUTER-|KUBE-POD-FW-|KUBE-NWPLCY-|KUBE-SRC-|KUBE-DST-`)
	kubeRouterJump  = regexp.MustCompile(`^-A (INPUT|FORWARD|OUTPUT) .*-j KUBE-ROUTER-`)
)

// KubeRouterBinary is the kube-router that hack/cluster/build-peers.sh built into the cluster's
// cache (NETPOL_CLUSTER_CACHE, as hack/cluster/lib.sh), or NETPOL_KUBE_ROUTER.
func KubeRouterBinary(t testing.TB) string {
	t.Helper()
	path := os.Getenv("NETPOL_KUBE_ROUTER")
	if path == "" {
		cache := os.Getenv("NETPOL_CLUSTER_CACHE")
		if cache == "" {
			cache = filepath.Join(RepoRoot(), ".cache", "cluster")
		}
		path = filepath.Join(cache, "bin", "peers", "kube-router")
	}
	if _, err := os.Stat(path); err != nil {
		Unavailable(t, "no kube-router at %s: build it with hack/cluster/build-peers.sh (make bench-peers-datapath does)", path)
	}
	for _, tool := range []string{"ipset", "iptables-save", "iptables-restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			Unavailable(t, "kube-router needs %s on the nodes (hack/install-deps.sh)", tool)
		}
	}
	return path
}

// KubeRouter is kube-router running on every node of the cluster.
type KubeRouter struct {
	procs  map[string]*exec.Cmd // by node name
	before map[string]string    // each node's firewall before it started
	hostFW string               // the host's (the cluster's guards) before it started
	logs   map[string]string
}

// StartKubeRouter starts kube-router on every node with only its network-policy controller,
// as the admin user of the cluster's kubeconfig, after recording each node's firewall. Stop it
// with Stop (registered as a cleanup too, so a failed benchmark leaves nothing behind).
func (c *Cluster) StartKubeRouter(t testing.TB) *KubeRouter {
	t.Helper()
	bin := KubeRouterBinary(t)
	k := &KubeRouter{procs: map[string]*exec.Cmd{}, before: map[string]string{}, logs: map[string]string{}}
	k.hostFW = hostFirewall(t)
	for _, n := range Nodes {
		if n.NetNS == "" {
			// On the single-node cluster kube-router would share the host's filter table with
			// the cluster's guards and ACCEPT pod traffic ahead of them.
			Unavailable(t, "kube-router runs only on the multi-node cluster (NODES>=2), where each node has its own firewall")
		}
		k.before[n.Name] = nodeFirewall(t, n)
		if tr := kubeRouterTrace.FindString(k.before[n.Name]); tr != "" {
			t.Fatalf("node %s already has kube-router's %s... before it started: a previous run left it; make cluster-down", n.Name, tr)
		}
	}
	t.Cleanup(func() { k.Stop(t) })
	for _, n := range Nodes {
		logf, err := os.CreateTemp("", "kube-router-"+n.Name+"-*.log")
		if err != nil {
			t.Fatal(err)
		}
		k.logs[n.Name] = logf.Name()
		cmd := n.Command(bin, "--kubeconfig="+c.Kubeconfig, "--hostname-override="+n.Name,
			"--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
			"--enable-cni=false", "--enable-ipv4=true", "--enable-ipv6=false",
			"--service-cluster-ip-range="+ServiceCIDR, "--health-port=0", "--metrics-port=0")
		cmd.Stdout, cmd.Stderr = logf, logf
		// nsenter execs kube-router (no PID namespace, no fork): the PID is kube-router's, and it
		// dies with the test process.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			logf.Close()
			t.Fatalf("starting kube-router on %s: %v", n.Name, err)
		}
		logf.Close()
		k.procs[n.Name] = cmd
	}
	return k
}

// WaitSynced waits until every node's filter table has one kube-router chain per
// NetworkPolicy of the cluster and its jumps from INPUT, FORWARD and OUTPUT, the same count twice
// in a row (a sync writes the new version's chains before removing the old).
func (k *KubeRouter) WaitSynced(t testing.TB, c *Cluster, timeout time.Duration) {
	t.Helper()
	ctx := Context(t, timeout)
	pols, err := c.Client.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing NetworkPolicies: %v", err)
	}
	want := len(pols.Items)
	start := time.Now()
	for _, n := range Nodes {
		last := -1
		for {
			if err := ctx.Err(); err != nil {
				t.Fatalf("kube-router on %s: not %d policy chains within %s (last count %d); log %s:\n%s",
					n.Name, want, timeout, last, k.logs[n.Name], tail(k.logs[n.Name], 20))
			}
			if p := k.procs[n.Name]; p.ProcessState != nil || syscall.Kill(p.Process.Pid, 0) != nil {
				t.Fatalf("kube-router on %s exited; log %s:\n%s", n.Name, k.logs[n.Name], tail(k.logs[n.Name], 30))
			}
			got, jumps := kubeRouterRules(t, n)
			if got == want && jumps >= 3 && last == want {
				break
			}
			last = got
			time.Sleep(500 * time.Millisecond)
		}
	}
	t.Logf("kube-router: %d policy chains on each of %d nodes %.1f s after the first check", want, len(Nodes), time.Since(start).Seconds())
}

// kubeRouterRules counts the policy chains (not the default one) in the node's filter table
// and the built-in chains' jumps to kube-router's top-level chains.
func kubeRouterRules(t testing.TB, n Node) (chains, jumps int) {
	out, err := n.Command("iptables-save", "-t", "filter").Output()
	if err != nil {
		t.Fatalf("iptables-save on %s: %v", n.Name, err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, ":KUBE-NWPLCY-") && !strings.HasPrefix(l, ":KUBE-NWPLCY-DEFAULT "):
			chains++
		case kubeRouterJump.MatchString(l):
			jumps++
		}
	}
	return chains, jumps
}

// CPU is the user+system CPU time of kube-router on the node so far.
func (k *KubeRouter) CPU(n Node) (time.Duration, bool) {
	p := k.procs[n.Name]
	if p == nil || p.ProcessState != nil {
		return 0, false
	}
	return ProcessCPU(strconv.Itoa(p.Process.Pid))
}

// ProcessCPU is the user+system CPU time of a process so far.
func ProcessCPU(pid string) (time.Duration, bool) {
	raw, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return time.Duration(ut+st) * 10 * time.Millisecond, true // USER_HZ = 100
}

// ExpectGuardsIntact fails t unless the host's firewall (the cluster's FORWARD guard) is as it was
// before kube-router started: kube-router runs in the nodes' network namespaces and must
// never reach the host's, whose guard keeps pod traffic from leaving the machine.
func (k *KubeRouter) ExpectGuardsIntact(t testing.TB) {
	t.Helper()
	now := hostFirewall(t)
	if now != k.hostFW {
		t.Fatalf("the host's filter table changed while kube-router ran:\n%s", lineDiff(k.hostFW, now))
	}
	if !strings.HasPrefix(now, "first FORWARD rule: -A FORWARD -j NETPOL-CLUSTER-GUARD\n") {
		t.Fatalf("the host's first FORWARD rule is not the cluster's guard:\n%s", now)
	}
}

// Stop kills kube-router on every node by PID, removes its rules, chains and ipsets, and
// fails t unless every node's firewall is then exactly as before it started, with no trace of
// kube-router, and the host's unchanged. Calling it again does nothing.
func (k *KubeRouter) Stop(t testing.TB) {
	t.Helper()
	if k.procs == nil {
		return
	}
	for name, p := range k.procs {
		if p.ProcessState == nil {
			p.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				p.Process.Kill()
				<-done
			}
		}
		os.Remove(k.logs[name])
	}
	k.procs = nil
	for _, n := range Nodes {
		if _, ok := k.before[n.Name]; !ok {
			continue
		}
		removeKubeRouter(t, n)
		after := nodeFirewall(t, n)
		if tr := kubeRouterTrace.FindString(after); tr != "" {
			t.Errorf("node %s: kube-router's %s... is still there after its removal", n.Name, tr)
		}
		if after != k.before[n.Name] {
			t.Errorf("node %s: the firewall is not as before kube-router ran:\n%s", n.Name, lineDiff(k.before[n.Name], after))
		}
	}
	if now := hostFirewall(t); now != k.hostFW {
		t.Errorf("the host's filter table changed while kube-router ran:\n%s", lineDiff(k.hostFW, now))
	}
	t.Logf("kube-router stopped; its rules, chains and ipsets removed from %d nodes, each firewall as before", len(Nodes))
}

// removeKubeRouter deletes kube-router's jumps, chains and ipsets on the node in two
// transactions (iptables-restore, ipset restore): one exec per node, not per set.
func removeKubeRouter(t testing.TB, n Node) {
	t.Helper()
	out, err := n.Command("iptables-save", "-t", "filter").Output()
	if err != nil {
		t.Fatalf("iptables-save on %s: %v", n.Name, err)
	}
	var del, flush, drop []string
	for _, l := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(l, ":") && kubeRouterChain.MatchString(l[1:]):
			name := strings.Fields(l[1:])[0]
			flush = append(flush, "-F "+name)
			drop = append(drop, "-X "+name)
		case strings.HasPrefix(l, "-A ") && !kubeRouterChain.MatchString(l[3:]) && kubeRouterTrace.MatchString(l):
			// A rule of another chain that jumps to or matches kube-router's: restore's parser
			// reads the quoted comment as iptables-save wrote it.
			del = append(del, "-D "+l[3:])
		}
	}
	if len(del)+len(flush) > 0 {
		script := "*filter\n" + strings.Join(append(append(del, flush...), drop...), "\n") + "\nCOMMIT\n"
		cmd := n.Command("iptables-restore", "--noflush")
		cmd.Stdin = strings.NewReader(script)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("node %s: removing kube-router's rules: %v\n%s", n.Name, err, out)
		}
	}
	sets, err := n.Command("ipset", "list", "-n").Output()
	if err != nil {
		t.Fatalf("ipset list on %s: %v", n.Name, err)
	}
	var destroy []string
	for _, s := range strings.Fields(string(sets)) {
		if kubeRouterSet.MatchString(s) {
			destroy = append(destroy, "destroy "+s)
		}
	}
	if len(destroy) > 0 {
		cmd := n.Command("ipset", "restore")
		cmd.Stdin = strings.NewReader(strings.Join(destroy, "\n") + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("node %s: destroying kube-router's %d ipsets: %v\n%s", n.Name, len(destroy), err, out)
		}
	}
}

// nodeFirewall is what kube-router could change on the node: every iptables table as
// iptables-save lists it (counters and comments dropped) and the names of the ipsets.
func nodeFirewall(t testing.TB, n Node) string {
	t.Helper()
	out, err := n.Command("iptables-save").Output()
	if err != nil {
		t.Fatalf("iptables-save on %s: %v", n.Name, err)
	}
	sets, err := n.Command("ipset", "list", "-n").Output()
	if err != nil {
		t.Fatalf("ipset list on %s: %v", n.Name, err)
	}
	names := strings.Fields(string(sets))
	sort.Strings(names)
	return normalizeSave(string(out)) + "ipsets: " + strings.Join(names, " ") + "\n"
}

// hostFirewall is the part of the host's filter table kube-router must leave alone: the
// cluster's guard chain and the first FORWARD rule (the jump to it), and any trace of
// kube-router. (The rest of the host's firewall belongs to others on a shared machine.)
func hostFirewall(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("iptables-save", "-t", "filter").Output()
	if err != nil {
		t.Fatalf("iptables-save on the host: %v", err)
	}
	save := normalizeSave(string(out))
	var b strings.Builder
	b.WriteString("first FORWARD rule: " + firstRule(save, "FORWARD") + "\n")
	for _, l := range strings.Split(save, "\n") {
		if strings.Contains(l, " NETPOL-CLUSTER-GUARD ") || strings.HasPrefix(l, ":NETPOL-CLUSTER-GUARD ") || kubeRouterTrace.MatchString(l) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

var saveCounters = regexp.MustCompile(`^(:\S+ \S+) \[\d+:\d+\]$`)

func normalizeSave(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		b.WriteString(saveCounters.ReplaceAllString(l, "$1") + "\n")
	}
	return b.String()
}

func firstRule(save, chain string) string {
	for _, l := range strings.Split(save, "\n") {
		if strings.HasPrefix(l, "-A "+chain+" ") {
			return l
		}
	}
	return ""
}

// lineDiff lists the lines only in a (-) and only in b (+), at most 40.
func lineDiff(a, b string) string {
	count := func(s string) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(s, "\n") {
			m[l]++
		}
		return m
	}
	ca, cb := count(a), count(b)
	var out []string
	for l, n := range ca {
		if cb[l] < n {
			out = append(out, "- "+l)
		}
	}
	for l, n := range cb {
		if ca[l] < n {
			out = append(out, "+ "+l)
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return "(the same lines in another order)"
	}
	if len(out) > 40 {
		out = append(out[:40], fmt.Sprintf("... %d more", len(out)-40))
	}
	return strings.Join(out, "\n")
}

func tail(path string, lines int) string {
	raw, _ := os.ReadFile(path)
	l := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}
