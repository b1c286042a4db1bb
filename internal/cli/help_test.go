package cli

import (
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// Help reads like kubectl's, and every verb carries the standard kubectl flags.
func TestHelpReadsKubectlNetpol(t *testing.T) {
	for _, verb := range []string{"explain", "check", "matrix"} {
		streams, _, out, _ := genericiooptions.NewTestIOStreams()
		root := NewCmdNetpol(streams)
		root.SetArgs([]string{verb, "--help"})
		root.SetOut(out)
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		help := out.String()
		for _, want := range []string{"kubectl netpol " + verb, "--kubeconfig", "--context", "-n, --namespace", "--as ", "-f, --filename", "--with-policy"} {
			if !strings.Contains(help, want) {
				t.Errorf("%s --help lacks %q", verb, want)
			}
		}
	}
}
