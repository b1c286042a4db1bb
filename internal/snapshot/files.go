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

var docSeparator = regexp.MustCompile(`^---\s*(#.*)?$`)

// splitDocuments splits a multi-document YAML stream, remembering where each
// document starts so errors point at the right line of the file.
func splitDocuments(data []byte) []document {
	var docs []document
	lines := bytes.SplitAfter(data, []byte("\n"))
	start, cur := 1, []byte(nil)
	for i, l := range lines {
		if docSeparator.Match(bytes.TrimRight(l, "\r\n")) {
			docs = append(docs, document{data: cur, line: start})
			cur, start = nil, i+2
			continue
		}
		cur = append(cur, l...)
	}
	return append(docs, document{data: cur, line: start})
}

var yamlLine = regexp.MustCompile(`line (\d+)`)

// typeMeta plus items is enough to route a document.
type envelope struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Items      []json.RawMessage `json:"items"`
}

// toJSON converts every document to JSON, spread over the CPUs: YAML parsing
// is most of the cost of loading a large cluster dump.
func toJSON(docs []document) ([][]byte, []error) {
	js := make([][]byte, len(docs))
	errs := make([]error, len(docs))
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
				if len(bytes.TrimSpace(stripComments(docs[i].data))) == 0 {
					continue
				}
				js[i], errs[i] = kyaml.YAMLToJSON(docs[i].data)
			}
		}()
	}
	wg.Wait()
	return js, errs
}

func (s *Set) addManifest(file string, data []byte, defaultNamespace string) error {
	docs := splitDocuments(data)
	jsons, errs := toJSON(docs)
	for i, doc := range docs {
		js, err := jsons[i], errs[i]
		if js == nil && err == nil {
			continue // empty or comments only
		}
		if err != nil {
			return &FileError{File: file, Line: doc.line + relativeLine(err.Error()) - 1, Err: cleanYAMLError(err)}
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue
		}
		var env envelope
		if err := json.Unmarshal(js, &env); err != nil {
			return &FileError{File: file, Line: doc.line, Err: fmt.Errorf("not a Kubernetes object: %v", err)}
		}
		if env.Kind == "" {
			return &FileError{File: file, Line: doc.line, Err: errors.New("object has no kind")}
		}
		if strings.HasSuffix(env.Kind, "List") && env.Items != nil {
			for i, item := range env.Items {
				line := itemLine(doc, i)
				if err := s.addObject(file, line, item, defaultNamespace, nil); err != nil {
					return err
				}
			}
			continue
		}
		if err := s.addObject(file, doc.line+leadingComments(doc.data), js, defaultNamespace, &doc); err != nil {
			return err
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

func stripComments(b []byte) []byte {
	var out []byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			out = append(out, l...)
		}
	}
	return out
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

func (s *Set) addObject(file string, line int, js []byte, defaultNamespace string, doc *document) error {
	var env envelope
	_ = json.Unmarshal(js, &env)
	where := fmt.Sprintf("%s:%d", file, line)
	decode := func(obj any) error { return decodeStrict(file, line, js, doc, obj, env.Kind) }
	named := func(m *metav1.ObjectMeta, namespaced bool) error {
		if m.Name == "" {
			return &FileError{File: file, Line: line, Err: fmt.Errorf("%s has no metadata.name", env.Kind)}
		}
		if namespaced && m.Namespace == "" {
			m.Namespace = defaultNamespace
		}
		ns := m.Namespace
		if !namespaced {
			ns = ""
		}
		if prev := s.Origin(env.Kind, ns, m.Name); prev != "" {
			return &FileError{File: file, Line: line, Err: fmt.Errorf("%s %s is also defined at %s", env.Kind, nsName(ns, m.Name), prev)}
		}
		s.setOrigin(env.Kind, ns, m.Name, where)
		return nil
	}
	group := env.APIVersion
	if i := strings.IndexByte(group, '/'); i >= 0 {
		group = group[:i]
	} else {
		group = ""
	}
	switch {
	case env.Kind == "Namespace" && group == "":
		o := &corev1.Namespace{}
		if err := decode(o); err != nil {
			return err
		}
		if err := named(&o.ObjectMeta, false); err != nil {
			return err
		}
		s.Namespaces = append(s.Namespaces, o)
	case env.Kind == "Pod" && group == "":
		o := &corev1.Pod{}
		if err := decode(o); err != nil {
			return err
		}
		if err := named(&o.ObjectMeta, true); err != nil {
			return err
		}
		s.Pods = append(s.Pods, o)
	case env.Kind == "Node" && group == "":
		o := &corev1.Node{}
		if err := decode(o); err != nil {
			return err
		}
		if err := named(&o.ObjectMeta, false); err != nil {
			return err
		}
		s.Nodes = append(s.Nodes, o)
	case env.Kind == "NetworkPolicy" && group == "networking.k8s.io":
		o := &networkingv1.NetworkPolicy{}
		if err := decode(o); err != nil {
			return err
		}
		if err := named(&o.ObjectMeta, true); err != nil {
			return err
		}
		s.Policies = append(s.Policies, o)
	case env.Kind == KindClusterNetworkPolicy && group == cnpv1beta1.GroupName:
		// v1alpha2 has v1beta1's schema: both decode into the one type.
		if v := strings.TrimPrefix(env.APIVersion, group+"/"); v != "v1beta1" && v != "v1alpha2" {
			return &FileError{File: file, Line: line, Err: fmt.Errorf("ClusterNetworkPolicy version %q is not served; use %s/v1beta1 (or v1alpha2)", v, group)}
		}
		o := &cnpv1beta1.ClusterNetworkPolicy{}
		if err := decode(o); err != nil {
			return err
		}
		if err := named(&o.ObjectMeta, false); err != nil {
			return err
		}
		s.ClusterPolicies = append(s.ClusterPolicies, o)
	case group == "apps" && (env.Kind == "Deployment" || env.Kind == "StatefulSet" || env.Kind == "DaemonSet" || env.Kind == "ReplicaSet"),
		group == "batch" && env.Kind == "Job":
		w, err := decodeWorkload(env.Kind, decode)
		if err != nil {
			return err
		}
		m := metav1.ObjectMeta{Name: w.Name, Namespace: w.Namespace}
		if err := named(&m, true); err != nil {
			return err
		}
		w.Namespace = m.Namespace
		if w.Template != nil && w.Template.Namespace == "" {
			w.Template.Namespace = w.Namespace
		}
		s.Workloads = append(s.Workloads, w)
	default:
		if s.Ignored == nil {
			s.Ignored = map[string]int{}
		}
		s.Ignored[env.Kind]++
	}
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
