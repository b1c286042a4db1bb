package framework

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
)

// ProbePorts are the ports every netprobe server pod listens on (TCP and UDP on 80 and 81 like
// the upstream NetworkPolicy e2e suite, HTTP on 8080). SCTP is asked for too; on kernels without
// SCTP the probe logs it and serves the rest.
var ProbePorts = []corev1.ContainerPort{
	{Name: "serve-80-tcp", ContainerPort: 80, Protocol: corev1.ProtocolTCP},
	{Name: "serve-81-tcp", ContainerPort: 81, Protocol: corev1.ProtocolTCP},
	{Name: "serve-80-udp", ContainerPort: 80, Protocol: corev1.ProtocolUDP},
	{Name: "serve-81-udp", ContainerPort: 81, Protocol: corev1.ProtocolUDP},
	{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
}

// ProbePod returns (without creating) a netprobe server pod; tweak it before StartPod.
func ProbePod(ns, name string, labels map[string]string) *corev1.Pod {
	zero := int64(0)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &zero,
			AutomountServiceAccountToken:  new(bool),
			Containers: []corev1.Container{{
				Name:            "netprobe",
				Image:           ProbeImage,
				ImagePullPolicy: corev1.PullNever,
				Args:            []string{"serve", "-tcp", "80,81", "-udp", "80,81", "-sctp", "80,81", "-http", "8080"},
				Ports:           ProbePorts,
				Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{
					FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
					PeriodSeconds: 1,
				},
			}},
		},
	}
}

// StartProbe creates a netprobe server pod and waits until it is Ready.
func (c *Cluster) StartProbe(t testing.TB, ns, name string, labels map[string]string) *corev1.Pod {
	t.Helper()
	return c.StartPod(t, ProbePod(ns, name, labels))
}

// StartProbeOn is StartProbe with the pod placed on the named node (spec.nodeName).
func (c *Cluster) StartProbeOn(t testing.TB, ns, name string, labels map[string]string, node string) *corev1.Pod {
	t.Helper()
	p := ProbePod(ns, name, labels)
	p.Spec.NodeName = node
	return c.StartPod(t, p)
}

// Placements are the (client node, server node) pairs a traffic test covers: the same node,
// and on several nodes also two different ones (over the vxlan between them).
func Placements() []Placement {
	ps := []Placement{{Name: "same node", Client: Nodes[0].Name, Server: Nodes[0].Name}}
	if MultiNode() {
		ps = append(ps, Placement{Name: "across nodes", Client: Nodes[0].Name, Server: Nodes[1].Name})
	}
	return ps
}

// Placement puts a client and a server on nodes.
type Placement struct{ Name, Client, Server string }

// StartPod creates the pod and waits until it is Ready (it goes with its namespace).
func (c *Cluster) StartPod(t testing.TB, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	ctx := Context(t, 90*time.Second)
	if _, err := c.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	return c.WaitPodReady(t, pod.Namespace, pod.Name)
}

// WaitPodReady waits up to 90 s for the pod's Ready condition and returns the pod.
func (c *Cluster) WaitPodReady(t testing.TB, ns, name string) *corev1.Pod {
	t.Helper()
	ctx := Context(t, 90*time.Second)
	var pod *corev1.Pod
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		pod = p
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return p.Status.Phase == corev1.PodFailed, nil
	})
	if err != nil || pod == nil || pod.Status.Phase == corev1.PodFailed {
		t.Fatalf("pod %s/%s not Ready: %v\n%s", ns, name, err, c.describePod(ns, name))
	}
	return pod
}

// describePod summarises a pod's status and events for failure messages.
func (c *Cluster) describePod(ns, name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b strings.Builder
	if p, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
		fmt.Fprintf(&b, "phase %s, IP %q\n", p.Status.Phase, p.Status.PodIP)
		for _, s := range p.Status.ContainerStatuses {
			fmt.Fprintf(&b, "container %s ready=%v state=%+v\n", s.Name, s.Ready, s.State)
		}
	}
	if evs, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name}); err == nil {
		for _, e := range evs.Items {
			fmt.Fprintf(&b, "event %s %s: %s\n", e.Type, e.Reason, e.Message)
		}
	}
	return b.String()
}

// Exec runs a command in the pod's first container and returns its stdout and stderr. A
// non-zero exit is returned as an error alongside the output.
func (c *Cluster) Exec(ctx context.Context, pod *corev1.Pod, cmd ...string) (string, string, error) {
	req := c.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).
		SubResource("exec").VersionedParams(&corev1.PodExecOptions{
		Container: pod.Spec.Containers[0].Name, Command: cmd, Stdout: true, Stderr: true,
	}, scheme.ParameterCodec)
	ex, err := remotecommand.NewWebSocketExecutor(c.Config, "GET", req.URL().String())
	if err != nil {
		return "", "", err
	}
	var stdout, stderr bytes.Buffer
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr})
	return stdout.String(), stderr.String(), err
}

// Target is one destination of a probe.
type Target struct {
	Host     string // IP or DNS name
	Port     int
	Protocol string // tcp, udp, sctp or http
}

func (t Target) String() string {
	return t.Protocol + "://" + net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
}

// ProbeResult is one attempt reported by `netprobe connect` (test/images/netprobe).
type ProbeResult struct {
	From     string  `json:"from"`
	To       string  `json:"to"`
	Port     int     `json:"port"`
	Protocol string  `json:"protocol"`
	OK       bool    `json:"ok"`
	Error    string  `json:"error"`
	Reply    string  `json:"reply"`
	Ms       float64 `json:"ms"`
}

// Probe runs `netprobe connect` in the pod (a netprobe pod) against the targets, one attempt
// each with a 2 s timeout, and returns the results in target order.
func (c *Cluster) Probe(t testing.TB, from *corev1.Pod, targets ...Target) []ProbeResult {
	t.Helper()
	return c.ProbeWithTimeout(t, from, 2*time.Second, targets...)
}

// ProbeWithTimeout is Probe with a chosen timeout per attempt.
func (c *Cluster) ProbeWithTimeout(t testing.TB, from *corev1.Pod, timeout time.Duration, targets ...Target) []ProbeResult {
	t.Helper()
	args := []string{"/netprobe", "connect", "-timeout", timeout.String()}
	for _, tg := range targets {
		args = append(args, tg.String())
	}
	ctx := Context(t, time.Duration(len(targets))*timeout+30*time.Second)
	stdout, stderr, err := c.Exec(ctx, from, args...)
	results, perr := ParseProbeResults(stdout)
	if perr != nil || len(results) != len(targets) {
		t.Fatalf("probe from %s/%s: exec error %v, stderr %q, parse error %v, %d results for %d targets:\n%s",
			from.Namespace, from.Name, err, stderr, perr, len(results), len(targets), stdout)
	}
	return results
}

// ParseProbeResults decodes netprobe's JSON lines.
func ParseProbeResults(out string) ([]ProbeResult, error) {
	var rs []ProbeResult
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var r ProbeResult
		if err := dec.Decode(&r); err != nil {
			return rs, fmt.Errorf("decoding probe output: %w", err)
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// ExpectReachable probes each target once and fails the test for each one that is not reachable
// (retrying up to 10 s, since Services and DNS take a moment to program).
func (c *Cluster) ExpectReachable(t testing.TB, from *corev1.Pod, targets ...Target) []ProbeResult {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rs := c.Probe(t, from, targets...)
		var failed []string
		for _, r := range rs {
			if !r.OK {
				failed = append(failed, fmt.Sprintf("%s://%s:%d: %s", r.Protocol, r.To, r.Port, r.Error))
			}
		}
		if len(failed) == 0 {
			return rs
		}
		if time.Now().After(deadline) {
			t.Fatalf("from %s/%s, unreachable: %s", from.Namespace, from.Name, strings.Join(failed, "; "))
		}
		time.Sleep(500 * time.Millisecond)
	}
}
