package cli

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
	"github.com/kubectl-netpol/kubectl-netpol/internal/version"
)

// agentDaemonSet is an installed agent as install creates it.
func agentDaemonSet(ns, name, ver string, desired, ready int32) *appsv1.DaemonSet {
	labels := map[string]string{install.LabelName: install.AgentName, install.LabelPartOf: install.PartOf}
	if ver != "" {
		labels[install.LabelVersion] = ver
	}
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "agent", Image: "example.test/agent:" + ver}},
		}}},
		Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: desired, NumberReady: ready},
	}
}

func runVersion(t *testing.T, o *VersionOptions) (stdout, stderr string) {
	t.Helper()
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	o.IOStreams = streams
	if err := o.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	o.Complete()
	if err := o.Run(context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	return out.String(), errOut.String()
}

func TestVersionAgent(t *testing.T) {
	client := install.VersionLabelValue(version.Version())
	for _, tc := range []struct {
		name       string
		objects    []runtime.Object
		namespace  string
		wantOut    []string
		wantStderr string // "" means stderr must be empty
	}{{
		name:    "same version, no warning",
		objects: []runtime.Object{agentDaemonSet(install.DefaultNamespace, "netpol-agent", client, 3, 2)},
		wantOut: []string{"Client Version: " + version.Version(), "Agent Version:  " + client + " (DaemonSet netpol-system/netpol-agent, 2/3 ready"},
	}, {
		name:       "older agent warns to reinstall",
		objects:    []runtime.Object{agentDaemonSet(install.DefaultNamespace, "netpol-agent", "v0.0.0-g0000000", 1, 1)},
		wantOut:    []string{"Agent Version:  v0.0.0-g0000000"},
		wantStderr: "Warning: version skew:",
	}, {
		name:       "newer agent warns to upgrade the plugin",
		objects:    []runtime.Object{agentDaemonSet(install.DefaultNamespace, "netpol-agent", "v99.0.0", 1, 1)},
		wantOut:    []string{"Agent Version:  v99.0.0"},
		wantStderr: "upgrade the plugin",
	}, {
		name:       "missing version label",
		objects:    []runtime.Object{agentDaemonSet(install.DefaultNamespace, "netpol-agent", "", 1, 1)},
		wantOut:    []string{"Agent Version:  unknown (DaemonSet"},
		wantStderr: "no app.kubernetes.io/version label",
	}, {
		name:    "agent in another namespace is not ours to report",
		objects: []runtime.Object{agentDaemonSet("elsewhere", "netpol-agent", client, 1, 1)},
		wantOut: []string{"Agent Version:  not installed in namespace netpol-system"},
	}, {
		name:      "-n selects the install namespace",
		objects:   []runtime.Object{agentDaemonSet("elsewhere", "netpol-agent", client, 1, 1)},
		namespace: "elsewhere",
		wantOut:   []string{"(DaemonSet elsewhere/netpol-agent, 1/1 ready"},
	}, {
		name: "a DaemonSet without the agent label is ignored",
		objects: []runtime.Object{&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{
			Namespace: install.DefaultNamespace, Name: "netpol-agent", Labels: map[string]string{"app": "netpol-agent"}}}},
		wantOut: []string{"not installed"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut := runVersion(t, &VersionOptions{Client: fake.NewClientset(tc.objects...), Namespace: tc.namespace})
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if tc.wantStderr == "" && errOut != "" {
				t.Errorf("unexpected stderr: %s", errOut)
			}
			if tc.wantStderr != "" && !strings.Contains(errOut, tc.wantStderr) {
				t.Errorf("stderr lacks %q: %q", tc.wantStderr, errOut)
			}
		})
	}
}

func TestVersionJSON(t *testing.T) {
	cs := fake.NewClientset(agentDaemonSet(install.DefaultNamespace, "netpol-agent", "v0.0.1", 2, 2))
	out, _ := runVersion(t, &VersionOptions{Client: cs, Output: "json"})
	var got versionInfo
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("-o json is not JSON: %v\n%s", err, out)
	}
	if got.Client.Version != version.Version() || got.Client.AgentImage != version.DefaultAgentImage() {
		t.Errorf("client = %+v", got.Client)
	}
	a := got.Agent
	if a == nil || a.State != agentInstalled || a.Version != "v0.0.1" || a.Ready != 2 || a.Desired != 2 || a.Image != "example.test/agent:v0.0.1" || a.Skew == "" {
		t.Errorf("agent = %+v", a)
	}
}

func TestVersionClientOnlyNeverCallsTheCluster(t *testing.T) {
	cs := fake.NewClientset()
	out, errOut := runVersion(t, &VersionOptions{Client: cs, ClientOnly: true, Output: "json"})
	if n := len(cs.Actions()); n != 0 {
		t.Errorf("--client made %d API calls", n)
	}
	if strings.Contains(out, `"agent"`) || errOut != "" {
		t.Errorf("--client printed agent data: %s %s", out, errOut)
	}
}

func TestVersionReadRefused(t *testing.T) {
	cs := fake.NewClientset()
	cs.PrependReactor("list", "daemonsets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("daemonsets.apps is forbidden: User \"bob\" cannot list resource\nsecond line")
	})
	out, _ := runVersion(t, &VersionOptions{Client: cs})
	if !strings.Contains(out, "Agent Version:  unknown (cannot read the agent DaemonSet: daemonsets.apps is forbidden") || strings.Contains(out, "second line") {
		t.Errorf("stdout:\n%s", out)
	}
}

// TestVersionUnreachableCluster goes through the real kubeconfig loading and
// a real connection attempt to a closed loopback port: the command still
// succeeds, with the client version and a one-line note.
func TestVersionUnreachableCluster(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "config")
	// Port 1 on loopback: nothing listens there, the dial fails at once.
	cfg := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`
	if err := os.WriteFile(kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	cmd := NewCmdNetpol(streams)
	cmd.SetArgs([]string{"version", "--kubeconfig", kubeconfig})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("version with an unreachable cluster failed: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "Client Version: ") ||
		!strings.HasPrefix(lines[1], "Agent Version:  unknown (cannot read the agent DaemonSet:") || !strings.Contains(lines[1], "127.0.0.1:1") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", out, errOut)
	}
}

func TestVersionBadOutput(t *testing.T) {
	o := &VersionOptions{Output: "yaml"}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "-o json") {
		t.Errorf("Validate(-o yaml) = %v", err)
	}
}
