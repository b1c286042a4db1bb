package install

// Where the agent listens. It runs with hostNetwork and binds 127.0.0.1 only,
// so nothing is exposed on the node network: the CLI reaches the gRPC port
// through the API server's pods/portforward (Kubernetes RBAC is the access
// control), and the kubelet's probes reach the HTTP port on the node's
// loopback (httpGet with host 127.0.0.1).
const (
	// AgentGRPCPort serves flow.v1.Observer (flows and Status).
	AgentGRPCPort = 4245
	// AgentHTTPPort serves /healthz, /readyz and /metrics (Prometheus).
	AgentHTTPPort = 9965
)

// Environment variables the DaemonSet sets from the downward API, read by the
// agent to know its node and its own pod.
const (
	EnvNodeName     = "NODE_NAME"
	EnvPodName      = "POD_NAME"
	EnvPodNamespace = "POD_NAMESPACE"
	// EnvMemoryLimit is the agent container's memory limit in bytes: the
	// agent keeps its Go heap under a share of it (GOMEMLIMIT), so that
	// collection works harder before the kernel's OOM killer would.
	EnvMemoryLimit = "NETPOL_MEMORY_LIMIT"
)

// AgentBinary is the agent's path inside its image.
const AgentBinary = "/netpol-agent"

// Commands of the agent binary the DaemonSet's init containers run.
const (
	// PreflightCommand checks the node (bpffs at /sys/fs/bpf) before the
	// agent starts; it needs no privilege.
	PreflightCommand = "preflight"
	// MountBPFFSCommand mounts bpffs on the node when missing (install
	// --mount-bpffs).
	MountBPFFSCommand = "mount-bpffs"
)

// CNIConfMountPath is where the DaemonSet mounts the node's /etc/cni/net.d
// (read-only): the agent reads it to identify the CNI.
const CNIConfMountPath = "/host/etc/cni/net.d"

// ClusterPolicyCRD is the ClusterNetworkPolicy CRD, which the agent follows
// by name (it may be installed after the agent, or removed).
const ClusterPolicyCRD = "clusternetworkpolicies.policy.networking.k8s.io"
