// Command load fills the running test cluster with the fake nodes, pods and NetworkPolicies of
// a scale run (package scale) and prints what each step took; hack/cluster/scale.sh runs it
// after starting kwok.
//
//	go run ./test/scale/load -kubeconfig .cluster/kubeconfig -nodes 100 -pods 10000 -policies 1000
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubectl-netpol/kubectl-netpol/test/scale"
)

func main() {
	var spec scale.Spec
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the test cluster")
	flag.IntVar(&spec.Nodes, "nodes", 100, "fake nodes")
	flag.IntVar(&spec.Pods, "pods", 10000, "fake pods, spread over one namespace per 100 pods")
	flag.IntVar(&spec.Policies, "policies", 1000, "NetworkPolicies, spread over the namespaces")
	flag.IntVar(&spec.BigNamespacePods, "big-namespace-pods", 1000, "extra pods in namespace "+scale.BigNamespace+" (0: no such namespace)")
	flag.IntVar(&spec.Workers, "workers", 32, "parallel writers")
	base := flag.String("node-address", "10.250.100.1", "InternalIP of the first fake node (the others follow)")
	flag.Parse()
	if err := run(*kubeconfig, *base, spec); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, base string, spec scale.Spec) error {
	if spec.Nodes < 1 || spec.Pods < 0 || spec.Policies < 0 || spec.BigNamespacePods < 0 {
		return fmt.Errorf("-nodes must be at least 1 and -pods, -policies, -big-namespace-pods not negative")
	}
	addr, err := netip.ParseAddr(base)
	if err != nil {
		return fmt.Errorf("-node-address %q: %w", base, err)
	}
	spec.NodeAddrBase = addr
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("loading kubeconfig %q (set -kubeconfig or KUBECONFIG): %w", kubeconfig, err)
	}
	spec.Logf = func(format string, args ...any) {
		fmt.Printf("[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	t, err := scale.Populate(ctx, cfg, spec)
	if err != nil {
		return err
	}
	spec.Logf("created %d fake nodes, %d pods, %d NetworkPolicies: %s", spec.Nodes, spec.Pods+spec.BigNamespacePods, spec.Policies, t)
	return nil
}
