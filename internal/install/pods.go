package install

import (
	"context"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
)

// Agent pod states shown per node while waiting.
const (
	StatePending     = "pending"     // not scheduled or not started
	StatePulling     = "pulling"     // pulling the image
	StateRunning     = "running"     // started, not ready yet
	StateReady       = "ready"       // passing readiness
	StateOutdated    = "outdated"    // a pod of the previous version, to be replaced
	StateTerminating = "terminating" // being deleted (cleaning its node on uninstall)
)

// AgentPods lists the agent pods in namespace, sorted by node then name.
func AgentPods(ctx context.Context, client kubernetes.Interface, namespace string) ([]corev1.Pod, error) {
	list, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: AgentSelector})
	if err != nil {
		return nil, err
	}
	pods := list.Items
	sort.Slice(pods, func(i, j int) bool {
		if pods[i].Spec.NodeName != pods[j].Spec.NodeName {
			return pods[i].Spec.NodeName < pods[j].Spec.NodeName
		}
		return pods[i].Name < pods[j].Name
	})
	return pods, nil
}

// NodeOf names the node of a pod, or says it is not scheduled yet.
func NodeOf(pod *corev1.Pod) string {
	if pod.Spec.NodeName != "" {
		return pod.Spec.NodeName
	}
	return "(unscheduled) " + pod.Name
}

// PodReady reports the pod's Ready condition.
func PodReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// IsCurrent reports whether the pod runs the DaemonSet's current template,
// judged by the agent container's image and the version label (what an
// upgrade changes).
func IsCurrent(pod *corev1.Pod, ds *appsv1.DaemonSet) bool {
	if pod.Labels[LabelVersion] != ds.Spec.Template.Labels[LabelVersion] {
		return false
	}
	return agentImage(&pod.Spec) == agentImage(&ds.Spec.Template.Spec)
}

func agentImage(spec *corev1.PodSpec) string {
	for _, c := range spec.Containers {
		if c.Name == containerName {
			return c.Image
		}
	}
	return ""
}

// PodState is the pod's progress as one word, with the reason when the
// container is stuck (e.g. "pending (ImagePullBackOff)").
// lastEvent is the reason of the pod's newest event ("Pulling", ...), "" if
// none is known.
func PodState(pod *corev1.Pod, ds *appsv1.DaemonSet, lastEvent string) string {
	switch {
	case pod.DeletionTimestamp != nil:
		return StateTerminating
	case ds != nil && !IsCurrent(pod, ds):
		return StateOutdated
	case PodReady(pod):
		return StateReady
	}
	cs, prefix := agentStatus(pod), ""
	if init := currentInit(pod); init != nil && (cs == nil || (cs.State.Waiting != nil && cs.State.Waiting.Reason == "PodInitializing")) {
		// The pod is at an init container (the same image): its state is
		// the pod's, e.g. the preflight's "bpffs is not mounted ...".
		cs, prefix = init, "Init:"
	}
	if cs != nil {
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason == "ContainerCreating" && lastEvent == "Pulling":
			return StatePulling
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "ContainerCreating" && cs.State.Waiting.Reason != "PodInitializing":
			// The reason only: messages change with every retry, and
			// Diagnose prints them in full. A crashing container's own last
			// words (its termination message) are stable and say why, e.g.
			// a kernel feature or the bpffs the node lacks.
			if t := cs.LastTerminationState.Terminated; cs.State.Waiting.Reason == "CrashLoopBackOff" && t != nil && t.Message != "" {
				return StatePending + " (" + prefix + "CrashLoopBackOff: " + firstLine(t.Message) + ")"
			}
			return StatePending + " (" + prefix + cs.State.Waiting.Reason + ")"
		case cs.State.Running != nil && prefix != "":
			return StatePending + " (Init:" + cs.Name + " running)"
		case cs.State.Running != nil:
			return StateRunning
		case cs.State.Terminated != nil && prefix != "" && cs.State.Terminated.Message != "":
			return StatePending + " (Init:" + cs.State.Terminated.Reason + ": " + firstLine(cs.State.Terminated.Message) + ")"
		case cs.State.Terminated != nil:
			return StatePending + " (" + prefix + cs.State.Terminated.Reason + ")"
		}
	}
	if lastEvent == "Pulling" {
		return StatePulling
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason != "" {
			return StatePending + " (" + c.Reason + ": " + firstLine(c.Message) + ")"
		}
	}
	return StatePending
}

// currentInit returns the status of the first init container that has not
// completed (the one the pod is at), nil when all completed.
func currentInit(pod *corev1.Pod) *corev1.ContainerStatus {
	for i := range pod.Status.InitContainerStatuses {
		cs := &pod.Status.InitContainerStatuses[i]
		if t := cs.State.Terminated; t != nil && t.ExitCode == 0 {
			continue
		}
		return cs
	}
	return nil
}

// PreflightFailure returns the first line of the preflight init container's
// message once that check of the node has run and failed twice in a row on
// this pod.
// It checks the node, not the pod, so retrying helps only after someone fixes
// the node: install --wait stops waiting for that node then, instead of
// waiting out its timeout. One failure is not enough, because a node may
// still be booting (systemd mounts bpffs early, but not instantly).
func PreflightFailure(pod *corev1.Pod) (string, bool) {
	for i := range pod.Status.InitContainerStatuses {
		cs := &pod.Status.InitContainerStatuses[i]
		if cs.Name != PreflightContainer {
			continue
		}
		last := cs.State.Terminated
		if last == nil {
			last = cs.LastTerminationState.Terminated
		}
		// Reason "Error": the check ran and failed. A container that could
		// not start at all (StartError: an image without the agent binary)
		// did not check the node; it is the install's fault, left to the
		// timeout report.
		if cs.RestartCount < 1 || last == nil || last.ExitCode == 0 || last.Reason != "Error" || last.Message == "" {
			return "", false
		}
		return firstLine(last.Message), true
	}
	return "", false
}

// AgentRunning reports whether the agent container is running (so its
// ports may answer), whatever its readiness.
func AgentRunning(pod *corev1.Pod) bool {
	cs := agentStatus(pod)
	return pod.Status.Phase == corev1.PodRunning && pod.DeletionTimestamp == nil && cs != nil && cs.State.Running != nil
}

// LastExit describes the agent container's last termination, with the
// first line of its termination message (the agent's fatal error, or its
// last log line); "" when it never terminated.
func LastExit(pod *corev1.Pod) string {
	cs := agentStatus(pod)
	if init := currentInit(pod); init != nil && (cs == nil || (cs.State.Terminated == nil && cs.LastTerminationState.Terminated == nil)) {
		t := init.State.Terminated
		if t == nil {
			t = init.LastTerminationState.Terminated
		}
		if t != nil {
			return "init container " + init.Name + ": " + terminatedDetail(t)
		}
	}
	if cs == nil {
		return ""
	}
	if t := cs.State.Terminated; t != nil {
		return terminatedDetail(t)
	}
	if t := cs.LastTerminationState.Terminated; t != nil {
		return terminatedDetail(t)
	}
	return ""
}

func agentStatus(pod *corev1.Pod) *corev1.ContainerStatus {
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == containerName {
			return &pod.Status.ContainerStatuses[i]
		}
	}
	return nil
}

func waitingDetail(cs *corev1.ContainerStatus) string {
	w := cs.State.Waiting
	s := w.Reason
	if w.Message != "" {
		s += ": " + firstLine(w.Message)
	}
	return s
}

func terminatedDetail(t *corev1.ContainerStateTerminated) string {
	s := fmt.Sprintf("exit code %d", t.ExitCode)
	if t.Reason != "" {
		s = t.Reason + ", " + s
	}
	if t.Message != "" {
		s += ": " + firstLine(t.Message)
	}
	return s
}

// Events returns the events about an object of the given kind, oldest first.
func Events(ctx context.Context, client kubernetes.Interface, kind string, obj metav1.Object) ([]corev1.Event, error) {
	sel := fields.Set{"involvedObject.kind": kind, "involvedObject.name": obj.GetName(), "involvedObject.uid": string(obj.GetUID())}.AsSelector().String()
	list, err := client.CoreV1().Events(obj.GetNamespace()).List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		return nil, err
	}
	events := list.Items
	sort.SliceStable(events, func(i, j int) bool { return eventTime(&events[i]).Time.Before(eventTime(&events[j]).Time) })
	return events, nil
}

// ObjectEvents formats the newest n events about an object, one indented
// line each; a failure to read them is said in the text.
func ObjectEvents(ctx context.Context, client kubernetes.Interface, kind string, obj metav1.Object, n int) string {
	events, err := Events(ctx, client, kind, obj)
	switch {
	case err != nil:
		return "  events: cannot read: " + firstLine(err.Error()) + "\n"
	case len(events) == 0:
		return "  events: none\n"
	}
	if n > 0 && len(events) > n {
		events = events[len(events)-n:]
	}
	var b strings.Builder
	b.WriteString("  events:\n")
	for _, e := range events {
		count := ""
		if e.Count > 1 {
			count = fmt.Sprintf(" (x%d)", e.Count)
		}
		fmt.Fprintf(&b, "    %s %s %s: %s%s\n", eventTime(&e).UTC().Format("15:04:05"), e.Type, e.Reason, firstLine(e.Message), count)
	}
	return b.String()
}

func eventTime(e *corev1.Event) metav1.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp
	case !e.EventTime.IsZero():
		return metav1.Time{Time: e.EventTime.Time}
	}
	return e.CreationTimestamp
}

// DiagnoseOptions bound what Diagnose prints per pod.
type DiagnoseOptions struct {
	Events   int   // newest events
	LogLines int64 // last log lines of the agent container
}

// Diagnose describes why a pod is not ready: its phase and conditions, the
// agent container's state and last termination (with the termination
// message), its newest events and last log lines (of the previous container
// when the current one has not started). What cannot be read is said, not
// hidden.
func Diagnose(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, o DiagnoseOptions) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pod %s/%s on node %s: phase %s\n", pod.Namespace, pod.Name, NodeOf(pod), pod.Status.Phase)
	for _, c := range pod.Status.Conditions {
		if c.Status != corev1.ConditionTrue && (c.Reason != "" || c.Message != "") {
			fmt.Fprintf(&b, "  condition %s=%s: %s %s\n", c.Type, c.Status, c.Reason, firstLine(c.Message))
		}
	}
	if init := currentInit(pod); init != nil {
		// The pod is at this init container; the agent has not started.
		name := "init container " + init.Name
		switch st := init.State; {
		case st.Waiting != nil:
			fmt.Fprintf(&b, "  %s: waiting: %s (restarts: %d)\n", name, waitingDetail(init), init.RestartCount)
		case st.Running != nil:
			fmt.Fprintf(&b, "  %s: running since %s\n", name, st.Running.StartedAt.UTC().Format("15:04:05"))
		case st.Terminated != nil:
			fmt.Fprintf(&b, "  %s: terminated: %s\n", name, terminatedDetail(st.Terminated))
		}
		if t := init.LastTerminationState.Terminated; t != nil && init.State.Terminated == nil {
			fmt.Fprintf(&b, "  %s: last termination: %s\n", name, terminatedDetail(t))
		}
		for _, t := range []*corev1.ContainerStateTerminated{init.State.Terminated, init.LastTerminationState.Terminated} {
			if t != nil && strings.Contains(t.Message, "\n") {
				b.WriteString(indent("    ", t.Message))
				break
			}
		}
	}
	cs := agentStatus(pod)
	previous := false
	if cs != nil {
		switch st := cs.State; {
		case st.Waiting != nil:
			fmt.Fprintf(&b, "  container %s: waiting: %s\n", cs.Name, waitingDetail(cs))
		case st.Running != nil:
			fmt.Fprintf(&b, "  container %s: running since %s, not ready (restarts: %d)\n", cs.Name, st.Running.StartedAt.UTC().Format("15:04:05"), cs.RestartCount)
		case st.Terminated != nil:
			fmt.Fprintf(&b, "  container %s: terminated: %s\n", cs.Name, terminatedDetail(st.Terminated))
		}
		if t := cs.LastTerminationState.Terminated; t != nil {
			fmt.Fprintf(&b, "  last termination: %s\n", terminatedDetail(t))
			if t.Message != "" && strings.Contains(t.Message, "\n") {
				b.WriteString(indent("    ", t.Message))
			}
			previous = cs.State.Running == nil
		}
	}
	b.WriteString(ObjectEvents(ctx, client, "Pod", pod, o.Events))
	if o.LogLines > 0 && (cs == nil || cs.State.Running != nil || previous) {
		lines := o.LogLines
		raw, err := client.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{
			Container: containerName, TailLines: &lines, Previous: previous,
		}).DoRaw(ctx)
		which := "last log lines"
		if previous {
			which += " (previous container)"
		}
		switch {
		case err != nil:
			fmt.Fprintf(&b, "  %s: cannot read: %s\n", which, firstLine(err.Error()))
		case len(strings.TrimSpace(string(raw))) == 0:
			fmt.Fprintf(&b, "  %s: none\n", which)
		default:
			fmt.Fprintf(&b, "  %s:\n", which)
			b.WriteString(indent("    ", string(raw)))
		}
	}
	return b.String()
}

func indent(prefix, s string) string {
	s = strings.TrimRight(s, "\n")
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix) + "\n"
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
