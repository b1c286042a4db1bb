package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
)

// agentRoot is the root command with the standard kubectl flags and one
// agent verb, so -n and --kubeconfig parse as in the real tree.
func agentRoot(f *Factory, sub *cobra.Command) *cobra.Command {
	root := &cobra.Command{Use: "netpol", SilenceUsage: true, SilenceErrors: true}
	f.ConfigFlags.AddFlags(root.PersistentFlags())
	root.AddCommand(sub)
	return root
}

// runInstall runs `kubectl netpol install ARGS` with the plugin version
// pinned, so labels (and goldens) do not change with the build.
func runInstall(t *testing.T, f *Factory, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	root := agentRoot(f, newCmdInstall(&InstallOptions{IOStreams: streams, factory: f, Version: "v0.1.0"}))
	root.SetArgs(append([]string{"install"}, args...))
	err = root.Execute()
	return out.String(), errOut.String(), err
}

func TestInstallDryRunYAML(t *testing.T) {
	out, _, err := runInstall(t, offlineFactory(t), "--dry-run=client", "-o", "yaml",
		"--image", "example.test/netpol-agent:v0.1.0", "--node-selector", "kubernetes.io/os=linux", "-n", "netpol")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "install_dry_run_yaml", out)
	docs := strings.Split(out, "\n---\n")
	if len(docs) != len(install.Kinds) {
		t.Fatalf("%d YAML documents, want %d", len(docs), len(install.Kinds))
	}
	for i, doc := range docs {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Namespace string            `json:"namespace"`
				Labels    map[string]string `json:"labels"`
				Created   *string           `json:"creationTimestamp"`
			} `json:"metadata"`
			Status any `json:"status"`
		}
		if err := yaml.UnmarshalStrict([]byte(doc), &obj); err != nil && !strings.Contains(err.Error(), "unknown field") {
			t.Fatalf("document %d: %v", i, err)
		}
		if obj.Kind != install.Kinds[i].Kind || obj.Metadata.Labels[install.LabelPartOf] != install.PartOf || obj.Metadata.Labels[install.LabelVersion] != "v0.1.0" {
			t.Errorf("document %d: kind %s labels %v", i, obj.Kind, obj.Metadata.Labels)
		}
		if install.Kinds[i].Namespaced && obj.Metadata.Namespace != "netpol" {
			t.Errorf("%s in namespace %q", obj.Kind, obj.Metadata.Namespace)
		}
		if obj.Status != nil || obj.Metadata.Created != nil {
			t.Errorf("%s carries server-set fields", obj.Kind)
		}
	}
}

// TestInstallDryRunMountBPFFS: --mount-bpffs adds exactly one privileged
// init container, before the unprivileged preflight; the rest of the YAML is
// the default's.
func TestInstallDryRunMountBPFFS(t *testing.T) {
	args := []string{"--dry-run=client", "-o", "yaml", "--image", "example.test/netpol-agent:v0.1.0", "-n", "netpol"}
	plain, _, err := runInstall(t, offlineFactory(t), args...)
	if err != nil {
		t.Fatal(err)
	}
	mount, _, err := runInstall(t, offlineFactory(t), append(args, "--mount-bpffs")...)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		out  string
		want int
	}{{plain, 0}, {mount, 1}} {
		for _, s := range []string{"privileged: true", "mountPropagation: Bidirectional", "- mount-bpffs"} {
			if n := strings.Count(c.out, s); n != c.want {
				t.Errorf("%q appears %d times, want %d", s, n, c.want)
			}
		}
		if n := strings.Count(c.out, "- preflight"); n != 1 {
			t.Errorf("preflight init container appears %d times", n)
		}
	}
	if strings.Contains(plain, "SYS_ADMIN") || strings.Contains(mount, "SYS_ADMIN") {
		t.Error("a container asks for SYS_ADMIN")
	}
	// Everything else is unchanged: removing the added lines from the
	// --mount-bpffs output gives the default output.
	var extra []string
	pl := strings.Split(plain, "\n")
	ml := strings.Split(mount, "\n")
	i := 0
	for _, l := range ml {
		if i < len(pl) && pl[i] == l {
			i++
			continue
		}
		extra = append(extra, l)
	}
	if i != len(pl) {
		t.Errorf("the default output is not contained in the --mount-bpffs output in order (matched %d of %d lines)", i, len(pl))
	}
	t.Logf("--mount-bpffs adds:\n%s", strings.Join(extra, "\n"))
	if !strings.Contains(strings.Join(extra, "\n"), "mountPropagation: Bidirectional") {
		t.Error("the added lines lack the Bidirectional mount")
	}
}

func TestInstallDryRunJSON(t *testing.T) {
	out, _, err := runInstall(t, offlineFactory(t), "--dry-run=client", "-o", "json", "--image", "example.test/netpol-agent:v0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Kind  string `json:"kind"`
		Items []struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name, Namespace string
			} `json:"metadata"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if list.Kind != "List" || len(list.Items) != len(install.Kinds) || list.Items[6].Kind != "DaemonSet" ||
		list.Items[6].Metadata.Namespace != install.DefaultNamespace || list.Items[0].Metadata.Name != install.DefaultNamespace {
		t.Errorf("list = %+v", list)
	}
}

func TestInstallDryRunNamesObjects(t *testing.T) {
	out, _, err := runInstall(t, offlineFactory(t), "--dry-run", "--image", "example.test/netpol-agent:v0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "namespace/netpol-system created (dry run)\n",
		"clusterrole.rbac.authorization.k8s.io/netpol-agent:netpol-system created (dry run)\n",
		"daemonset.apps/netpol-agent created (dry run)\n")
}

// TestInstallBadFlags: each mistake is refused before the cluster is
// contacted (offlineFactory fails the test otherwise), naming the fix.
// TestInstallFlowEndProtocolsTCP: --flow-end-protocols=tcp gives the
// agent TCP summaries from the sockets' states only.
func TestInstallFlowEndProtocolsTCP(t *testing.T) {
	args := []string{"--dry-run=client", "-o", "yaml", "--image", "example.test/netpol-agent:v0.1.0"}
	plain, _, err := runInstall(t, offlineFactory(t), args...)
	if err != nil {
		t.Fatal(err)
	}
	tcp, _, err := runInstall(t, offlineFactory(t), append(args, "--flow-end-protocols=tcp")...)
	if err != nil {
		t.Fatal(err)
	}
	const arg = "--flow-end-source=kernel-tcp"
	if strings.Contains(plain, arg) || !strings.Contains(tcp, arg) {
		t.Errorf("%s: in the default manifest %v, with --flow-end-protocols=tcp %v", arg, strings.Contains(plain, arg), strings.Contains(tcp, arg))
	}
}

func TestInstallBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--image", "example.test/agent:latest"}, "tag latest"},
		{[]string{"--image", "example.test/agent"}, "has no tag, which means :latest"},
		{[]string{"--image", ""}, "no agent image"},
		{[]string{"--node-selector", "pool"}, `--node-selector: node selector "pool": "pool" is not key=value`},
		{[]string{"--node-selector", "a=b c"}, "node selector value"},
		{[]string{"-o", "yaml"}, "needs --dry-run=client"},
		{[]string{"--dry-run=client", "-o", "wide"}, "unknown output format"},
		{[]string{"--dry-run=maybe"}, "unknown --dry-run"},
		{[]string{"--timeout", "0s"}, "--timeout must be positive"},
		{[]string{"--flow-end-protocols", "udp"}, `--flow-end-protocols "udp": use all (the default) or tcp`},
		{[]string{"-n", "Bad_Namespace"}, `namespace "Bad_Namespace"`},
		{[]string{"extra"}, "unknown command"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := runInstall(t, offlineFactory(t), tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			noStackTrace(t, err.Error())
		})
	}
}

func TestInstallDefaultImageIsVersioned(t *testing.T) {
	cmd := NewCmdInstall(offlineFactory(t), genericiooptions.IOStreams{Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}})
	def := cmd.Flags().Lookup("image").DefValue
	if err := install.ValidateImage(def); err != nil || strings.HasSuffix(def, ":latest") {
		t.Errorf("default --image %q: %v", def, err)
	}
}

func TestAgentCommandsRegistered(t *testing.T) {
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	root := NewCmdNetpol(streams)
	for _, name := range []string{"install", "uninstall", "status"} {
		cmd, _, err := root.Find([]string{name})
		if err != nil || cmd.Name() != name {
			t.Errorf("%s not registered: %v", name, err)
			continue
		}
		if cmd.InheritedFlags().Lookup("namespace") == nil || cmd.InheritedFlags().Lookup("kubeconfig") == nil {
			t.Errorf("%s lacks the kubectl flags", name)
		}
	}
}

func TestUninstallAndStatusBadFlags(t *testing.T) {
	f := offlineFactory(t)
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	for _, tc := range []struct {
		cmd  *cobra.Command
		args []string
		want string
	}{
		{newCmdUninstall(&UninstallOptions{IOStreams: streams, factory: f}), []string{"uninstall", "--timeout", "-1s"}, "--timeout must be positive"},
		{newCmdStatus(&StatusOptions{IOStreams: streams, factory: f}), []string{"status", "-o", "wide"}, "unknown output format"},
	} {
		root := agentRoot(f, tc.cmd)
		root.SetArgs(tc.args)
		if err := root.Execute(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestDaemonSetDone(t *testing.T) {
	objs, err := install.Manifests(install.Options{Image: "example.test/agent:v0.1.0", Version: "v0.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	ds := objs[len(objs)-1].(*appsv1.DaemonSet)
	ds.Generation = 2
	ds.Status = appsv1.DaemonSetStatus{ObservedGeneration: 2, DesiredNumberScheduled: 1, UpdatedNumberScheduled: 1, NumberReady: 1}
	pod := func(image string, ready bool) corev1.Pod {
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: ds.Spec.Template.Labels}, Spec: *ds.Spec.Template.Spec.DeepCopy(),
			Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}}}
		p.Spec.Containers[0].Image = image
		return p
	}
	current := pod("example.test/agent:v0.1.0", true)
	if !daemonSetDone(ds, []corev1.Pod{current}) {
		t.Error("a ready current pod is not done")
	}
	if daemonSetDone(ds, []corev1.Pod{current, pod("example.test/agent:v0.0.9", true)}) {
		t.Error("done while a pod of the previous image runs")
	}
	if daemonSetDone(ds, []corev1.Pod{pod("example.test/agent:v0.1.0", false)}) {
		t.Error("done with a pod not ready")
	}
	stale := ds.DeepCopy()
	stale.Status.ObservedGeneration = 1
	if daemonSetDone(stale, []corev1.Pod{current}) {
		t.Error("done before the controller saw the last apply")
	}
	none := ds.DeepCopy()
	none.Status = appsv1.DaemonSetStatus{ObservedGeneration: 2}
	if !daemonSetDone(none, nil) {
		t.Error("no node selected: nothing to wait for")
	}
}

func TestNodeProgressPrintsChangesOnly(t *testing.T) {
	var b bytes.Buffer
	p := newNodeProgress(&b)
	for _, s := range []string{"pending", "pending", "pulling", "pulling", "ready"} {
		p.set("n1", s)
	}
	p.set("n2", "pending")
	if want := "  n1: pending\n  n1: pulling\n  n1: ready\n  n2: pending\n"; b.String() != want {
		t.Errorf("progress:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestInstallRefusesSecondAgent: an agent DaemonSet in another namespace
// blocks an install on all nodes, and only warns when --node-selector
// partitions the nodes.
func TestInstallRefusesSecondAgent(t *testing.T) {
	other := agentDaemonSet("netpol-system", install.AgentName, "v0.1.0", 1, 1)
	for _, tc := range []struct {
		selector          map[string]string
		wantErr, wantWarn string
	}{
		{nil, "an agent is already installed in namespace netpol-system (daemonset netpol-agent): two agents on one node", ""},
		{map[string]string{"pool": "b"}, "", "Warning: an agent is already installed in namespace netpol-system"},
	} {
		streams, _, _, errOut := genericiooptions.NewTestIOStreams()
		o := &InstallOptions{IOStreams: streams, agentClients: agentClients{Kube: fake.NewClientset(other)},
			opts: install.Options{Namespace: "netpol-b", NodeSelector: tc.selector}}
		err := o.checkOtherInstalls(context.Background())
		if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("selector %v: err = %v", tc.selector, err)
		}
		if !strings.Contains(errOut.String(), tc.wantWarn) {
			t.Errorf("selector %v: stderr = %q", tc.selector, errOut.String())
		}
	}
	// The same namespace is an upgrade, not a second agent.
	o := &InstallOptions{IOStreams: genericiooptions.NewTestIOStreamsDiscard(), agentClients: agentClients{Kube: fake.NewClientset(other)},
		opts: install.Options{Namespace: "netpol-system"}}
	if err := o.checkOtherInstalls(context.Background()); err != nil {
		t.Errorf("reinstall in place: %v", err)
	}
}

// TestWaitReportsNodeWithoutBPFFS: --wait prints a node's preflight message
// as soon as the pod shows it, and the timeout report gives the init
// container's state and termination message.
func TestWaitReportsNodeWithoutBPFFS(t *testing.T) {
	objs, err := install.Manifests(install.Options{Image: "example.test/agent:v0.1.0", Version: "v0.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	ds := objs[len(objs)-1].(*appsv1.DaemonSet)
	ds.Status = appsv1.DaemonSetStatus{DesiredNumberScheduled: 1, UpdatedNumberScheduled: 1, NumberUnavailable: 1}
	msg := "bpffs is not mounted at /sys/fs/bpf on node node-b: mount it on the node (`mount -t bpf bpffs /sys/fs/bpf`, " +
		"or enable systemd's sys-fs-bpf.mount), or reinstall with `kubectl netpol install --mount-bpffs`"
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: install.DefaultNamespace, Name: "netpol-agent-x", Labels: ds.Spec.Template.Labels},
		Spec: *ds.Spec.Template.Spec.DeepCopy()}
	pod.Spec.NodeName = "node-b"
	pod.Status = corev1.PodStatus{Phase: corev1.PodPending,
		InitContainerStatuses: []corev1.ContainerStatus{{Name: install.PreflightContainer, RestartCount: 1,
			State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 10s restarting failed container"}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", Message: msg}}}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "agent", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}}},
	}
	// Failed twice: the wait stops there, long before its timeout.
	streams, _, out, _ := genericiooptions.NewTestIOStreams()
	o := &InstallOptions{IOStreams: streams, Timeout: time.Hour, opts: install.Options{Namespace: install.DefaultNamespace}}
	o.Kube, o.PollInterval = fake.NewClientset(ds, pod), 50*time.Millisecond
	done := make(chan error, 1)
	go func() { done <- o.waitReady(context.Background(), "v0.1.0") }()
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatal("waitReady still waits for a node whose check failed twice")
	}
	t.Logf("output:\n%s", out)
	if err == nil || !strings.Contains(err.Error(), "is not ready on 1 of 1 nodes: its node check failed there") {
		t.Errorf("waitReady = %v", err)
	}
	for _, want := range []string{
		"Stopped waiting: netpol-agent is ready on 0 of 1 nodes, and on the others the node check (init container preflight) failed twice.\n",
		"  node-b: pending (Init:CrashLoopBackOff: " + msg + ")\n",
		"  init container preflight: waiting: CrashLoopBackOff: back-off 10s restarting failed container (restarts: 1)\n",
		"  init container preflight: last termination: Error, exit code 1: " + msg + "\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks\n%s", want)
		}
	}
}

// TestWaitKeepsWaitingForOtherNodes: the wait stops early only when failed
// node checks are all that is left; a first failure (the node may still be
// booting) or another node still starting keeps it waiting until the timeout.
func TestWaitKeepsWaitingForOtherNodes(t *testing.T) {
	objs, err := install.Manifests(install.Options{Image: "example.test/agent:v0.1.0", Version: "v0.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	ds := objs[len(objs)-1].(*appsv1.DaemonSet)
	failed := func(node string, restarts int32) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: install.DefaultNamespace, Name: "netpol-agent-" + node, Labels: ds.Spec.Template.Labels},
			Spec: *ds.Spec.Template.Spec.DeepCopy()}
		p.Spec.NodeName = node
		p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: install.PreflightContainer, RestartCount: restarts,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error", Message: "bpffs is not mounted at /sys/fs/bpf on node " + node}}}}
		return p
	}
	// An image without the agent binary: the check never ran.
	cannotStart := func(node string) *corev1.Pod {
		p := failed(node, 1)
		p.Status.InitContainerStatuses[0].State.Terminated = &corev1.ContainerStateTerminated{ExitCode: 128, Reason: "StartError",
			Message: `failed to create containerd task: exec: "/netpol-agent": stat /netpol-agent: no such file or directory`}
		return p
	}
	starting := failed("node-c", 0)
	starting.Status.InitContainerStatuses = nil
	starting.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "agent", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
	for name, tc := range map[string]struct {
		pods    []*corev1.Pod
		desired int32
		stops   bool
	}{
		"first failure":              {pods: []*corev1.Pod{failed("node-b", 0)}, desired: 1},
		"another node starting":      {pods: []*corev1.Pod{failed("node-b", 2), starting}, desired: 2},
		"a node without its pod yet": {pods: []*corev1.Pod{failed("node-b", 2)}, desired: 2},
		"failed twice":               {pods: []*corev1.Pod{failed("node-b", 1)}, desired: 1, stops: true},
		"could not start twice":      {pods: []*corev1.Pod{cannotStart("node-b")}, desired: 1},
	} {
		d := ds.DeepCopy()
		d.Status = appsv1.DaemonSetStatus{DesiredNumberScheduled: tc.desired, UpdatedNumberScheduled: tc.desired, NumberUnavailable: tc.desired}
		objs := []runtime.Object{d}
		for _, p := range tc.pods {
			objs = append(objs, p)
		}
		streams, _, out, _ := genericiooptions.NewTestIOStreams()
		o := &InstallOptions{IOStreams: streams, Timeout: 500 * time.Millisecond, opts: install.Options{Namespace: install.DefaultNamespace}}
		o.Kube, o.PollInterval = fake.NewClientset(objs...), 20*time.Millisecond
		err := o.waitReady(context.Background(), "v0.1.0")
		if err == nil {
			t.Errorf("%s: waitReady succeeded", name)
			continue
		}
		stopped := strings.Contains(out.String(), "Stopped waiting")
		timedOut := strings.Contains(out.String(), "Timed out after 500ms")
		if stopped != tc.stops || timedOut == tc.stops {
			t.Errorf("%s: stopped early %v, timed out %v, want stopped early %v; err %v\n%s", name, stopped, timedOut, tc.stops, err, out)
		}
	}
}
