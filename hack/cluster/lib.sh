# shellcheck shell=bash
# Shared settings of the local test cluster: pinned versions, paths, addresses.
# Sourced by every hack/cluster script; defines variables and helpers only.
#
# Variable names avoid the ETCD_ prefix on purpose: etcd reads every ETCD_*
# environment variable as configuration.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# Pinned component versions. Changing one rebuilds the binaries cache.
KUBE_VERSION=v1.37.2
KUBE_STAGING_VERSION=v0.37.2    # k8s.io/* staging modules published for KUBE_VERSION
ETCDSERVER_VERSION=v3.7.3
CRICTL_VERSION=v1.37.0
COREDNS_VERSION=v1.14.7

# Binaries cache (git-ignored). NETPOL_CLUSTER_CACHE moves it, e.g. to share it between clones.
CACHE_DIR="${NETPOL_CLUSTER_CACHE:-$REPO_ROOT/.cache/cluster}"
BIN_DIR="$CACHE_DIR/bin"
IMAGES_DIR="$CACHE_DIR/images"

# Cluster state lives at fixed machine-wide paths, not inside the clone: a cluster left behind by
# a killed run of another clone (CI uses a fresh one) is found and cleaned all the same.
STATE_DIR=/var/lib/netpol-cluster   # etcd data, kubelet root, containerd root, pki, logs
RUN_DIR=/run/netpol-cluster         # pid files, sockets, containerd state
PKI_DIR="$STATE_DIR/pki"
LOG_DIR="$STATE_DIR/logs"
PID_DIR="$RUN_DIR/pids"
CONTAINERD_SOCK="$RUN_DIR/containerd/containerd.sock"
CNI_CONF_DIR="$STATE_DIR/cni/net.d"
CNI_BIN_DIR=/usr/lib/cni             # Debian's containernetworking-plugins
SYSCTL_SAVE="$STATE_DIR/sysctl.saved"

# The admin kubeconfig users and tests point KUBECONFIG at (git-ignored).
KUBECONFIG_OUT="$REPO_ROOT/.cluster/kubeconfig"

# Network layout (reserved for this cluster; other tests must not use these names or ranges).
BRIDGE=k8sbr0
NODE_IP=10.250.0.1
NODE_NET=10.250.0.0/16
POD_CIDR=10.244.0.0/16
POD_GW=10.244.0.1
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SVC_IP=10.96.0.1
DNS_SVC_IP=10.96.0.10
CLUSTER_DOMAIN=cluster.local
# Where an agent installed in the cluster pins its datapath on this host (probe.DefaultPinRoot).
AGENT_PIN_ROOT=/sys/fs/bpf/netpol
NODE_NAME=netpol-node

# Local images (imported into containerd's k8s.io namespace, never pulled).
PAUSE_IMAGE=localhost/pause:local
NETPROBE_IMAGE=localhost/netprobe:local
COREDNS_IMAGE=localhost/coredns:local
# The agent image is tagged with this tree's version, as the plugin built from the same tree
# expects (`kubectl netpol install` defaults to AGENT_IMAGE_REPO:VERSION); the Makefile passes
# both so one build never mixes two versions.
VERSION=${VERSION:-$("$REPO_ROOT/hack/version.sh")}
AGENT_IMAGE_REPO=${AGENT_IMAGE_REPO:-localhost/kubectl-netpol/agent}
AGENT_IMAGE=$AGENT_IMAGE_REPO:$VERSION
VERSION_LDFLAGS="-X github.com/kubectl-netpol/kubectl-netpol/internal/version.version=$VERSION -X github.com/kubectl-netpol/kubectl-netpol/internal/version.agentImageRepository=$AGENT_IMAGE_REPO"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

require_root() { [[ $(id -u) == 0 ]] || die "this needs root (containerd, netns, nftables): run it with sudo"; }
