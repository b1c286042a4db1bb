package cli

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-netpol/kubectl-netpol/internal/picture"
	"github.com/kubectl-netpol/kubectl-netpol/internal/snapshot"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

const matrixExample = `  # The truth table of namespaces x, y and z on 80/TCP and 81/TCP
  kubectl netpol matrix --namespaces x,y,z --ports 80/TCP,81/TCP

  # Every namespace, offline, as CSV
  kubectl netpol matrix -A -f manifests/ --ports 443 -o csv

  # A heat map to paste into a pull request, and a graph for Graphviz
  kubectl netpol matrix --namespaces x,y,z --ports 80 -o png > reachability.png
  kubectl netpol matrix --namespaces x,y,z -o dot | dot -Tsvg > reachability.svg`

// MatrixOptions prints the reachability truth table of selected pods.
type MatrixOptions struct {
	SourceOptions
	genericiooptions.IOStreams

	AllNamespaces bool
	Namespaces    []string
	Ports         string
	Output        string

	namespace string
	ports     []portSpec
}

// NewCmdMatrix returns `kubectl netpol matrix`.
func NewCmdMatrix(f *Factory, streams genericiooptions.IOStreams) *cobra.Command {
	o := &MatrixOptions{IOStreams: streams, SourceOptions: SourceOptions{factory: f}}
	cmd := &cobra.Command{
		Use:   "matrix",
		Short: "Print the reachability truth table of the pods in the selected namespaces",
		Long: `Print whether every selected pod may reach every other, per port: rows are
sources, columns destinations, "." allowed and "X" denied, as the upstream
NetworkPolicy e2e suite prints it.

Pods are those of the namespace -n selects, of --namespaces, or of every
namespace with -A; completed pods (Succeeded, Failed) are left out. Without
--ports, the distinct ports the selected pods declare are used.`,
		Example: matrixExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(f); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	o.SourceOptions.AddFlags(cmd.Flags())
	cmd.Flags().BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "Include the pods of every namespace")
	cmd.Flags().StringSliceVar(&o.Namespaces, "namespaces", nil, "Include the pods of these namespaces (comma-separated)")
	cmd.Flags().StringVar(&o.Ports, "ports", "", "Ports as PORT[/PROTOCOL], comma-separated, e.g. 80/TCP,81/UDP (protocol defaults to TCP)")
	cmd.Flags().StringVarP(&o.Output, "output", "o", "text", "Output format: text, json, csv, or a picture: svg or png (a heat map), dot (a graph for Graphviz)")
	return cmd
}

// Complete resolves the namespace and parses --ports.
func (o *MatrixOptions) Complete(f *Factory) error {
	var err error
	if o.namespace, _, err = f.Namespace(o.Offline()); err != nil {
		return err
	}
	if o.ports, err = parsePortList(o.Ports); err != nil {
		return err
	}
	return nil
}

// Validate checks flags.
func (o *MatrixOptions) Validate() error {
	if o.AllNamespaces && len(o.Namespaces) > 0 {
		return fmt.Errorf("use either -A or --namespaces, not both")
	}
	switch o.Output {
	case picture.PNG:
		if isTerminal(o.Out) {
			return errors.New("-o png writes an image: redirect it to a file, e.g. > reachability.png")
		}
		return nil
	case "text", "json", "csv", picture.SVG, picture.DOT:
		return nil
	}
	return fmt.Errorf("unknown output format %q: use text, json, csv, svg, png or dot", o.Output)
}

// parsePortList parses "80/TCP,81/UDP,443".
func parsePortList(s string) ([]portSpec, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []portSpec
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		num, proto, _ := strings.Cut(part, "/")
		p, err := parseProtocol(proto)
		if err != nil {
			return nil, fmt.Errorf("--ports %q: %v", part, err)
		}
		if p == "" {
			p = corev1.ProtocolTCP
		}
		n, isNum, err := parsePortNumber(num)
		if err != nil || !isNum {
			return nil, fmt.Errorf("--ports %q: want PORT[/PROTOCOL] with PORT 1-65535, e.g. 80/TCP", part)
		}
		k := fmt.Sprintf("%d/%s", n, p)
		if !seen[k] {
			seen[k] = true
			out = append(out, portSpec{Port: n, Protocol: p})
		}
	}
	return out, nil
}

// Matrix is the `matrix -o json` document: Allowed[p][i][j] says whether
// Pods[i] may reach Pods[j] on Ports[p].
type Matrix struct {
	Pods  []string      `json:"pods"`
	Ports []MatrixTable `json:"ports"`
}

// MatrixTable is one port's truth table.
type MatrixTable struct {
	Port     int32    `json:"port"`
	Protocol string   `json:"protocol"`
	Allowed  [][]bool `json:"allowed"`
}

// Run loads, selects pods, and evaluates every pair on every port.
func (o *MatrixOptions) Run(ctx context.Context) error {
	namespaces := o.Namespaces
	if !o.AllNamespaces && len(namespaces) == 0 {
		namespaces = []string{o.namespace}
	}
	set, err := o.Load(ctx, snapshot.Scope{AllNamespaces: o.AllNamespaces, Namespaces: namespaces}, o.namespace)
	if err != nil {
		return err
	}
	if !o.AllNamespaces {
		known := set.NamespaceNames()
		for _, ns := range namespaces {
			if !contains(known, ns) {
				return fmt.Errorf("namespace %q not found%s", ns, suggestion(ns, known, "namespaces"))
			}
		}
	}
	pods := selectPods(set, namespaces, o.AllNamespaces)
	if len(pods) == 0 {
		return fmt.Errorf("no pods in namespace(s) %s", strings.Join(namespaces, ", "))
	}
	ports := o.ports
	if len(ports) == 0 {
		ports = unionPorts(pods)
		if len(ports) == 0 {
			return fmt.Errorf("the selected pods declare no ports: give --ports, e.g. --ports 80/TCP")
		}
	}
	engine, err := newEngine(set)
	if err != nil {
		return err
	}
	m := computeMatrix(engine, pods, ports)
	w := bufio.NewWriterSize(o.Out, 256<<10)
	switch o.Output {
	case "json":
		err = writeStructured(w, "json", m)
	case "csv":
		err = writeMatrixCSV(w, m)
	case picture.SVG, picture.PNG, picture.DOT:
		err = writeMatrixPicture(w, o.Output, m)
	default:
		err = writeMatrixText(w, m)
	}
	if err != nil {
		return err
	}
	return w.Flush()
}

func contains(list []string, s string) bool {
	i := sort.SearchStrings(list, s)
	return i < len(list) && list[i] == s
}

// selectPods returns the live (not completed) pods of the namespaces, sorted.
func selectPods(set *snapshot.Set, namespaces []string, all bool) []*corev1.Pod {
	want := map[string]bool{}
	for _, n := range namespaces {
		want[n] = true
	}
	var out []*corev1.Pod
	for _, p := range set.Pods {
		if !all && !want[p.Namespace] {
			continue
		}
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		out = append(out, p)
	}
	return out
}

func unionPorts(pods []*corev1.Pod) []portSpec {
	seen := map[string]bool{}
	var out []portSpec
	for _, p := range pods {
		for _, ps := range declaredPorts(p, "") {
			k := fmt.Sprintf("%d/%s", ps.Port, ps.Protocol)
			if !seen[k] {
				seen[k] = true
				out = append(out, portSpec{Port: ps.Port, Protocol: ps.Protocol})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Protocol != out[j].Protocol {
			return out[i].Protocol > out[j].Protocol
		}
		return out[i].Port < out[j].Port
	})
	return out
}

// computeMatrix fills every cell through Engine.Reachability: the Allowed
// code, decided once per class of pods the policies cannot tell apart.
func computeMatrix(e *policy.Engine, pods []*corev1.Pod, ports []portSpec) *Matrix {
	m := &Matrix{Pods: make([]string, len(pods))}
	for i, p := range pods {
		m.Pods[i] = p.Namespace + "/" + p.Name
	}
	probes := make([]policy.Probe, len(ports))
	for k, ps := range ports {
		probes[k] = policy.Probe{Protocol: ps.Protocol, Port: ps.Port}
	}
	for k, table := range e.Reachability(pods, pods, probes) {
		m.Ports = append(m.Ports, MatrixTable{Port: ports[k].Port, Protocol: string(ports[k].Protocol), Allowed: table})
	}
	return m
}

// writeMatrixText prints one grid per port like the upstream e2e suite:
// a "-" corner, destinations across, sources down, "." allowed, "X" denied.
func writeMatrixText(w io.Writer, m *Matrix) error {
	for k, t := range m.Ports {
		if k > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%d/%s:\n", t.Port, t.Protocol)
		tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
		fmt.Fprintf(tw, "-\t%s\n", strings.Join(m.Pods, "\t"))
		cells := make([]string, len(m.Pods))
		for i, row := range t.Allowed {
			for j, ok := range row {
				cells[j] = "X"
				if ok {
					cells[j] = "."
				}
			}
			fmt.Fprintf(tw, "%s\t%s\n", m.Pods[i], strings.Join(cells, "\t"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// writeMatrixCSV writes one row per (port, source): port, source, then
// true/false for each destination, under a header naming the destinations.
func writeMatrixCSV(w io.Writer, m *Matrix) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(append([]string{"port", "source"}, m.Pods...)); err != nil {
		return err
	}
	rec := make([]string, len(m.Pods)+2)
	for _, t := range m.Ports {
		rec[0] = fmt.Sprintf("%d/%s", t.Port, t.Protocol)
		for i, row := range t.Allowed {
			rec[1] = m.Pods[i]
			for j, ok := range row {
				rec[j+2] = strconv.FormatBool(ok)
			}
			if err := cw.Write(rec); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}
