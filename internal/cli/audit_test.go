package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/history"
	pt "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

func (h *historyAgent) RuleHits(context.Context, *flowv1.RuleHitsRequest) (*flowv1.RuleHitsResponse, error) {
	hits, since := h.store.RuleHits()
	return &flowv1.RuleHitsResponse{Node: "n", CountingSince: timestamppb.New(since), Hits: hits}, nil
}

// TestUnused: rules hit on either node are used; a rule never hit is
// unused; a policy created after the window started is "not yet known";
// an unreachable node makes the answer partial, said on stderr.
func TestUnused(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	old := metav1.NewTime(now.Add(-60 * 24 * time.Hour))
	dbPol := pt.Policy("shop", "db", pt.Selecting(pt.Sel("app", "db")),
		pt.IngressRule(pt.Peers(pt.PodPeer(pt.Sel("app", "web"))), pt.Port("TCP", 5432)),
		pt.IngressRule(pt.Peers(pt.PodPeer(pt.Sel("app", "admin"))), pt.Port("TCP", 5432)))
	dbPol.CreationTimestamp = old
	idle := pt.Policy("shop", "idle", pt.Selecting(pt.Sel("app", "cache")), pt.IngressRule(nil, pt.Port("TCP", 6379)))
	idle.CreationTimestamp = old
	young := pt.Policy("shop", "young", pt.Selecting(pt.Sel("app", "queue")), pt.IngressRule(nil))
	young.CreationTimestamp = metav1.NewTime(now.Add(-2 * 24 * time.Hour))

	// node-a counted since 40 days; it saw web -> db (ingress[0]) 3 days ago.
	clock := now.Add(-40 * 24 * time.Hour)
	store := history.NewStore(history.Config{Node: "node-a", Now: func() time.Time { return clock }})
	f := liveFlow("node-a", 5432, flowv1.Verdict_VERDICT_ALLOWED)
	f.Type = flowv1.EventType_EVENT_TYPE_NEW
	idx := uint32(0)
	f.AllowedBy = []*flowv1.PolicyRef{{Kind: "NetworkPolicy", Namespace: "shop", Name: "db", Direction: flowv1.TrafficDirection_TRAFFIC_DIRECTION_INGRESS, RuleIndex: &idx}}
	f.Time = timestamppb.New(now.Add(-3 * 24 * time.Hour))
	store.Record(f)
	a := startHistoryAgent(t, store)

	objs := []runtime.Object{pt.Namespace("shop"), dbPol, idle, young, livePod("agent-a", "node-a", true), livePod("agent-b", "node-b", true)}
	client := allowPortForward(fake.NewClientset(objs...), true)
	r := &liveRig{client: client, agents: map[string]*fakeAgent{"agent-a": a}} // node-b: no server
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	uo := &UnusedOptions{IOStreams: streams, factory: fakeFactory(client), Since: "30d", Output: "text", Now: func() time.Time { return now },
		agentAccess: agentAccess{AgentNamespace: "netpol-system", KubeClient: func() (kubernetes.Interface, *rest.Config, error) { return client, &rest.Config{}, nil },
			DialAgent: r.dial}}
	if err := uo.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"shop/db     ingress[1]      never     40d       unused", "shop/idle   (whole policy)  never     40d       unused",
		"shop/young  (whole policy)  never     2d        not yet known"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "ingress[0]") {
		t.Errorf("ingress[0] of shop/db was hit 3 days ago:\n%s", got)
	}
	if !strings.Contains(errOut.String(), "PARTIAL ANSWER") || !strings.Contains(errOut.String(), "node-b") {
		t.Errorf("stderr %q does not say node-b is missing", errOut.String())
	}
}

// TestCoverageOffline: per pod and direction from manifests, and the
// observed traffic into pods nothing isolates from a capture.
func TestCoverageOffline(t *testing.T) {
	out, _, err := run(t, offlineFactory(t), "", "coverage", "-f", example, "--flows", whatifCapture)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"db/mysql-0      isolated, with allowing rules (db/db-policy)  not isolated",
		"4 pods: ingress 3 not isolated, 1 isolated with allowing rules, 0 isolated allowing nothing",
		"db/other  db/web-0     TCP/8080  2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The denied and isolated connections into mysql-0 are not exposure.
	if strings.Contains(out, "mysql-0     TCP/3306") {
		t.Errorf("isolated destination listed as exposed:\n%s", out)
	}
}
