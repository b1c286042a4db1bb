package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// Every bad input gives one clear error naming the object and the fix.
func TestExplainBadInput(t *testing.T) {
	dir := t.TempDir()
	malformed := writeFile(t, dir, "malformed.yaml", `apiVersion: v1
kind: Namespace
metadata: {name: a}
---
apiVersion: v1
kind: Pod
metadata:
  name: p
  labels: [oops
`)
	unknownField := writeFile(t, dir, "unknown-field.yaml", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: db}
spec:
  podSelector: {}
  ingress:
  - frm:
    - podSelector: {}
`)
	invalid := writeFile(t, dir, "invalid.yaml", `# an endPort below its port is rejected by the API server
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bad-range, namespace: db}
spec:
  podSelector: {}
  ingress:
  - ports:
    - {port: 9000, endPort: 8000}
`)
	typo := writeFile(t, dir, "typo.yaml", `apiVersion: networking.k8s.io/v1
kind: NetworkPolicyy
metadata: {name: np, namespace: db}
`)
	notPolicy := writeFile(t, dir, "pod.yaml", `apiVersion: v1
kind: Pod
metadata: {name: p, namespace: db}
`)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown pod", []string{"-f", example, "web/frontend-2", "db/mysql-0"}, `web/frontend-2: pod "frontend-2" not found in namespace "web"; did you mean "frontend-1"?`},
		{"unknown pod suggestion", []string{"-f", example, "web/frontend-1", "db/mysq-0"}, `db/mysq-0: pod "mysq-0" not found in namespace "db"; did you mean "mysql-0"?`},
		{"unknown namespace", []string{"-f", example, "webb/frontend-1", "db/mysql-0"}, `namespace "webb" not found; did you mean "web"?`},
		{"unknown pod default namespace", []string{"-f", example, "frontend-1", "db/mysql-0"}, `namespace "default" not found`},
		{"unknown workload", []string{"-f", example, "web/deploy/front", "db/mysql-0"}, `deployment "front" not found in namespace "web"; did you mean "frontend"?`},
		{"bad kind", []string{"-f", example, "web/svc/x", "db/mysql-0"}, `"svc" is not a kind`},
		{"named port on IP", []string{"-f", example, "db/web-0", "10.9.9.9", "--port", "http"}, "named ports exist only on pods"},
		{"port out of range", []string{"-f", example, "db/web-0", "db/mysql-0", "--port", "70000"}, "out of range 1-65535"},
		{"bad protocol", []string{"-f", example, "db/web-0", "db/mysql-0", "--protocol", "icmp"}, `unknown protocol "icmp"`},
		{"bad output", []string{"-f", example, "db/web-0", "db/mysql-0", "-o", "wide"}, `unknown output format "wide"`},
		{"missing file", []string{"-f", filepath.Join(dir, "nope.yaml"), "a", "b"}, "nope.yaml: no such file"},
		{"malformed yaml", []string{"-f", malformed, "a", "b"}, malformed + ":9: malformed YAML"},
		{"unknown field", []string{"-f", unknownField, "a", "b"}, unknownField + `:7: invalid NetworkPolicy: unknown field "spec.ingress[0].frm"`},
		{"invalid policy", []string{"-f", example, "-f", invalid, "db/web-0", "db/mysql-0"}, invalid + ":2: networkpolicy db/bad-range is invalid: spec.ingress[0].ports[0].endPort"},
		{"misspelt kind", []string{"-f", typo, "a", "b"}, `unknown kind "NetworkPolicyy" in the files; did you mean "NetworkPolicy"?`},
		{"duplicate object", []string{"-f", example, "-f", example + "/db-policy.yaml", "a", "b"}, "NetworkPolicy db/db-policy is also defined at"},
		{"with-policy not a policy", []string{"-f", example, "db/web-0", "db/mysql-0", "--with-policy", notPolicy}, "not NetworkPolicies"},
		{"one argument", []string{"-f", example, "db/web-0"}, "accepts 2 arg(s)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := run(t, offlineFactory(t), "", append([]string{"explain"}, tc.args...)...)
			if err == nil {
				t.Fatalf("want an error, got output:\n%s", out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got:\n%v", tc.want, err)
			}
			noStackTrace(t, err.Error())
		})
	}
}

// An unreachable cluster names the context and server tried. This dials a
// closed loopback port through the real client-go transport.
func TestUnreachableCluster(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := writeFile(t, dir, "kubeconfig", `apiVersion: v1
kind: Config
clusters:
- name: gone
  cluster: {server: "https://127.0.0.1:1"}
contexts:
- name: gone-ctx
  context: {cluster: gone, user: u, namespace: db}
current-context: gone-ctx
users:
- name: u
  user: {token: x}
`)
	f := NewFactory(newConfigFlags())
	_, _, err := run(t, f, "", "explain", "--kubeconfig", kubeconfig, "web/frontend-1", "db/mysql-0", "--request-timeout", "5s")
	if err == nil {
		t.Fatal("want an error")
	}
	mustContain(t, err.Error(), "cannot reach the cluster", `context "gone-ctx"`, "server https://127.0.0.1:1", "-f FILE")
	noStackTrace(t, err.Error())

	// No kubeconfig at all: say so, and point at -f.
	t.Setenv("KUBECONFIG", filepath.Join(dir, "absent"))
	t.Setenv("HOME", dir)
	os.Unsetenv("KUBERNETES_SERVICE_HOST")
	_, _, err = run(t, NewFactory(newConfigFlags()), "", "matrix", "-n", "db")
	if err == nil {
		t.Fatal("want an error without any kubeconfig")
	}
	mustContain(t, err.Error(), "no cluster to talk to", "-f FILE")
}

func newConfigFlags() *genericclioptions.ConfigFlags { return genericclioptions.NewConfigFlags(false) }
