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
FLANNEL_VERSION=v0.28.10       # flanneld (multi-node pod network, vxlan)
CNI_FLANNEL_VERSION=v0.9.1      # the flannel CNI plugin (containernetworking/plugins, last release with it)
# Upstream conformance suites (hack/cluster/build-conformance.sh, hack/conformance.sh).
NETPOL_API_VERSION=v0.3.0       # sigs.k8s.io/network-policy-api: ClusterNetworkPolicy CRDs and suite
CNP_AGNHOST_TAG=2.45            # the agnhost its suite runs...
CNP_AGNHOST_KUBE_VERSION=v1.29.0  # ...built from this release's test/images/agnhost (VERSION 2.45)
KUBE_ROUTER_VERSION=v2.1.0      # the peer enforcer of make bench-peers-datapath (hack/cluster/build-peers.sh)

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
# Where an agent keeps its connection history on this host (install.HistoryHostDir): the nodes
# share the host's filesystem, so without removing it a new cluster reads the last one's history.
AGENT_HISTORY_ROOT=/var/lib/kubectl-netpol
NODE_NAME=netpol-node

# Several nodes (NODES >= 2, the default 3; hack/cluster/node.sh): the control plane stays on the host, bound to
# NODE_IP on $BRIDGE, which then only joins the nodes (the underlay). Node I (1..NODES) is a
# network + mount + UTS namespace named netpol-node-I with address 10.250.0.(10+I) on its eth0 and
# its own containerd, kubelet, kube-proxy, flanneld (vxlan) and bpffs; pods get the node's
# podCIDR from the flannel CNI plugin. The namespace files live in a private bind mount of our
# own (not /run/netns: see notes/multinode.md).
NODES=${NODES:-3}
NODE_NS_DIR=$RUN_DIR/ns
NODES_FILE=$STATE_DIR/nodes.list   # "NAME IP" per node of a running multi-node cluster
NODES_OUT="$REPO_ROOT/.cluster/nodes"  # the same plus namespace files, for tests (git-ignored)
HOST_MOUNTPOINTS=$STATE_DIR/host-mountpoints  # mount-point dirs node set-up created on the host
CNI_MULTI_BIN_DIR=$STATE_DIR/cni-bin  # Debian's plugins plus flannel
FLANNEL_CONF=$STATE_DIR/flannel-net-conf.json
node_name() { echo "netpol-node-$1"; }
node_ip() { echo "10.250.0.$((10 + $1))"; }
node_link() { echo "k8sn$1"; }          # the host end of node I's veth, on $BRIDGE
# node_exec NAME CMD...: run CMD in node NAME's network, mount and UTS namespaces. (Not
# `ip netns exec`: it remounts /sys, hiding the node's cgroups and bpffs.)
node_exec() {
  local n=$1
  shift
  nsenter --net="$NODE_NS_DIR/$n.net" --mount="$NODE_NS_DIR/$n.mnt" --uts="$NODE_NS_DIR/$n.uts" -- "$@"
}
# multinode: true while a multi-node cluster (or its leftovers) is on the machine.
multinode() { [[ -f $NODES_FILE || -d $NODE_NS_DIR ]]; }

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
# The same agent stamped as the next version: the e2e upgrade rolls the DaemonSet to it.
AGENT_UPGRADE_VERSION=$VERSION-upgrade
AGENT_UPGRADE_IMAGE=$AGENT_IMAGE_REPO:$AGENT_UPGRADE_VERSION

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

require_root() { [[ $(id -u) == 0 ]] || die "this needs root (containerd, netns, nftables): run it with sudo"; }
