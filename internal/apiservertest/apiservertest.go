// Package apiservertest starts a real etcd and kube-apiserver on loopback
// for tests that must talk to the real API machinery (CRD schemas, CEL
// validation, discovery, version conversion), with the binaries the test
// cluster builds (hack/cluster/build-binaries.sh, cached under
// NETPOL_CLUSTER_CACHE or .cache/cluster). Both processes listen on
// 127.0.0.1 only and are killed, by PID, when the test ends.
package apiservertest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// RequireEnv makes a missing binary a failure instead of a skip (make check
// sets it; so does CI, which also sets CI).
const RequireEnv = "NETPOL_REQUIRE_APISERVER"

// binDir is where hack/cluster/build-binaries.sh puts etcd and kube-apiserver.
func binDir() string {
	if c := os.Getenv("NETPOL_CLUSTER_CACHE"); c != "" {
		return filepath.Join(c, "bin")
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return ""
	}
	return filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), ".cache", "cluster", "bin")
}

// Start runs etcd and kube-apiserver for the test and returns an admin
// client config. Without the binaries the test is skipped, or fails when
// RequireEnv is set.
func Start(t testing.TB) *rest.Config {
	t.Helper()
	bins := binDir()
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(bins, b)); err != nil {
			msg := fmt.Sprintf("%s not found in %s: build it with hack/cluster/build-binaries.sh (or set NETPOL_CLUSTER_CACHE)", b, bins)
			if os.Getenv(RequireEnv) != "" || os.Getenv("CI") != "" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	dir := t.TempDir()
	etcdPort, peerPort, apiPort := freePort(t), freePort(t), freePort(t)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	start(t, dir, filepath.Join(bins, "etcd"),
		"--name=default", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL, "--unsafe-no-fsync")

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "sa.key")
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	token := "netpol-test-admin"
	tokenFile := filepath.Join(dir, "tokens.csv")
	writeFile(t, tokenFile, []byte(token+",admin,admin,system:masters\n"))
	start(t, dir, filepath.Join(bins, "kube-apiserver"),
		"--etcd-servers="+etcdURL, "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", apiPort), "--cert-dir="+filepath.Join(dir, "certs"),
		"--token-auth-file="+tokenFile, "--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc", "--service-account-key-file="+keyFile,
		"--service-account-signing-key-file="+keyFile, "--service-cluster-ip-range=10.96.0.0/16",
		"--enable-priority-and-fairness=false", "--endpoint-reconciler-type=none")

	cfg := &rest.Config{Host: fmt.Sprintf("https://127.0.0.1:%d", apiPort), BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 100, Burst: 200}
	client := kubernetes.NewForConfigOrDie(cfg)
	deadline := time.Now().Add(90 * time.Second)
	for {
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(t.Context())
		if err == nil && string(body) == "ok" {
			return cfg
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready after 90s: %v %s\n%s\n%s", err, body, logTail(dir, "etcd"), logTail(dir, "kube-apiserver"))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func logTail(dir, name string) string {
	b, _ := os.ReadFile(filepath.Join(dir, name+".log"))
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return name + " log (end):\n" + string(b)
}

func writeFile(t testing.TB, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs a binary with its output in dir/NAME.log and kills it (by its
// PID) when the test ends.
func start(t testing.TB, dir, bin string, args ...string) {
	t.Helper()
	log, err := os.Create(filepath.Join(dir, filepath.Base(bin)+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		log.Close()
	})
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// InstallCRD creates a CustomResourceDefinition from its YAML and waits
// until it is established and its resource can be listed.
func InstallCRD(ctx context.Context, cfg *rest.Config, crdYAML []byte) error {
	var obj map[string]any
	if err := yaml.Unmarshal(crdYAML, &obj); err != nil {
		return fmt.Errorf("CRD YAML: %w", err)
	}
	crd := &unstructured.Unstructured{Object: obj}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if _, err := dyn.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating CRD %s: %w", crd.GetName(), err)
	}
	group, _, _ := unstructured.NestedString(obj, "spec", "group")
	plural, _, _ := unstructured.NestedString(obj, "spec", "names", "plural")
	versions, _, _ := unstructured.NestedSlice(obj, "spec", "versions")
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		ready := true
		for _, v := range versions {
			name, _, _ := unstructured.NestedString(v.(map[string]any), "name")
			_, err := dyn.Resource(schema.GroupVersionResource{Group: group, Version: name, Resource: plural}).List(ctx, metav1.ListOptions{Limit: 1})
			ready = ready && err == nil
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("CRD %s not served after 60s", crd.GetName())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
