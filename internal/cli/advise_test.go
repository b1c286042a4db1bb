package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubectl-netpol/kubectl-netpol/advise"
)

// TestAdviseOffline: advise from a capture and manifests, then whatif on
// the same capture with the advice applied: nothing observed breaks (exit
// 0), the denied connections stay denied and the output is applyable YAML.
func TestAdviseOffline(t *testing.T) {
	f := offlineFactory(t)
	out, errOut, err := run(t, f, "", "advise", "--flows", whatifCapture, "--current", example, "-n", "db", "--both")
	if err != nil {
		t.Fatalf("advise: %v\n%s", err, errOut)
	}
	for _, want := range []string{"name: advised-mysql-0-ingress", "netpol.kubectl.io/mode: audit", "port: mysql",
		"#   from db/web-0 TCP/3306 (mysql): 12 connection(s)", "Denied when seen (not admitted):", "web/deploy/frontend -> db/mysql-0 TCP/3306: 5"} {
		if !strings.Contains(out, want) {
			t.Errorf("advice lacks %q:\n%s", want, out)
		}
	}
	// The proof judges the advice enforced (audited, it changes no verdict).
	out, _, err = run(t, f, "", "advise", "--flows", whatifCapture, "--current", example, "-n", "db", "--both", "--audit=false")
	if err != nil || strings.Contains(out, "netpol.kubectl.io/mode") {
		t.Fatalf("advise --audit=false: %v\n%s", err, out)
	}
	advice := filepath.Join(t.TempDir(), "advice.yaml")
	if err := os.WriteFile(advice, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	proof, _, err := run(t, f, "", "whatif", "--flows", whatifCapture, "--current", example, "-f", advice, "--color", "never")
	if exitCode(err) != 0 || !strings.Contains(proof, "Newly denied (would break): 0") {
		t.Errorf("whatif on the advice: exit %d (%v), want 0 and nothing newly denied:\n%s", exitCode(err), err, proof)
	}

	out, _, err = run(t, f, "", "advise", "--flows", whatifCapture, "--current", example, "-n", "db", "--workload", "pod/web-0", "--egress", "--audit=false", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rep advise.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if len(rep.Proposals) != 1 || rep.Proposals[0].Direction != "egress" || rep.Proposals[0].Policy.Annotations[advise.ModeAnnotation] != "" ||
		rep.Proposals[0].Rules[0].Admits[0].Connections != 12 {
		t.Errorf("one workload, egress, no audit: %+v", rep.Proposals)
	}
}

func TestAdviseBadInput(t *testing.T) {
	f := offlineFactory(t)
	empty := filepath.Join(t.TempDir(), "empty.jsonl")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, err := run(t, f, "", "advise", "--flows", empty, "--current", example)
	if exitCode(err) != 2 || !strings.Contains(errOut, "nothing to advise") {
		t.Errorf("empty history: exit %d, stderr %q; want 2 and a sentence saying so", exitCode(err), errOut)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"advise", "--flows", whatifCapture, "--current", example, "--workload", "deploy/nope", "-n", "db"}, "--workload db/deploy/nope: neither the cluster nor the history has it"},
		{[]string{"advise", "--flows", whatifCapture, "--current", example, "--workload", "10.0.0.1"}, "not an address"},
		{[]string{"advise", "--flows", whatifCapture, "--current", example, "-o", "text"}, "use yaml or json"},
		{[]string{"advise", "--current", example}, "give the history with --flows"},
		{[]string{"advise", "--flows", whatifCapture, "--current", example, "-A", "-n", "db"}, "drop -n and --workload"},
		{[]string{"advise", "--flows", whatifCapture, "--current", example, "--since", "soon"}, "invalid --since"},
	} {
		_, _, err := run(t, f, "", c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one containing %q", c.args, err, c.want)
		}
	}
}
