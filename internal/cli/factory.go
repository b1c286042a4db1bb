package cli

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/kubectl-netpol/kubectl-netpol/internal/kubeclient"
	"github.com/kubectl-netpol/kubectl-netpol/internal/snapshot"
)

// Factory is what every verb shares: the standard kubectl flags and the way
// to reach a cluster. Tests replace NewClient with a fake clientset.
type Factory struct {
	ConfigFlags *genericclioptions.ConfigFlags
	// NewClient returns a clientset and the cluster it talks to.
	NewClient func() (kubernetes.Interface, snapshot.Cluster, error)
	// NewCNPClient returns a client for ClusterNetworkPolicies, or nil
	// (then none are read).
	NewCNPClient func() (cnpclient.Interface, error)
}

// NewFactory returns a Factory whose clients come from the kubeconfig flags.
func NewFactory(flags *genericclioptions.ConfigFlags) *Factory {
	f := &Factory{ConfigFlags: flags}
	f.NewClient = f.kubeClient
	f.NewCNPClient = f.cnpClient
	return f
}

// Cluster names the context and server the flags select, for messages; it
// never fails (unknown parts are left empty).
func (f *Factory) Cluster() snapshot.Cluster {
	var c snapshot.Cluster
	loader := f.ConfigFlags.ToRawKubeConfigLoader()
	raw, err := loader.RawConfig()
	if err == nil {
		c.Context = raw.CurrentContext
	}
	if f.ConfigFlags.Context != nil && *f.ConfigFlags.Context != "" {
		c.Context = *f.ConfigFlags.Context
	}
	if rc, err := loader.ClientConfig(); err == nil {
		c.Server = rc.Host
	} else if f.ConfigFlags.APIServer != nil && *f.ConfigFlags.APIServer != "" {
		c.Server = *f.ConfigFlags.APIServer
	}
	return c
}

func (f *Factory) kubeClient() (kubernetes.Interface, snapshot.Cluster, error) {
	cluster := f.Cluster()
	// Without any kubeconfig client-go quietly falls back to localhost:8080;
	// say what is missing instead.
	raw, rawErr := f.ConfigFlags.ToRawKubeConfigLoader().RawConfig()
	noServerFlag := f.ConfigFlags.APIServer == nil || *f.ConfigFlags.APIServer == ""
	if rawErr == nil && len(raw.Clusters) == 0 && noServerFlag && os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		return nil, cluster, fmt.Errorf("no cluster to talk to: no kubeconfig found (set KUBECONFIG or --kubeconfig, or create ~/.kube/config)\n" +
			"or use -f FILE to evaluate manifests offline")
	}
	rc, err := f.ConfigFlags.ToRESTConfig()
	if err != nil {
		return nil, cluster, fmt.Errorf("no cluster to talk to: %v\n"+
			"point --kubeconfig/--context at a cluster, or use -f FILE to evaluate manifests offline", err)
	}
	rc.UserAgent = "kubectl-netpol"
	// Live loads list every pod and policy of their scope, page by page: in
	// protobuf (several times faster to decode than JSON), and not held back
	// by client-go's default 5 requests per second (100k pods are 200 pages).
	rc = kubeclient.Protobuf(rc)
	if rc.QPS == 0 {
		rc.QPS, rc.Burst = 50, 100
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, cluster, fmt.Errorf("creating a client for %s: %w", cluster, err)
	}
	return client, cluster, nil
}

func (f *Factory) cnpClient() (cnpclient.Interface, error) {
	rc, err := f.ConfigFlags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("no cluster to talk to: %v", err)
	}
	rc.UserAgent = "kubectl-netpol"
	return cnpclient.NewForConfig(rc)
}

// Namespace is the namespace -n selects, or the kubeconfig context's
// namespace, or "default"; explicit reports whether -n was given.
func (f *Factory) Namespace(offline bool) (ns string, explicit bool, err error) {
	if f.ConfigFlags.Namespace != nil && *f.ConfigFlags.Namespace != "" {
		return *f.ConfigFlags.Namespace, true, nil
	}
	if offline {
		// Manifests are not tied to a kubeconfig context.
		return "default", false, nil
	}
	ns, _, err = f.ConfigFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil || ns == "" {
		return "default", false, nil
	}
	return ns, false, nil
}

// SourceOptions chooses where objects come from: files (-f) or the live
// cluster, plus the what-if policies of --with-policy. Every evaluating verb
// embeds it.
type SourceOptions struct {
	Filenames  []string
	Recursive  bool
	WithPolicy []string

	factory *Factory
}

// AddFlags registers -f, -R and --with-policy.
func (o *SourceOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringArrayVarP(&o.Filenames, "filename", "f", nil,
		"Read objects (namespaces, pods, workloads, nodes, NetworkPolicies, ClusterNetworkPolicies) from a file or directory of YAML/JSON instead of the cluster; repeatable")
	fs.BoolVarP(&o.Recursive, "recursive", "R", false, "Read directories given with -f recursively")
	fs.StringArrayVar(&o.WithPolicy, "with-policy", nil,
		"Add NetworkPolicies and ClusterNetworkPolicies from this file, replacing any with the same name, before evaluating (what-if); repeatable")
}

// Offline reports whether objects come from files.
func (o *SourceOptions) Offline() bool { return len(o.Filenames) > 0 }

// Load returns the objects for scope (files ignore the scope: they are read
// whole) with the --with-policy policies applied.
func (o *SourceOptions) Load(ctx context.Context, scope snapshot.Scope, defaultNamespace string) (*snapshot.Set, error) {
	var set *snapshot.Set
	if o.Offline() {
		// Nearly everything allocated while reading files is kept (the
		// objects): collecting as often as usual mostly re-marks them.
		defer debug.SetGCPercent(debug.SetGCPercent(300))
		var err error
		if set, err = snapshot.LoadFiles(o.Filenames, o.Recursive, defaultNamespace); err != nil {
			return nil, err
		}
		if kinds := misspeltKinds(set.Ignored); len(kinds) > 0 {
			return nil, fmt.Errorf("%s", strings.Join(kinds, "\n"))
		}
	} else {
		client, cluster, err := o.factory.NewClient()
		if err != nil {
			return nil, err
		}
		live := &snapshot.Live{Client: client, Cluster: cluster}
		if o.factory.NewCNPClient != nil {
			if live.CNPClient, err = o.factory.NewCNPClient(); err != nil {
				return nil, err
			}
		}
		if set, err = live.Load(ctx, scope); err != nil {
			return nil, err
		}
	}
	if len(o.WithPolicy) > 0 {
		w, err := snapshot.LoadPolicyFiles(o.WithPolicy, defaultNamespace)
		if err != nil {
			return nil, err
		}
		set.SetWhatIf(w)
	}
	return set, nil
}

// usedKinds are the kinds the loader reads; a document whose kind is a near
// miss of one of them is a typo that would silently drop the object.
var usedKinds = []string{"Namespace", "Pod", "Node", "NetworkPolicy", "ClusterNetworkPolicy", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}

func misspeltKinds(ignored map[string]int) []string {
	var out []string
	for kind := range ignored {
		for _, used := range usedKinds {
			// Short kinds are too close to each other (Role/Node) to call a typo.
			if len(kind) >= 7 && editDistance(kind, used) <= 2 {
				out = append(out, fmt.Sprintf("unknown kind %q in the files; did you mean %q?", kind, used))
			}
		}
	}
	return out
}
