package snapshot

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	cnpv1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-netpol/kubectl-netpol/internal/apiservertest"
	"github.com/kubectl-netpol/kubectl-netpol/internal/cnpcrd"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// TestLiveClusterPoliciesRealAPIServer runs against a real kube-apiserver:
// no CRD means no cluster policies and no error; with the module's
// experimental CRD both served versions are read; and the API server and
// policy.ValidateClusterPolicy accept and reject the same objects (the
// CRD's schema and CEL rules).
func TestLiveClusterPoliciesRealAPIServer(t *testing.T) {
	cfg := apiservertest.Start(t)
	ctx := t.Context()
	kube := kubernetes.NewForConfigOrDie(cfg)
	cnps := cnpclient.NewForConfigOrDie(cfg)
	live := &Live{Client: kube, CNPClient: cnps, Cluster: Cluster{Context: "apiservertest", Server: cfg.Host}}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "db"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	set, err := live.Load(ctx, Scope{AllNamespaces: true})
	if err != nil || len(set.ClusterPolicies) != 0 {
		t.Fatalf("without the CRD: err %v, %d cluster policies", err, len(set.ClusterPolicies))
	}

	crd, err := cnpcrd.CRD(cnpcrd.Experimental)
	if err != nil {
		t.Fatal(err)
	}
	if err := apiservertest.InstallCRD(ctx, cfg, crd); err != nil {
		t.Fatal(err)
	}
	beta := &cnpv1beta1.ClusterNetworkPolicy{}
	mustYAML(t, `
metadata: {name: admin-db}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: db}}}
  ingress: [{name: deny-all, action: Deny, from: [{namespaces: {}}]}]
`, beta)
	if _, err := cnps.PolicyV1beta1().ClusterNetworkPolicies().Create(ctx, beta, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	alpha := &cnpv1alpha2.ClusterNetworkPolicy{}
	mustYAML(t, `
metadata: {name: baseline-egress}
spec:
  tier: Baseline
  priority: 3
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}
  egress: [{name: no-nodes, action: Deny, to: [{nodes: {}}], protocols: [{tcp: {destinationPort: {range: {start: 1, end: 1024}}}}]}]
`, alpha)
	if _, err := cnps.PolicyV1alpha2().ClusterNetworkPolicies().Create(ctx, alpha, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Scoped to one namespace, cluster policies still come whole.
	set, err = live.Load(ctx, Scope{Namespaces: []string{"web"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(set.ClusterPolicies) != 2 || set.ClusterPolicies[0].Name != "admin-db" || set.ClusterPolicies[1].Spec.Egress[0].Protocols[0].TCP.DestinationPort.Range.End != 1024 {
		t.Fatalf("cluster policies %+v", set.ClusterPolicies)
	}
	if _, err := policy.NewEngine(set.Snapshot()); err != nil {
		t.Fatalf("the engine rejects what the API server stored: %v", err)
	}

	// Validation agrees with the API server, CEL rules included.
	for _, c := range []struct{ name, spec string }{
		{"range-order", `{tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {range: {start: 90, end: 80}}}}]}]}`},
		{"cidr-host-bits", `{tier: Admin, priority: 1, subject: {namespaces: {}}, egress: [{action: Deny, to: [{networks: [10.0.0.1/8]}]}]}`},
		{"named-port-networks", `{tier: Admin, priority: 1, subject: {namespaces: {}}, egress: [{action: Deny, to: [{networks: [10.0.0.0/8]}], protocols: [{destinationNamedPort: web}]}]}`},
		{"priority", `{tier: Admin, priority: 1001, subject: {namespaces: {}}}`},
		{"tier", `{tier: Middle, priority: 1, subject: {namespaces: {}}}`},
		{"two-subjects", `{tier: Admin, priority: 1, subject: {namespaces: {}, pods: {podSelector: {}}}}`},
		{"two-peer-fields", `{tier: Admin, priority: 1, subject: {namespaces: {}}, egress: [{action: Deny, to: [{namespaces: {}, nodes: {}}]}]}`},
		{"no-peers", `{tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: []}]}`},
		{"tcp-no-port", `{tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {}}]}]}`},
		{"port-zero-range", `{tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{udp: {destinationPort: {range: {start: 0, end: 80}}}}]}]}`},
		{"domain", `{tier: Admin, priority: 1, subject: {namespaces: {}}, egress: [{action: Accept, to: [{domainNames: ["a..b"]}]}]}`},
		{"ok-all-forms", `{tier: Baseline, priority: 1000, subject: {pods: {namespaceSelector: {}, podSelector: {}}}, egress: [{name: x, action: Pass, to: [{networks: ["10.0.0.0/8", "fd00::/8"]}, {nodes: {matchLabels: {a: b}}}], protocols: [{sctp: {destinationPort: {number: 9}}}]}, {action: Accept, to: [{domainNames: ["*.example.com"]}]}], ingress: [{action: Accept, from: [{pods: {namespaceSelector: {}, podSelector: {}}}], protocols: [{destinationNamedPort: web}]}]}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			obj := &cnpv1beta1.ClusterNetworkPolicy{}
			mustYAML(t, "{metadata: {name: v-"+c.name+"}, spec: "+c.spec+"}", obj)
			_, apiErr := cnps.PolicyV1beta1().ClusterNetworkPolicies().Create(ctx, obj, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			engineErr := policy.ValidateClusterPolicy(obj)
			if (apiErr == nil) != (engineErr == nil) {
				t.Fatalf("API server: %v\nengine: %v", apiErr, engineErr)
			}
			if engineErr != nil && !strings.Contains(engineErr.Error(), "v-"+c.name) {
				t.Errorf("engine error does not name the object: %v", engineErr)
			}
		})
	}
}

func mustYAML(t *testing.T, doc string, obj any) {
	t.Helper()
	if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
		t.Fatal(err)
	}
}
