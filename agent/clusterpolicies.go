package agent

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	cnpv1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	cnpclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
	cnpinformers "sigs.k8s.io/network-policy-api/pkg/client/informers/externalversions/apis/v1beta1"
	cnplisters "sigs.k8s.io/network-policy-api/pkg/client/listers/apis/v1beta1"

	"github.com/kubectl-netpol/kubectl-netpol/internal/install"
)

// ClusterPolicyCRD is the name of the ClusterNetworkPolicy CRD.
const ClusterPolicyCRD = install.ClusterPolicyCRD

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// clusterPolicies follows ClusterNetworkPolicies whether or not their CRD
// is installed: a metadata informer watches that one CRD (by name, so the
// agent never lists the cluster's other CRDs), and while it exists an
// informer on v1beta1 ClusterNetworkPolicies runs. Installing the CRD later
// starts that informer, deleting it stops the informer and drops the
// policies, all without a restart. A watch of the CRD rather than polling
// discovery: the pickup is as fast as any other policy change.
type clusterPolicies struct {
	client     cnpclient.Interface
	crds       cache.SharedIndexInformer
	crdHandler cache.ResourceEventHandlerRegistration
	onChange   func()

	mu sync.Mutex
	// crdUID is the CRD the running informer belongs to ("" while the
	// CRD is absent or being deleted).
	crdUID types.UID
	inf    cache.SharedIndexInformer
	lister cnplisters.ClusterNetworkPolicyLister
	stop   chan struct{}
	// lastErr is the last failure to list or watch (the CRD or the
	// policies), for status: e.g. an older ClusterRole without the rules.
	lastErr string
}

func newClusterPolicies(client cnpclient.Interface, meta metadata.Interface, onChange func()) *clusterPolicies {
	cp := &clusterPolicies{client: client, onChange: onChange}
	cp.crds = metadatainformer.NewFilteredMetadataInformer(meta, crdResource, "", 0, cache.Indexers{},
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", ClusterPolicyCRD).String()
		}).Informer()
	_ = cp.crds.SetWatchErrorHandlerWithContext(cp.watchError("the " + ClusterPolicyCRD + " CRD"))
	// The registration, not the informer, says when the initial list has
	// reached crdChanged (handlers are notified asynchronously).
	cp.crdHandler, _ = cp.crds.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { cp.crdChanged(obj) },
		UpdateFunc: func(_, obj any) { cp.crdChanged(obj) },
		DeleteFunc: func(any) { cp.crdChanged(nil) },
	})
	return cp
}

func (cp *clusterPolicies) watchError(what string) cache.WatchErrorHandlerWithContext {
	return func(ctx context.Context, r *cache.Reflector, err error) {
		cp.mu.Lock()
		cp.lastErr = fmt.Sprintf("watching %s: %v", what, err)
		cp.mu.Unlock()
		cache.DefaultWatchErrorHandler(ctx, r, err)
	}
}

// crdChanged starts or stops the policy informer to follow the CRD (nil:
// deleted). A CRD being deleted counts as gone: its objects are going.
func (cp *clusterPolicies) crdChanged(obj any) {
	var uid types.UID
	if m, ok := obj.(metav1.Object); ok && m.GetDeletionTimestamp() == nil {
		uid = m.GetUID()
	}
	cp.mu.Lock()
	if uid == cp.crdUID {
		cp.mu.Unlock()
		return
	}
	if cp.stop != nil {
		close(cp.stop)
		cp.inf, cp.lister, cp.stop = nil, nil, nil
	}
	cp.crdUID, cp.lastErr = uid, ""
	if uid != "" {
		cp.startInformer()
	}
	cp.mu.Unlock()
	if uid == "" {
		klog.InfoS("ClusterNetworkPolicy CRD absent: no cluster policies", "crd", ClusterPolicyCRD)
		cp.onChange()
		return
	}
	klog.InfoS("ClusterNetworkPolicy CRD present: watching ClusterNetworkPolicies", "crd", ClusterPolicyCRD, "uid", uid)
}

// startInformer runs a new policy informer (under cp.mu). Its policies
// count once it has synced (see list): a half-filled store could drop a
// Deny that a Pass or Accept of the same tier relies on being there.
func (cp *clusterPolicies) startInformer() {
	inf := cnpinformers.NewClusterNetworkPolicyInformer(cp.client, 0, cache.Indexers{})
	_ = inf.SetWatchErrorHandlerWithContext(cp.watchError("clusternetworkpolicies"))
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { cp.onChange() },
		UpdateFunc: func(old, cur any) {
			// The agents write status: only spec and labels matter.
			o, ok1 := old.(*cnpv1beta1.ClusterNetworkPolicy)
			c, ok2 := cur.(*cnpv1beta1.ClusterNetworkPolicy)
			if ok1 && ok2 && o.Generation == c.Generation && o.Generation != 0 && maps.Equal(o.Labels, c.Labels) {
				return
			}
			cp.onChange()
		},
		DeleteFunc: func(any) { cp.onChange() },
	})
	stop := make(chan struct{})
	cp.inf, cp.lister, cp.stop = inf, cnplisters.NewClusterNetworkPolicyLister(inf.GetIndexer()), stop
	go inf.Run(stop)
	go func() {
		if cache.WaitForCacheSync(stop, inf.HasSynced) {
			cp.mu.Lock()
			cp.lastErr = ""
			cp.mu.Unlock()
			cp.onChange() // the policies count from now on
		}
	}()
}

// start runs the CRD informer and waits, at most wait, until the
// ClusterNetworkPolicies are known: the CRD's absence, or its policies
// listed. A restarted agent must not enforce a first datapath without the
// cluster's Deny rules; but an agent that cannot read them (an older
// ClusterRole) still enforces NetworkPolicy, and says why in status.
func (cp *clusterPolicies) start(stop <-chan struct{}, wait time.Duration) bool {
	go cp.crds.Run(stop)
	deadline := time.After(wait)
	synced := func() bool {
		if cp.crdHandler == nil || !cp.crdHandler.HasSynced() {
			return false
		}
		cp.mu.Lock()
		defer cp.mu.Unlock()
		return cp.inf == nil || cp.inf.HasSynced()
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !synced() {
		select {
		case <-stop:
			return false
		case <-deadline:
			klog.ErrorS(nil, "ClusterNetworkPolicies not known yet; enforcing without them until they are", "waited", wait, "lastError", cp.state().err)
			return true
		case <-tick.C:
		}
	}
	return true
}

// list returns the policies of a synced informer (none without the CRD).
func (cp *clusterPolicies) list() ([]*cnpv1beta1.ClusterNetworkPolicy, error) {
	cp.mu.Lock()
	inf, lister := cp.inf, cp.lister
	cp.mu.Unlock()
	if inf == nil || !inf.HasSynced() {
		return nil, nil
	}
	return lister.List(labels.Everything())
}

// clusterPolicyState is what status reports of the watch.
type clusterPolicyState struct {
	watched bool // the CRD exists and its policies are listed
	err     string
}

func (cp *clusterPolicies) state() clusterPolicyState {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return clusterPolicyState{watched: cp.inf != nil && cp.inf.HasSynced(), err: cp.lastErr}
}
