package cli

import (
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
)

func TestMatrixGolden(t *testing.T) {
	out, _, err := run(t, offlineFactory(t), "", "matrix", "-f", example, "--namespaces", "db,web", "--ports", "3306/TCP,80")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "matrix_text", out)
	out, _, err = run(t, offlineFactory(t), "", "matrix", "-f", example, "-A", "--ports", "3306", "-o", "csv")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "matrix_csv", out)
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	// Row web/frontend-1, column db/mysql-0 on 3306: denied (podSelector alone is db only).
	if recs[4][1] != "web/frontend-1" || recs[4][2] != "false" || recs[3][2] != "true" {
		t.Errorf("csv cells wrong: %v", recs)
	}
}

func TestMatrixJSONAndDefaults(t *testing.T) {
	// -n selects one namespace; without --ports the declared ports are used.
	out, _, err := run(t, offlineFactory(t), "", "matrix", "-f", example, "-n", "db", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var m Matrix
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	if strings.Join(m.Pods, ",") != "db/mysql-0,db/other,db/web-0" {
		t.Errorf("pods: %v", m.Pods)
	}
	if len(m.Ports) != 3 { // 3306, 8080, 9104
		t.Errorf("want the 3 declared ports, got %+v", m.Ports)
	}
	// other -> mysql denied, web-0 -> mysql allowed on 3306.
	if m.Ports[0].Port != 3306 || m.Ports[0].Allowed[1][0] || !m.Ports[0].Allowed[2][0] {
		t.Errorf("3306 table: %+v", m.Ports[0])
	}
}

func TestMatrixBadInput(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--namespaces", "dbx"}, `namespace "dbx" not found; did you mean "db"?`},
		{[]string{"--ports", "80/ICMP"}, `unknown protocol "ICMP"`},
		{[]string{"--ports", "http"}, `want PORT[/PROTOCOL]`},
		{[]string{"-A", "--namespaces", "db"}, "either -A or --namespaces"},
		{[]string{"-o", "xml"}, `unknown output format "xml"`},
	}
	for _, tc := range cases {
		_, _, err := run(t, offlineFactory(t), "", append([]string{"matrix", "-f", example}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: want %q, got %v", tc.args, tc.want, err)
		}
	}
}
