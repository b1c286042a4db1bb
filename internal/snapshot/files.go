package snapshot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "sigs.k8s.io/json"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	kyaml "sigs.k8s.io/yaml"
)

// FileError is a problem in one input file, located to a line.
type FileError struct {
	File string
	Line int // 1-based; 0 when unknown
	Err  error
}

func (e *FileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// manifestExt are the file extensions read from a directory.
var manifestExt = map[string]bool{".yaml": true, ".yml": true, ".json": true}

// LoadFiles reads every object in paths (files, or directories whose
// .yaml/.yml/.json files are read; recursively when recursive is set).
// Namespaced objects without a namespace land in defaultNamespace, as with
// `kubectl apply -f`.
func LoadFiles(paths []string, recursive bool, defaultNamespace string) (*Set, error) {
	s := &Set{}
	for _, p := range paths {
		files, err := expand(p, recursive)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", f, err)
			}
			if err := s.addManifest(f, data, defaultNamespace); err != nil {
				return nil, err
			}
		}
	}
	s.sortObjects()
	return s, nil
}

// LoadPolicyFiles reads NetworkPolicies and ClusterNetworkPolicies only
// (for --with-policy) into a Set; any other kind is an error, since a
// what-if that silently ignored part of its input would answer the wrong
// question.
func LoadPolicyFiles(paths []string, defaultNamespace string) (*Set, error) {
	s, err := LoadFiles(paths, false, defaultNamespace)
	if err != nil {
		return nil, err
	}
	if n := len(s.Pods) + len(s.Namespaces) + len(s.Nodes) + len(s.Workloads) + len(s.Ignored); n > 0 {
		return nil, fmt.Errorf("--with-policy %s: holds %d object(s) that are not NetworkPolicies or ClusterNetworkPolicies; pass only policies (use -f for the rest)", strings.Join(paths, ","), n)
	}
	if len(s.Policies)+len(s.ClusterPolicies) == 0 {
		return nil, fmt.Errorf("--with-policy %s: no NetworkPolicy or ClusterNetworkPolicy found", strings.Join(paths, ","))
	}
	return s, nil
}

// SetWhatIf applies the policies of w (LoadPolicyFiles) to s, replacing
// those with the same names, and returns the replaced ones' names
// ("namespace/name", or the name of a ClusterNetworkPolicy).
func (s *Set) SetWhatIf(w *Set) []string {
	replaced := s.SetPolicies(w.Policies, func(p *networkingv1.NetworkPolicy) string {
		return w.Origin("NetworkPolicy", p.Namespace, p.Name)
	})
	return append(replaced, s.SetClusterPolicies(w.ClusterPolicies, func(p *cnpv1beta1.ClusterNetworkPolicy) string {
		return w.Origin(KindClusterNetworkPolicy, "", p.Name)
	})...)
}

func expand(path string, recursive bool) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, errors.Unwrap(err))
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != path && !recursive {
				return fs.SkipDir
			}
			return nil
		}
		if manifestExt[strings.ToLower(filepath.Ext(p))] {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading directory %s: %w", path, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("directory %s holds no .yaml, .yml or .json files", path)
	}
	sort.Strings(files)
	return files, nil
}

// document is one YAML document of a file and the line it starts on.
type document struct {
	data []byte
	line int // 1-based line of the document's first line in the file
}

// isDocSeparator matches a "---" line (optionally followed by a comment),
// without a regexp: it runs on every line of a large dump.
func isDocSeparator(l []byte) bool {
	if !bytes.HasPrefix(l, []byte("---")) {
		return false
	}
	rest := bytes.TrimLeft(l[3:], " \t")
	return len(rest) == 0 || rest[0] == '#'
}

// splitDocuments splits a multi-document YAML stream, remembering where each
// document starts so errors point at the right line of the file. Documents
// are slices of data.
func splitDocuments(data []byte) []document {
	var docs []document
	start, from, line := 1, 0, 1
	for off := 0; off < len(data); line++ {
		end := bytes.IndexByte(data[off:], '\n')
		next := len(data)
		if end >= 0 {
			next = off + end + 1
		}
		if isDocSeparator(bytes.TrimRight(data[off:next], "\r\n")) {
			docs = append(docs, document{data: data[from:off:off], line: start})
			from, start = next, line+1
		}
		off = next
	}
	return append(docs, document{data: data[from:len(data):len(data)], line: start})
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// typeMeta plus items is enough to route a document.
type envelope struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Items      []json.RawMessage `json:"items"`
}

// parsed is one document after the parallel stage: its JSON, its type and,
// for a single object of a kind the loader reads, the decoded object.
type parsed struct {
	js   []byte
	env  envelope
	obj  *loadedObject
	line int // where the object starts, for origins and messages
	err  error
}

// parseDocuments converts and decodes every document, spread over the
// CPUs: YAML parsing and decoding are most of the cost of loading a large
// cluster dump. Merging into the Set (names, duplicates) stays sequential.
func parseDocuments(file string, docs []document) []parsed {
	out := make([]parsed, len(docs))
	next := make(chan int, len(docs))
	for i := range docs {
		next <- i
	}
	close(next)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(docs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i] = parseDocument(file, &docs[i])
			}
		}()
	}
	wg.Wait()
	return out
}

func parseDocument(file string, doc *document) parsed {
	if !hasContent(doc.data) {
		return parsed{} // empty or comments only
	}
	var top topLevel
	routed := false // the fast YAML path saw apiVersion and kind
	js, isJSON := jsonDocument(doc.data)
	if !isJSON {
		js, top, routed = blockYAMLToJSONTop(doc.data)
	}
	if js == nil {
		var err error
		if js, err = kyaml.YAMLToJSON(doc.data); err != nil {
			return parsed{err: &FileError{File: file, Line: doc.line + relativeLine(err.Error()) - 1, Err: cleanYAMLError(err)}}
		}
	}
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return parsed{}
	}
	p := parsed{js: js, line: doc.line + leadingComments(doc.data)}
	if routed && !top.hasItems && js[0] == '{' {
		p.env = top.env // routed by the fast path: no second pass over the JSON
	} else if err := json.Unmarshal(js, &p.env); err != nil {
		p.err = &FileError{File: file, Line: doc.line, Err: fmt.Errorf("not a Kubernetes object: %v", err)}
		return p
	}
	if p.env.Kind == "" {
		p.err = &FileError{File: file, Line: doc.line, Err: errors.New("object has no kind")}
		return p
	}
	if !isList(p.env) {
		p.obj, p.err = decodeObject(file, p.line, js, doc, p.env)
	}
	return p
}

// jsonDocument returns a document that is a JSON object as it is: JSON
// needs no YAML parser.
func jsonDocument(data []byte) ([]byte, bool) {
	t := bytes.TrimSpace(data)
	if len(t) == 0 || t[0] != '{' || !json.Valid(t) {
		return nil, false
	}
	return t, true
}

func isList(env envelope) bool { return strings.HasSuffix(env.Kind, "List") && env.Items != nil }

func (s *Set) addManifest(file string, data []byte, defaultNamespace string) error {
	docs := splitDocuments(data)
	for i, p := range parseDocuments(file, docs) {
		switch {
		case p.err != nil:
			return p.err
		case p.js == nil:
		case isList(p.env):
			for j, item := range p.env.Items {
				line := itemLine(docs[i], j)
				var env envelope
				_ = json.Unmarshal(item, &env)
				o, err := decodeObject(file, line, item, nil, env)
				if err != nil {
					return err
				}
				if err := s.place(file, line, o, defaultNamespace); err != nil {
					return err
				}
			}
		default:
			if err := s.place(file, p.line, p.obj, defaultNamespace); err != nil {
				return err
			}
		}
	}
	return nil
}

func relativeLine(msg string) int {
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 1
}

// cleanYAMLError drops the library's wrapping and the document-relative line
// (the FileError carries the line within the file).
func cleanYAMLError(err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = regexp.MustCompile(`^line \d+: `).ReplaceAllString(msg, "")
	return errors.New("malformed YAML: " + msg)
}

// leadingComments counts the blank and comment lines before a document's
// content, so an object's line is where its first field is.
func leadingComments(b []byte) int {
	n := 0
	for _, l := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			break
		}
		n++
	}
	return n
}

// hasContent reports whether b holds a line that is neither blank nor a comment.
func hasContent(b []byte) bool {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			return true
		}
	}
	return false
}

// itemLine finds the line of items[i] of a List document.
func itemLine(doc document, i int) int {
	if n := nodeAt(doc.data, fmt.Sprintf("items[%d]", i)); n != nil {
		return doc.line + n.Line - 1
	}
	return doc.line
}

// nodeAt returns the YAML node at a field path such as
// "spec.ingress[0].from", or nil.
func nodeAt(data []byte, path string) *yaml.Node {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 {
		return nil
	}
	n := root.Content[0]
	for _, part := range strings.Split(path, ".") {
		name, idx := part, -1
		if b := strings.IndexByte(part, '['); b >= 0 && strings.HasSuffix(part, "]") {
			name = part[:b]
			idx, _ = strconv.Atoi(part[b+1 : len(part)-1])
		}
		if name != "" {
			if n = child(n, name); n == nil {
				return nil
			}
		}
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return nil
			}
			n = n.Content[idx]
		}
	}
	return n
}

func child(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			// Point at the key: that is where a user looks for a misspelt field.
			if n.Content[i+1].Kind == yaml.ScalarNode {
				return n.Content[i+1]
			}
			k := *n.Content[i+1]
			k.Line = n.Content[i].Line
			return &k
		}
	}
	return nil
}

var strictField = regexp.MustCompile(`unknown field "([^"]+)"|duplicate field "([^"]+)"`)

// decodeStrict decodes a typed object, rejecting unknown and duplicate fields
// as `kubectl apply` does; the error is located to the field's line when the
// document's source is at hand.
func decodeStrict(file string, line int, js []byte, doc *document, obj any, kind string) error {
	strictErrs, err := kjson.UnmarshalStrict(js, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return &FileError{File: file, Line: line, Err: fmt.Errorf("invalid %s: %v", kind, err)}
	}
	if len(strictErrs) > 0 {
		first := strictErrs[0].Error()
		at := line
		if m := strictField.FindStringSubmatch(first); m != nil && doc != nil {
			field := m[1] + m[2]
			if n := nodeAt(doc.data, field); n != nil {
				at = doc.line + n.Line - 1
			}
		}
		msgs := make([]string, len(strictErrs))
		for i, e := range strictErrs {
			msgs[i] = e.Error()
		}
		return &FileError{File: file, Line: at, Err: fmt.Errorf("invalid %s: %s", kind, strings.Join(msgs, "; "))}
	}
	return nil
}

// kindSpec is how the loader reads one kind: a new kind is one entry of
// loadedKinds.
type kindSpec struct {
	namespaced bool
	// versions, when set, are the API versions accepted (the first is named
	// in the error); otherwise any version decodes.
	versions []string
	// decode reads the object with strict (unknown and duplicate fields are
	// errors) and returns its metadata and how to add it to a Set once its
	// namespace is defaulted and its name checked.
	decode func(kind string, strict func(any) error) (metav1.Object, func(*Set), error)
}

// object is a kindSpec.decode for a typed API object appended to a Set.
func object[T any, P interface {
	*T
	metav1.Object
}](namespaced bool, add func(*Set, P)) kindSpec {
	return kindSpec{namespaced: namespaced, decode: func(_ string, strict func(any) error) (metav1.Object, func(*Set), error) {
		o := P(new(T))
		if err := strict(o); err != nil {
			return nil, nil, err
		}
		return o, func(s *Set) { add(s, o) }, nil
	}}
}

// served limits a kind to these API versions (the first is the one named
// in the error).
func (k kindSpec) served(versions ...string) kindSpec {
	k.versions = versions
	return k
}

// workload reads a controller into a Workload.
var workload = kindSpec{namespaced: true, decode: func(kind string, strict func(any) error) (metav1.Object, func(*Set), error) {
	w, err := decodeWorkload(kind, strict)
	if err != nil {
		return nil, nil, err
	}
	m := &metav1.ObjectMeta{Name: w.Name, Namespace: w.Namespace}
	return m, func(s *Set) {
		w.Namespace = m.Namespace
		if w.Template != nil && w.Template.Namespace == "" {
			w.Template.Namespace = w.Namespace
		}
		s.Workloads = append(s.Workloads, w)
	}, nil
}}

// loadedKinds are the kinds evaluation uses, by API group and kind; other
// kinds are counted in Set.Ignored.
var loadedKinds = map[schema.GroupKind]kindSpec{
	{Kind: "Namespace"}: object(false, func(s *Set, o *corev1.Namespace) { s.Namespaces = append(s.Namespaces, o) }),
	{Kind: "Pod"}:       object(true, func(s *Set, o *corev1.Pod) { s.Pods = append(s.Pods, o) }),
	{Kind: "Node"}:      object(false, func(s *Set, o *corev1.Node) { s.Nodes = append(s.Nodes, o) }),
	{Group: "networking.k8s.io", Kind: "NetworkPolicy"}: object(true, func(s *Set, o *networkingv1.NetworkPolicy) {
		s.Policies = append(s.Policies, o)
	}),
	// v1alpha2 has v1beta1's schema: both decode into the one type.
	{Group: cnpv1beta1.GroupName, Kind: KindClusterNetworkPolicy}: object(false, func(s *Set, o *cnpv1beta1.ClusterNetworkPolicy) {
		s.ClusterPolicies = append(s.ClusterPolicies, o)
	}).served("v1beta1", "v1alpha2"),
	{Group: "apps", Kind: "Deployment"}:  workload,
	{Group: "apps", Kind: "StatefulSet"}: workload,
	{Group: "apps", Kind: "DaemonSet"}:   workload,
	{Group: "apps", Kind: "ReplicaSet"}:  workload,
	{Group: "batch", Kind: "Job"}:        workload,
}

// loadedObject is a decoded document on its way into a Set; spec is nil
// for a kind the loader does not read.
type loadedObject struct {
	kind string
	spec *kindSpec
	meta metav1.Object
	add  func(*Set)
}

// decodeObject decodes one object of a loaded kind (safe to run in
// parallel: it touches no Set).
func decodeObject(file string, line int, js []byte, doc *document, env envelope) (*loadedObject, error) {
	group, version := "", env.APIVersion
	if i := strings.IndexByte(version, '/'); i >= 0 {
		group, version = version[:i], version[i+1:]
	}
	spec, ok := loadedKinds[schema.GroupKind{Group: group, Kind: env.Kind}]
	if !ok {
		return &loadedObject{kind: env.Kind}, nil
	}
	if len(spec.versions) > 0 && !slices.Contains(spec.versions, version) {
		use := group + "/" + spec.versions[0]
		if len(spec.versions) > 1 {
			use += " (or " + strings.Join(spec.versions[1:], ", ") + ")"
		}
		return nil, &FileError{File: file, Line: line, Err: fmt.Errorf("%s version %q is not served; use %s", env.Kind, version, use)}
	}
	meta, add, err := spec.decode(env.Kind, func(obj any) error { return decodeStrict(file, line, js, doc, obj, env.Kind) })
	if err != nil {
		return nil, err
	}
	return &loadedObject{kind: env.Kind, spec: &spec, meta: meta, add: add}, nil
}

// place adds a decoded object: the default namespace applied, its name
// required and unique per kind.
func (s *Set) place(file string, line int, o *loadedObject, defaultNamespace string) error {
	if o.spec == nil {
		if s.Ignored == nil {
			s.Ignored = map[string]int{}
		}
		s.Ignored[o.kind]++
		return nil
	}
	m := o.meta
	if m.GetName() == "" {
		return &FileError{File: file, Line: line, Err: fmt.Errorf("%s has no metadata.name", o.kind)}
	}
	ns := ""
	if o.spec.namespaced {
		if m.GetNamespace() == "" {
			m.SetNamespace(defaultNamespace)
		}
		ns = m.GetNamespace()
	}
	if prev := s.Origin(o.kind, ns, m.GetName()); prev != "" {
		return &FileError{File: file, Line: line, Err: fmt.Errorf("%s %s is also defined at %s", o.kind, nsName(ns, m.GetName()), prev)}
	}
	s.setOrigin(o.kind, ns, m.GetName(), fmt.Sprintf("%s:%d", file, line))
	o.add(s)
	return nil
}

func decodeWorkload(kind string, decode func(any) error) (Workload, error) {
	w := Workload{Kind: kind}
	switch kind {
	case "Deployment":
		o := &appsv1.Deployment{}
		if err := decode(o); err != nil {
			return w, err
		}
		w.Namespace, w.Name, w.Selector, w.Template = o.Namespace, o.Name, o.Spec.Selector, &o.Spec.Template
	case "StatefulSet":
		o := &appsv1.StatefulSet{}
		if err := decode(o); err != nil {
			return w, err
		}
		w.Namespace, w.Name, w.Selector, w.Template = o.Namespace, o.Name, o.Spec.Selector, &o.Spec.Template
	case "DaemonSet":
		o := &appsv1.DaemonSet{}
		if err := decode(o); err != nil {
			return w, err
		}
		w.Namespace, w.Name, w.Selector, w.Template = o.Namespace, o.Name, o.Spec.Selector, &o.Spec.Template
	case "ReplicaSet":
		o := &appsv1.ReplicaSet{}
		if err := decode(o); err != nil {
			return w, err
		}
		w.Namespace, w.Name, w.Selector, w.Template = o.Namespace, o.Name, o.Spec.Selector, &o.Spec.Template
	case "Job":
		o := &batchv1.Job{}
		if err := decode(o); err != nil {
			return w, err
		}
		w.Namespace, w.Name, w.Selector, w.Template = o.Namespace, o.Name, o.Spec.Selector, &o.Spec.Template
		if w.Selector == nil && o.Spec.Template.Labels != nil {
			// The API server generates a Job's selector from the template; manifests rarely carry one.
			w.Selector = &metav1.LabelSelector{MatchLabels: o.Spec.Template.Labels}
		}
	}
	return w, nil
}

func nsName(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}
