//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/kubectl-netpol/kubectl-netpol/internal/cli"
	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

// netpol runs `kubectl netpol ARGS` in-process against the test cluster,
// through the real command tree and client-go, as a user would.
func netpol(t *testing.T, c *framework.Cluster, stdin string, args ...string) (string, error) {
	t.Helper()
	streams, in, out, errOut := genericiooptions.NewTestIOStreams()
	in.WriteString(stdin)
	cmd := cli.NewCmdNetpol(streams)
	cmd.SetArgs(append([]string{"--kubeconfig", c.Kubeconfig}, args...))
	err := cmd.Execute()
	if errOut.Len() > 0 {
		t.Logf("stderr: %s", errOut.String())
	}
	return out.String(), err
}

// dbPolicyBed creates, through the API server (so defaulting is real), the
// classic setup: namespace db with mysql (app=db) and admin (app=web),
// namespace web with a frontend Deployment (app=web), and db-policy admitting
// app=web pods of db only, on TCP 80.
func dbPolicyBed(t *testing.T, c *framework.Cluster) (db, web string) {
	t.Helper()
	db = c.NewNamespace(t, "db")
	web = c.NewNamespace(t, "web")
	c.StartProbe(t, db, "mysql", map[string]string{"app": "db"})
	c.StartProbe(t, db, "admin", map[string]string{"app": "web"})

	ctx := framework.Context(t, 2*time.Minute)
	one := int32(1)
	tmpl := framework.ProbePod(web, "", map[string]string{"app": "web"})
	if _, err := c.Client.AppsV1().Deployments(web).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "frontend"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: tmpl.Labels}, Spec: tmpl.Spec},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating deployment: %v", err)
	}
	port := intstr.FromInt32(80)
	// No policyTypes and no protocol: the API server's defaulting fills them in.
	if _, err := c.Client.NetworkingV1().NetworkPolicies(db).Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "db-policy"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Port: &port}},
			}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating db-policy: %v", err)
	}
	// Wait for the Deployment's pod to run.
	if err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		pods, err := c.Client.CoreV1().Pods(web).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, nil
		}
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		t.Fatalf("deployment web/frontend never ran a pod: %v", err)
	}
	return db, web
}

func TestExplainLive(t *testing.T) {
	runBesideConformance(t)
	c := framework.Connect(t)
	db, web := dbPolicyBed(t, c)

	// The frontend in namespace web is denied: podSelector alone means db only.
	out, err := netpol(t, c, "", "explain", "-n", web, "deploy/frontend", db+"/mysql", "--port", "80")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DENIED  " + web + "/frontend-", "deploy/frontend: picked running pod frontend-",
		db + "/db-policy selects pod " + db + "/mysql", "ingress[0].from[0]: pod " + web + "/frontend-"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}

	// db/admin is allowed on 80 (by name too), denied on 81 and on the other ports.
	out, err = netpol(t, c, "", "explain", db+"/admin", db+"/mysql", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var x cli.Explanation
	if err := json.Unmarshal([]byte(out), &x); err != nil {
		t.Fatal(err)
	}
	verdicts := map[string]bool{}
	for _, p := range x.Ports {
		verdicts[fmt.Sprintf("%d/%s", p.Port, p.Protocol)] = p.Allowed
		if p.OtherPort && p.Allowed {
			t.Errorf("any other port must be denied: %+v", p)
		}
	}
	want := map[string]bool{"80/TCP": true, "81/TCP": false, "8080/TCP": false, "80/UDP": false, "81/UDP": false}
	for k, v := range want {
		if got, ok := verdicts[k]; !ok || got != v {
			t.Errorf("%s: want allowed=%v, got %v (present %v)", k, v, got, ok)
		}
	}
	if x.Allowed {
		t.Error("top-level allowed must be false when some port is denied")
	}
	out, err = netpol(t, c, "", "explain", db+"/admin", db+"/mysql", "--port", "serve-80-tcp")
	if err != nil || !strings.HasPrefix(out, "ALLOWED  "+db+"/admin → "+db+"/mysql on 80/TCP (serve-80-tcp)") {
		t.Errorf("named port: %v\n%s", err, out)
	}

	// Unknown names get suggestions from the live cluster.
	_, err = netpol(t, c, "", "explain", db+"/mysq", db+"/mysql")
	if err == nil || !strings.Contains(err.Error(), `did you mean "mysql"?`) {
		t.Errorf("want a near-miss suggestion, got %v", err)
	}
}

func TestCheckAndMatrixLive(t *testing.T) {
	runBesideConformance(t)
	c := framework.Connect(t)
	db, web := dbPolicyBed(t, c)

	items := fmt.Sprintf(`{"id":"admin","src":"%[1]s/admin","dst":"%[1]s/mysql","port":80,"expect":"allowed"}
{"id":"frontend","src":"%[2]s/deploy/frontend","dst":"%[1]s/mysql","port":80,"expect":"denied"}
{"id":"udp","src":"%[1]s/admin","dst":"%[1]s/mysql","port":80,"protocol":"UDP","expect":"denied"}
`, db, web)
	out, err := netpol(t, c, items, "check", "-o", "json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if n := strings.Count(out, `"pass":true`); n != 3 {
		t.Errorf("want 3 passing items, got %d:\n%s", n, out)
	}
	wrong := fmt.Sprintf(`{"src":"%[1]s/admin","dst":"%[1]s/mysql","port":81,"expect":"allowed"}`, db)
	_, err = netpol(t, c, wrong, "check")
	var exit *cli.ExitError
	if !errors.As(err, &exit) || exit.Code != 1 {
		t.Errorf("a failing expectation must exit 1, got %v", err)
	}

	out, err = netpol(t, c, "", "matrix", "--namespaces", db+","+web, "--ports", "80/TCP,81/TCP", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var m cli.Matrix
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	idx := map[string]int{}
	for i, p := range m.Pods {
		idx[p] = i
	}
	mysql := idx[db+"/mysql"]
	for name, i := range idx {
		if name == db+"/mysql" {
			continue
		}
		wantAllowed80 := name == db+"/admin"
		if got := m.Ports[0].Allowed[i][mysql]; got != wantAllowed80 {
			t.Errorf("80/TCP %s -> mysql: want %v, got %v", name, wantAllowed80, got)
		}
		if m.Ports[1].Allowed[i][mysql] {
			t.Errorf("81/TCP %s -> mysql must be denied", name)
		}
		if !m.Ports[0].Allowed[mysql][i] {
			t.Errorf("mysql -> %s: mysql's egress is not isolated", name)
		}
	}
	if len(m.Pods) != 3 {
		t.Errorf("want mysql, admin and the frontend pod, got %v", m.Pods)
	}
}
