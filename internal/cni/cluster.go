package cni

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// configMapNames are the CNI ConfigMaps whose data tells the mode.
var configMapNames = []string{"cilium-config", "calico-config", "kube-flannel-cfg", "canal-config"}

// FactsFromCluster reads the CNIs' DaemonSets (in every namespace) and their
// ConfigMaps (in the DaemonSets' namespaces and kube-system). A ConfigMap
// that cannot be read is left out; a DaemonSet list that cannot be read is
// an error (without it nothing can be said).
func FactsFromCluster(ctx context.Context, client kubernetes.Interface) (Facts, error) {
	var f Facts
	list, err := client.AppsV1().DaemonSets(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return f, fmt.Errorf("listing DaemonSets to find the CNI: %w", err)
	}
	namespaces := []string{metav1.NamespaceSystem}
	for _, ds := range list.Items {
		if daemonSetCNI(ds.Name) == "" {
			continue
		}
		d := DaemonSet{Namespace: ds.Namespace, Name: ds.Name, Env: map[string]string{}}
		for _, c := range slices.Concat(ds.Spec.Template.Spec.InitContainers, ds.Spec.Template.Spec.Containers) {
			d.Images = append(d.Images, c.Image)
			d.Args = append(d.Args, c.Args...)
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					d.Env[e.Name] = e.Value
				}
			}
		}
		f.DaemonSets = append(f.DaemonSets, d)
		if !slices.Contains(namespaces, ds.Namespace) {
			namespaces = append(namespaces, ds.Namespace)
		}
	}
	for _, ns := range namespaces {
		for _, name := range configMapNames {
			cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				if !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) {
					return f, fmt.Errorf("reading ConfigMap %s/%s: %w", ns, name, err)
				}
				continue
			}
			AddConfigMap(&f, cm)
		}
	}
	return f, nil
}

// AddConfigMap records a CNI ConfigMap's data in f.
func AddConfigMap(f *Facts, cm *corev1.ConfigMap) {
	if f.ConfigMaps == nil {
		f.ConfigMaps = map[string]map[string]string{}
	}
	f.ConfigMaps[cm.Namespace+"/"+cm.Name] = cm.Data
}

// ConfigMapNames are the CNI ConfigMaps the agent may read in kube-system
// (install grants get on exactly these).
func ConfigMapNames() []string { return slices.Clone(configMapNames) }
