//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
	"github.com/kubectl-netpol/kubectl-netpol/internal/version"
	"github.com/kubectl-netpol/kubectl-netpol/test/e2e/framework"
)

// missingImage is an agent image nobody has: the pull goes to localhost
// (refused at once) and the pod stays in ImagePullBackOff, never running, so
// these tests exercise the CLI and the API server without an agent on the
// node. The full install → enforce test is agent_test.go.
const missingImage = "localhost/kubectl-netpol/agent:e2e-missing"

// onTestNode pins the throw-away install to the test node explicitly. An
// agent installed in netpol-system by another test then is no reason to
// refuse (installs on chosen nodes are allowed next to each other).
var onTestNode = "kubernetes.io/hostname=" + framework.NodeName

// throwAwayInstall returns a fresh namespace name for an install and
// removes whatever carries its instance label when the test ends, even if
// the test failed before uninstall.
func throwAwayInstall(t *testing.T, c *framework.Cluster) (string, dynamic.Interface) {
	t.Helper()
	ns := "netpol-e2e-" + rand.String(6)
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		left, err := install.FindInstalled(ctx, dyn, ns)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		for i := len(left) - 1; i >= 0; i-- {
			if err := install.Delete(ctx, dyn, left[i], metav1.DeletePropagationForeground); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	return ns, dyn
}

// labelled lists every object of the install in ns, across the kinds
// install creates, as kind/name.
func labelled(t *testing.T, dyn dynamic.Interface, ns string) []string {
	t.Helper()
	ctx := framework.Context(t, 30*time.Second)
	var out []string
	for _, k := range install.Kinds {
		var list []string
		if k.Namespaced {
			l, err := dyn.Resource(k.Resource).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: install.ProjectSelector})
			if err != nil {
				t.Fatalf("listing %s: %v", k, err)
			}
			for _, it := range l.Items {
				list = append(list, k.Kind+"/"+it.GetName())
			}
		} else {
			l, err := dyn.Resource(k.Resource).List(ctx, metav1.ListOptions{LabelSelector: install.InstanceSelector(ns)})
			if err != nil {
				t.Fatalf("listing %s: %v", k, err)
			}
			for _, it := range l.Items {
				list = append(list, k.Kind+"/"+it.GetName())
			}
		}
		out = append(out, list...)
	}
	return out
}

// TestInstallUninstallLive installs into a throw-away namespace with an
// image that cannot be pulled, and checks: every object created by
// server-side apply under our field manager; the DaemonSet's pod admitted
// (system-node-critical outside kube-system, Pod Security privileged); a
// second install changes nothing; --wait times out with the pod's state and
// events; status explains the node; uninstall leaves no labelled object and
// no pod; a second uninstall says nothing is installed.
func TestInstallUninstallLive(t *testing.T) {
	c := framework.Connect(t)
	ns, dyn := throwAwayInstall(t, c)
	base := []string{"-n", ns, "--image", missingImage, "--node-selector", onTestNode}

	// A server dry run before anything exists: the cluster-scoped objects
	// are admitted, the namespaced ones wait for their namespace; nothing
	// is written.
	out, err := netpol(t, c, "", append([]string{"install", "--dry-run=server"}, base...)...)
	if err != nil {
		t.Fatalf("install --dry-run=server: %v\n%s", err, out)
	}
	if n := strings.Count(out, " created (server dry run)\n"); n != 3 || strings.Count(out, "not validated, its namespace does not exist yet") != 4 {
		t.Errorf("install --dry-run=server on a fresh cluster:\n%s", out)
	}
	if left := labelled(t, dyn, ns); len(left) != 0 {
		t.Fatalf("a server dry run wrote %v", left)
	}

	out, err = netpol(t, c, "", append([]string{"install", "--wait=false"}, base...)...)
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	if n := strings.Count(out, " created\n"); n != len(install.Kinds) {
		t.Errorf("install printed %d created objects, want %d:\n%s", n, len(install.Kinds), out)
	}

	objs := labelled(t, dyn, ns)
	if len(objs) != len(install.Kinds) {
		t.Fatalf("labelled objects after install = %v, want one of each of %d kinds", objs, len(install.Kinds))
	}
	ctx := framework.Context(t, 3*time.Minute)
	for _, k := range install.Kinds {
		name := install.AgentName
		switch k.Kind {
		case "Namespace":
			name = ns
		case "ClusterRole", "ClusterRoleBinding":
			name = install.ClusterName(ns)
		}
		res := dyn.Resource(k.Resource)
		var get func() (metav1.Object, error)
		if k.Namespaced {
			get = func() (metav1.Object, error) { return res.Namespace(ns).Get(ctx, name, metav1.GetOptions{}) }
		} else {
			get = func() (metav1.Object, error) { return res.Get(ctx, name, metav1.GetOptions{}) }
		}
		obj, err := get()
		if err != nil {
			t.Errorf("%s %s: %v", k, name, err)
			continue
		}
		applied := false
		for _, mf := range obj.GetManagedFields() {
			if mf.Manager == install.FieldManager && mf.Operation == metav1.ManagedFieldsOperationApply {
				applied = true
			}
		}
		if !applied {
			t.Errorf("%s %s was not server-side applied by %s: %+v", k, name, install.FieldManager, obj.GetManagedFields())
		}
	}

	// The DaemonSet controller creates the pod only if admission accepts it:
	// system-node-critical outside kube-system, hostNetwork and hostPath
	// under the namespace's Pod Security label.
	var pod *corev1.Pod
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := install.AgentPods(ctx, c.Client, ns)
		if err != nil || len(pods) == 0 || pods[0].Spec.NodeName == "" {
			return false, nil // DaemonSet pods go through the scheduler: bound a moment later
		}
		pod = &pods[0]
		return true, nil
	}); err != nil {
		ds, _ := c.Client.AppsV1().DaemonSets(ns).Get(ctx, install.AgentName, metav1.GetOptions{})
		t.Fatalf("the DaemonSet created no scheduled pod in a minute:\n%s", install.ObjectEvents(ctx, c.Client, "DaemonSet", ds, 10))
	}
	if pod.Spec.PriorityClassName != "system-node-critical" || pod.Spec.Priority == nil || *pod.Spec.Priority < 2000000000 || pod.Spec.NodeName != framework.NodeName {
		t.Errorf("agent pod priority %s/%v on %q", pod.Spec.PriorityClassName, pod.Spec.Priority, pod.Spec.NodeName)
	}

	out, err = netpol(t, c, "", append([]string{"install", "--wait=false"}, base...)...)
	if err != nil {
		t.Fatalf("second install: %v\n%s", err, out)
	}
	if n := strings.Count(out, " unchanged\n"); n != len(install.Kinds) || strings.Contains(out, "upgrading") {
		t.Errorf("second install is not a no-op:\n%s", out)
	}
	out, err = netpol(t, c, "", append(append([]string{"install", "--dry-run=server"}, base...), "--image", missingImage+"-2")...)
	if err != nil || strings.Count(out, " unchanged (server dry run)\n") != len(install.Kinds)-1 || !strings.Contains(out, "daemonset.apps/netpol-agent configured (server dry run)\n") {
		t.Errorf("install --dry-run=server of a new image: %v\n%s", err, out)
	}

	// An install of another version: the DaemonSet says v0.0.1-e2e.
	older := []byte(`{"metadata":{"labels":{"` + install.LabelVersion + `":"v0.0.1-e2e"}}}`)
	if _, err := c.Client.AppsV1().DaemonSets(ns).Patch(ctx, install.AgentName, types.MergePatchType, older, metav1.PatchOptions{FieldManager: "e2e"}); err != nil {
		t.Fatal(err)
	}
	out, err = netpol(t, c, "", append([]string{"install", "--wait=false"}, base...)...)
	if err != nil {
		t.Fatalf("upgrade: %v\n%s", err, out)
	}
	want := fmt.Sprintf("upgrading netpol-agent from v0.0.1-e2e to %s\n", install.VersionLabelValue(version.Version()))
	if !strings.Contains(out, want) || !strings.Contains(out, "daemonset.apps/netpol-agent configured\n") || strings.Count(out, " unchanged\n") != len(install.Kinds)-1 {
		t.Errorf("upgrade output lacks %q or the DaemonSet change:\n%s", want, out)
	}
	ds, err := c.Client.AppsV1().DaemonSets(ns).Get(ctx, install.AgentName, metav1.GetOptions{})
	if err != nil || ds.Labels[install.LabelVersion] != install.VersionLabelValue(version.Version()) {
		t.Errorf("after the upgrade the DaemonSet is labelled %v (%v)", ds.Labels, err)
	}

	// The report below quotes the pull failure: wait until the kubelet has
	// tried the missing image at least once, which on a busy node can take
	// longer than the 15 s --wait.
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := install.AgentPods(ctx, c.Client, ns)
		if err != nil || len(pods) == 0 {
			return false, nil
		}
		// The preflight init container (same image) is pulled first.
		for _, cs := range append(pods[0].Status.InitContainerStatuses, pods[0].Status.ContainerStatuses...) {
			if w := cs.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		t.Fatalf("the agent pod never reported the image pull failure: %v", err)
	}
	out, err = netpol(t, c, "", append([]string{"install", "--timeout", "15s"}, base...)...)
	if err == nil || !strings.Contains(err.Error(), "is not ready on 1 of 1 nodes after 15s") {
		t.Fatalf("install --wait with a missing image: err = %v\n%s", err, out)
	}
	t.Logf("install --wait report:\n%s", out)
	for _, want := range []string{
		"Waiting for netpol-agent", "  " + framework.NodeName + ": pending",
		"Timed out after 15s", "pod " + ns + "/", "init container " + install.PreflightContainer + ": waiting: ", missingImage, "events:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("timeout report lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "ErrImagePull") && !strings.Contains(out, "ImagePullBackOff") {
		t.Errorf("timeout report does not say the pull failed:\n%s", out)
	}

	out, err = netpol(t, c, "", "status", "-n", ns)
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if !strings.Contains(out, framework.NodeName+"  pending") || !strings.Contains(out, framework.NodeName+": agent pod "+pod.Name+" is pending (") {
		t.Errorf("status:\n%s", out)
	}

	out, err = netpol(t, c, "", "uninstall", "-n", ns)
	if err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	t.Logf("uninstall:\n%s", out)
	if !strings.Contains(out, "uninstalled from namespace "+ns) || !strings.Contains(out, framework.NodeName+": removed") {
		t.Errorf("uninstall output:\n%s", out)
	}
	// The DaemonSet went first, the RBAC after the pods were gone.
	if d, r := strings.Index(out, "daemonset.apps/netpol-agent deleted"), strings.Index(out, "clusterrole.rbac.authorization.k8s.io/"); d < 0 || r < d {
		t.Errorf("uninstall order:\n%s", out)
	}
	if left := labelled(t, dyn, ns); len(left) != 0 {
		t.Errorf("left after uninstall: %v", left)
	}
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace %s still exists: %v", ns, err)
	}

	out, err = netpol(t, c, "", "uninstall", "-n", ns)
	if err != nil || !strings.Contains(out, "is not installed in namespace "+ns) {
		t.Errorf("second uninstall: %v\n%s", err, out)
	}
	_, err = netpol(t, c, "", "status", "-n", ns)
	if err == nil || !strings.Contains(err.Error(), "kubectl netpol install") {
		t.Errorf("status after uninstall: %v", err)
	}
}

// TestInstallRefusesSecondAgentOnSameNodes: with an agent installed, an
// install into another namespace without --node-selector would put two
// agents on one node and is refused before anything is written.
func TestInstallRefusesSecondAgentOnSameNodes(t *testing.T) {
	c := framework.Connect(t)
	first, _ := throwAwayInstall(t, c)
	second, dyn := throwAwayInstall(t, c)
	if out, err := netpol(t, c, "", "install", "--wait=false", "-n", first, "--image", missingImage, "--node-selector", onTestNode); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	_, err := netpol(t, c, "", "install", "--wait=false", "-n", second, "--image", missingImage)
	if err == nil || !strings.Contains(err.Error(), "an agent is already installed in namespace") || !strings.Contains(err.Error(), "--node-selector") {
		t.Fatalf("second install elsewhere: %v", err)
	}
	if left := labelled(t, dyn, second); len(left) != 0 {
		t.Errorf("the refused install wrote %v", left)
	}
	if out, err := netpol(t, c, "", "uninstall", "-n", first); err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
}

// TestInstallWithoutPermission runs install as a ServiceAccount with no
// rights, through a kubeconfig holding its token: the answer is one message
// listing what is missing, and nothing is written.
func TestInstallWithoutPermission(t *testing.T) {
	c := framework.Connect(t)
	home := c.NewNamespace(t, "nobody")
	ctx := framework.Context(t, time.Minute)
	if _, err := c.Client.CoreV1().ServiceAccounts(home).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "nobody"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tok, err := c.Client.CoreV1().ServiceAccounts(home).CreateToken(ctx, "nobody", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for nobody: %v", err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: c.Config.Host, CertificateAuthorityData: c.Config.CAData, CertificateAuthority: c.Config.CAFile}
	cfg.AuthInfos["nobody"] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	cfg.Contexts["nobody"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "nobody"}
	cfg.CurrentContext = "nobody"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	ns, dyn := throwAwayInstall(t, c)
	nobody := &framework.Cluster{Kubeconfig: path, Config: c.Config, Client: c.Client}
	_, err = netpol(t, nobody, "", "install", "--wait=false", "-n", ns, "--image", missingImage, "--node-selector", onTestNode)
	if err == nil {
		t.Fatal("install without permissions succeeded")
	}
	msg := err.Error()
	for _, want := range []string{"you need permission to create namespaces", "create clusterroles.rbac.authorization.k8s.io",
		fmt.Sprintf("patch daemonsets.apps in namespace %s", ns), "ask a cluster admin or use an admin kubeconfig"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %s", want, msg)
		}
	}
	if left := labelled(t, dyn, ns); len(left) != 0 {
		t.Errorf("install without permission wrote %v", left)
	}

	// Allowed to write every kind, but not holding what the agent's roles
	// grant: the API server would refuse the ClusterRole half-way through,
	// so install refuses first.
	writer := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-netpol-writer-" + home, Labels: map[string]string{framework.TestLabel: "install"}},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"namespaces", "serviceaccounts"}, Verbs: []string{"get", "create", "patch"}},
			{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"clusterroles", "clusterrolebindings", "roles", "rolebindings"}, Verbs: []string{"get", "create", "patch"}},
			{APIGroups: []string{"apps"}, Resources: []string{"daemonsets"}, Verbs: []string{"get", "list", "create", "patch"}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: writer.Name, Labels: writer.Labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: writer.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "nobody", Namespace: home}},
	}
	if _, err := c.Client.RbacV1().ClusterRoles().Create(ctx, writer, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Client.RbacV1().ClusterRoles().Delete(context.Background(), writer.Name, metav1.DeleteOptions{})
	})
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Client.RbacV1().ClusterRoleBindings().Delete(context.Background(), binding.Name, metav1.DeleteOptions{})
	})
	// RBAC changes reach the authorizer's cache quickly but not at once.
	var msg2 string
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := netpol(t, nobody, "", "install", "--wait=false", "-n", ns, "--image", missingImage, "--node-selector", onTestNode)
		if err == nil {
			return false, fmt.Errorf("install succeeded without the permissions it grants")
		}
		msg2 = err.Error()
		return strings.Contains(msg2, "the agent's roles grant them"), nil
	}); err != nil {
		t.Fatalf("install by a writer who does not hold what it grants: %v; last error: %s", err, msg2)
	}
	for _, want := range []string{"list pods", "watch networkpolicies.networking.k8s.io"} {
		if !strings.Contains(msg2, want) {
			t.Errorf("error lacks %q: %s", want, msg2)
		}
	}
	// What the writer holds is not listed: get on namespaces and daemonsets.
	if strings.Contains(msg2, "get namespaces") || strings.Contains(msg2, "daemonsets") {
		t.Errorf("error lists permissions the user holds: %s", msg2)
	}
	if left := labelled(t, dyn, ns); len(left) != 0 {
		t.Errorf("install without the granted permissions wrote %v", left)
	}
	_ = os.Remove(path)
}

// TestUninstallKeepsRBACWhileAgentsRun holds the agent pod with a finalizer,
// as a slow agent cleaning its node would: uninstall must delete the
// DaemonSet, wait, and keep the ServiceAccount and RBAC the agent needs;
// once the pod is gone, uninstall again removes everything.
func TestUninstallKeepsRBACWhileAgentsRun(t *testing.T) {
	c := framework.Connect(t)
	ns, dyn := throwAwayInstall(t, c)
	ctx := framework.Context(t, 3*time.Minute)
	if out, err := netpol(t, c, "", "install", "--wait=false", "-n", ns, "--image", missingImage, "--node-selector", onTestNode); err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	const hold = "e2e.kubectl-netpol.io/hold"
	var pod string
	if err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := install.AgentPods(ctx, c.Client, ns)
		if err != nil || len(pods) == 0 {
			return false, nil
		}
		pod = pods[0].Name
		patch := []byte(`{"metadata":{"finalizers":["` + hold + `"]}}`)
		_, err = c.Client.CoreV1().Pods(ns).Patch(ctx, pod, types.MergePatchType, patch, metav1.PatchOptions{})
		return err == nil, nil
	}); err != nil {
		t.Fatalf("no agent pod to hold: %v", err)
	}
	release := func() {
		_, err := c.Client.CoreV1().Pods(ns).Patch(context.Background(), pod, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("releasing pod %s: %v", pod, err)
		}
	}
	t.Cleanup(release)

	out, err := netpol(t, c, "", "uninstall", "-n", ns, "--timeout", "5s")
	if err == nil || !strings.Contains(err.Error(), "were kept for them") {
		t.Fatalf("uninstall with a lingering agent pod: err = %v\n%s", err, out)
	}
	if !strings.Contains(out, framework.NodeName+": terminating") || !strings.Contains(out, "pod "+ns+"/"+pod) {
		t.Errorf("uninstall report:\n%s", out)
	}
	kept := labelled(t, dyn, ns)
	for _, want := range []string{"ServiceAccount/" + install.ServiceAccountName, "ClusterRoleBinding/" + install.ClusterName(ns), "Role/" + install.AgentName, "Namespace/" + ns} {
		if !slices.Contains(kept, want) {
			t.Errorf("%s was deleted while the agent pod still runs; left: %v", want, kept)
		}
	}
	out, err = netpol(t, c, "", "uninstall", "-n", ns, "--wait=false")
	if err != nil || !strings.Contains(out, "1 agent pod(s) are cleaning their nodes") {
		t.Errorf("uninstall --wait=false with a lingering pod: %v\n%s", err, out)
	}

	release()
	out, err = netpol(t, c, "", "uninstall", "-n", ns)
	if err != nil || !strings.Contains(out, "uninstalled from namespace "+ns) {
		t.Fatalf("uninstall after the pod went: %v\n%s", err, out)
	}
	if left := labelled(t, dyn, ns); len(left) != 0 {
		t.Errorf("left after uninstall: %v", left)
	}
}

// agentReport is the agent part of a node in `status -o json`.
type agentReport struct {
	Ready             bool
	EndpointsEnforced uint32
	Maps              []struct {
		Name       string
		MaxEntries uint64
	}
	Checks []struct {
		Name   string
		OK     bool
		Detail string
	}
}

// TestStatusLive asks the real agent (installed as the other agent tests
// do; a no-op when it already is) for its Status through the API server's
// port-forward, as `kubectl netpol status` does, in JSON and as a table.
func TestStatusLive(t *testing.T) {
	c := framework.Connect(t)
	installAgent(t, c)
	out, err := netpol(t, c, "", "status", "-o", "json")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	var report struct {
		Namespace string `json:"namespace"`
		Desired   int    `json:"desired"`
		Nodes     []struct {
			Node, Pod, Version, Error string
			PodReady                  bool
			Agent                     *agentReport
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	if report.Namespace != install.DefaultNamespace || report.Desired != len(framework.Nodes) || len(report.Nodes) != len(framework.Nodes) {
		t.Fatalf("status = %s", out)
	}
	var a *agentReport
	for i, n := range report.Nodes {
		if n.Node != framework.Nodes[i].Name || !n.PodReady || n.Error != "" || n.Version == "" || n.Agent == nil {
			t.Fatalf("node %d = %+v, want %s ready", i, n, framework.Nodes[i].Name)
		}
		a = n.Agent
		if !a.Ready || len(a.Maps) == 0 || len(a.Checks) == 0 {
			t.Errorf("%s: agent = %+v", n.Node, a)
		}
		for _, m := range a.Maps {
			if m.Name == "" || m.MaxEntries == 0 {
				t.Errorf("%s: map %+v", n.Node, m)
			}
		}
		for _, ch := range a.Checks {
			if !ch.OK {
				t.Errorf("check %s fails on %s: %s", ch.Name, n.Node, ch.Detail)
			}
		}
	}
	out, err = netpol(t, c, "", "status")
	if err != nil || !strings.Contains(out, framework.NodeName+"  ready  ") || !strings.Contains(out, "/"+strconv.Itoa(len(a.Checks))+" ok") {
		t.Errorf("status table: %v\n%s", err, out)
	}
}

// TestInstallIntoExistingNamespace: a namespace the user made is used but
// not adopted (no label of ours), and uninstall leaves it.
func TestInstallIntoExistingNamespace(t *testing.T) {
	c := framework.Connect(t)
	ns := c.NewNamespace(t, "netpol-own")
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	out, err := netpol(t, c, "", "install", "--wait=false", "-n", ns, "--image", missingImage, "--node-selector", onTestNode)
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	if !strings.Contains(out, "namespace/"+ns+" exists and was not created by install: left as it is") || strings.Count(out, " created\n") != len(install.Kinds)-1 {
		t.Errorf("install into an existing namespace:\n%s", out)
	}
	ctx := framework.Context(t, 3*time.Minute)
	got, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil || got.Labels[install.LabelPartOf] != "" {
		t.Errorf("the user's namespace was adopted: %v %v", got.Labels, err)
	}
	out, err = netpol(t, c, "", "uninstall", "-n", ns)
	if err != nil || strings.Contains(out, "namespace/"+ns+" deleted") {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
	if left := labelled(t, dyn, ns); len(left) != 0 {
		t.Errorf("left after uninstall: %v", left)
	}
	if got, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil || got.DeletionTimestamp != nil {
		t.Errorf("uninstall deleted the user's namespace: %v", err)
	}
}

// TestInstallReportsAgentThatCannotStart uses an image that exists but has
// no agent binary (the netprobe image): the container fails at start every
// time, and both install's timeout report and status say so with the
// runtime's own message.
func TestInstallReportsAgentThatCannotStart(t *testing.T) {
	c := framework.Connect(t)
	ns, _ := throwAwayInstall(t, c)
	out, err := netpol(t, c, "", "install", "-n", ns, "--image", framework.ProbeImage, "--node-selector", onTestNode, "--timeout", "25s")
	if err == nil {
		t.Fatalf("install of an image without the agent succeeded:\n%s", out)
	}
	t.Logf("install report:\n%s", out)
	for _, want := range []string{"Timed out after 25s", install.AgentBinary, "container agent: "} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if !strings.Contains(out, "last termination: ") && !strings.Contains(out, "terminated: ") && !strings.Contains(out, "RunContainerError") {
		t.Errorf("report does not show how the container ended")
	}
	out, err = netpol(t, c, "", "status", "-n", ns)
	if err != nil || !strings.Contains(out, framework.NodeName+": agent pod ") {
		t.Errorf("status: %v\n%s", err, out)
	}
	t.Logf("status:\n%s", out)
	if out, err := netpol(t, c, "", "uninstall", "-n", ns); err != nil {
		t.Fatalf("uninstall: %v\n%s", err, out)
	}
}
