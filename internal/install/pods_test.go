package install

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
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
		{"preflight says bpffs is missing", "", "pending (Init:CrashLoopBackOff: " + noBPFFS + ")", pod(func(p *corev1.Pod) {
			waiting("PodInitializing")(p)
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: PreflightContainer, RestartCount: 3,
				State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", Message: noBPFFS}}}}
		})},
		{"preflight failed once", "", "pending (Init:Error: " + noBPFFS + ")", pod(func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: PreflightContainer,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", Message: noBPFFS}}}}
		})},
		{"preflight passed, agent running", "Started", StateRunning, pod(func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: PreflightContainer,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}}}}
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: containerName, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
		})},
		{"init image pulling", "Pulling", StatePulling, pod(func(p *corev1.Pod) {
			waiting("PodInitializing")(p)
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: PreflightContainer,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}
		})},
		{"init image missing", "", "pending (Init:ImagePullBackOff)", pod(func(p *corev1.Pod) {
			waiting("PodInitializing")(p)
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: PreflightContainer,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "no such image"}}}}
		})},
		{"mount-bpffs running again after a failure", "", "pending (Init:mount-bpffs running)", pod(func(p *corev1.Pod) {
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{
				{Name: MountBPFFSContainer, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
					LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Message: "x"}}},
				{Name: PreflightContainer, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}},
			}
		})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PodState(tc.pod, ds, tc.event); got != tc.want {
				t.Errorf("PodState = %q, want %q", got, tc.want)
			}
		})
	}
}

const noBPFFS = "bpffs is not mounted at /sys/fs/bpf on node n1: mount it on the node (`mount -t bpf bpffs /sys/fs/bpf`, " +
	"or enable systemd's sys-fs-bpf.mount), or reinstall with `kubectl netpol install --mount-bpffs`"

func TestLastExitAndDiagnoseInit(t *testing.T) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "agent-1", Namespace: "ns"}, Spec: corev1.PodSpec{NodeName: "n1"}}
	p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: PreflightContainer, RestartCount: 2,
		State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", Message: noBPFFS}}}}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: containerName,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}}}
	if got, want := LastExit(p), "init container preflight: Error, exit code 1: "+noBPFFS; got != want {
		t.Errorf("LastExit =\n  %s\nwant\n  %s", got, want)
	}
	got := Diagnose(context.Background(), fake.NewClientset(), p, DiagnoseOptions{Events: 5})
	for _, want := range []string{
		"  init container preflight: waiting: CrashLoopBackOff (restarts: 2)\n",
		"  init container preflight: last termination: Error, exit code 1: " + noBPFFS + "\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Diagnose =\n%s\nwant a line\n%s", got, want)
		}
	}
}
