package advise

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

var now = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

const (
	tcp = flowv1.Protocol_PROTOCOL_TCP
	udp = flowv1.Protocol_PROTOCOL_UDP
)

func labels(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// shop: a web shop with DNS, monitoring from another namespace, an external
// API, kubelet probes from a node, a workload without labels, one seen
// only before the window and one connection that was denied.
func shop() *scenario {
	recent, old := now.Add(-2*time.Hour), now.Add(-48*time.Hour)
	return &scenario{
		workloads: []workload{
			{ns: "shop", name: "frontend", ip: "10.1.0.10", labels: labels("app.kubernetes.io/name", "frontend", "app.kubernetes.io/part-of", "shop")},
			{ns: "shop", name: "api", ip: "10.1.0.11", labels: labels("app.kubernetes.io/name", "api", "app.kubernetes.io/component", "server", "app.kubernetes.io/part-of", "shop"),
				ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "metrics", ContainerPort: 9090}}},
			{ns: "shop", name: "api-cache", ip: "10.1.0.12", labels: labels("app.kubernetes.io/name", "api", "app.kubernetes.io/component", "cache", "app.kubernetes.io/part-of", "shop")},
			{ns: "shop", name: "db", ip: "10.1.0.13", labels: labels("app", "db")},
			{ns: "shop", name: "legacy", ip: "10.1.0.14"},
			{ns: "shop", name: "worker", ip: "10.1.0.15", labels: labels("app.kubernetes.io/name", "worker")},
			{ns: "shop", name: "idle", ip: "10.1.0.16", labels: labels("app.kubernetes.io/name", "idle")},
			{ns: "monitoring", name: "prometheus", ip: "10.2.0.10", labels: labels("app.kubernetes.io/name", "prometheus")},
			{ns: "kube-system", name: "coredns", ip: "10.3.0.10", labels: labels("k8s-app", "kube-dns"), ports: []corev1.ContainerPort{{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}, {Name: "dns-tcp", ContainerPort: 53}}},
		},
		nodes: map[string]string{"10.0.0.1": "node-a"},
		conns: []conn{
			{src: "shop/frontend", dst: "shop/api", proto: tcp, port: 8080, n: 20, at: recent},
			{src: "shop/api", dst: "shop/db", proto: tcp, port: 5432, n: 10, at: recent},
			{src: "shop/api", dst: "kube-system/coredns", proto: udp, port: 53, n: 30, at: recent},
			{src: "shop/api", dst: "kube-system/coredns", proto: tcp, port: 53, n: 2, at: recent},
			{src: "shop/frontend", dst: "kube-system/coredns", proto: udp, port: 53, n: 5, at: recent},
			{src: "monitoring/prometheus", dst: "shop/api", proto: tcp, port: 9090, n: 4, at: recent},
			{src: "monitoring/prometheus", dst: "shop/frontend", proto: tcp, port: 9090, n: 4, at: recent},
			{src: "shop/api", dst: "203.0.113.7", proto: tcp, port: 443, n: 3, at: recent},
			{src: "10.0.0.1", dst: "shop/api", proto: tcp, port: 8080, n: 6, at: recent},
			{src: "shop/legacy", dst: "198.51.100.1", proto: tcp, port: 80, n: 1, at: recent},
			{src: "shop/worker", dst: "shop/db", proto: tcp, port: 5432, n: 7, at: old},
			{src: "shop/frontend", dst: "shop/db", proto: tcp, port: 5432, n: 2, at: recent, denied: true},
		},
	}
}

// TestAdviseShop: the advice for a namespace admits every observed
// connection (whatif finds nothing newly denied), nothing unobserved, every
// rule, peer and port is needed, and the output says what it left out.
func TestAdviseShop(t *testing.T) {
	s := shop()
	since := now.Add(-24 * time.Hour)
	r, out, pols := s.advise(t, Input{Since: since, Namespaces: []string{"shop"}, Ingress: true, Egress: true, Audit: true})
	t.Log("\n" + out)

	if d := s.newlyDenied(t, since, pols); len(d) > 0 {
		t.Errorf("the advice denies observed connections:\n%s", changes(d))
	}
	assertMinimal(t, s, since, pols)

	e := engine(t, s.snapshot(pols...))
	pod := func(name string) policy.Peer {
		return policy.Peer{Pod: s.pod(s.find(name))}
	}
	for _, c := range []struct {
		src, dst policy.Peer
		proto    corev1.Protocol
		port     int32
		want     bool
	}{
		{pod("shop/frontend"), pod("shop/api"), corev1.ProtocolTCP, 8080, true},
		{pod("shop/frontend"), pod("shop/api"), corev1.ProtocolTCP, 9090, false},         // frontend never used metrics
		{pod("monitoring/prometheus"), pod("shop/api"), corev1.ProtocolTCP, 8080, false}, // prometheus only scraped 9090
		{pod("shop/api-cache"), pod("shop/api"), corev1.ProtocolTCP, 8080, false},        // shares app.kubernetes.io/name
		{pod("shop/frontend"), pod("shop/db"), corev1.ProtocolTCP, 5432, false},          // denied when seen: not admitted
		{pod("shop/worker"), pod("shop/db"), corev1.ProtocolTCP, 5432, false},            // seen only before the window
		{pod("shop/api"), policy.Peer{IP: netipAddr("203.0.113.8")}, corev1.ProtocolTCP, 443, false},
		{pod("shop/db"), pod("kube-system/coredns"), corev1.ProtocolUDP, 53, false}, // db made no connection: egress denied
		{pod("shop/api"), pod("kube-system/coredns"), corev1.ProtocolTCP, 53, true},
	} {
		if got := e.Allowed(policy.Traffic{Src: c.src, Dst: c.dst, Protocol: c.proto, Port: c.port}); got != c.want {
			dst := c.dst.IP.String()
			if c.dst.Pod != nil {
				dst = c.dst.Pod.Namespace + "/" + c.dst.Pod.Name
			}
			t.Errorf("%s/%s -> %s %s/%d: allowed %v under the advice, want %v", c.src.Pod.Namespace, c.src.Pod.Name, dst, c.proto, c.port, got, c.want)
		}
	}

	byName := map[string]*Proposal{}
	for i := range r.Proposals {
		p := &r.Proposals[i]
		byName[p.Workload+" "+p.Direction] = p
		if p.Policy.Annotations[ModeAnnotation] != ModeAudit {
			t.Errorf("%s: not annotated for audit", p.Policy.Name)
		}
		if _, ok := p.Policy.Spec.PodSelector.MatchLabels["controller-revision-hash"]; ok {
			t.Errorf("%s selects on controller-revision-hash", p.Policy.Name)
		}
	}
	api := byName["shop/sts/api ingress"]
	if api == nil {
		t.Fatalf("no ingress policy for api: %v", keys(byName))
	}
	if got := labelString(api.Policy.Spec.PodSelector.MatchLabels); got != "app.kubernetes.io/component=server,app.kubernetes.io/name=api" {
		t.Errorf("api selector %s: want name and component (name alone selects api-cache too)", got)
	}
	if len(api.Policy.Spec.Ingress) != 2 || api.Policy.Spec.Ingress[0].Ports[0].Port.String() != "http" {
		t.Errorf("api ingress rules %+v: want frontend on the named port http first, prometheus on 9090", api.Policy.Spec.Ingress)
	}
	if len(api.Exempt) != 1 || !strings.Contains(api.Exempt[0].Note, "node") {
		t.Errorf("api exempt %+v: want the node's probes, needing no rule", api.Exempt)
	}
	apiOut := byName["shop/sts/api egress"]
	if apiOut == nil || len(apiOut.Policy.Spec.Egress) != 3 {
		t.Fatalf("api egress %+v: want DNS, db, the external address", apiOut)
	}
	dns := apiOut.Policy.Spec.Egress[0]
	if dns.To[0].NamespaceSelector.MatchLabels[corev1.LabelMetadataName] != "kube-system" || len(dns.Ports) != 2 || apiOut.Rules[0].Admits[0].Note != "cluster DNS" {
		t.Errorf("api egress rule 0 %+v: want cluster DNS first, kube-system by name, UDP and TCP 53", dns)
	}
	if ext := apiOut.Policy.Spec.Egress[2]; ext.To[0].IPBlock == nil || ext.To[0].IPBlock.CIDR != "203.0.113.7/32" {
		t.Errorf("api egress rule 2 %+v: want ipBlock 203.0.113.7/32", ext)
	}
	if db := byName["shop/sts/db egress"]; db == nil || len(db.Policy.Spec.Egress) != 0 || !strings.Contains(strings.Join(db.Notes, " "), "denies all its egress") {
		t.Errorf("db egress %+v: want deny-all, said", db)
	}
	for _, want := range []string{
		"# rule 0 admits:", "from shop/sts/frontend TCP/8080 (http): 20 connection(s)", "cluster DNS", "needs no rule: from node/node-a TCP/8080",
		"address outside the cluster's pods", "shop/sts/legacy (ingress): it has no labels", "shop/sts/idle (no connection recorded)",
		"shop/sts/worker (seen only before the window)", "shop/sts/worker -> shop/sts/db TCP/5432: 7 connection(s)",
		"Denied when seen (not admitted):", "shop/sts/frontend -> shop/sts/db TCP/5432: 2", "netpol.kubectl.io/mode: audit",
		"db has no app.kubernetes.io/* label", "Observation window: 2026-12-06T12:00:00Z to",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// TestAdviseWorkloadAndDirection: --workload and one direction give that
// workload's policy only; without audit the annotation is absent.
func TestAdviseWorkloadAndDirection(t *testing.T) {
	s := shop()
	r, _, pols := s.advise(t, Input{Workloads: []string{"shop/sts/api"}, Egress: true})
	if len(r.Proposals) != 1 || r.Proposals[0].Direction != "egress" || r.Proposals[0].Workload != "shop/sts/api" {
		t.Fatalf("proposals %+v: want api egress only", r.Proposals)
	}
	if _, ok := pols[0].Annotations[ModeAnnotation]; ok {
		t.Errorf("audit off, yet annotated %v", pols[0].Annotations)
	}
	// All history: the worker's old connection is no concern of api's.
	if d := s.newlyDenied(t, time.Time{}, pols); len(d) > 0 {
		t.Errorf("the advice denies observed connections:\n%s", changes(d))
	}
}

// assertMinimal removes each rule, and each peer and port of a rule with
// more than one, and expects whatif to find an observed connection denied.
func assertMinimal(t *testing.T, s *scenario, since time.Time, pols []*networkingv1.NetworkPolicy) {
	t.Helper()
	for _, m := range mutations(pols) {
		if d := s.newlyDenied(t, since, m.pols); len(d) == 0 {
			t.Errorf("not minimal: without %s no observed connection is denied", m.what)
		}
	}
}

type mutation struct {
	what string
	pols []*networkingv1.NetworkPolicy
}

// mutations are the policies with one rule, peer or port removed.
func mutations(pols []*networkingv1.NetworkPolicy) []mutation {
	var out []mutation
	with := func(i int, what string, change func(*networkingv1.NetworkPolicy)) {
		cp := slices.Clone(pols)
		cp[i] = pols[i].DeepCopy()
		change(cp[i])
		out = append(out, mutation{pols[i].Namespace + "/" + pols[i].Name + " " + what, cp})
	}
	for i, p := range pols {
		for _, dir := range []string{"ingress", "egress"} {
			for j := range ruleCount(p, dir) {
				rule := fmt.Sprintf("%s rule %d", dir, j)
				with(i, rule, func(p *networkingv1.NetworkPolicy) {
					if dir == "ingress" {
						p.Spec.Ingress = slices.Delete(p.Spec.Ingress, j, j+1)
					} else {
						p.Spec.Egress = slices.Delete(p.Spec.Egress, j, j+1)
					}
				})
				peers, ports := ruleParts(p, dir, j)
				for k := range *peers {
					if len(*peers) > 1 {
						with(i, fmt.Sprintf("%s peer %d", rule, k), func(p *networkingv1.NetworkPolicy) {
							peers, _ := ruleParts(p, dir, j)
							*peers = slices.Delete(*peers, k, k+1)
						})
					}
				}
				for k := range *ports {
					if len(*ports) > 1 {
						with(i, fmt.Sprintf("%s port %d", rule, k), func(p *networkingv1.NetworkPolicy) {
							_, ports := ruleParts(p, dir, j)
							*ports = slices.Delete(*ports, k, k+1)
						})
					}
				}
			}
		}
	}
	return out
}

func ruleCount(p *networkingv1.NetworkPolicy, dir string) int {
	if dir == "ingress" {
		return len(p.Spec.Ingress)
	}
	return len(p.Spec.Egress)
}

// ruleParts are the peers and ports of one rule, to change in place.
func ruleParts(p *networkingv1.NetworkPolicy, dir string, j int) (*[]networkingv1.NetworkPolicyPeer, *[]networkingv1.NetworkPolicyPort) {
	if dir == "ingress" {
		return &p.Spec.Ingress[j].From, &p.Spec.Ingress[j].Ports
	}
	return &p.Spec.Egress[j].To, &p.Spec.Egress[j].Ports
}
