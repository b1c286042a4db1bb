package agent

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

// UninstallRequested returns the check the agent runs when it stops: true
// when its own DaemonSet is being deleted or is gone, which is what
// `kubectl netpol uninstall` (or deleting the DaemonSet) does; false for a
// restart, a rolling upgrade or a deleted pod, and whenever the answer is
// unknown (enforcement must not vanish because the API server was slow).
func UninstallRequested(client kubernetes.Interface, namespace, podName string) func(context.Context) bool {
	return func(ctx context.Context) bool {
		if podName == "" {
			return false
		}
		pod, err := client.CoreV1().Pods(namespace).Get(ctx, podName, metav1.GetOptions{})
		if err != nil {
			klog.ErrorS(err, "Reading this agent's pod at shutdown; keeping enforcement", "pod", klog.KRef(namespace, podName))
			return false
		}
		ref := metav1.GetControllerOf(pod)
		if ref == nil || ref.Kind != "DaemonSet" {
			return false
		}
		ds, err := client.AppsV1().DaemonSets(namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return true
		case err != nil:
			klog.ErrorS(err, "Reading this agent's DaemonSet at shutdown; keeping enforcement", "daemonset", klog.KRef(namespace, ref.Name))
			return false
		case ds.UID != ref.UID:
			return false // deleted and re-created: the new install takes over the pins
		default:
			return ds.DeletionTimestamp != nil
		}
	}
}
