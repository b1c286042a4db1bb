//go:build linux

// Command netpol-agent is the node agent installed by `kubectl netpol
// install`: it enforces NetworkPolicy with eBPF and serves flow verdicts.
// Wiring only: see package agent.
//
//	netpol-agent [flags]     run on this node
//	netpol-agent cleanup     remove every program, link and pin of the datapath
//	netpol-agent preflight   check the node before the agent starts (init container)
//	netpol-agent mount-bpffs mount bpffs at /sys/fs/bpf when missing (opt-in init container)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/kubectl-netpol/kubectl-netpol/agent"
	"github.com/kubectl-netpol/kubectl-netpol/internal/bpffs"
	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
	"github.com/kubectl-netpol/kubectl-netpol/internal/kubeclient"
	"github.com/kubectl-netpol/kubectl-netpol/internal/version"
	"github.com/kubectl-netpol/kubectl-netpol/probe"
)

// terminationLog is where the kubelet reads a failed container's message
// (`kubectl netpol install --wait` shows it per node).
const terminationLog = "/dev/termination-log"

func main() {
	if err := run(); err != nil {
		klog.ErrorS(err, "netpol-agent failed")
		_ = os.WriteFile(terminationLog, []byte(err.Error()), 0o644)
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func run() error {
	klog.InitFlags(nil)
	cfg := agent.Config{Datapath: probe.DefaultConfig}
	var kubeconfig string
	var showVersion bool
	flag.StringVar(&cfg.NodeName, "node-name", os.Getenv(install.EnvNodeName), "this node's name (default $"+install.EnvNodeName+")")
	flag.StringVar(&cfg.PodName, "pod-name", os.Getenv(install.EnvPodName), "this agent's pod (default $"+install.EnvPodName+"); used to tell an uninstall from a restart")
	flag.StringVar(&cfg.PodNamespace, "pod-namespace", os.Getenv(install.EnvPodNamespace), "this agent's namespace (default $"+install.EnvPodNamespace+")")
	flag.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster configuration)")
	flag.StringVar(&cfg.GRPCAddr, "grpc-address", fmt.Sprintf("127.0.0.1:%d", install.AgentGRPCPort), "flow.v1.Observer address (keep it on loopback: clients come through pods/portforward)")
	flag.StringVar(&cfg.HTTPAddr, "http-address", fmt.Sprintf("127.0.0.1:%d", install.AgentHTTPPort), "address of /healthz, /readyz and /metrics")
	flag.BoolVar(&cfg.Pprof, "pprof", false, "also serve Go's profiles (/debug/pprof/) on --http-address")
	flag.StringVar(&cfg.PinRoot, "pin-root", probe.DefaultPinRoot, "bpffs directory of the datapath's pins")
	flag.BoolVar(&cfg.KeepEstablished, "keep-established", false, "do not revoke established connections that a new policy denies")
	flag.BoolVar(&cfg.AntiSpoofing, "anti-spoofing", true, "drop packets a local pod sends with a source address that is not its own (a TCX check on each pod's host-side interface)")
	flag.Uint64Var(&cfg.Datapath.DropEventsPerSec, "drop-events-per-sec", cfg.Datapath.DropEventsPerSec, "drop events per second per CPU (drops are never limited, only their events)")
	flag.Uint64Var(&cfg.Datapath.DropEventsBurst, "drop-events-burst", cfg.Datapath.DropEventsBurst, "burst of drop events per CPU")
	flag.BoolVar(&cfg.Datapath.FlowEvents, "flow-events", cfg.Datapath.FlowEvents, "emit an event for every new allowed flow")
	flag.DurationVar(&cfg.Datapath.AggregateInterval, "flow-aggregation", install.DefaultFlowAggregation, "record the first allowed connection of a flow key (source, destination, destination port, protocol, deciding rules) per interval and its first TCP end, and count the repeats in the kernel: one record per key and interval stands for them (Flow.connections); 0: a record per connection. Drops and audited flows are never aggregated")
	flag.BoolVar(&cfg.FlowEndSummaries, "flow-end-summaries", true, "publish a flow-end summary (packets, bytes, duration) when a local pod's connection ends, from conntrack destroy events (counts need net.netfilter.nf_conntrack_acct=1 on the node)")
	flag.StringVar(&cfg.FlowEndSource, "flow-end-source", "", "where flow-end summaries come from: \"\" (kernel records when a BPF program loads, else netlink), \"kernel\" (a BPF program on conntrack's destructor for every protocol; where fentry programs are refused, one on the TCP socket states for TCP and netlink for the rest) \"kernel-tcp\" (TCP only, from the TCP socket states, with no conntrack listener: no netlink message per ended connection of any protocol, no summary of UDP, SCTP and ICMP flows) or \"netlink\" (conntrack destroy events for every protocol)")
	flag.IntVar(&cfg.RingCapacity, "flow-history", 0, "recent flows kept for `kubectl netpol watch --last` (default 65536)")
	flag.StringVar(&cfg.HistoryDir, "history-dir", install.HistoryDir, "directory of the node's connection history (kept across restarts and upgrades, removed on uninstall); empty: keep no history")
	historyMemory := flag.String("history-memory", "", "memory budget of the connection history, e.g. 64Mi (default 64Mi)")
	historyDisk := flag.String("history-disk", "", "disk budget of the connection history file, e.g. 64Mi (default 64Mi)")
	flag.DurationVar(&cfg.HistoryFlushEvery, "history-flush", time.Minute, "how often the connection history is written to disk (what an agent crash can lose)")
	flag.StringVar(&cfg.OTLP.Endpoint, "otlp-endpoint", "", "export flows (OTLP logs) and metrics (OTLP metrics) to this OpenTelemetry Collector, HOST:PORT (OTLP/gRPC)")
	flag.BoolVar(&cfg.OTLP.Insecure, "otlp-insecure", false, "send OTLP in plain text instead of TLS")
	flag.StringVar(&cfg.OTLP.CAFile, "otlp-ca-file", "", "PEM file of the CA that signed the Collector's certificate (default: the system roots)")
	flag.StringVar(&cfg.CNIConfDir, "cni-conf-dir", agent.DefaultCNIConfDir, "the node's CNI configuration directory, read to identify the CNI (the DaemonSet mounts the node's /etc/cni/net.d here)")
	flag.DurationVar(&cfg.BypassWindow, "bypass-check-window", 10*time.Second, "window of the bypass self-check: pods whose interfaces carried traffic the netfilter hooks never saw in it turn the node's status to not enforcing")
	nice := flag.Int("nice", install.DefaultAgentNice, "the agent's niceness (0-19) from its first policy apply on (before, the workloads' priority): above 0 its user space (flow events, summaries, policy compiles) yields the CPU to the node's workloads when they want it; enforcement runs in the kernel either way")
	flag.BoolVar(&showVersion, "version", false, "print the version and exit")
	flag.Parse()

	if showVersion {
		fmt.Println(version.Version())
		return nil
	}
	if cmd := flag.Arg(0); cmd != "" {
		// Flags may follow the command too: netpol-agent cleanup --pin-root DIR.
		if err := flag.CommandLine.Parse(flag.Args()[1:]); err != nil {
			return err
		}
		switch cmd {
		case "cleanup":
			return cleanup(cfg.PinRoot)
		case install.PreflightCommand:
			return preflight(cfg.NodeName)
		case install.MountBPFFSCommand:
			return mountBPFFS(cfg.NodeName)
		}
		return fmt.Errorf("unknown command %q: use cleanup, %s or %s", cmd, install.PreflightCommand, install.MountBPFFSCommand)
	}

	for _, b := range []struct {
		flag, val string
		dst       *int64
	}{{"--history-memory", *historyMemory, &cfg.HistoryMemory}, {"--history-disk", *historyDisk, &cfg.HistoryDisk}} {
		if b.val == "" {
			continue
		}
		q, err := resource.ParseQuantity(b.val)
		if err != nil {
			return fmt.Errorf("%s %q: use a size such as 64Mi or 1Gi", b.flag, b.val)
		}
		*b.dst = q.Value()
	}

	cfg.NoHistory = cfg.HistoryDir == ""
	if *nice < 0 || *nice > 19 {
		return fmt.Errorf("--nice %d: use 0 (the workloads' priority) to 19 (the lowest)", *nice)
	}
	// Until ready the agent runs at the workloads' priority: its start
	// (the informers' first lists, the first compile and apply) is what
	// stands between a node and enforcement, and niceness 10 on a busy
	// node leaves it a tenth of a workload's share of the CPU. The
	// niceness follows the first apply.
	cfg.OnReady = func() {
		if err := setNice(*nice); err != nil {
			klog.ErrorS(err, "Setting the agent's niceness", "nice", *nice)
		}
	}

	rc, err := restConfig(kubeconfig)
	if err != nil {
		return err
	}
	rc.UserAgent = "netpol-agent/" + version.Version()
	// Protobuf for the built-in types: the informers' first lists (every pod
	// of the cluster) decode several times faster, with less garbage at the
	// agent's peak of memory.
	if cfg.Client, err = kubernetes.NewForConfig(kubeclient.Protobuf(rc)); err != nil {
		return err
	}
	if cfg.CNPClient, err = cnpclient.NewForConfig(rc); err != nil {
		return err
	}
	if cfg.Metadata, err = metadata.NewForConfig(rc); err != nil {
		return err
	}
	if limit, ok := heapLimit(os.Getenv(install.EnvMemoryLimit), os.Getenv("GOMEMLIMIT")); ok {
		debug.SetMemoryLimit(limit)
		klog.V(2).InfoS("Go heap limit set from the container's memory limit", "bytes", limit)
	}
	klog.InfoS("Starting netpol-agent", "version", version.Version(), "node", cfg.NodeName)
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return a.Run(ctx, agent.UninstallRequested(cfg.Client, cfg.PodNamespace, cfg.PodName))
}

// setNice gives every thread of the process niceness n. Linux keeps
// niceness per thread and new threads inherit their creator's, so setting
// the threads there are now (the Go runtime's, before any goroutine of the
// agent starts) covers all of them. Raising niceness needs no capability.
func setNice(n int) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, n); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("setting thread %d's niceness: %w", tid, err)
		}
	}
	return nil
}

// heapLimit is the soft limit for the Go heap given the container's memory
// limit in bytes (the downward API's limits.memory): 80 %, leaving room for
// what is not Go heap (goroutine stacks, the ring buffer's mapping, the
// runtime). An explicit GOMEMLIMIT wins; no limit or an unreadable one sets
// nothing.
func heapLimit(containerLimit, goMemLimit string) (int64, bool) {
	if goMemLimit != "" {
		return 0, false
	}
	n, err := strconv.ParseInt(containerLimit, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n / 10 * 8, true
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	rc, err := rest.InClusterConfig()
	if errors.Is(err, rest.ErrNotInCluster) {
		return nil, errors.New("not running in a pod: pass --kubeconfig")
	}
	return rc, err
}

// cleanup removes the datapath from this node by hand (e.g. after the
// DaemonSet was force-deleted without its pods' shutdown).
func cleanup(pinRoot string) error {
	p, err := probe.Load(probe.Options{PinRoot: pinRoot})
	if err != nil {
		return err
	}
	_, retireErr := p.RetireOtherLayouts() // older layout versions' pins too
	if err := errors.Join(p.Uninstall(), retireErr); err != nil {
		return err
	}
	fmt.Println("removed every netpol program, link and pin under", pinRoot)
	return nil
}

// preflight checks what the agent needs from its node and cannot fix
// itself, so that a node that lacks it fails in the agent pod's init
// container with one message saying what to do (its termination message,
// which install --wait and status show per node) instead of crash-looping.
func preflight(node string) error {
	if err := bpffs.Check(node, bpffs.Path); err != nil {
		return err
	}
	fmt.Printf("node %s: bpffs is mounted at %s\n", node, bpffs.Path)
	return nil
}

// mountBPFFS is the opt-in init container of install --mount-bpffs: it
// mounts bpffs at /sys/fs/bpf, which the pod spec propagates to the node
// (mountPropagation Bidirectional), and does nothing when it is there.
func mountBPFFS(node string) error {
	mounted, err := bpffs.Mount(bpffs.Path)
	if err != nil {
		return fmt.Errorf("node %s: %w", node, err)
	}
	if mounted {
		fmt.Printf("node %s: mounted bpffs at %s\n", node, bpffs.Path)
	} else {
		fmt.Printf("node %s: bpffs was already mounted at %s\n", node, bpffs.Path)
	}
	return nil
}
