package cli

import (
	"encoding/json"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
	cnpfake "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned/fake"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-netpol/kubectl-netpol/internal/snapshot"
)

// allowWebToDB is an Admin policy (served version v1alpha2) that accepts
// web -> db on 3306 whatever db's NetworkPolicy says, and denies db/web-0.
const allowWebToDB = `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: db-guard}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: db}}}
  ingress:
  - name: web-frontends
    action: Accept
    from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: web}}}]
    protocols: [{tcp: {destinationPort: {number: 3306}}}]
  - name: no-web-0
    action: Deny
    from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}]
`

// baselineDeny is a Baseline policy (v1beta1) denying everything into db.
const baselineDeny = `apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: db-baseline}
spec:
  tier: Baseline
  priority: 1
  subject: {namespaces: {}}
  ingress:
  - {name: default-deny, action: Deny, from: [{namespaces: {}}]}
`

func TestExplainClusterPolicyFromFiles(t *testing.T) {
	dir := t.TempDir()
	cnp := writeFile(t, dir, "cnp.yaml", allowWebToDB)
	out, _, err := run(t, offlineFactory(t), "", "explain", "-f", example, "-f", cnp, "web/frontend-1", "db/mysql-0", "--port", "3306")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "ALLOWED", "Admin policy `db-guard` (priority 10) ingress rule 0 `web-frontends` accepts; NetworkPolicy never consulted")
	// db/web-0 is allowed by db-policy, but the Admin tier comes first.
	out, _, err = run(t, offlineFactory(t), "", "explain", "-f", example, "-f", cnp, "db/web-0", "db/mysql-0", "--port", "3306")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "DENIED", "Admin policy `db-guard` (priority 10) ingress rule 1 `no-web-0` denies; NetworkPolicy never consulted",
		"Admin policy `db-guard` ingress[0].from[0]: peer 0 selects namespaces kubernetes.io/metadata.name=web; namespace \"db\"")
}

func TestExplainClusterPolicyWithPolicyJSON(t *testing.T) {
	dir := t.TempDir()
	cnp := writeFile(t, dir, "cnp.yaml", baselineDeny)
	// No NetworkPolicy selects web/frontend-1: the Baseline tier decides its ingress.
	out, _, err := run(t, offlineFactory(t), "", "explain", "-f", example, "--with-policy", cnp, "db/mysql-0", "web/frontend-1", "--port", "80", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var x Explanation
	if err := json.Unmarshal([]byte(out), &x); err != nil {
		t.Fatal(err)
	}
	in := x.Ports[0].Ingress
	if x.Allowed || in.Tier != "Baseline" || in.ClusterRule == nil || in.ClusterRule.Policy != "db-baseline" || in.ClusterRule.Name != "default-deny" || in.ClusterRule.Action != "Deny" {
		t.Fatalf("ingress %+v", in)
	}
	// db/mysql-0 is selected by db-policy: NetworkPolicy decides, the Baseline is never consulted.
	out, _, err = run(t, offlineFactory(t), "", "explain", "-f", example, "--with-policy", cnp, "db/web-0", "db/mysql-0", "--port", "3306")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "ALLOWED", "tiers: NetworkPolicy selects pod db/mysql-0 for ingress and allows; Baseline never consulted")
}

func TestCheckAndMatrixUseClusterPolicies(t *testing.T) {
	dir := t.TempDir()
	cnp := writeFile(t, dir, "cnp.yaml", allowWebToDB)
	items := `{"src":"web/frontend-1","dst":"db/mysql-0","port":3306,"expect":"allowed"}
{"src":"db/web-0","dst":"db/mysql-0","port":3306,"expect":"denied"}
`
	out, _, err := run(t, offlineFactory(t), items, "check", "-f", example, "--with-policy", cnp)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	mustContain(t, out, "accepted by Admin policy `db-guard` (priority 10) ingress rule 0 `web-frontends`",
		"denied by Admin policy `db-guard` (priority 10) ingress rule 1 `no-web-0`")
	out, _, err = run(t, offlineFactory(t), "", "matrix", "-f", example, "--with-policy", cnp, "-A", "--ports", "3306", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "web-0") {
		t.Fatalf("matrix output lacks pods:\n%s", out)
	}
	without, _, err := run(t, offlineFactory(t), "", "matrix", "-f", example, "-A", "--ports", "3306", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if out == without {
		t.Errorf("the Admin policy changed nothing in the matrix")
	}
}

func TestClusterPolicyBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.yaml", strings.Replace(baselineDeny, "priority: 1", "priority: 5000", 1))
	_, _, err := run(t, offlineFactory(t), "", "explain", "-f", example, "-f", bad, "web/frontend-1", "db/mysql-0", "--port", "3306")
	if err == nil || !strings.Contains(err.Error(), "clusternetworkpolicy db-baseline is invalid: spec.priority: Invalid value: 5000") {
		t.Fatalf("error %v", err)
	}
	old := writeFile(t, dir, "old.yaml", strings.Replace(baselineDeny, "v1beta1", "v1alpha9", 1))
	_, _, err = run(t, offlineFactory(t), "", "explain", "-f", example, "-f", old, "web/frontend-1", "db/mysql-0", "--port", "3306")
	if err == nil || !strings.Contains(err.Error(), `old.yaml:1: ClusterNetworkPolicy version "v1alpha9" is not served`) {
		t.Fatalf("error %v", err)
	}
}

func TestLiveClusterPolicies(t *testing.T) {
	var c cnpv1beta1.ClusterNetworkPolicy
	if err := yaml.UnmarshalStrict([]byte(allowWebToDB), &c); err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset(liveObjects(t)...)
	f := fakeFactory(client)
	f.NewCNPClient = func() (cnpclient.Interface, error) { return cnpfake.NewClientset(&c), nil }
	out, _, err := run(t, f, "", "explain", "web/frontend-1", "db/mysql-0", "--port", "3306")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "ALLOWED", "rule 0 `web-frontends` accepts")

	// A cluster without the CRD answers 404: no cluster policies, no error.
	absent := cnpfake.NewClientset()
	absent.PrependReactor("list", "clusternetworkpolicies", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: cnpv1beta1.GroupName, Resource: "clusternetworkpolicies"}, "")
	})
	f.NewCNPClient = func() (cnpclient.Interface, error) { return absent, nil }
	out, _, err = run(t, f, "", "explain", "web/frontend-1", "db/mysql-0", "--port", "3306")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "DENIED")
	set, err := (&snapshot.Live{Client: client, CNPClient: absent}).Load(t.Context(), snapshot.Scope{AllNamespaces: true})
	if err != nil || len(set.ClusterPolicies) != 0 {
		t.Fatalf("absent CRD: %v, %d policies", err, len(set.ClusterPolicies))
	}
}
