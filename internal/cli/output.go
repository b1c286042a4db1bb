package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-netpol/kubectl-netpol/internal/snapshot"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// writeStructured writes v as indented JSON or as YAML.
func writeStructured(w io.Writer, format string, v any) error {
	if format == "yaml" {
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// validateTextOutput accepts the -o of the verbs that print text or a document.
func validateTextOutput(format string) error {
	switch format {
	case "text", "json", "yaml":
		return nil
	}
	return fmt.Errorf("unknown output format %q: use text, json or yaml", format)
}

// withOrigin prefixes an engine error about a policy with the file and line
// the policy came from.
func withOrigin(set *snapshot.Set, err error) error {
	var v *policy.ValidationError
	if errors.As(err, &v) {
		if where := set.Origin("NetworkPolicy", v.Namespace, v.Name); where != "" {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	return err
}

// palette colours verdicts; the zero value prints plain text.
type palette struct{ on bool }

func (p palette) wrap(code, s string) string {
	if !p.on {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

func (p palette) allowed(s string) string { return p.wrap("1;32", s) }
func (p palette) denied(s string) string  { return p.wrap("1;31", s) }
func (p palette) warn(s string) string    { return p.wrap("33", s) }
func (p palette) bold(s string) string    { return p.wrap("1", s) }
func (p palette) faint(s string) string   { return p.wrap("2", s) }

func (p palette) verdict(ok bool) string {
	if ok {
		return p.allowed("ALLOWED")
	}
	return p.denied("DENIED")
}

func addColorFlag(cmd *cobra.Command, v *string) {
	cmd.Flags().StringVar(v, "color", "auto", "Colour text output: auto (on a terminal, unless NO_COLOR is set), always or never")
}

func validateColor(mode string) error {
	switch mode {
	case "auto", "always", "never":
		return nil
	}
	return fmt.Errorf("unknown --color %q: use auto, always or never", mode)
}

// useColor decides colour: always/never win; auto colours a terminal unless
// NO_COLOR is set (https://no-color.org) or TERM is dumb.
func useColor(mode string, w io.Writer) palette {
	switch mode {
	case "always":
		return palette{on: true}
	case "never":
		return palette{}
	}
	if os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return palette{}
	}
	f, ok := w.(*os.File)
	return palette{on: ok && term.IsTerminal(int(f.Fd()))}
}
