package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

const checkExample = `  # Assert connectivity in CI: exit status 1 if any expectation fails
  cat <<EOF | kubectl netpol check -f examples/db-policy
  {"id":"web-to-db","src":"db/web-0","dst":"db/mysql-0","port":"mysql","expect":"allowed"}
  {"id":"frontend-to-db","src":"web/frontend-1","dst":"db/mysql-0","port":3306,"expect":"denied"}
  EOF

  # Bulk evaluation from a file, one JSON result per line
  kubectl netpol check items.jsonl -o json`

// CheckItem is one question of `check`: JSON lines or a YAML list of these.
type CheckItem struct {
	ID       string             `json:"id,omitempty"`
	Src      string             `json:"src"`
	Dst      string             `json:"dst"`
	Port     intstr.IntOrString `json:"port"`
	Protocol string             `json:"protocol,omitempty"`
	// Expect is "allowed" or "denied"; empty means just report.
	Expect string `json:"expect,omitempty"`
}

// CheckResult is one `check -o json` line: the item's fields plus the answer.
type CheckResult struct {
	CheckItem
	Allowed bool   `json:"allowed"`
	Reason  string `json:"reason"`
	// Pass is set when the item had an expectation.
	Pass *bool `json:"pass,omitempty"`
}

// CheckOptions evaluates many items against one snapshot.
type CheckOptions struct {
	SourceOptions
	genericiooptions.IOStreams

	Output string
	Input  string // file argument; "" or "-" is stdin

	namespace string
}

// NewCmdCheck returns `kubectl netpol check [FILE]`.
func NewCmdCheck(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &CheckOptions{IOStreams: streams, SourceOptions: SourceOptions{factory: f}}
	cmd := &cobra.Command{
		Use:   "check [FILE]",
		Short: "Evaluate many src/dst/port items at once; exit 1 if any expectation fails",
		Long: `Evaluate connectivity items in bulk: for CI assertions and fast what-if checks.

Items are JSON lines (or a JSON/YAML list) read from FILE or stdin:
  {"id":"…","src":"ns/pod"|IP,"dst":…,"port":80|"name","protocol":"TCP","expect":"allowed"|"denied"}
id, protocol (default TCP) and expect are optional; src and dst take the same
forms as explain (ns/pod, deploy/NAME, an IP …). Each item prints one result;
the exit status is 1 if any item's expectation fails.`,
		Example: checkExample,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(f, args); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	o.SourceOptions.AddFlags(cmd.Flags())
	cmd.Flags().StringVarP(&o.Output, "output", "o", "text", "Output format: text or json (one JSON object per line)")
	return cmd
}

// Complete records the input and namespace.
func (o *CheckOptions) Complete(f *Factory, args []string) error {
	if len(args) == 1 {
		o.Input = args[0]
	}
	var err error
	o.namespace, _, err = f.Namespace(o.Offline())
	return err
}

// Validate checks the output format.
func (o *CheckOptions) Validate() error {
	if o.Output != "text" && o.Output != "json" {
		return fmt.Errorf("unknown output format %q: use text or json", o.Output)
	}
	return nil
}

// checkQuestion is a parsed item, with where it came from for messages.
type checkQuestion struct {
	item     CheckItem
	where    string
	src, dst peerRef
	proto    corev1.Protocol
	expect   *bool
}

// Run reads the items, evaluates each, prints results, and returns an
// ExitError{1} when an expectation failed.
func (o *CheckOptions) Run(ctx context.Context) error {
	name, data, err := o.readInput()
	if err != nil {
		return err
	}
	items, err := parseCheckItems(name, data)
	if err != nil {
		return err
	}
	qs, err := o.parseQuestions(items)
	if err != nil {
		return err
	}
	refs := make([]peerRef, 0, 2*len(qs))
	for _, q := range qs {
		refs = append(refs, q.src, q.dst)
	}
	set, err := o.Load(ctx, scopeFor(refs), o.namespace)
	if err != nil {
		return err
	}
	res := newResolver(set)
	engine, err := newEngine(set)
	if err != nil {
		return err
	}
	resolved := map[peerRef]endpoint{}
	lookup := func(r peerRef) (endpoint, error) {
		if ep, ok := resolved[r]; ok {
			return ep, nil
		}
		ep, err := res.resolve(r)
		if err == nil {
			resolved[r] = ep
		}
		return ep, err
	}
	out := bufio.NewWriterSize(o.Out, 64<<10)
	enc := json.NewEncoder(out)
	failed := 0
	for _, q := range qs {
		src, err := lookup(q.src)
		if err != nil {
			return fmt.Errorf("%s: src %v", q.where, err)
		}
		dst, err := lookup(q.dst)
		if err != nil {
			return fmt.Errorf("%s: dst %v", q.where, err)
		}
		var port portSpec
		if q.item.Port.Type == intstr.String {
			if port, err = resolveUserPort(q.item.Port.StrVal, q.proto, dst); err != nil {
				return fmt.Errorf("%s: %v", q.where, err)
			}
		} else {
			port = portSpec{Port: q.item.Port.IntVal, Protocol: q.proto}
		}
		// The one-line reason needs what decided, not why every other rule did not match.
		d := engine.Why(trafficOf(src, dst, port.Port, port.Protocol))
		r := CheckResult{CheckItem: q.item, Allowed: d.Allowed, Reason: reasonOf(d, src, dst)}
		if q.expect != nil {
			pass := *q.expect == d.Allowed
			r.Pass = &pass
			if !pass {
				failed++
			}
		}
		if o.Output == "json" {
			if err := enc.Encode(r); err != nil {
				return err
			}
			continue
		}
		writeCheckText(out, r, port)
	}
	if o.Output == "text" {
		fmt.Fprintf(out, "%d items, %d failed\n", len(qs), failed)
	}
	if err := out.Flush(); err != nil {
		return err
	}
	if failed > 0 {
		return &ExitError{Code: 1}
	}
	return nil
}

func (o *CheckOptions) readInput() (string, []byte, error) {
	if o.Input == "" || o.Input == "-" {
		if o.In == nil {
			return "", nil, fmt.Errorf("no items: give a FILE or pipe JSON lines to stdin")
		}
		if f, ok := o.In.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				return "", nil, fmt.Errorf("no items: give a FILE or pipe JSON lines to stdin (stdin is a terminal)")
			}
		}
		data, err := io.ReadAll(o.In)
		return "stdin", data, err
	}
	data, err := os.ReadFile(o.Input)
	if err != nil {
		return "", nil, fmt.Errorf("reading items: %w", err)
	}
	return o.Input, data, nil
}

// parseCheckItems reads JSON lines (objects one after another) or a JSON or
// YAML list, naming the line of a malformed item.
func parseCheckItems(name string, data []byte) ([]located, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%s: no items", name)
	}
	if trimmed[0] == '{' {
		var out []located
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		counted, lines := 0, 0 // newlines before counted: items are counted once, not from the start each time
		for {
			start := dec.InputOffset()
			var it CheckItem
			err := dec.Decode(&it)
			if err == io.EOF {
				return out, nil
			}
			lines += bytes.Count(data[counted:start], []byte("\n"))
			counted = int(start)
			line := 1 + lines
			// Decode starts at the previous value's end; the item starts after whitespace.
			for i := int(start); i < len(data) && (data[i] == '\n' || data[i] == ' ' || data[i] == '\r' || data[i] == '\t'); i++ {
				if data[i] == '\n' {
					line++
				}
			}
			if err != nil {
				return nil, fmt.Errorf("%s:%d: malformed item: %v", name, line, err)
			}
			out = append(out, located{it, fmt.Sprintf("%s:%d", name, line)})
		}
	}
	var items []CheckItem
	if err := yaml.UnmarshalStrict(data, &items); err != nil {
		return nil, fmt.Errorf("%s: items must be JSON lines or a list: %v", name, err)
	}
	out := make([]located, len(items))
	for i, it := range items {
		out[i] = located{it, fmt.Sprintf("%s: item %d", name, i+1)}
	}
	return out, nil
}

type located struct {
	item  CheckItem
	where string
}

func (o *CheckOptions) parseQuestions(items []located) ([]checkQuestion, error) {
	qs := make([]checkQuestion, 0, len(items))
	for _, l := range items {
		q := checkQuestion{item: l.item, where: l.where}
		if l.item.ID != "" {
			q.where += fmt.Sprintf(" (id %q)", l.item.ID)
		}
		var err error
		if q.src, err = parsePeer(l.item.Src, o.namespace); err != nil {
			return nil, fmt.Errorf("%s: src %v", q.where, err)
		}
		if q.dst, err = parsePeer(l.item.Dst, o.namespace); err != nil {
			return nil, fmt.Errorf("%s: dst %v", q.where, err)
		}
		if q.proto, err = parseProtocol(l.item.Protocol); err != nil {
			return nil, fmt.Errorf("%s: %v", q.where, err)
		}
		if q.proto == "" {
			q.proto = corev1.ProtocolTCP
		}
		switch {
		case l.item.Port.Type == intstr.Int && (l.item.Port.IntVal < 1 || l.item.Port.IntVal > 65535):
			if l.item.Port.IntVal == 0 {
				return nil, fmt.Errorf("%s: port is required (a number or the destination's port name)", q.where)
			}
			return nil, fmt.Errorf("%s: port %d is out of range 1-65535", q.where, l.item.Port.IntVal)
		case l.item.Port.Type == intstr.String && l.item.Port.StrVal == "":
			return nil, fmt.Errorf("%s: port is required (a number or the destination's port name)", q.where)
		}
		switch strings.ToLower(l.item.Expect) {
		case "":
		case "allowed", "allow":
			t := true
			q.expect = &t
		case "denied", "deny":
			f := false
			q.expect = &f
		default:
			return nil, fmt.Errorf("%s: expect %q: use \"allowed\" or \"denied\"", q.where, l.item.Expect)
		}
		qs = append(qs, q)
	}
	return qs, nil
}

// reasonOf is the one-line why of a Decision: the deciding side and the
// policies or rules involved.
func reasonOf(d policy.Decision, src, dst endpoint) string {
	side := func(dd policy.DirectionDecision, ep endpoint) string {
		dir := strings.ToLower(string(dd.Direction))
		switch dd.Reason {
		case policy.ReasonNotIsolated:
			return fmt.Sprintf("%s of %s not isolated", dir, ep)
		case policy.ReasonNotApplicable:
			return fmt.Sprintf("%s of %s not subject to policy", dir, ep)
		case policy.ReasonAcceptedByClusterPolicy, policy.ReasonDeniedByClusterPolicy:
			return fmt.Sprintf("%s of %s %s by %s", dir, ep, map[bool]string{true: "accepted", false: "denied"}[dd.Allowed], policy.ClusterRuleString(dd.ClusterRule.Rule))
		case policy.ReasonAllowedByRule:
			var rules []string
			for _, m := range dd.AllowedBy {
				rules = append(rules, fmt.Sprintf("%s/%s %s[%d]", m.Rule.Policy.Namespace, m.Rule.Policy.Name, dir, m.Rule.Index))
			}
			return fmt.Sprintf("%s of %s allowed by %s", dir, ep, strings.Join(rules, ", "))
		}
		var pols []string
		for _, p := range dd.IsolatedBy {
			pols = append(pols, p.Namespace+"/"+p.Name)
		}
		return fmt.Sprintf("%s of %s denied: isolated by %s and no rule matches", dir, ep, strings.Join(pols, ", "))
	}
	eg, in := side(d.Egress, src), side(d.Ingress, dst)
	switch {
	case d.Allowed:
		return eg + "; " + in
	case !d.Egress.Allowed && !d.Ingress.Allowed:
		return eg + "; " + in
	case !d.Egress.Allowed:
		return eg
	}
	return in
}

func writeCheckText(w io.Writer, r CheckResult, port portSpec) {
	status := "-   "
	if r.Pass != nil {
		status = "ok  "
		if !*r.Pass {
			status = "FAIL"
		}
	}
	verdict := "denied"
	if r.Allowed {
		verdict = "allowed"
	}
	id := ""
	if r.ID != "" {
		id = r.ID + " "
	}
	fmt.Fprintf(w, "%s %s%s -> %s %s: %s (%s)\n", status, id, r.Src, r.Dst, port, verdict, r.Reason)
}
