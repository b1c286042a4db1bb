package install

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPodState(t *testing.T) {
	ds := daemonSetOf(t, manifests(t, testOptions()))
	pod := func(tweak func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "agent-1", Labels: ds.Spec.Template.Labels},
			Spec:       *ds.Spec.Template.Spec.DeepCopy(),
		}
		p.Spec.NodeName = "n1"
		tweak(p)
		return p
	}
	waiting := func(reason string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: containerName,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "details"}}}}
		}
	}
	now := metav1.Now()
	for _, tc := range []struct {
		name, event, want string
		pod               *corev1.Pod
	}{
		{"just created", "", StatePending, pod(func(*corev1.Pod) {})},
		{"unschedulable", "", "pending (Unschedulable: 0/3 nodes are available)", pod(func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
				Reason: "Unschedulable", Message: "0/3 nodes are available\nmore"}}
		})},
		{"pulling", "Pulling", StatePulling, pod(waiting("ContainerCreating"))},
		{"creating, no pull seen", "Scheduled", StatePending, pod(waiting("ContainerCreating"))},
		{"pull failing", "Failed", "pending (ImagePullBackOff)", pod(waiting("ImagePullBackOff"))},
		{"crash loop", "", "pending (CrashLoopBackOff)", pod(waiting("CrashLoopBackOff"))},
		{"crash loop with the agent's last words", "", "pending (CrashLoopBackOff: node lacks BPF netfilter links (Linux 6.4+))", pod(func(p *corev1.Pod) {
			waiting("CrashLoopBackOff")(p)
			p.Status.ContainerStatuses[0].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{
				ExitCode: 1, Message: "node lacks BPF netfilter links (Linux 6.4+)\nsecond line"}
		})},
		{"running", "Started", StateRunning, pod(func(p *corev1.Pod) {
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: containerName, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
		})},
		{"ready", "", StateReady, pod(func(p *corev1.Pod) {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		})},
		{"previous version", "", StateOutdated, pod(func(p *corev1.Pod) {
			p.Spec.Containers[0].Image = "example.test/agent:v0.0.9"
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		})},
		{"terminating", "", StateTerminating, pod(func(p *corev1.Pod) { p.DeletionTimestamp = &now })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PodState(tc.pod, ds, tc.event); got != tc.want {
				t.Errorf("PodState = %q, want %q", got, tc.want)
			}
		})
	}
}
