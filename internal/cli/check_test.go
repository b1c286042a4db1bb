package cli

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const checkItems = `{"id":"web-to-db","src":"db/web-0","dst":"db/mysql-0","port":"mysql","expect":"allowed"}
{"id":"frontend-to-db","src":"web/frontend-1","dst":"db/mysql-0","port":3306,"expect":"denied"}
{"src":"db/other","dst":"10.0.2.20","port":80}
{"id":"udp","src":"web/frontend-1","dst":"db/mysql-0","port":3306,"protocol":"UDP","expect":"denied"}
`

func TestCheckGolden(t *testing.T) {
	out, errOut, err := run(t, offlineFactory(t), checkItems, "check", "-f", example)
	if err != nil {
		t.Fatalf("all expectations hold, want exit 0: %v %s", err, errOut)
	}
	golden(t, "check_text", out)
	out, _, err = run(t, offlineFactory(t), checkItems, "check", "-f", example, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "check_json", out)
	// Every line is one JSON object echoing the input plus allowed and reason.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 lines, got %d", len(lines))
	}
	var r CheckResult
	if err := json.Unmarshal([]byte(lines[0]), &r); err != nil {
		t.Fatal(err)
	}
	if r.ID != "web-to-db" || r.Port.StrVal != "mysql" || !r.Allowed || r.Pass == nil || !*r.Pass || r.Reason == "" {
		t.Errorf("line 1: %+v", r)
	}
}

func TestCheckFailingExpectationExits1(t *testing.T) {
	items := `{"id":"wrong","src":"web/frontend-1","dst":"db/mysql-0","port":3306,"expect":"allowed"}` + "\n"
	out, _, err := run(t, offlineFactory(t), items, "check", "-f", example)
	var exit *ExitError
	if !errors.As(err, &exit) || exit.Code != 1 {
		t.Fatalf("want ExitError{1}, got %v", err)
	}
	mustContain(t, out, "FAIL wrong web/frontend-1 -> db/mysql-0 3306/TCP: denied", "1 items, 1 failed")
}

func TestCheckYAMLListFromFile(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "items.yaml", `- {id: a, src: db/web-0, dst: db/mysql-0, port: 3306, expect: allowed}
- {id: b, src: deploy/frontend, dst: db/mysql-0, port: mysql, expect: denied}
`)
	out, _, err := run(t, offlineFactory(t), "", "check", "-f", example, "-n", "web", p)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	mustContain(t, out, "ok   a db/web-0", "ok   b deploy/frontend", "2 items, 0 failed")
}

func TestCheckBadItems(t *testing.T) {
	cases := []struct{ name, items, want string }{
		{"malformed line", `{"src":"db/web-0","dst":"db/mysql-0","port":3306}` + "\n\n" + `{"src": "db/web-0", "dst":}` + "\n", "stdin:3: malformed item"},
		{"unknown field", `{"src":"db/web-0","dst":"db/mysql-0","prot":3306}`, `unknown field "prot"`},
		{"missing port", `{"src":"db/web-0","dst":"db/mysql-0"}`, "stdin:1: port is required"},
		{"bad expect", `{"src":"db/web-0","dst":"db/mysql-0","port":1,"expect":"yes"}`, `expect "yes": use "allowed" or "denied"`},
		{"unknown pod", `{"id":"x","src":"db/web-1","dst":"db/mysql-0","port":1}`, `stdin:1 (id "x"): src db/web-1: pod "web-1" not found in namespace "db"; did you mean "web-0"?`},
		{"unknown port name", `{"src":"db/web-0","dst":"db/mysql-0","port":"postgres"}`, `does not declare port "postgres"`},
		{"empty", "  \n", "stdin: no items"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := run(t, offlineFactory(t), tc.items, "check", "-f", example)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
			noStackTrace(t, err.Error())
		})
	}
}
