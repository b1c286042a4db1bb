package cli

import (
	"context"
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
)

func cniDaemonSet(ns, name string, env ...corev1.EnvVar) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: name, Image: "example.test/" + name + ":v1", Env: env}}}}}}
}

func cniConfigMap(ns, name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: data}
}

// TestInstallPreflightCNI: install reads the CNI's DaemonSet and ConfigMap,
// says what works beside it, and refuses without --force where the agent
// could not enforce.
func TestInstallPreflightCNI(t *testing.T) {
	for _, tc := range []struct {
		name    string
		objs    []runtime.Object
		force   bool
		wantErr string
		say     []string
	}{
		{name: "Calico eBPF refuses", objs: []runtime.Object{cniDaemonSet("calico-system", "calico-node", corev1.EnvVar{Name: "FELIX_BPFENABLED", Value: "true"})},
			wantErr: "could not enforce NetworkPolicy beside Calico (eBPF) (none coverage of pod traffic): not installing; rerun with --force",
			say:     []string{"CNI: Calico (eBPF)", "skips routing, conntrack and netfilter", "almost none of the pod traffic"}},
		{name: "Calico eBPF with --force", force: true,
			objs: []runtime.Object{cniDaemonSet("calico-system", "calico-node", corev1.EnvVar{Name: "FELIX_BPFENABLED", Value: "true"})},
			say:  []string{"CNI: Calico (eBPF)", "Warning: installing beside Calico (eBPF) because of --force"}},
		{name: "Cilium native routing refuses",
			objs: []runtime.Object{cniDaemonSet("kube-system", "cilium"),
				cniConfigMap("kube-system", "cilium-config", map[string]string{"routing-mode": "native", "kube-proxy-replacement": "true"})},
			wantErr: "beside Cilium (native routing)", say: []string{"CNI: Cilium (native routing)"}},
		{name: "Cilium legacy host routing with endpoint routes: partial, refuses",
			objs: []runtime.Object{cniDaemonSet("kube-system", "cilium"),
				cniConfigMap("kube-system", "cilium-config", map[string]string{"routing-mode": "native", "enable-host-legacy-routing": "true", "enable-endpoint-routes": "true"})},
			wantErr: "(partial coverage of pod traffic)", say: []string{"only part of the pod traffic"}},
		{name: "Calico iptables: both enforce",
			objs: []runtime.Object{cniDaemonSet("kube-system", "calico-node"), cniConfigMap("kube-system", "calico-config", map[string]string{"cni_network_config": "{}"})},
			say: []string{"CNI: Calico (iptables)", "both Calico and the agent enforce the same NetworkPolicy objects: a packet passes only if both accept it",
				"`kubectl netpol explain` predicts the agent's verdict"}},
		{name: "Weave Net: both enforce", objs: []runtime.Object{cniDaemonSet("kube-system", "weave-net")},
			say: []string{"CNI: Weave Net (sleeve)", "a packet passes only if both accept it"}},
		{name: "Flannel: full enforcement",
			objs: []runtime.Object{cniDaemonSet("kube-flannel", "kube-flannel-ds"),
				cniConfigMap("kube-flannel", "kube-flannel-cfg", map[string]string{"net-conf.json": `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`})},
			say: []string{"CNI: Flannel (vxlan)", "the agent enforces every NetworkPolicy on this CNI"}},
		{name: "no known CNI", objs: []runtime.Object{cniDaemonSet("kube-system", "kube-proxy")},
			say: []string{"CNI: unknown", "no known CNI found"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			streams, _, _, errOut := genericiooptions.NewTestIOStreams()
			o := &InstallOptions{IOStreams: streams, agentClients: agentClients{Kube: fake.NewClientset(tc.objs...)}, Force: tc.force,
				opts: install.Options{Namespace: install.DefaultNamespace}}
			err := o.preflightCNI(context.Background())
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
			for _, s := range tc.say {
				if !strings.Contains(errOut.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, errOut.String())
				}
			}
		})
	}
}

// Without permission to list DaemonSets, install says the check is skipped
// and goes on.
func TestInstallPreflightCNIForbidden(t *testing.T) {
	c := fake.NewClientset()
	c.PrependReactor("list", "daemonsets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "daemonsets"}, "", errors.New("no RBAC"))
	})
	streams, _, _, errOut := genericiooptions.NewTestIOStreams()
	o := &InstallOptions{IOStreams: streams, agentClients: agentClients{Kube: c}, opts: install.Options{Namespace: install.DefaultNamespace}}
	if err := o.preflightCNI(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut.String(), "Warning: the CNI check is skipped") {
		t.Errorf("stderr = %q", errOut.String())
	}
}
