package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
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
