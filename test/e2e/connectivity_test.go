//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestPodToPodAndService sends real TCP, UDP and HTTP traffic from one netprobe pod to another:
// to its pod IP, to a ClusterIP Service in front of it (kube-proxy nftables) and to the
// Service's DNS names (CoreDNS). Every reply must come from the server pod, and a closed port
// must be refused (the probe can fail). On several nodes, with client and server on the same
// node and on different nodes (Flannel vxlan, the Service's backend on the other node).
func TestPodToPodAndService(t *testing.T) {
	runBesideConformance(t)
	c := framework.Connect(t)
	for _, pl := range framework.Placements() {
		t.Run(pl.Name, func(t *testing.T) { testPodToPodAndService(t, c, pl) })
	}
}

func testPodToPodAndService(t *testing.T, c *framework.Cluster, pl framework.Placement) {
	ns := c.NewNamespace(t, "conn")
	server := c.StartProbeOn(t, ns, "server", map[string]string{"app": "server"}, pl.Server)
	client := c.StartProbeOn(t, ns, "client", map[string]string{"app": "client"}, pl.Client)

	ctx := framework.Context(t, 30*time.Second)
	svc, err := c.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "server"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "server"},
			Ports: []corev1.ServicePort{
				{Name: "tcp", Port: 80, TargetPort: intstr.FromInt32(80), Protocol: corev1.ProtocolTCP},
				{Name: "udp", Port: 80, TargetPort: intstr.FromInt32(80), Protocol: corev1.ProtocolUDP},
				{Name: "alt", Port: 9090, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating service: %v", err)
	}

	ip := server.Status.PodIP
	fqdn := "server." + ns + ".svc.cluster.local"
	cases := []struct {
		name   string
		target framework.Target
	}{
		{"pod IP tcp 80", framework.Target{Host: ip, Port: 80, Protocol: "tcp"}},
		{"pod IP tcp 81", framework.Target{Host: ip, Port: 81, Protocol: "tcp"}},
		{"pod IP udp 80", framework.Target{Host: ip, Port: 80, Protocol: "udp"}},
		{"pod IP udp 81", framework.Target{Host: ip, Port: 81, Protocol: "udp"}},
		{"pod IP http 8080", framework.Target{Host: ip, Port: 8080, Protocol: "http"}},
		{"ClusterIP tcp", framework.Target{Host: svc.Spec.ClusterIP, Port: 80, Protocol: "tcp"}},
		{"ClusterIP udp", framework.Target{Host: svc.Spec.ClusterIP, Port: 80, Protocol: "udp"}},
		{"ClusterIP named targetPort", framework.Target{Host: svc.Spec.ClusterIP, Port: 9090, Protocol: "http"}},
		{"DNS FQDN tcp", framework.Target{Host: fqdn, Port: 80, Protocol: "tcp"}},
		{"DNS FQDN udp", framework.Target{Host: fqdn, Port: 80, Protocol: "udp"}},
		{"DNS short name tcp", framework.Target{Host: "server", Port: 80, Protocol: "tcp"}},
	}
	var targets []framework.Target
	for _, tc := range cases {
		targets = append(targets, tc.target)
	}
	results := c.ExpectReachable(t, client, targets...)
	for i, r := range results {
		if r.From != "client" || !strings.Contains(r.Reply, "server") {
			t.Errorf("%s: reply %q from %q, want a reply from the server pod to the client", cases[i].name, r.Reply, r.From)
		}
	}

	closed := c.Probe(t, client, framework.Target{Host: ip, Port: 82, Protocol: "tcp"})
	if closed[0].OK || closed[0].Error != "connection refused" {
		t.Errorf("tcp to a closed port: %+v, want connection refused", closed[0])
	}
	unknown := c.Probe(t, client, framework.Target{Host: "nosuchservice." + ns + ".svc.cluster.local", Port: 80, Protocol: "tcp"})
	if unknown[0].OK || !strings.HasPrefix(unknown[0].Error, "dns") {
		t.Errorf("tcp to an unknown name: %+v, want a DNS error", unknown[0])
	}
}
