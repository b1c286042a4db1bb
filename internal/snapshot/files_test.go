package snapshot

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadFilesFormats(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.yaml", `# leading comment
---
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: a}}
---
---
apiVersion: v1
kind: PodList
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: a}
- apiVersion: v1
  kind: Pod
  metadata: {name: b, namespace: why}
`)
	write(t, dir, "b.json", `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"deny","namespace":"x"},"spec":{"podSelector":{}}}`)
	write(t, dir, "notes.txt", "not read")
	write(t, dir, "sub/c.yml", `apiVersion: batch/v1
kind: Job
metadata: {name: j, namespace: x}
spec:
  template:
    metadata: {labels: {job: j}}
    spec: {containers: [{name: c, image: i}]}
---
apiVersion: v1
kind: Service
metadata: {name: s}
`)
	s, err := LoadFiles([]string{dir}, false, "x")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Namespaces) != 1 || len(s.Pods) != 2 || len(s.Policies) != 1 || len(s.Workloads) != 0 {
		t.Fatalf("non-recursive: %d ns, %d pods, %d policies, %d workloads", len(s.Namespaces), len(s.Pods), len(s.Policies), len(s.Workloads))
	}
	if s.Pods[1].Namespace != "x" || s.Pods[1].Name != "a" || s.Pods[0].Namespace != "why" {
		t.Errorf("default namespace not applied (or unsorted): %s/%s %s/%s", s.Pods[0].Namespace, s.Pods[0].Name, s.Pods[1].Namespace, s.Pods[1].Name)
	}
	if got := s.Origin("Pod", "why", "b"); got != filepath.Join(dir, "a.yaml")+":14" {
		t.Errorf("origin of list item: %q", got)
	}
	if got := s.Origin("Namespace", "", "x"); got != filepath.Join(dir, "a.yaml")+":3" {
		t.Errorf("origin of namespace: %q", got)
	}
	s, err = LoadFiles([]string{dir}, true, "x")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Workloads) != 1 || s.Workloads[0].Selector == nil || s.Workloads[0].Selector.MatchLabels["job"] != "j" {
		t.Fatalf("recursive: job selector from template expected, got %+v", s.Workloads)
	}
	if s.Ignored["Service"] != 1 {
		t.Errorf("ignored kinds: %v", s.Ignored)
	}
}

func TestLoadFilesErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, content, want string
		line                int
	}{
		{"syntax", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: [a\n", "malformed YAML", 4},
		{"syntax second doc", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\nkind: Pod\n metadata: x\n  - y\n", "malformed YAML", 6},
		{"unknown field", "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  containers: []\n  hostNetwrk: true\n", `unknown field "spec.hostNetwrk"`, 6},
		{"wrong type", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a}\nspec:\n  podSelector: web\n", "invalid NetworkPolicy", 1},
		{"no kind", "apiVersion: v1\nmetadata: {name: a}\n", "object has no kind", 1},
		{"no name", "apiVersion: v1\nkind: Pod\nmetadata: {namespace: a}\n", "Pod has no metadata.name", 1},
		{"not an object", "- a\n- b\n", "not a Kubernetes object", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := write(t, dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml", tc.content)
			_, err := LoadFiles([]string{p}, false, "default")
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("want a FileError, got %v", err)
			}
			if fe.File != p || fe.Line != tc.line || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %s:%d ... %q, got %v", p, tc.line, tc.want, err)
			}
		})
	}
	if _, err := LoadFiles([]string{t.TempDir()}, false, "default"); err == nil || !strings.Contains(err.Error(), "holds no .yaml") {
		t.Errorf("empty directory: %v", err)
	}
}

func TestSetPoliciesReplaces(t *testing.T) {
	dir := t.TempDir()
	base := write(t, dir, "base.yaml", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec: {podSelector: {}}\n")
	what := write(t, dir, "what.yaml", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {podSelector: {matchLabels: {x: z}}}\n"+
		"---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: q}\nspec: {podSelector: {}}\n")
	s, err := LoadFiles([]string{base}, false, "a")
	if err != nil {
		t.Fatal(err)
	}
	w, err := LoadPolicyFiles([]string{what}, "a")
	if err != nil {
		t.Fatal(err)
	}
	replaced := s.SetWhatIf(w)
	if len(s.Policies) != 2 || len(replaced) != 1 || replaced[0] != "a/p" || s.Policies[0].Spec.PodSelector.MatchLabels["x"] != "z" {
		t.Fatalf("replace/add failed: replaced=%v policies=%d", replaced, len(s.Policies))
	}
	if s.Origin("NetworkPolicy", "a", "p") != what+":1" {
		t.Errorf("origin after replace: %q", s.Origin("NetworkPolicy", "a", "p"))
	}
}

// FuzzManifest: any input gives objects or an error, never a panic.
func FuzzManifest(f *testing.F) {
	f.Add([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n"))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: n}}\n"))
	f.Add([]byte("---\n---\n{\"kind\":\"NetworkPolicy\",\"apiVersion\":\"networking.k8s.io/v1\",\"metadata\":{\"name\":\"x\"},\"spec\":{\"ingress\":[{}]}}"))
	f.Add([]byte("kind: Pod\nmetadata:\n  name: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &Set{}
		err := s.addManifest("fuzz.yaml", data, "default")
		var fe *FileError
		if err != nil && !errors.As(err, &fe) {
			t.Fatalf("error without file and line: %v", err)
		}
		if fe != nil && fe.Line < 0 {
			t.Fatalf("negative line: %v", err)
		}
	})
}

// TestKindTable: a kind is one loadedKinds entry; one limited to some API
// versions names the version to use.
func TestKindTable(t *testing.T) {
	gk := schema.GroupKind{Group: "example.com", Kind: "Widget"}
	var got []*corev1.ConfigMap
	loadedKinds[gk] = object(false, func(_ *Set, o *corev1.ConfigMap) { got = append(got, o) }).served("v1", "v1beta1")
	defer delete(loadedKinds, gk)
	dir := t.TempDir()
	ok := write(t, dir, "ok.yaml", "apiVersion: example.com/v1beta1\nkind: Widget\nmetadata: {name: w}\ndata: {a: b}\n")
	if _, err := LoadFiles([]string{ok}, false, "x"); err != nil || len(got) != 1 || got[0].Data["a"] != "b" {
		t.Fatalf("served version: err %v, decoded %v", err, got)
	}
	bad := write(t, dir, "bad.yaml", "# c\napiVersion: example.com/v2\nkind: Widget\nmetadata: {name: w}\n")
	_, err := LoadFiles([]string{bad}, false, "x")
	want := bad + `:2: Widget version "v2" is not served; use example.com/v1 (or v1beta1)`
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}
