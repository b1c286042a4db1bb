package install

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubectl-netpol/kubectl-netpol/internal/version"
)

func testOptions() Options {
	return Options{Namespace: "netpol-test", Image: "example.test/agent:v0.1.0", Version: "v0.1.0+abc",
		NodeSelector: map[string]string{"kubernetes.io/os": "linux"}}
}

func manifests(t *testing.T, o Options) []Object {
	t.Helper()
	objs, err := Manifests(o)
	if err != nil {
		t.Fatalf("Manifests: %v", err)
	}
	return objs
}

func daemonSetOf(t *testing.T, objs []Object) *appsv1.DaemonSet {
	t.Helper()
	for _, o := range objs {
		if ds, ok := o.(*appsv1.DaemonSet); ok {
			return ds
		}
	}
	t.Fatal("no DaemonSet in the manifests")
	return nil
}

func TestManifestsOrderAndLabels(t *testing.T) {
	objs := manifests(t, testOptions())
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.GetObjectKind().GroupVersionKind().Kind)
		l := o.GetLabels()
		if l[LabelPartOf] != PartOf || l[LabelInstance] != "netpol-test" || l[LabelVersion] != "v0.1.0-abc" {
			t.Errorf("%s %s labels = %v", kinds[len(kinds)-1], o.GetName(), l)
		}
		if _, err := KindOf(o); err != nil {
			t.Error(err)
		}
		if ns := o.GetNamespace(); ns != "" && ns != "netpol-test" {
			t.Errorf("%s %s in namespace %s", kinds[len(kinds)-1], o.GetName(), ns)
		}
	}
	var want []string
	for _, k := range Kinds {
		want = append(want, k.Kind)
	}
	if !reflect.DeepEqual(kinds, want) {
		t.Errorf("kinds = %v, want apply order %v", kinds, want)
	}
	ds := daemonSetOf(t, objs)
	sel := ds.Spec.Selector.MatchLabels
	for k, v := range sel {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("pod template labels %v do not match the selector %v", ds.Spec.Template.Labels, sel)
		}
	}
	if sel[LabelName] != AgentName || len(sel) != 1 {
		t.Errorf("selector = %v, want only %s", sel, AgentSelector)
	}
	if ds.Spec.Template.Labels[LabelVersion] != "v0.1.0-abc" {
		t.Errorf("pods do not carry the version: %v", ds.Spec.Template.Labels)
	}
}

func TestManifestsDefaultNamespace(t *testing.T) {
	o := testOptions()
	o.Namespace = ""
	for _, obj := range manifests(t, o) {
		if obj.GetNamespace() != "" && obj.GetNamespace() != DefaultNamespace {
			t.Errorf("%s in %s", obj.GetName(), obj.GetNamespace())
		}
		if ns, ok := obj.(*corev1.Namespace); ok && ns.Name != DefaultNamespace {
			t.Errorf("namespace %s", ns.Name)
		}
	}
}

func TestAgentLeastPrivilege(t *testing.T) {
	ds := daemonSetOf(t, manifests(t, testOptions()))
	spec := ds.Spec.Template.Spec
	if len(spec.Containers) != 1 || len(spec.InitContainers) != 1 || spec.InitContainers[0].Name != PreflightContainer {
		t.Fatalf("containers = %d, init = %d (want only %s)", len(spec.Containers), len(spec.InitContainers), PreflightContainer)
	}
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no securityContext.capabilities")
	}
	if !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("drop = %v, want exactly ALL", sc.Capabilities.Drop)
	}
	add := slices.Clone(sc.Capabilities.Add)
	slices.Sort(add)
	if !reflect.DeepEqual(add, []corev1.Capability{"BPF", "NET_ADMIN", "PERFMON"}) {
		t.Errorf("add = %v, want exactly BPF, NET_ADMIN, PERFMON", sc.Capabilities.Add)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("readOnlyRootFilesystem/allowPrivilegeEscalation = %v/%v", sc.ReadOnlyRootFilesystem, sc.AllowPrivilegeEscalation)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("seccomp = %v", sc.SeccompProfile)
	}
	if spec.HostPID || spec.HostIPC || !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("hostPID %v hostIPC %v hostNetwork %v dnsPolicy %s", spec.HostPID, spec.HostIPC, spec.HostNetwork, spec.DNSPolicy)
	}
	if len(c.Ports) != 0 {
		t.Errorf("the agent declares ports %v; it must listen on loopback only", c.Ports)
	}
	// Three hostPaths, the bpffs, the agent's own history directory and the
	// CNI configuration (read-only), and nothing else from the host.
	if len(spec.Volumes) != 3 || spec.Volumes[0].HostPath == nil || spec.Volumes[0].HostPath.Path != "/sys/fs/bpf" ||
		*spec.Volumes[0].HostPath.Type != corev1.HostPathDirectory ||
		spec.Volumes[1].HostPath == nil || spec.Volumes[1].HostPath.Path != HistoryHostDir ||
		*spec.Volumes[1].HostPath.Type != corev1.HostPathDirectoryOrCreate ||
		spec.Volumes[2].HostPath == nil || spec.Volumes[2].HostPath.Path != "/etc/cni/net.d" {
		t.Errorf("volumes = %+v", spec.Volumes)
	}
	if len(c.VolumeMounts) != 3 || c.VolumeMounts[0].MountPath != "/sys/fs/bpf" || c.VolumeMounts[0].MountPropagation != nil ||
		c.VolumeMounts[1].MountPath != HistoryHostDir || c.VolumeMounts[1].ReadOnly ||
		c.VolumeMounts[2].MountPath != CNIConfMountPath || !c.VolumeMounts[2].ReadOnly {
		t.Errorf("mounts = %+v", c.VolumeMounts)
	}

	if !reflect.DeepEqual(c.Command, []string{AgentBinary}) || c.ImagePullPolicy != corev1.PullIfNotPresent || c.Image != "example.test/agent:v0.1.0" {
		t.Errorf("command %v pull %s image %s", c.Command, c.ImagePullPolicy, c.Image)
	}
	if !reflect.DeepEqual(spec.NodeSelector, map[string]string{"kubernetes.io/os": "linux"}) {
		t.Errorf("nodeSelector = %v", spec.NodeSelector)
	}
	if spec.ServiceAccountName != ServiceAccountName || spec.TerminationGracePeriodSeconds == nil || *spec.TerminationGracePeriodSeconds != 30 {
		t.Errorf("serviceAccount %s grace %v", spec.ServiceAccountName, spec.TerminationGracePeriodSeconds)
	}
	if c.Resources.Limits.Memory().String() != "512Mi" || c.Resources.Requests.Cpu().String() != "50m" || !c.Resources.Limits.Cpu().IsZero() {
		t.Errorf("resources = %+v", c.Resources)
	}
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "GOMAXPROCS" }) {
		t.Errorf("env %+v: no GOMAXPROCS (see manifests.go)", c.Env)
	}
}

// TestInitContainersBPFFS: by default one unprivileged preflight init
// container checks bpffs; --mount-bpffs puts a privileged one before it,
// with Bidirectional propagation, and changes nothing else.
func TestInitContainersBPFFS(t *testing.T) {
	plain := daemonSetOf(t, manifests(t, testOptions())).Spec.Template.Spec
	o := testOptions()
	o.MountBPFFS = true
	mount := daemonSetOf(t, manifests(t, o)).Spec.Template.Spec

	checkPreflight := func(mode string, c corev1.Container) {
		t.Helper()
		sc := c.SecurityContext
		if sc == nil || sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
			t.Errorf("%s: preflight capabilities = %+v, want none at all", mode, sc)
			return
		}
		if (sc.Privileged != nil && *sc.Privileged) || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: preflight securityContext = %+v", mode, sc)
		}
		if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/sys/fs/bpf" || !c.VolumeMounts[0].ReadOnly || c.VolumeMounts[0].MountPropagation != nil {
			t.Errorf("%s: preflight mounts = %+v", mode, c.VolumeMounts)
		}
		if !reflect.DeepEqual(c.Command, []string{AgentBinary, PreflightCommand}) || c.Image != o.Image {
			t.Errorf("%s: preflight command %v image %s", mode, c.Command, c.Image)
		}
		if c.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
			t.Errorf("%s: preflight terminationMessagePolicy = %s", mode, c.TerminationMessagePolicy)
		}
		if len(c.Env) != 1 || c.Env[0].Name != EnvNodeName || c.Env[0].ValueFrom == nil || c.Env[0].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
			t.Errorf("%s: preflight env = %+v, want %s from spec.nodeName", mode, c.Env, EnvNodeName)
		}
	}

	if len(plain.InitContainers) != 1 {
		t.Fatalf("default: init containers = %d, want preflight only", len(plain.InitContainers))
	}
	checkPreflight("default", plain.InitContainers[0])
	for _, c := range append(plain.InitContainers, plain.Containers...) {
		if sc := c.SecurityContext; sc == nil || (sc.Privileged != nil && *sc.Privileged) || slices.Contains(sc.Capabilities.Add, "SYS_ADMIN") {
			t.Errorf("default: container %s is privileged or has SYS_ADMIN: %+v", c.Name, sc)
		}
		for _, m := range c.VolumeMounts {
			if m.MountPropagation != nil {
				t.Errorf("default: container %s mounts %s with propagation %s", c.Name, m.MountPath, *m.MountPropagation)
			}
		}
	}

	if len(mount.InitContainers) != 2 || mount.InitContainers[0].Name != MountBPFFSContainer || mount.InitContainers[1].Name != PreflightContainer {
		t.Fatalf("--mount-bpffs: init containers = %v, want mount-bpffs then preflight", mount.InitContainers)
	}
	checkPreflight("--mount-bpffs", mount.InitContainers[1])
	m := mount.InitContainers[0]
	// Kubernetes admits Bidirectional only with privileged: true (and the
	// runtime then ignores capability lists).
	if sc := m.SecurityContext; sc == nil || sc.Privileged == nil || !*sc.Privileged || sc.Capabilities != nil ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("mount-bpffs securityContext = %+v", m.SecurityContext)
	}
	if len(m.VolumeMounts) != 1 || m.VolumeMounts[0].Name != "bpffs" || m.VolumeMounts[0].MountPath != "/sys/fs/bpf" ||
		m.VolumeMounts[0].MountPropagation == nil || *m.VolumeMounts[0].MountPropagation != corev1.MountPropagationBidirectional {
		t.Errorf("mount-bpffs mounts = %+v, want the bpffs hostPath with Bidirectional propagation", m.VolumeMounts)
	}
	if !reflect.DeepEqual(m.Command, []string{AgentBinary, MountBPFFSCommand}) || m.Image != o.Image || m.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
		t.Errorf("mount-bpffs command %v image %s terminationMessagePolicy %s", m.Command, m.Image, m.TerminationMessagePolicy)
	}
	// The agent container and the volumes are the same in both modes.
	if !reflect.DeepEqual(plain.Containers, mount.Containers) || !reflect.DeepEqual(plain.Volumes, mount.Volumes) || mount.HostPID {
		t.Error("--mount-bpffs changed the agent container, the volumes or hostPID")
	}
}

// TestAgentArgs: the install's agent options reach the agent's flags.
func TestAgentArgs(t *testing.T) {
	for _, c := range []struct {
		mod  func(*Options)
		want []string
	}{
		{func(*Options) {}, []string{"--v=2"}},
		{func(o *Options) { o.NoAntiSpoofing = true }, []string{"--v=2", "--anti-spoofing=false"}},
		{func(o *Options) { o.Pprof = true }, []string{"--v=2", "--pprof"}},
		{func(o *Options) { o.KeepEstablished = true }, []string{"--v=2", "--keep-established"}},
		{func(o *Options) { o.NoFlowEndSummaries = true }, []string{"--v=2", "--flow-end-summaries=false"}},
		{func(o *Options) { o.FlowEndTCPOnly = true }, []string{"--v=2", "--flow-end-source=kernel-tcp"}},
		{func(o *Options) { o.FlowEndTCPOnly, o.NoFlowEndSummaries = true, true }, []string{"--v=2", "--flow-end-summaries=false"}},
		{func(o *Options) { o.NoHistory = true }, []string{"--v=2", "--history-dir="}},
		{func(o *Options) { o.Nice = new(0) }, []string{"--v=2", "--nice=0"}},
		{func(o *Options) { o.Nice = new(DefaultAgentNice) }, []string{"--v=2"}},
		{func(o *Options) { o.HistoryMemory, o.HistoryDisk = "128Mi", "1Gi" }, []string{"--v=2", "--history-memory=128Mi", "--history-disk=1Gi"}},
	} {
		o := testOptions()
		c.mod(&o)
		if got := daemonSetOf(t, manifests(t, o)).Spec.Template.Spec.Containers[0].Args; !reflect.DeepEqual(got, c.want) {
			t.Errorf("args = %v, want %v", got, c.want)
		}
	}
}

func TestAgentProbesAndEnv(t *testing.T) {
	c := daemonSetOf(t, manifests(t, testOptions())).Spec.Template.Spec.Containers[0]
	for name, p := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Fatalf("no httpGet probe for %s", name)
		}
		g := p.HTTPGet
		if g.Host != "127.0.0.1" || g.Port.IntValue() != AgentHTTPPort || g.Path != name {
			t.Errorf("probe %s = %s:%s%s", name, g.Host, g.Port.String(), g.Path)
		}
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.Name == "GOMAXPROCS" {
			if e.Value != "1" || e.ValueFrom != nil {
				t.Errorf("env GOMAXPROCS = %+v, want 1", e)
			}
			continue
		}
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		case e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.ContainerName == c.Name:
			env[e.Name] = e.ValueFrom.ResourceFieldRef.Resource
		default:
			t.Errorf("env %s is not from the downward API (of this container)", e.Name)
		}
	}
	want := map[string]string{EnvNodeName: "spec.nodeName", EnvPodName: "metadata.name", EnvPodNamespace: "metadata.namespace",
		EnvMemoryLimit: "limits.memory"}
	if !reflect.DeepEqual(env, want) {
		t.Errorf("env = %v, want %v", env, want)
	}
}

func TestRBACReadsOnlyWhatTheAgentNeeds(t *testing.T) {
	objs := manifests(t, testOptions())
	var cr *rbacv1.ClusterRole
	var role *rbacv1.Role
	for _, o := range objs {
		switch v := o.(type) {
		case *rbacv1.ClusterRole:
			cr = v
		case *rbacv1.Role:
			role = v
		case *rbacv1.ClusterRoleBinding:
			if v.RoleRef.Name != ClusterName("netpol-test") || v.Subjects[0].Namespace != "netpol-test" || v.Subjects[0].Name != ServiceAccountName {
				t.Errorf("cluster role binding = %+v", v)
			}
		}
	}
	if cr == nil || role == nil {
		t.Fatal("missing ClusterRole or Role")
	}
	granted := map[string][]string{}
	for _, r := range cr.Rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				if res == "secrets" || res == "*" || g == "*" {
					t.Errorf("cluster role grants %s in group %q", res, g)
				}
				granted[g+"/"+res] = r.Verbs
			}
		}
	}
	read := []string{"get", "list", "watch"}
	want := map[string][]string{"/pods": read, "/namespaces": read, "/services": read, "/nodes": read, "networking.k8s.io/networkpolicies": read,
		"policy.networking.k8s.io/clusternetworkpolicies": read, "apiextensions.k8s.io/customresourcedefinitions": read,
		"policy.networking.k8s.io/clusternetworkpolicies/status": {"patch"}}
	if !reflect.DeepEqual(granted, want) {
		t.Errorf("cluster role grants %v, want %v", granted, want)
	}
	if len(role.Rules) != 3 || !reflect.DeepEqual(role.Rules[0].Verbs, []string{"get"}) ||
		!reflect.DeepEqual(role.Rules[0].Resources, []string{"daemonsets"}) || !reflect.DeepEqual(role.Rules[0].ResourceNames, []string{AgentName}) ||
		!reflect.DeepEqual(role.Rules[1].Verbs, []string{"create"}) || !reflect.DeepEqual(role.Rules[1].Resources, []string{"events"}) ||
		!reflect.DeepEqual(role.Rules[2].Resources, []string{"leases"}) || slices.Contains(role.Rules[2].Verbs, "delete") {
		t.Errorf("role rules = %+v, want get on its own DaemonSet, create on events, and leases (no delete) only", role.Rules)
	}
}

func TestValidateImage(t *testing.T) {
	for image, wantErr := range map[string]string{
		"example.test/agent:v0.1.0":               "",
		"localhost:5000/agent:v1":                 "",
		"example.test/agent@sha256:" + hex64():    "",
		"example.test/agent":                      "has no tag",
		"localhost:5000/agent":                    "has no tag",
		"example.test/agent:latest":               "tag latest",
		"":                                        "no agent image",
		"example.test/agent:v1 --privileged=true": "whitespace",
	} {
		err := ValidateImage(image)
		if (err == nil) != (wantErr == "") || (err != nil && !strings.Contains(err.Error(), wantErr)) {
			t.Errorf("ValidateImage(%q) = %v, want %q", image, err, wantErr)
		}
	}
	if err := ValidateImage(version.DefaultAgentImage()); err != nil {
		t.Errorf("the default image %s is rejected: %v", version.DefaultAgentImage(), err)
	}
	o := testOptions()
	o.Image = "example.test/agent:latest"
	if _, err := Manifests(o); err == nil {
		t.Error("Manifests accepted a :latest image")
	}
}

func hex64() string { return strings.Repeat("ab", 32) }

func TestParseNodeSelector(t *testing.T) {
	for in, want := range map[string]map[string]string{
		"":                               nil,
		"a=b":                            {"a": "b"},
		"kubernetes.io/os=linux, pool=x": {"kubernetes.io/os": "linux", "pool": "x"},
		"a=":                             {"a": ""},
	} {
		got, err := ParseNodeSelector(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseNodeSelector(%q) = %v, %v; want %v", in, got, err, want)
		}
		if in != "" && FormatNodeSelector(got) != strings.ReplaceAll(in, " ", "") {
			t.Errorf("FormatNodeSelector(%v) = %q", got, FormatNodeSelector(got))
		}
	}
	for in, wantErr := range map[string]string{
		"a":                            "not key=value",
		"=b":                           "not key=value",
		"a b=c":                        "key",
		"a=b c":                        "value",
		"a=b,a=c":                      "given twice",
		"a=" + strings.Repeat("x", 64): "value",
	} {
		if _, err := ParseNodeSelector(in); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("ParseNodeSelector(%q) = %v, want an error about %q", in, err, wantErr)
		}
	}
}

func TestOptionsValidateNamespace(t *testing.T) {
	o := testOptions()
	o.Namespace = "Not_A_Namespace"
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "Not_A_Namespace") {
		t.Errorf("Validate = %v", err)
	}
}

// TestCheckAccessListsEveryMissingPermission denies two kinds through the
// SelfSubjectAccessReview answer and expects one error naming both verbs on
// both, with the way out.
func TestCheckAccessListsEveryMissingPermission(t *testing.T) {
	cs := fake.NewClientset()
	var asked int
	cs.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		asked++
		r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
		attr := r.Spec.ResourceAttributes
		r.Status.Allowed = attr.Resource != "clusterroles" && attr.Resource != "clusterrolebindings"
		return true, r, nil
	})
	err := CheckAccess(context.Background(), cs, InstallPermissions("netpol-test"))
	var missing *MissingPermissionsError
	if !errors.As(err, &missing) {
		t.Fatalf("CheckAccess = %v", err)
	}
	if asked != 2*len(Kinds) || len(missing.Missing) != 4 {
		t.Errorf("asked %d reviews, missing %v", asked, missing.Missing)
	}
	msg := err.Error()
	for _, want := range []string{"create clusterroles.rbac.authorization.k8s.io", "patch clusterrolebindings.rbac.authorization.k8s.io", "ask a cluster admin or use an admin kubeconfig"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "daemonsets") {
		t.Errorf("message names a granted permission: %s", msg)
	}
	for _, p := range UninstallPermissions("ns") {
		if p.Resource == "daemonsets" && p.Namespace != "ns" || p.Resource == "clusterroles" && p.Namespace != "" {
			t.Errorf("permission %s has the wrong scope", p)
		}
	}
}

// TestCheckGrant: the user must hold what the agent's roles grant, or be
// allowed to escalate and bind roles.
func TestCheckGrant(t *testing.T) {
	objs := manifests(t, testOptions())
	grants := GrantPermissions(objs)
	if len(grants) != 7*3+1+2+5 || !slices.Contains(grants, Permission{Verb: "get", Group: "apps", Resource: "daemonsets", Name: AgentName, Namespace: "netpol-test"}) ||
		!slices.Contains(grants, Permission{Verb: "watch", Group: "networking.k8s.io", Resource: "networkpolicies"}) {
		t.Errorf("grants = %v", grants)
	}
	review := func(allow func(*authorizationv1.ResourceAttributes) bool) *fake.Clientset {
		cs := fake.NewClientset()
		cs.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
			r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
			r.Status.Allowed = allow(r.Spec.ResourceAttributes)
			return true, r, nil
		})
		return cs
	}
	ctx := context.Background()
	noPodList := func(a *authorizationv1.ResourceAttributes) bool { return a.Resource != "pods" || a.Verb != "list" }
	err := CheckGrant(ctx, review(func(a *authorizationv1.ResourceAttributes) bool { return noPodList(a) && a.Verb != "escalate" }), objs, "netpol-test")
	if err == nil || !strings.Contains(err.Error(), "you need permission to list pods (the agent's roles grant them") {
		t.Errorf("without list pods: %v", err)
	}
	if err := CheckGrant(ctx, review(noPodList), objs, "netpol-test"); err != nil {
		t.Errorf("with escalate and bind: %v", err)
	}
	if err := CheckGrant(ctx, review(func(*authorizationv1.ResourceAttributes) bool { return true }), objs, "netpol-test"); err != nil {
		t.Errorf("admin: %v", err)
	}
}

// --otlp-endpoint reaches the agent's arguments; a CA travels in a labelled
// ConfigMap (uninstall finds it with the rest) mounted where the agent reads
// it; plain text carries no CA; bad combinations say which flag to drop.
func TestOTLPExport(t *testing.T) {
	o := testOptions()
	o.OTLPEndpoint, o.OTLPCA = "otel-collector.monitoring:4317", []byte("-----BEGIN CERTIFICATE-----\n")
	objs := manifests(t, o)
	var cm *corev1.ConfigMap
	for _, obj := range objs {
		if c, ok := obj.(*corev1.ConfigMap); ok {
			cm = c
		}
	}
	if cm == nil || cm.Name != OTLPCAConfigMap || cm.Namespace != "netpol-test" || cm.Data["ca.crt"] != string(o.OTLPCA) ||
		cm.Labels[LabelPartOf] != PartOf {
		t.Fatalf("CA ConfigMap = %+v", cm)
	}
	if _, err := KindOf(cm); err != nil {
		t.Errorf("uninstall would not find the ConfigMap: %v", err)
	}
	ds := daemonSetOf(t, objs)
	c := ds.Spec.Template.Spec.Containers[0]
	if want := []string{"--v=2", "--otlp-endpoint=otel-collector.monitoring:4317", "--otlp-ca-file=" + OTLPCAPath}; !reflect.DeepEqual(c.Args, want) {
		t.Errorf("args = %v, want %v", c.Args, want)
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		mounted = mounted || (m.MountPath+"/ca.crt" == OTLPCAPath && m.ReadOnly)
	}
	if !mounted {
		t.Errorf("the CA is not mounted read-only at %s: %+v", OTLPCAPath, c.VolumeMounts)
	}

	o = testOptions()
	o.OTLPEndpoint, o.OTLPInsecure = "10.0.0.1:4317", true
	objs = manifests(t, o)
	for _, obj := range objs {
		if _, ok := obj.(*corev1.ConfigMap); ok {
			t.Error("a plain-text export ships a CA ConfigMap")
		}
	}
	if want := []string{"--v=2", "--otlp-endpoint=10.0.0.1:4317", "--otlp-insecure"}; !reflect.DeepEqual(daemonSetOf(t, objs).Spec.Template.Spec.Containers[0].Args, want) {
		t.Errorf("args = %v, want %v", daemonSetOf(t, objs).Spec.Template.Spec.Containers[0].Args, want)
	}

	for _, bad := range []Options{
		{OTLPEndpoint: "http://collector:4317"},
		{OTLPEndpoint: "collector"},
		{OTLPEndpoint: "collector:4317", OTLPInsecure: true, OTLPCA: []byte("x")},
		{OTLPInsecure: true},
	} {
		b := testOptions()
		b.OTLPEndpoint, b.OTLPInsecure, b.OTLPCA = bad.OTLPEndpoint, bad.OTLPInsecure, bad.OTLPCA
		if _, err := Manifests(b); err == nil || !strings.Contains(err.Error(), "otlp") {
			t.Errorf("Manifests(%+v) = %v, want an error naming the otlp flag", bad, err)
		}
	}
}
