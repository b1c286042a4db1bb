//go:build e2e

// Package e2e holds the end-to-end tests run against the local test cluster by `make e2e`.
package e2e

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestClusterHealth checks what every other test relies on: the API server's health checks,
// the node Ready with the expected addresses, the kubernetes and kube-dns Services, and CoreDNS
// running from the local image.
func TestClusterHealth(t *testing.T) {
	c := framework.Connect(t)
	ctx := framework.Context(t, 30*time.Second)

	for _, path := range []string{"/readyz", "/livez"} {
		body, err := c.Client.Discovery().RESTClient().Get().AbsPath(path).DoRaw(ctx)
		if err != nil || strings.TrimSpace(string(body)) != "ok" {
			t.Errorf("GET %s: %q, %v", path, body, err)
		}
	}

	podCIDRs := map[string]*net.IPNet{} // node name -> its pod subnet
	for _, want := range framework.Nodes {
		node, err := c.Client.CoreV1().Nodes().Get(ctx, want.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("node %s: %v", want.Name, err)
		}
		ready := false
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				ready = cond.Status == corev1.ConditionTrue
			}
		}
		if !ready {
			t.Errorf("node %s is not Ready: %+v", node.Name, node.Status.Conditions)
		}
		_, cidr, err := net.ParseCIDR(node.Spec.PodCIDR)
		_, all, _ := net.ParseCIDR(framework.PodCIDR)
		if err != nil || !all.Contains(cidr.IP) || cidr.Mask.String() != net.CIDRMask(24, 32).String() {
			t.Errorf("node %s podCIDR = %q, want a /24 of %s", node.Name, node.Spec.PodCIDR, framework.PodCIDR)
		} else {
			podCIDRs[node.Name] = cidr
		}
		internal := ""
		for _, a := range node.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				internal = a.Address
			}
		}
		if internal != want.IP {
			t.Errorf("node %s InternalIP = %q, want %s", node.Name, internal, want.IP)
		}
	}
	if nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil || len(nodes.Items) != len(framework.Nodes) {
		t.Errorf("the cluster has %d nodes (%v), want %d", len(nodes.Items), err, len(framework.Nodes))
	}

	for ns, svcIP := range map[string]string{"default/kubernetes": "10.96.0.1", "kube-system/kube-dns": framework.DNSServiceIP} {
		namespace, name, _ := strings.Cut(ns, "/")
		svc, err := c.Client.CoreV1().Services(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("service %s: %v", ns, err)
		} else if svc.Spec.ClusterIP != svcIP {
			t.Errorf("service %s has ClusterIP %s, want %s", ns, svc.Spec.ClusterIP, svcIP)
		}
	}

	pods, err := c.Client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-dns"})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("CoreDNS pods: %v (%d found)", err, len(pods.Items))
	}
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning || !strings.HasPrefix(p.Spec.Containers[0].Image, "localhost/") {
			t.Errorf("CoreDNS pod %s: phase %s image %s", p.Name, p.Status.Phase, p.Spec.Containers[0].Image)
		}
		if cidr := podCIDRs[p.Spec.NodeName]; cidr == nil || !cidr.Contains(net.ParseIP(p.Status.PodIP)) {
			t.Errorf("CoreDNS pod %s on %s has IP %q outside its node's pod subnet %v", p.Name, p.Spec.NodeName, p.Status.PodIP, cidr)
		}
	}
}
