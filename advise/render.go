package advise

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// WriteYAML writes the proposals as YAML documents ready for kubectl apply,
// each rule preceded by a comment naming the observed connections it
// admits, and a leading comment with the window and what was not seen.
func WriteYAML(w io.Writer, r *Report) error {
	head := summary(r)
	if len(r.Proposals) == 0 {
		_, err := io.WriteString(w, comment(append(head, "No policy proposed.")...)+"\n")
		return err
	}
	for i := range r.Proposals {
		doc, err := document(&r.Proposals[i])
		if err != nil {
			return err
		}
		if i == 0 {
			doc.HeadComment = comment(head...) + "\n\n" + doc.HeadComment
		} else if _, err := io.WriteString(w, "---\n"); err != nil {
			return err
		}
		// One encoder per document: an encoder's event queue grows with
		// every document of its stream (quadratic for thousands).
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(doc); err != nil {
			return err
		}
		if err := enc.Close(); err != nil {
			return err
		}
	}
	return nil
}

// summary is the report's leading comment.
func summary(r *Report) []string {
	c := r.Coverage
	lines := []string{fmt.Sprintf("kubectl netpol advise: %d policies from %d history records, node(s) %s", len(r.Proposals), c.Records, strings.Join(c.Nodes, ", "))}
	if span := c.Span(); span != "" {
		lines = append(lines, "Observation window: "+span+"; only connections seen in it are admitted.")
	}
	if len(r.Proposals) > 0 && r.Proposals[0].Policy.Annotations[ModeAnnotation] == ModeAudit {
		lines = append(lines, "Audit mode ("+ModeAnnotation+": "+ModeAudit+"): the agent reports what each policy would deny",
			"without enforcing it; `kubectl netpol promote NAMESPACE/NAME` enforces one once nothing would be denied.")
	}
	for _, g := range c.Gaps {
		lines = append(lines, "Gap (an agent was not recording): "+g)
	}
	if c.DroppedRecords > 0 {
		lines = append(lines, fmt.Sprintf("The agents' budgets dropped %d older records (%d connections): they are not admitted.", c.DroppedRecords, c.DroppedConnections))
	}
	for node, why := range c.Unreachable {
		lines = append(lines, fmt.Sprintf("PARTIAL: node %s could not be read (%s): its connections are not admitted.", node, why))
	}
	list := func(title string, items []string) {
		if len(items) == 0 {
			return
		}
		lines = append(lines, title)
		for _, it := range items {
			lines = append(lines, "  "+it)
		}
	}
	list("Not seen in the window (no policy proposed):", r.NotSeen)
	list("Seen only before the window (not admitted):", pairLines(r.BeforeWindow))
	list("Denied when seen (not admitted):", pairLines(r.Denied))
	list("No policy proposed for:", r.Skipped)
	list("Not advised:", c.Errors)
	return lines
}

func pairLines(ps []Pair) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = fmt.Sprintf("%s -> %s %s/%d: %d connection(s), last seen %s", p.Source, p.Destination, p.Protocol, p.Port, p.Connections, stamp(p.LastSeen))
	}
	return out
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func comment(lines ...string) string {
	var b strings.Builder
	for i, l := range lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString("# " + l)
	}
	return b.String()
}

// document is the policy as a YAML node, keys in reading order, comments on
// the document and on each rule.
func document(p *Proposal) (*yaml.Node, error) {
	// The API's field names are the JSON ones: the policy goes through JSON
	// into plain values, and those into YAML nodes (no YAML parser).
	b, err := json.Marshal(p.Policy)
	if err != nil {
		return nil, fmt.Errorf("policy %s/%s: %w", p.Policy.Namespace, p.Policy.Name, err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("policy %s/%s: %w", p.Policy.Namespace, p.Policy.Name, err)
	}
	doc := yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{node(v)}}
	root := doc.Content[0]
	order(root, "apiVersion", "kind", "metadata", "spec")
	order(value(root, "metadata"), "name", "namespace", "labels", "annotations")
	spec := value(root, "spec")
	order(spec, "podSelector", "policyTypes", "ingress", "egress")
	head := []string{fmt.Sprintf("%s, %s: %d rule(s) admitting %d observed connection kind(s)", p.Workload, p.Direction, len(p.Rules), admitted(p))}
	for _, n := range p.Notes {
		head = append(head, "note: "+n)
	}
	for _, c := range p.Exempt {
		head = append(head, "needs no rule: "+connLine(c, p.Direction))
	}
	doc.HeadComment = comment(head...)
	if rules := value(spec, p.Direction); rules != nil {
		for i, r := range p.Rules {
			if i >= len(rules.Content) {
				break
			}
			lines := []string{fmt.Sprintf("rule %d admits:", r.Index)}
			for _, c := range r.Admits {
				lines = append(lines, "  "+connLine(c, p.Direction))
			}
			rules.Content[i].HeadComment = comment(lines...)
			order(rules.Content[i], "from", "to", "ports")
		}
	}
	return &doc, nil
}

func admitted(p *Proposal) int {
	n := 0
	for _, r := range p.Rules {
		n += len(r.Admits)
	}
	return n
}

func connLine(c Connection, dir string) string {
	way := "from"
	if dir == "egress" {
		way = "to"
	}
	port := fmt.Sprintf("%s/%d", c.Protocol, c.Port)
	if c.PortName != "" {
		port += " (" + c.PortName + ")"
	}
	s := fmt.Sprintf("%s %s %s: %d connection(s), last seen %s", way, c.Peer, port, c.Connections, stamp(c.LastSeen))
	if c.Note != "" {
		s += "; " + c.Note
	}
	return s
}

// value is the value node of key in a mapping node, or nil.
func value(m *yaml.Node, key string) *yaml.Node {
	if m == nil {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// order puts keys first, in that order; other keys follow as they were.
func order(m *yaml.Node, keys ...string) {
	if m == nil {
		return
	}
	out := make([]*yaml.Node, 0, len(m.Content))
	for _, k := range keys {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == k {
				out = append(out, m.Content[i], m.Content[i+1])
			}
		}
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		found := false
		for _, k := range keys {
			found = found || m.Content[i].Value == k
		}
		if !found {
			out = append(out, m.Content[i], m.Content[i+1])
		}
	}
	m.Content = out
}

// node is a JSON value as a YAML node, mapping keys sorted (callers
// order the ones people read first); nulls are left out.
func node(v any) *yaml.Node {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k, x := range v {
			if x != nil {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: make([]*yaml.Node, 0, 2*len(keys))}
		for _, k := range keys {
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, node(v[k]))
		}
		return n
	case []any:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: make([]*yaml.Node, len(v))}
		for i, x := range v {
			n.Content[i] = node(x)
		}
		return n
	case string:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v}
	case float64:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatFloat(v, 'f', -1, 64)}
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(v)}
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
}
