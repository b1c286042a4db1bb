package agentclient

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
)

func agentPod(ns, name, node string, ready bool, tweaks ...func(*corev1.Pod)) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
			install.LabelName: install.AgentName, install.LabelVersion: "v0.1.0"}},
		Spec:   corev1.PodSpec{NodeName: node},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
	for _, tw := range tweaks {
		tw(p)
	}
	return p
}

// The fake clientset filters by label selector only, which is what Discover
// relies on to tell agent pods from others; DiscoverOnNode's field selector
// is checked against the real API server in test/e2e.
func TestDiscover(t *testing.T) {
	other := agentPod(install.DefaultNamespace, "web", "n1", true)
	other.Labels = map[string]string{"app": "web"}
	client := fake.NewClientset(
		agentPod(install.DefaultNamespace, "agent-b", "n2", false),
		agentPod(install.DefaultNamespace, "agent-a", "n1", true),
		agentPod("elsewhere", "agent-c", "n1", true),
		other,
	)
	got, err := Discover(context.Background(), client, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "agent-a" || got[0].Node != "n1" || !got[0].Ready || got[0].Version != "v0.1.0" ||
		got[1].Name != "agent-b" || got[1].Ready {
		t.Fatalf("Discover = %+v", got)
	}
	_, err = Discover(context.Background(), client, "empty")
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "namespace empty") || !strings.Contains(err.Error(), install.AgentSelector) {
		t.Fatalf("no pods: %v", err)
	}
}

func TestAgentState(t *testing.T) {
	p := agentPod("ns", "a", "n1", false, func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodPending
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}}}}
	})
	if got := agentOf(p).State(); got != "Pending (ImagePullBackOff)" {
		t.Errorf("State = %q", got)
	}
	p = agentPod("ns", "a", "n1", false)
	if got := agentOf(p).State(); got != "Running, not ready" {
		t.Errorf("State = %q", got)
	}
}

func TestPick(t *testing.T) {
	now := time.Now()
	mk := func(name string, phase corev1.PodPhase, ready, deleting bool, age time.Duration) Agent {
		return Agent{Name: name, Phase: phase, Ready: ready, Deleting: deleting, Created: now.Add(-age)}
	}
	for _, tc := range []struct {
		name string
		pods []Agent
		want string // "" = none
	}{
		{"none", nil, ""},
		{"pending only", []Agent{mk("a", corev1.PodPending, false, false, 0)}, ""},
		{"ready beats running", []Agent{mk("a", corev1.PodRunning, false, false, 0), mk("b", corev1.PodRunning, true, false, time.Hour)}, "b"},
		{"deleting is last", []Agent{mk("old", corev1.PodRunning, true, true, time.Hour), mk("new", corev1.PodRunning, false, false, 0)}, "new"},
		{"newest of equals", []Agent{mk("old", corev1.PodRunning, true, false, time.Hour), mk("new", corev1.PodRunning, true, false, time.Minute)}, "new"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, ok := Pick(tc.pods)
			if ok != (tc.want != "") || a.Name != tc.want {
				t.Fatalf("Pick = %q, %v; want %q", a.Name, ok, tc.want)
			}
		})
	}
}
