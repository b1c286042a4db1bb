package framework

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// The test cluster's fixed layout (hack/cluster/lib.sh); tests use it to assert on addresses.
const (
	// ControlPlaneIP is the API server's address (on one node, also the node's).
	ControlPlaneIP = "10.250.0.1"
	PodCIDR        = "10.244.0.0/16"
	ServiceCIDR    = "10.96.0.0/16"
	DNSServiceIP   = "10.96.0.10"
	Bridge         = "k8sbr0"
	// ProbeImage is test/images/netprobe, imported by hack/cluster/images.sh.
	ProbeImage = "localhost/netprobe:local"
	// TestLabel marks every namespace the framework creates.
	TestLabel = "e2e.kubectl-netpol.io/test"
)

// Cluster is a connection to the test cluster.
type Cluster struct {
	Kubeconfig string
	Config     *rest.Config
	Client     kubernetes.Interface
}

// RepoRoot returns the repository root (the directory holding go.mod).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// Unavailable skips the test with the reason, or fails it when CI is set: in CI every
// end-to-end test must run.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set but %s", msg)
	}
	t.Skip(msg)
}

// Connect returns the cluster named by KUBECONFIG (default .cluster/kubeconfig), after
// checking that its API server answers.
func Connect(t testing.TB) *Cluster {
	t.Helper()
	path := os.Getenv("KUBECONFIG")
	if path == "" {
		path = filepath.Join(RepoRoot(), ".cluster", "kubeconfig")
	}
	if _, err := os.Stat(path); err != nil {
		Unavailable(t, "no test cluster: %s is missing (run `make cluster-up` or `make e2e`)", path)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatalf("loading kubeconfig %s: %v", path, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("client for %s: %v", path, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx); err != nil {
		Unavailable(t, "test cluster of %s does not answer: %v (run `make cluster-up`)", path, err)
	}
	return &Cluster{Kubeconfig: path, Config: cfg, Client: client}
}

// Context returns a context that ends with the test or after d, whichever is first.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// NewNamespace creates a namespace named after the prefix and the test, deleted (and waited
// for) when the test ends.
func (c *Cluster) NewNamespace(t testing.TB, prefix string) string {
	t.Helper()
	ctx := Context(t, 30*time.Second)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: prefix + "-",
		Labels:       map[string]string{TestLabel: sanitize(t.Name())},
	}}
	created, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace %s-*: %v", prefix, err)
	}
	name := created.Name
	t.Cleanup(func() { c.deleteNamespace(t, name) })
	// Pods need the namespace's default service account before they can be created.
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := c.Client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		t.Fatalf("namespace %s: default service account never appeared: %v", name, err)
	}
	return name
}

func (c *Cluster) deleteNamespace(t testing.TB, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	zero := int64(0)
	err := c.Client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		t.Errorf("deleting namespace %s: %v", name, err)
		return
	}
	if err := wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := c.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	}); err != nil {
		t.Errorf("namespace %s still exists 90s after deletion", name)
	}
}

func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
	if len(s) > 63 {
		s = s[:63]
	}
	return strings.Trim(s, "_-.")
}
