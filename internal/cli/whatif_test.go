package cli

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubectl-netpol/kubectl-netpol/whatif"
)

const whatifCapture = "../../examples/whatif/capture.jsonl"

func exitCode(err error) int {
	var e *ExitError
	if errors.As(err, &e) {
		return e.Code
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestWhatifOffline: a capture and today's manifests, no cluster. A change
// that denies an observed allowed connection names it and exits 1; a change
// that only opens exits 0; an empty window exits 2 and says why.
func TestWhatifOffline(t *testing.T) {
	f := offlineFactory(t)
	out, errOut, err := run(t, f, "", "whatif", "--flows", whatifCapture, "--current", example, "-f", "../../examples/whatif/lockdown.yaml", "--color", "never")
	if exitCode(err) != 1 {
		t.Fatalf("breaking change: exit %d (%v), want 1\n%s%s", exitCode(err), err, out, errOut)
	}
	for _, want := range []string{"Newly denied (would break): 1", "db/web-0", "db/mysql-0", "TCP/3306", "12", "isolated by db/db-policy", "from 1 node(s) (node-a)"} {
		if !strings.Contains(out, want) {
			t.Errorf("breaking change: output lacks %q:\n%s", want, out)
		}
	}

	out, _, err = run(t, f, "", "whatif", "--flows", whatifCapture, "--current", example, "-f", "../../examples/db-policy-fix", "-o", "json")
	if exitCode(err) != 0 {
		t.Fatalf("opening change: exit %d (%v), want 0\n%s", exitCode(err), err, out)
	}
	var rep whatif.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if len(rep.NewlyDenied) != 0 || len(rep.NewlyAllowed) != 1 || rep.NewlyAllowed[0].Source != "web/deploy/frontend" ||
		rep.NewlyAllowed[0].Connections != 5 || rep.NewlyAllowed[0].DecidedBy[0] != "db/db-policy ingress[0]" {
		t.Errorf("opening change report = %+v", rep)
	}

	// Deleting the only policy opens both denied pairs and breaks nothing.
	out, _, err = run(t, f, "", "whatif", "--flows", whatifCapture, "--current", example, "--delete", "db/db-policy", "-o", "yaml")
	if exitCode(err) != 0 || !strings.Contains(out, "source: db/other") {
		t.Errorf("delete: exit %d, output:\n%s", exitCode(err), out)
	}

	empty := filepath.Join(t.TempDir(), "empty.jsonl")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, err = run(t, f, "", "whatif", "--flows", empty, "--current", example, "-f", "../../examples/whatif/lockdown.yaml")
	if exitCode(err) != 2 || !strings.Contains(errOut, "no connection history to judge") {
		t.Errorf("empty history: exit %d, stderr %q; want 2 and a sentence saying so", exitCode(err), errOut)
	}
}

func TestWhatifBadInput(t *testing.T) {
	f := offlineFactory(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"whatif", "--flows", whatifCapture, "--current", example}, "nothing to judge"},
		{[]string{"whatif", "--flows", whatifCapture, "--current", example, "--delete", "db-policy"}, "NAMESPACE/NAME"},
		{[]string{"whatif", "--flows", whatifCapture, "--current", example, "--delete", "db/nope"}, "no NetworkPolicy nope in namespace db"},
		{[]string{"whatif", "--flows", whatifCapture, "--current", example, "-f", example}, "not NetworkPolicies"},
		{[]string{"whatif", "--flows", example + "/pods.yaml", "--current", example, "-f", "../../examples/whatif/lockdown.yaml"}, "not a flow"},
		{[]string{"whatif", "--flows", whatifCapture, "--current", example, "-f", "../../examples/whatif/lockdown.yaml", "--since", "soon"}, "invalid --since"},
	} {
		_, _, err := run(t, f, "", c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one containing %q", c.args, err, c.want)
		}
	}
}
