package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestExplainGolden(t *testing.T) {
	cases := []struct {
		name string
		args []string
	}{
		{"explain_denied_all_ports", []string{"explain", "-f", example, "web/frontend-1", "db/mysql-0"}},
		{"explain_allowed_named_port", []string{"explain", "-f", example, "db/web-0", "db/mysql-0", "--port", "mysql"}},
		{"explain_workload_what_if", []string{"explain", "-f", example, "-n", "web", "deploy/frontend", "db/mysql-0", "--port", "3306",
			"--with-policy", "../../examples/db-policy-fix/db-policy.yaml"}},
		{"explain_ip_peer", []string{"explain", "-f", example, "db/other", "203.0.113.9", "--port", "443"}},
		{"explain_udp_filter", []string{"explain", "-f", example, "db/web-0", "db/mysql-0", "--protocol", "udp"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := run(t, offlineFactory(t), "", tc.args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, errOut)
			}
			golden(t, tc.name, out)
		})
	}
}

func TestExplainVerdicts(t *testing.T) {
	out, _, err := run(t, offlineFactory(t), "", "explain", "-f", example, "web/frontend-1", "db/mysql-0", "--port", "3306")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "DENIED  web/frontend-1 → db/mysql-0 on 3306/TCP") {
		t.Errorf("verdict must come first, got:\n%s", out)
	}
	mustContain(t, out, `db/db-policy selects pod db/mysql-0`, `ingress[0].from[0]: pod web/frontend-1 is in namespace "web"`)

	// The what-if flips the verdict without touching the files.
	out, _, err = run(t, offlineFactory(t), "", "explain", "-f", example, "web/frontend-1", "db/mysql-0", "--port", "3306",
		"--with-policy", "../../examples/db-policy-fix/db-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "ALLOWED  web/frontend-1 → db/mysql-0", "allowed by db/db-policy ingress[0]", "from[1]")
}

func TestExplainJSONSchema(t *testing.T) {
	for _, format := range []string{"json", "yaml"} {
		out, _, err := run(t, offlineFactory(t), "", "explain", "-f", example, "web/frontend-1", "db/mysql-0", "-o", format)
		if err != nil {
			t.Fatal(err)
		}
		var x Explanation
		if format == "json" {
			err = json.Unmarshal([]byte(out), &x)
		} else {
			err = yaml.UnmarshalStrict([]byte(out), &x)
		}
		if err != nil {
			t.Fatalf("%s output does not parse back: %v\n%s", format, err, out)
		}
		if x.Allowed || len(x.Ports) != 3 {
			t.Fatalf("want denied on 3 ports (mysql, metrics, other), got allowed=%v ports=%d", x.Allowed, len(x.Ports))
		}
		p := x.Ports[0]
		if p.Port != 3306 || p.Name != "mysql" || p.Allowed || !p.Ingress.Isolated || p.Egress.Isolated || !p.Egress.Allowed {
			t.Errorf("port 0: %+v", p)
		}
		if len(p.Ingress.Policies) != 1 || p.Ingress.Policies[0].Name != "db-policy" || p.Ingress.Policies[0].Rules[0].Index != 0 ||
			p.Ingress.Policies[0].Rules[0].Matched || len(p.Ingress.Policies[0].Rules[0].Mismatches) == 0 {
			t.Errorf("ingress policies: %+v", p.Ingress.Policies)
		}
		if !x.Ports[2].OtherPort || x.Ports[2].Port != 1024 {
			t.Errorf("any other port: %+v", x.Ports[2])
		}
		if x.Warnings == nil {
			t.Errorf("warnings must be a list, never null")
		}
	}
	// Top-level keys are the documented schema.
	out, _, _ := run(t, offlineFactory(t), "", "explain", "-f", example, "db/web-0", "db/mysql-0", "--port", "3306", "-o", "json")
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"source", "destination", "allowed", "ports", "warnings"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("top-level %q missing", k)
		}
	}
	if raw["allowed"] != true {
		t.Errorf("db/web-0 -> db/mysql-0:3306 must be allowed")
	}
}

func TestExplainColor(t *testing.T) {
	out, _, err := run(t, offlineFactory(t), "", "explain", "-f", example, "web/frontend-1", "db/mysql-0", "--port", "3306", "--color", "always")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "\x1b[1;31mDENIED\x1b[0m")
	out, _, _ = run(t, offlineFactory(t), "", "explain", "-f", example, "web/frontend-1", "db/mysql-0", "--port", "3306")
	if strings.Contains(out, "\x1b[") {
		t.Errorf("auto colour on a non-terminal must be off:\n%q", out)
	}
	t.Setenv("NO_COLOR", "1")
	if useColor("auto", nil).on {
		t.Error("NO_COLOR must disable colour")
	}
}

func TestExplainWarnings(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "pods.yaml", `apiVersion: v1
kind: Pod
metadata: {name: node-agent, namespace: default, labels: {app: agent}}
spec: {hostNetwork: true, containers: [{name: a, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: pending, namespace: default, labels: {app: p}}
spec: {containers: [{name: a, image: x, ports: [{name: web, containerPort: 80}]}]}
`)
	out, _, err := run(t, offlineFactory(t), "", "explain", "-f", dir, "node-agent", "pending", "--port", "web", "--protocol", "sctp")
	if err == nil {
		t.Fatalf("named port web is TCP; asking for it over SCTP must fail:\n%s", out)
	}
	out, _, err = run(t, offlineFactory(t), "", "explain", "-f", dir, "node-agent", "pending", "--port", "80", "--protocol", "sctp")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "warning:", "uses the host network", "has no IP yet", "SCTP")
}

// node/NAME (as watch shows node traffic) is the node's InternalIP; another
// node's flannel.1 address (its pod range's network address) is node traffic
// too, as the agent judges it; an unknown node gets a suggestion.
func TestExplainNodes(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "cluster.yaml", `apiVersion: v1
kind: Node
metadata: {name: node-b}
spec: {podCIDR: 10.244.2.0/24, podCIDRs: [10.244.2.0/24]}
status: {addresses: [{type: Hostname, address: node-b}, {type: InternalIP, address: 10.250.0.3}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {nodeName: node-a, containers: [{name: c, image: x}]}
status: {podIP: 10.244.1.5}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: shop}
spec: {podSelector: {}, policyTypes: [Ingress]}
`)
	out, _, err := run(t, offlineFactory(t), "", "explain", "-f", dir, "node/node-b", "shop/db", "--port", "5432")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "ALLOWED  10.250.0.3 → shop/db", "node/node-b is 10.250.0.3 (its InternalIP)", "10.250.0.3 is a node address")
	out, _, err = run(t, offlineFactory(t), "", "explain", "-f", dir, "10.244.2.0", "shop/db", "--port", "5432")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "ALLOWED  10.244.2.0 → shop/db", "10.244.2.0 is a node address")
	out, _, err = run(t, offlineFactory(t), "", "explain", "-f", dir, "10.244.2.9", "shop/db", "--port", "5432")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "DENIED  10.244.2.9 → shop/db")
	if _, errOut, err := run(t, offlineFactory(t), "", "explain", "-f", dir, "node/node-c", "shop/db"); err == nil ||
		!strings.Contains(err.Error()+errOut, `node "node-c" not found; did you mean "node-b"?`) {
		t.Errorf("unknown node: %v %s", err, errOut)
	}
}
