//go:build linux

package agent

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

// eventSink writes Kubernetes Events on the agent's own pod, where `kubectl
// describe pod` and event watchers show them.
type eventSink struct {
	client         kubernetes.Interface
	namespace, pod string
	node           string
}

// newEventSink returns nil outside a cluster (no pod to report on).
func newEventSink(cfg Config) *eventSink {
	if cfg.Client == nil || cfg.PodName == "" || cfg.PodNamespace == "" {
		return nil
	}
	return &eventSink{client: cfg.Client, namespace: cfg.PodNamespace, pod: cfg.PodName, node: cfg.NodeName}
}

// emit writes one Event in the background: reporting never holds up the
// check that found something.
func (s *eventSink) emit(typ, reason, message string) {
	if s == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ref := corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: s.namespace, Name: s.pod}
		if pod, err := s.client.CoreV1().Pods(s.namespace).Get(ctx, s.pod, metav1.GetOptions{}); err == nil {
			ref.UID = pod.UID
		}
		now := metav1.Now()
		ev := &corev1.Event{
			// Named as client-go's recorder names them: the object and a
			// unique suffix.
			ObjectMeta:          metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", s.pod, now.UnixNano()), Namespace: s.namespace},
			InvolvedObject:      ref,
			Reason:              reason,
			Message:             message,
			Type:                typ,
			Source:              corev1.EventSource{Component: "netpol-agent", Host: s.node},
			FirstTimestamp:      now,
			LastTimestamp:       now,
			Count:               1,
			ReportingController: "kubectl-netpol/agent",
			ReportingInstance:   s.pod,
		}
		if _, err := s.client.CoreV1().Events(s.namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
			klog.ErrorS(err, "Writing an Event on the agent's pod", "reason", reason, "pod", klog.KRef(s.namespace, s.pod))
		}
	}()
}
