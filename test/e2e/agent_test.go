//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/internal/agentclient"
	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

// shop is the classic example: db (app=db) serves TCP 3306 behind the
// Service db; web (app=web) and other (app=other) are clients; db-policy
// admits only app=web on TCP 3306.
type shop struct {
	ns             string
	db, web, other *corev1.Pod
	serviceIP      string
	dbIP           string
	podDB, svcDB   framework.Target
	podDB80        framework.Target
}

func newShop(t *testing.T, c *framework.Cluster) *shop {
	t.Helper()
	s := &shop{ns: c.NewNamespace(t, "shop")}
	dbPod := framework.ProbePod(s.ns, "db", map[string]string{"app": "db"})
	dbPod.Spec.Containers[0].Args = []string{"serve", "-tcp", "80,3306", "-http", "8080"}
	dbPod.Spec.Containers[0].Ports = append(dbPod.Spec.Containers[0].Ports,
		corev1.ContainerPort{Name: "mysql", ContainerPort: 3306, Protocol: corev1.ProtocolTCP})
	// On several nodes, as users run it: db on one node, its clients on another, so every
	// connection crosses the vxlan and is judged on both (egress at the client's node, ingress
	// at db's).
	pl := framework.Placements()[len(framework.Placements())-1]
	dbPod.Spec.NodeName = pl.Server
	s.db = c.StartPod(t, dbPod)
	s.web = c.StartProbeOn(t, s.ns, "web", map[string]string{"app": "web"}, pl.Client)
	s.other = c.StartProbeOn(t, s.ns, "other", map[string]string{"app": "other"}, pl.Client)
	ctx := framework.Context(t, time.Minute)
	svc, err := c.Client.CoreV1().Services(s.ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "db"},
			Ports: []corev1.ServicePort{{Name: "mysql", Port: 3306, TargetPort: intstr.FromInt32(3306), Protocol: corev1.ProtocolTCP}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.serviceIP, s.dbIP = svc.Spec.ClusterIP, s.db.Status.PodIP
	s.podDB = framework.Target{Host: s.dbIP, Port: 3306, Protocol: "tcp"}
	s.svcDB = framework.Target{Host: s.serviceIP, Port: 3306, Protocol: "tcp"}
	s.podDB80 = framework.Target{Host: s.dbIP, Port: 80, Protocol: "tcp"}
	// Before any policy everything is reachable (kube-proxy has the Service).
	c.ExpectReachable(t, s.other, s.podDB, s.svcDB, s.podDB80)
	return s
}

func (s *shop) applyPolicy(t *testing.T, c *framework.Cluster) {
	t.Helper()
	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(3306)
	_, err := c.Client.NetworkingV1().NetworkPolicies(s.ns).Create(framework.Context(t, time.Minute), &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "db-policy"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Enforced when other can no longer reach db (bounded: a datapath that
	// never enforces fails here).
	if err := wait.PollUntilContextTimeout(framework.Context(t, time.Minute), 200*time.Millisecond, 15*time.Second, true,
		func(context.Context) (bool, error) {
			return !c.ProbeWithTimeout(t, s.other, time.Second, s.podDB)[0].OK, nil
		}); err != nil {
		t.Fatalf("db-policy not enforced 15 s after it was created: other still reaches db")
	}
}

// expect probes each target from pod and fails for every verdict other
// than want.
func expect(t *testing.T, c *framework.Cluster, from *corev1.Pod, want bool, targets ...framework.Target) {
	t.Helper()
	for _, r := range c.ProbeWithTimeout(t, from, time.Second, targets...) {
		if r.OK != want {
			t.Errorf("%s -> %s:%d/%s: reachable=%v, want %v (%s)", from.Name, r.To, r.Port, r.Protocol, r.OK, want, r.Error)
		}
	}
}

// The classic example, enforced by the installed agent, through the pod IP
// and through the ClusterIP Service; the agent's flows explain both
// verdicts with the policy and rule, and name the Service.
func TestAgentEnforcesClassicExample(t *testing.T) {
	runBesideConformance(t)
	c := framework.Connect(t)
	installAgent(t, c)
	s := newShop(t, c)
	s.applyPolicy(t, c)

	expect(t, c, s.web, true, s.podDB, s.svcDB)
	expect(t, c, s.other, false, s.podDB, s.svcDB)
	expect(t, c, s.web, false, s.podDB80)                                                           // only 3306 is admitted
	expect(t, c, s.db, true, framework.Target{Host: s.web.Status.PodIP, Port: 80, Protocol: "tcp"}) // web is not isolated

	byPair := func(from, to *corev1.Pod, verdict flowv1.Verdict, port uint32) *flowv1.FlowFilter {
		return &flowv1.FlowFilter{SourcePod: []string{from.Namespace + "/" + from.Name}, DestinationPod: []string{to.Namespace + "/" + to.Name},
			Verdict: []flowv1.Verdict{verdict}, DestinationPort: []uint32{port}}
	}
	allowed := waitFlow(t, c, "web -> db allowed", byPair(s.web, s.db, flowv1.Verdict_VERDICT_ALLOWED, 3306))
	if len(allowed.GetAllowedBy()) != 1 || allowed.GetAllowedBy()[0].GetName() != "db-policy" ||
		allowed.GetAllowedBy()[0].GetDirection() != flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS ||
		allowed.GetAllowedBy()[0].RuleIndex == nil || allowed.GetAllowedBy()[0].GetRuleIndex() != 0 ||
		allowed.GetReason() != flowv1.Reason_REASON_ALLOWED_BY_RULE {
		t.Errorf("web -> db should be allowed by db-policy ingress rule 0: %s", describeFlow(allowed))
	}
	if allowed.GetSource().GetLabels()["app"] != "web" || allowed.GetDestination().GetNamespace() != s.ns {
		t.Errorf("web -> db endpoints not enriched: %s", describeFlow(allowed))
	}
	denied := waitFlow(t, c, "other -> db dropped", byPair(s.other, s.db, flowv1.Verdict_VERDICT_DENIED, 3306))
	if denied.GetReason() != flowv1.Reason_REASON_NO_RULE_MATCHED || len(denied.GetIsolatedBy()) != 1 ||
		denied.GetIsolatedBy()[0].GetName() != "db-policy" || denied.GetType() != flowv1.EventType_EVENT_TYPE_DROP {
		t.Errorf("other -> db should be a drop isolated by db-policy: %s", describeFlow(denied))
	}
	// Through the Service: the flow names the Service from the pre-NAT tuple. kube-proxy DNATs
	// on the client's node, so only that node sees the Service: on one node the drop names it;
	// across nodes other's node records the connection (egress, allowed) with the Service and
	// the backend, and db's node drops it (ingress) knowing only the backend.
	svcVerdict := flowv1.Verdict_VERDICT_DENIED
	if s.other.Spec.NodeName != s.db.Spec.NodeName {
		svcVerdict = flowv1.Verdict_VERDICT_ALLOWED
	}
	svcFlow := waitFlow(t, c, "other -> Service db", &flowv1.FlowFilter{
		SourcePod: []string{s.ns + "/other"}, Service: []string{s.ns + "/db"}, Verdict: []flowv1.Verdict{svcVerdict}})
	if svcFlow.GetService().GetIp() != s.serviceIP || svcFlow.GetService().GetPort() != 3306 || svcFlow.GetDestination().GetPod() != "db" ||
		svcFlow.GetNode() != s.other.Spec.NodeName {
		t.Errorf("Service flow on %s should name %s/db %s:3306 and the backend pod db: %s", s.other.Spec.NodeName, s.ns, s.serviceIP, describeFlow(svcFlow))
	}
	if svcVerdict == flowv1.Verdict_VERDICT_ALLOWED && denied.GetNode() != s.db.Spec.NodeName {
		t.Errorf("other -> db across nodes should be dropped on db's node %s: %s", s.db.Spec.NodeName, describeFlow(denied))
	}
	waitFlow(t, c, "web -> Service db allowed", &flowv1.FlowFilter{
		SourcePod: []string{s.ns + "/web"}, Service: []string{s.ns + "/db"}, Verdict: []flowv1.Verdict{flowv1.Verdict_VERDICT_ALLOWED}})

	// watch, one-shot, through the real agents: the same drop, attributed.
	out, err := netpol(t, c, "", "watch", "-o", "json", "--last", "200", "--to-namespace", s.ns, "--verdict", "denied")
	if err != nil {
		t.Fatalf("watch: %v\n%s", err, out)
	}
	var sawDrop bool
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.Contains(line, `"pod":"other"`) && strings.Contains(line, `"name":"db-policy"`) && strings.Contains(line, "VERDICT_DENIED") {
			sawDrop = true
		}
	}
	if !sawDrop {
		t.Errorf("watch -o json shows no drop of other -> db isolated by db-policy:\n%s", out)
	}

	// status reports the node enforcing, with this test's policy counted.
	out, err = netpol(t, c, "", "status", "-o", "json")
	if err != nil || !strings.Contains(out, `"ready": true`) {
		t.Errorf("status: %v\n%s", err, out)
	}
}

// Deleting the agent pod while traffic flows: the pinned datapath keeps
// enforcing, no probe gets a wrong verdict, and an established connection
// survives the agent's restart.
func TestAgentRestartMidTraffic(t *testing.T) {
	c := framework.Connect(t)
	installAgent(t, c)
	s := newShop(t, c)
	s.applyPolicy(t, c)

	ctx := framework.Context(t, 3*time.Minute)
	agents, err := agentclient.Discover(ctx, c.Client, install.DefaultNamespace)
	if err != nil || len(agents) == 0 {
		t.Fatalf("no agent: %v", err)
	}
	old := agents[0]

	// One connection held open for ~25 s, a ping every 250 ms; new connections throughout.
	traffic := s.startTraffic(ctx, t, c, 100)

	time.Sleep(3 * time.Second)
	if err := c.Client.CoreV1().Pods(old.Namespace).Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("deleted agent pod %s", old.Name)
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		as, err := agentclient.Discover(ctx, c.Client, install.DefaultNamespace)
		if err != nil {
			return false, nil
		}
		for _, a := range as {
			if a.Name != old.Name && a.Ready {
				t.Logf("new agent pod %s ready", a.Name)
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		t.Fatalf("no new agent pod became ready: %v", err)
	}
	time.Sleep(3 * time.Second) // traffic after the new agent took over
	traffic.stop(t, "during the restart")
}

// trafficRun is a connection web holds to db (pinged every 250 ms) and new
// connections from web (allowed) and other (denied) to db's pod IP and
// Service, made over and over until stop, as a test does across a restart.
type trafficRun struct {
	wg      sync.WaitGroup
	stopCh  chan struct{}
	mu      sync.Mutex
	probes  int
	wrongs  []string
	kept    []framework.ProbeResult
	keptErr error
}

// startTraffic starts a trafficRun whose kept connection lasts pings pings.
func (s *shop) startTraffic(ctx context.Context, t *testing.T, c *framework.Cluster, pings int) *trafficRun {
	r := &trafficRun{stopCh: make(chan struct{})}
	r.wg.Go(func() {
		out, stderr, err := c.Exec(ctx, s.web, "/netprobe", "connect", "-keep", "-count", fmt.Sprint(pings), "-interval", "250ms", "-timeout", "2s", s.podDB.String())
		r.kept, r.keptErr = framework.ParseProbeResults(out)
		if r.keptErr == nil && len(r.kept) != pings {
			r.keptErr = fmt.Errorf("%d results of %d (exec error %v, stderr %q)", len(r.kept), pings, err, stderr)
		}
	})
	r.wg.Go(func() {
		for {
			select {
			case <-r.stopCh:
				return
			default:
			}
			for _, p := range []struct {
				from *corev1.Pod
				want bool
			}{{s.web, true}, {s.other, false}} {
				for _, res := range c.ProbeWithTimeout(t, p.from, time.Second, s.podDB, s.svcDB) {
					r.mu.Lock()
					r.probes++
					if res.OK != p.want {
						r.wrongs = append(r.wrongs, fmt.Sprintf("%s %s -> %s:%d ok=%v %s", time.Now().Format("15:04:05.000"), p.from.Name, res.To, res.Port, res.OK, res.Error))
					}
					r.mu.Unlock()
				}
			}
		}
	})
	return r
}

// stop ends the new connections, waits for the kept one, and fails the test
// for every wrong verdict and for a kept connection that broke.
func (r *trafficRun) stop(t *testing.T, what string) {
	t.Helper()
	close(r.stopCh)
	r.wg.Wait()
	t.Logf("%d probes %s, %d wrong", r.probes, what, len(r.wrongs))
	for _, w := range r.wrongs {
		t.Errorf("wrong verdict: %s", w)
	}
	if r.probes < 4 {
		t.Errorf("only %d probes ran %s: the test did not cover it", r.probes, what)
	}
	if r.keptErr != nil {
		t.Fatalf("kept connection: %v", r.keptErr)
	}
	for i, res := range r.kept {
		if !res.OK {
			t.Fatalf("the established connection broke at ping %d of %d: %s", i+1, len(r.kept), res.Error)
		}
	}
}
