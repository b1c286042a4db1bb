//go:build linux

package agent

import (
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netns"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
	"github.com/kubectl-netpol/kubectl-netpol/internal/cni"
	"github.com/kubectl-netpol/kubectl-netpol/internal/cni/nodefacts"
)

// cniRefresh is how often the agent looks at the node's CNI again (a CNI
// can be installed or switched to another mode after the agent).
const cniRefresh = 5 * time.Minute

// cniWatch identifies the node's CNI from what the node shows, and from
// the CNI's ConfigMaps where RBAC lets the agent read them.
type cniWatch struct {
	ns     netns.NsHandle // the node's network namespace (owned)
	here   bool
	client kubernetes.Interface
	opts   nodefacts.Options
	info   *prometheus.GaugeVec

	// noConfigMaps: reading the CNI's ConfigMaps was forbidden once; the
	// installed Role does not grant it, so the agent stops asking.
	noConfigMaps bool

	mu     sync.Mutex
	result cni.Result
	known  bool
}

func newCNIWatch(ns netns.NsHandle, client kubernetes.Interface, opts nodefacts.Options, reg prometheus.Registerer) (*cniWatch, error) {
	w := &cniWatch{ns: ns, here: inNamespace(ns), client: client, opts: opts,
		info: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: "cni_info",
			Help: "The node's CNI as the agent identified it (1): name, mode, and coverage (how much pod traffic passes the netfilter hooks the agent enforces on: full, partial, none, unknown)."},
			[]string{"name", "mode", "coverage", "enforces_policy"})}
	return w, reg.Register(w.info)
}

// refresh gathers the facts and classifies them.
func (w *cniWatch) refresh(ctx context.Context) cni.Result {
	var f cni.Facts
	err := runIn(w.ns, w.here, func() error {
		var err error
		f, err = nodefacts.Gather(w.opts)
		return err
	})
	if err != nil {
		klog.V(2).InfoS("Some CNI facts could not be read", "err", err)
	}
	if w.client != nil && !w.noConfigMaps {
		for _, name := range cni.ConfigMapNames() {
			cm, err := w.client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsForbidden(err) {
				klog.V(2).InfoS("The CNI's ConfigMaps are not readable; identifying the CNI from the node alone", "err", err)
				w.noConfigMaps = true
				break
			}
			if err == nil {
				cni.AddConfigMap(&f, cm)
			}
		}
	}
	r := cni.Classify(f)
	w.mu.Lock()
	changed := !w.known || r.String() != w.result.String() || r.Coverage != w.result.Coverage
	w.result, w.known = r, true
	w.mu.Unlock()
	if changed {
		klog.InfoS("Identified the node's CNI", "cni", r.String(), "coverage", r.Coverage, "enforcesPolicy", r.EnforcesPolicy, "evidence", r.Evidence)
		w.info.Reset()
		w.info.WithLabelValues(r.Name, r.Mode, string(r.Coverage), boolLabel(r.EnforcesPolicy)).Set(1)
	}
	return r
}

// run refreshes until ctx ends.
func (w *cniWatch) run(ctx context.Context) {
	t := time.NewTicker(cniRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.refresh(ctx)
		}
	}
}

func (w *cniWatch) current() (cni.Result, bool) {
	if w == nil {
		return cni.Result{}, false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.result, w.known
}

func (w *cniWatch) status() *flowv1.CNI {
	r, ok := w.current()
	if !ok {
		return nil
	}
	return &flowv1.CNI{Name: r.Name, Mode: r.Mode, Coverage: string(r.Coverage), EnforcesPolicy: r.EnforcesPolicy,
		Evidence: r.Evidence, Why: r.Why}
}

func (w *cniWatch) close() { w.ns.Close() }

func boolLabel(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// inNamespace reports whether the process runs in ns. In a cluster the
// agent runs in the node's namespace, without the CAP_SYS_ADMIN that
// entering it would take; tests run it in a namespace of their own.
func inNamespace(ns netns.NsHandle) bool {
	self, err := netns.GetFromPath("/proc/self/ns/net")
	if err != nil {
		return false
	}
	defer self.Close()
	return self.Equal(ns)
}

// runIn runs fn in ns: directly when the process is there, else on a
// locked thread that enters it.
func runIn(ns netns.NsHandle, here bool, fn func() error) error {
	if here {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the runtime discards the thread, whatever
		// namespace it was left in.
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}
