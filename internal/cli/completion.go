package cli

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-netpol/kubectl-netpol/internal/snapshot"
)

// completeEndpoints completes SRC/DST arguments from the live cluster: pod
// names in the namespace -n selects, "NAMESPACE/" prefixes and, after one,
// that namespace's pods; and workload names after "deploy/", "sts/" etc.
// Completion never fails loudly: on any error it offers nothing.
func completeEndpoints(f *Factory, maxArgs int) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if maxArgs > 0 && len(args) >= maxArgs {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return endpointCandidates(cmd.Context(), f, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

func endpointCandidates(ctx context.Context, f *Factory, toComplete string) []string {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	client, _, err := f.NewClient()
	if err != nil {
		return nil
	}
	ns, _, _ := f.Namespace(false)
	podsIn := func(ns, prefix string) []string {
		list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil
		}
		var out []string
		for _, p := range list.Items {
			out = append(out, prefix+p.Name)
		}
		return out
	}
	var out []string
	if i := strings.IndexByte(toComplete, '/'); i >= 0 {
		first := toComplete[:i]
		if kind, ok := workloadKinds[strings.ToLower(first)]; ok {
			out = workloadNames(ctx, f, kind, ns, first+"/")
		} else if strings.ToLower(first) == "pod" || strings.ToLower(first) == "po" {
			out = podsIn(ns, first+"/")
		} else {
			out = podsIn(first, first+"/")
		}
	} else {
		out = podsIn(ns, "")
		if list, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil {
			for _, n := range list.Items {
				out = append(out, n.Name+"/")
			}
		}
		out = append(out, "deploy/", "sts/", "ds/", "job/")
	}
	var keep []string
	for _, c := range out {
		if strings.HasPrefix(c, toComplete) {
			keep = append(keep, c)
		}
	}
	sort.Strings(keep)
	return keep
}

func workloadNames(ctx context.Context, f *Factory, kind, ns, prefix string) []string {
	client, cluster, err := f.NewClient()
	if err != nil {
		return nil
	}
	ws, err := (&snapshot.Live{Client: client, Cluster: cluster}).Workloads(ctx, kind, ns)
	if err != nil {
		return nil
	}
	names := make([]string, len(ws))
	for i, w := range ws {
		names[i] = prefix + w.Name
	}
	return names
}

// registerFlagCompletion completes -n/--namespace from the cluster.
func registerFlagCompletion(root *cobra.Command, f *Factory) {
	_ = root.RegisterFlagCompletionFunc("namespace", func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		client, _, err := f.NewClient()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		list, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []string
		for _, n := range list.Items {
			if strings.HasPrefix(n.Name, toComplete) {
				out = append(out, n.Name)
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	})
}
