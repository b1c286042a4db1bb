package install

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// LabelInstance names the install an object belongs to: its namespace. The
// cluster-scoped objects (ClusterRole, ClusterRoleBinding) carry it too, so
// uninstalling one namespace's agent never touches another install's RBAC.
const LabelInstance = "app.kubernetes.io/instance"

// FieldManager is the server-side apply field manager of every object install
// writes; kubectl shows it in managedFields.
const FieldManager = "kubectl-netpol"

// ServiceAccountName is the agent's ServiceAccount (and the name of its Role
// and RoleBinding in the install namespace).
const ServiceAccountName = AgentName

// containerName is the agent container in the DaemonSet.
const containerName = "agent"

// Init containers of the DaemonSet, run in this order before the agent.
const (
	// MountBPFFSContainer mounts bpffs on the node (install --mount-bpffs).
	MountBPFFSContainer = "mount-bpffs"
	// PreflightContainer checks that the node has what the agent needs and
	// cannot fix itself (bpffs), and says so per node.
	PreflightContainer = "preflight"
)

// Options describe one install. Manifests derives every object from them.
type Options struct {
	// Namespace receives the agent; DefaultNamespace when empty.
	Namespace string
	// Image is the agent image: a tag other than latest, or a digest.
	Image string
	// NodeSelector restricts the nodes the agent runs on (all when empty).
	NodeSelector map[string]string
	// Version is the plugin version; its VersionLabelValue is LabelVersion
	// on every object, which status and version compare with the client.
	Version string
	// NoAntiSpoofing lets pods send with source addresses other than their
	// own (pods that route or forward for others); the agent's
	// --anti-spoofing=false.
	NoAntiSpoofing bool
	// KeepEstablished leaves established connections alone when a new
	// policy denies them; the agent's --keep-established.
	KeepEstablished bool
	// NoFlowEndSummaries turns off the summaries (packets, bytes, duration)
	// of ended connections; the agent's --flow-end-summaries=false.
	NoFlowEndSummaries bool
	// FlowEndTCPOnly summarizes TCP connections only, from the sockets'
	// states, with no conntrack listener (cheaper per connection; no UDP,
	// SCTP or ICMP summaries); the agent's --flow-end-source=kernel-tcp.
	FlowEndTCPOnly bool
	// Nice is the agent's niceness (nil: DefaultAgentNice); the agent's
	// --nice.
	Nice *int
	// FlowAggregation is the interval within which repeats of an allowed
	// connection are counted in the kernel rather than recorded one by one
	// (nil: DefaultFlowAggregation; 0: a record per connection); the
	// agent's --flow-aggregation.
	FlowAggregation *time.Duration
	// MountBPFFS adds an init container that mounts bpffs at /sys/fs/bpf on
	// nodes where nothing did. Kubernetes admits the Bidirectional mount
	// propagation this needs only in a privileged container, so it is
	// opt-in: install --mount-bpffs.
	MountBPFFS bool
	// HistoryMemory and HistoryDisk are the agent's budgets for its
	// connection history (quantities such as 64Mi; empty: the agent's
	// defaults); NoHistory turns the history off (--history-dir="").
	HistoryMemory, HistoryDisk string
	NoHistory                  bool
	// Pprof serves Go's profiles on the agent's loopback HTTP address; the
	// agent's --pprof.
	Pprof bool
	// OTLPEndpoint (HOST:PORT) makes every agent export its flows and
	// metrics to an OpenTelemetry Collector over OTLP/gRPC: TLS verified
	// against OTLPCA (PEM, shipped in a ConfigMap) or the system roots, or
	// plain text with OTLPInsecure.
	OTLPEndpoint string
	OTLPInsecure bool
	OTLPCA       []byte
}

// Where each agent keeps its connection history on its node: a hostPath
// under a directory the agent owns, so history survives restarts and
// upgrades; the agent empties it when uninstalling.
const (
	HistoryHostDir = "/var/lib/kubectl-netpol"
	HistoryDir     = HistoryHostDir + "/history"
)

// OTLPCAConfigMap holds the CA of install --otlp-ca-file; the agent reads it
// at OTLPCAPath.
const (
	OTLPCAConfigMap = "netpol-otlp-ca"
	otlpCADir       = "/etc/netpol/otlp"
	OTLPCAPath      = otlpCADir + "/ca.crt"
)

// DefaultAgentNice is the agent's niceness unless install --agent-nice
// says otherwise. The agent's user space (flow events, summaries, history,
// policy compiles) then yields a CPU to the node's workloads whenever they
// want it, and uses the CPUs' idle time: measured on the test cluster, at
// niceness 0 its bursts of event processing delay the workloads' own
// wake-ups (docs/perf.md, "the agent's scheduling"). Enforcement is in the
// kernel and does not wait for it; under a saturated node the events back
// up in the ring buffers and are dropped and counted, never the packets.
const DefaultAgentNice = 10

// DefaultFlowAggregation is the agent's flow aggregation interval unless
// install --flow-aggregation says otherwise: each flow key's first allowed
// connection and first TCP end per second are records of their own, the
// repeats one counted record per key and second. Measured on the test
// cluster, a record per connection through the agents' user space cost more
// of a node's connection rate than enforcement (docs/perf.md, "seventh
// pass").
const DefaultFlowAggregation = time.Second

// agentArgs are the agent's command-line arguments for o.
func (o Options) agentArgs() []string {
	args := []string{"--v=2"}
	if o.NoAntiSpoofing {
		args = append(args, "--anti-spoofing=false")
	}
	if o.KeepEstablished {
		args = append(args, "--keep-established")
	}
	if o.NoFlowEndSummaries {
		args = append(args, "--flow-end-summaries=false")
	} else if o.FlowEndTCPOnly {
		args = append(args, "--flow-end-source=kernel-tcp")
	}
	if o.Nice != nil && *o.Nice != DefaultAgentNice {
		args = append(args, fmt.Sprintf("--nice=%d", *o.Nice))
	}
	if o.FlowAggregation != nil && *o.FlowAggregation != DefaultFlowAggregation {
		args = append(args, "--flow-aggregation="+o.FlowAggregation.String())
	}
	if o.NoHistory {
		args = append(args, "--history-dir=") // the agent's default is HistoryDir
	}
	if o.HistoryMemory != "" {
		args = append(args, "--history-memory="+o.HistoryMemory)
	}
	if o.HistoryDisk != "" {
		args = append(args, "--history-disk="+o.HistoryDisk)
	}
	if o.Pprof {
		args = append(args, "--pprof")
	}
	if o.OTLPEndpoint != "" {
		args = append(args, "--otlp-endpoint="+o.OTLPEndpoint)
		switch {
		case o.OTLPInsecure:
			args = append(args, "--otlp-insecure")
		case len(o.OTLPCA) > 0:
			args = append(args, "--otlp-ca-file="+OTLPCAPath)
		}
	}
	return args
}

// Object is a Kubernetes object install creates: typed, with TypeMeta set
// so it serialises as a complete manifest.
type Object interface {
	metav1.Object
	runtime.Object
}

// ClusterName returns the name of the install's ClusterRole and
// ClusterRoleBinding. They carry the namespace because cluster-scoped names
// are shared by every install in the cluster.
func ClusterName(namespace string) string { return AgentName + ":" + namespace }

// Labels returns the labels of every object of the install in namespace.
func Labels(namespace, ver string) map[string]string {
	return map[string]string{
		LabelPartOf:   PartOf,
		LabelInstance: namespace,
		LabelVersion:  VersionLabelValue(ver),
	}
}

// InstanceSelector selects every object of the install in namespace,
// cluster-scoped ones included.
func InstanceSelector(namespace string) string {
	return ProjectSelector + "," + LabelInstance + "=" + namespace
}

// ValidateImage rejects images a cluster cannot pull reproducibly: no tag
// (which means latest) or the tag latest. A digest is accepted.
func ValidateImage(image string) error {
	if image == "" {
		return fmt.Errorf("no agent image: pass --image REPOSITORY:TAG")
	}
	if strings.ContainsAny(image, " \t\n") {
		return fmt.Errorf("image %q contains whitespace", image)
	}
	if strings.Contains(image, "@") {
		return nil // pinned by digest
	}
	name := image[strings.LastIndex(image, "/")+1:]
	i := strings.LastIndex(name, ":")
	if i < 0 {
		return fmt.Errorf("image %q has no tag, which means :latest: pass an exact version, e.g. --image %s:v0.1.0", image, image)
	}
	if tag := name[i+1:]; tag == "latest" {
		return fmt.Errorf("image %q uses the tag latest, which changes under the cluster's feet: pass an exact version, e.g. --image %s:v0.1.0", image, strings.TrimSuffix(image, ":latest"))
	}
	return nil
}

// ParseNodeSelector parses "key=value[,key=value...]" (the --node-selector
// syntax) and checks each key and value against the label syntax.
func ParseNodeSelector(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	sel := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("node selector %q: %q is not key=value", s, kv)
		}
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return nil, fmt.Errorf("node selector key %q: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return nil, fmt.Errorf("node selector value %q of %s: %s", v, k, strings.Join(errs, "; "))
		}
		if old, dup := sel[k]; dup && old != v {
			return nil, fmt.Errorf("node selector %q: key %s given twice with different values", s, k)
		}
		sel[k] = v
	}
	return sel, nil
}

// FormatNodeSelector is the inverse of ParseNodeSelector, keys sorted.
func FormatNodeSelector(sel map[string]string) string {
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + sel[k]
	}
	return strings.Join(parts, ",")
}

// Validate checks the options before any object is built.
func (o Options) Validate() error {
	if o.Namespace != "" {
		if errs := validation.IsDNS1123Label(o.Namespace); len(errs) > 0 {
			return fmt.Errorf("namespace %q: %s", o.Namespace, strings.Join(errs, "; "))
		}
	}
	if err := ValidateImage(o.Image); err != nil {
		return err
	}
	for k, v := range o.NodeSelector {
		if _, err := ParseNodeSelector(k + "=" + v); err != nil {
			return err
		}
	}
	if o.OTLPEndpoint != "" {
		host, port, err := net.SplitHostPort(o.OTLPEndpoint)
		if err != nil || host == "" || port == "" || strings.Contains(o.OTLPEndpoint, "/") {
			return fmt.Errorf("--otlp-endpoint %q: want HOST:PORT of the Collector's OTLP gRPC receiver, without a scheme (for example otel-collector.monitoring:4317)", o.OTLPEndpoint)
		}
		if o.OTLPInsecure && len(o.OTLPCA) > 0 {
			return errors.New("--otlp-insecure sends in plain text: it cannot go with --otlp-ca-file (drop one)")
		}
	} else if o.OTLPInsecure || len(o.OTLPCA) > 0 {
		return errors.New("--otlp-insecure and --otlp-ca-file need --otlp-endpoint")
	}
	return nil
}

func (o Options) namespace() string {
	if o.Namespace == "" {
		return DefaultNamespace
	}
	return o.Namespace
}

// Manifests returns every object of the install, in the order they must be
// applied (each after the objects it needs): Namespace, ServiceAccount,
// ClusterRole, ClusterRoleBinding, Role, RoleBinding, DaemonSet.
func Manifests(o Options) ([]Object, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	ns := o.namespace()
	meta := func(name string, namespaced bool) metav1.ObjectMeta {
		m := metav1.ObjectMeta{Name: name, Labels: Labels(ns, o.Version)}
		if namespaced {
			m.Namespace = ns
		}
		return m
	}
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: ServiceAccountName, Namespace: ns}}

	namespace := &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: meta(ns, false),
	}
	// The agent is a hostNetwork pod with hostPath and BPF capabilities, which
	// only the privileged Pod Security level admits.
	namespace.Labels["pod-security.kubernetes.io/enforce"] = "privileged"

	sa := &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: meta(ServiceAccountName, true),
	}
	read := []string{"get", "list", "watch"}
	clusterRole := &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: meta(ClusterName(ns), false),
		// Exactly what the agent's informers read: pods (identities on every
		// node, endpoints on its own), namespaces (namespaceSelector), services
		// (Service names of flows), nodes (its node's addresses), and the
		// policies, ClusterNetworkPolicies included (granted before their
		// CRD exists, so the agent picks them up once it is installed), and
		// that one CRD, whose coming and going the agent follows (by name:
		// its list and watch carry the metadata.name field selector RBAC
		// requires for resourceNames). No secrets. The one write: the
		// elected agent's condition on ClusterNetworkPolicy status (applied
		// server-side, hence patch), whether each policy is enforced on
		// every node.
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods", "namespaces", "services", "nodes"}, Verbs: read},
			{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: read},
			{APIGroups: []string{"policy.networking.k8s.io"}, Resources: []string{"clusternetworkpolicies"}, Verbs: read},
			{APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"}, ResourceNames: []string{ClusterPolicyCRD}, Verbs: read},
			{APIGroups: []string{"policy.networking.k8s.io"}, Resources: []string{"clusternetworkpolicies/status"}, Verbs: []string{"patch"}},
		},
	}
	clusterBinding := &rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
		ObjectMeta: meta(ClusterName(ns), false),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ClusterName(ns)},
		Subjects:   subject,
	}
	role := &rbacv1.Role{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
		ObjectMeta: meta(ServiceAccountName, true),
		// At shutdown the agent reads its own DaemonSet: deleted or being
		// deleted means uninstall, so it removes its BPF programs and pins;
		// otherwise (upgrade, eviction) enforcement stays in place.
		// It reports on its own pod, with Events, when the node's CNI takes
		// pod traffic past its hooks (the bypass self-check). Leases: each
		// agent reports the ClusterNetworkPolicies its node enforces in a
		// Lease of its own, and one agent, elected through another Lease,
		// turns those reports into the policies' status.
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"apps"}, Resources: []string{"daemonsets"}, ResourceNames: []string{AgentName}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create"}},
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch", "create", "update"}},
		},
	}
	roleBinding := &rbacv1.RoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
		ObjectMeta: meta(ServiceAccountName, true),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: ServiceAccountName},
		Subjects:   subject,
	}
	objs := []Object{namespace, sa, clusterRole, clusterBinding, role, roleBinding}
	if o.OTLPEndpoint != "" && !o.OTLPInsecure && len(o.OTLPCA) > 0 {
		objs = append(objs, &corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: meta(OTLPCAConfigMap, true),
			Data:       map[string]string{"ca.crt": string(o.OTLPCA)},
		})
	}
	return append(objs, daemonSet(o, meta(AgentName, true))), nil
}

func daemonSet(o Options, meta metav1.ObjectMeta) *appsv1.DaemonSet {
	meta.Labels[LabelName] = AgentName
	podLabels := map[string]string{}
	for k, v := range meta.Labels {
		podLabels[k] = v
	}
	yes, no := true, false
	root := int64(0)
	grace := int64(30)
	maxUnavailable := intstr.FromInt32(1)
	dirType := corev1.HostPathDirectory
	dirOrCreate := corev1.HostPathDirectoryOrCreate
	fromField := func(path string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}
	}
	probe := func(path string, period int32) *corev1.Probe {
		return &corev1.Probe{
			// The agent binds 127.0.0.1 only; with hostNetwork that is the
			// node's loopback, where the kubelet's probes come from.
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Host: "127.0.0.1", Port: intstr.FromInt32(AgentHTTPPort), Path: path, Scheme: corev1.URISchemeHTTP,
			}},
			PeriodSeconds:    period,
			TimeoutSeconds:   2,
			FailureThreshold: 3,
		}
	}
	nodeEnv := corev1.EnvVar{Name: EnvNodeName, ValueFrom: fromField("spec.nodeName")}
	nobody := int64(65534)
	initResources := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
	}
	var initContainers []corev1.Container
	if o.MountBPFFS {
		bidirectional := corev1.MountPropagationBidirectional
		initContainers = append(initContainers, corev1.Container{
			Name:            MountBPFFSContainer,
			Image:           o.Image,
			ImagePullPolicy: corev1.PullIfNotPresent,
			// statfs, then mount(2) only when /sys/fs/bpf is not bpffs; exits.
			Command: []string{AgentBinary, MountBPFFSCommand},
			Env:     []corev1.EnvVar{nodeEnv},
			SecurityContext: &corev1.SecurityContext{
				// Privileged because Kubernetes admits Bidirectional mount
				// propagation (the only way a mount made in a container
				// reaches the node) in privileged containers only; runtimes
				// then grant every capability, so a capability list here would
				// be ignored. The exposure is this short-lived container: it
				// runs one mount and exits before the agent, which keeps its
				// three capabilities.
				Privileged:             &yes,
				RunAsUser:              &root,
				ReadOnlyRootFilesystem: &yes,
			},
			VolumeMounts:             []corev1.VolumeMount{{Name: "bpffs", MountPath: "/sys/fs/bpf", MountPropagation: &bidirectional}},
			Resources:                initResources,
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		})
	}
	initContainers = append(initContainers, corev1.Container{
		Name:            PreflightContainer,
		Image:           o.Image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		// statfs(2) of /sys/fs/bpf: fails with "bpffs is not mounted at
		// /sys/fs/bpf on node X: ..." (its termination message, which
		// install --wait and status show per node) instead of the agent
		// crash-looping.
		Command: []string{AgentBinary, PreflightCommand},
		Env:     []corev1.EnvVar{nodeEnv},
		SecurityContext: &corev1.SecurityContext{
			// statfs needs no privilege at all.
			RunAsUser:                &nobody,
			RunAsNonRoot:             &yes,
			ReadOnlyRootFilesystem:   &yes,
			AllowPrivilegeEscalation: &no,
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		VolumeMounts:             []corev1.VolumeMount{{Name: "bpffs", MountPath: "/sys/fs/bpf", ReadOnly: true}},
		Resources:                initResources,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	})

	liveness := probe("/healthz", 10)
	// Readiness waits for the caches and the first policy Apply; startup on a
	// big cluster may take a while, so liveness starts later.
	liveness.InitialDelaySeconds = 30

	ds := &appsv1.DaemonSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
		ObjectMeta: meta,
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{LabelName: AgentName}},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
				Type:          appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &maxUnavailable},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					ServiceAccountName: ServiceAccountName,
					// The agent attaches to the node's network hooks and serves
					// on the node's loopback only.
					HostNetwork: true,
					DNSPolicy:   corev1.DNSClusterFirstWithHostNet,
					// Enforcement must run on every node, whatever its taints,
					// and be the last thing evicted under pressure.
					Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					PriorityClassName:             "system-node-critical",
					TerminationGracePeriodSeconds: &grace,
					NodeSelector:                  o.NodeSelector,
					InitContainers:                initContainers,
					Containers: []corev1.Container{{
						Name:            containerName,
						Image:           o.Image,
						ImagePullPolicy: corev1.PullIfNotPresent,
						Command:         []string{AgentBinary},
						Args:            o.agentArgs(),
						Env: []corev1.EnvVar{
							nodeEnv,
							{Name: EnvPodName, ValueFrom: fromField("metadata.name")},
							{Name: EnvPodNamespace, ValueFrom: fromField("metadata.namespace")},
							{Name: EnvMemoryLimit, ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
								ContainerName: containerName, Resource: "limits.memory"}}},
							// One processor for the Go runtime: the agent's work per
							// connection runs in sequence (event reader, flow-end
							// summaries), and more processors only add idle-processor
							// and thread hand-off cost (BenchmarkAgentAB, docs/perf.md:
							// 11-27 % less agent CPU per connection than with 2). Not a
							// CPU limit: throttling would stall the readers and the
							// policy applies.
							{Name: "GOMAXPROCS", Value: "1"},
						},
						SecurityContext: &corev1.SecurityContext{
							RunAsUser:                &root,
							ReadOnlyRootFilesystem:   &yes,
							AllowPrivilegeEscalation: &no,
							Capabilities: &corev1.Capabilities{
								Drop: []corev1.Capability{"ALL"},
								Add: []corev1.Capability{
									// BPF: load programs, create maps and pin them in
									// bpffs (bpf(2) without CAP_SYS_ADMIN).
									"BPF",
									// NET_ADMIN: attach netfilter links and tcx
									// programs, and delete the conntrack entries of
									// connections a policy change revokes (netlink).
									"NET_ADMIN",
									// PERFMON: the verifier lets programs read through
									// kernel pointers (the netfilter context's sk_buff
									// and its conntrack entry) only with it.
									"PERFMON",
								},
							},
							SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
						},
						// Propagation None: the init containers ran before this
						// container was created, so a bpffs mount-bpffs made is
						// already what this bind shows.
						// The CNI's configuration, read to tell which CNI the node
						// runs and so whether pod traffic passes the hooks.
						VolumeMounts: []corev1.VolumeMount{{Name: "bpffs", MountPath: "/sys/fs/bpf"},
							{Name: "history", MountPath: HistoryHostDir},
							{Name: "cni-conf", MountPath: CNIConfMountPath, ReadOnly: true}},
						LivenessProbe:  liveness,
						ReadinessProbe: probe("/readyz", 5),
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{
								corev1.ResourceCPU:    resource.MustParse("50m"),
								corev1.ResourceMemory: resource.MustParse("64Mi"),
							},
							Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
						},
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
					}},
					Volumes: []corev1.Volume{{
						Name: "bpffs",
						// Pins live on the host's bpffs so enforcement outlives
						// the pod (upgrade, crash) until uninstall removes them.
						VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/sys/fs/bpf", Type: &dirType}},
					}, {
						Name: "history",
						// The connection history outlives the pod (restart,
						// upgrade); only the agent writes here, and it empties
						// the directory when uninstalling.
						VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: HistoryHostDir, Type: &dirOrCreate}},
					}, {
						Name:         "cni-conf",
						VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/etc/cni/net.d"}},
					}},
				},
			},
		},
	}
	if o.OTLPEndpoint != "" && !o.OTLPInsecure && len(o.OTLPCA) > 0 {
		spec := &ds.Spec.Template.Spec
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "otlp-ca", VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: OTLPCAConfigMap}}}})
		agent := &spec.Containers[0]
		agent.VolumeMounts = append(agent.VolumeMounts, corev1.VolumeMount{Name: "otlp-ca", MountPath: otlpCADir, ReadOnly: true})
	}
	return ds
}
