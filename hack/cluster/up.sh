#!/usr/bin/env bash
# Brings up the single-node test cluster: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, containerd (Debian's, with its own config, root and socket), kubelet,
# kube-proxy (nftables mode) and CoreDNS (no upstream), on bridge k8sbr0.
#
# Idempotent: a healthy cluster is left as is; leftovers of a killed one are removed first
# (hack/cluster/down.sh), so every run starts from a known state. Writes .cluster/kubeconfig.
#
# Network safety: pods get routes to the pod and service ranges only (no default route);
# net.ipv4.ip_forward stays 0 and forwarding is enabled on k8sbr0 alone; FORWARD drops anything
# leaving the bridge or the pod range; blackhole routes keep 10.244/16 and 10.250/16 on this
# machine; nothing is masqueraded to the outside; DNS has no upstream.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/proc.sh"
source "$(dirname "$0")/pki.sh"
require_root

KUBECTL=("$BIN_DIR/kubectl" --kubeconfig "$STATE_DIR/admin.kubeconfig")
components=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy)

print_usage() {
  cat <<USAGE

The test cluster is up (node $NODE_NAME, pods $POD_CIDR, services $SERVICE_CIDR).
  export KUBECONFIG=$KUBECONFIG_OUT
  export PATH=$REPO_ROOT/bin:$BIN_DIR:\$PATH   # kubectl and the kubectl-netpol plugin
  KUBECONFIG=$KUBECONFIG_OUT kubectl netpol explain <ns>/<src-pod> <ns>/<dst-pod> --port 3306
  KUBECONFIG=$KUBECONFIG_OUT kubectl get pods -A
Logs: $LOG_DIR   Tear down: make cluster-down
USAGE
}

healthy() {
  local c
  for c in "${components[@]}"; do recorded_alive "$c" || return 1; done
  "${KUBECTL[@]}" get --raw /readyz >/dev/null 2>&1 || return 1
  [[ -f $KUBECONFIG_OUT ]]
}

if healthy; then
  log "cluster already up and healthy; importing this tree's images (agent $AGENT_IMAGE)"
  "$(dirname "$0")/images.sh" import
  print_usage
  exit 0
fi

t0=$(date +%s.%N)
"$(dirname "$0")/build-binaries.sh"
"$(dirname "$0")/images.sh" build
if [[ -e $STATE_DIR || -e $RUN_DIR ]] || ip link show "$BRIDGE" >/dev/null 2>&1; then
  log "removing the leftovers of a previous cluster"
  "$(dirname "$0")/down.sh"
fi
t_start=$(date +%s.%N)
mkdir -p "$STATE_DIR" "$RUN_DIR" "$LOG_DIR" "$PID_DIR" "$(dirname "$KUBECONFIG_OUT")"
echo "$REPO_ROOT" >"$STATE_DIR/owner"

# --- host settings, saved first so down.sh restores them ---------------------------------------
saved_sysctls=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  kernel.panic kernel.panic_on_oops vm.overcommit_memory)
[[ -e /proc/sys/net/bridge ]] || modprobe br_netfilter 2>/dev/null || die "br_netfilter is missing: Services need net.bridge.bridge-nf-call-iptables"
# The agent's flow-end summaries count packets and bytes only with conntrack accounting on.
[[ ! -e /proc/sys/net/netfilter/nf_conntrack_acct ]] || saved_sysctls+=(net.netfilter.nf_conntrack_acct)
for s in "${saved_sysctls[@]}"; do echo "$s=$(sysctl -n "$s")"; done >"$SYSCTL_SAVE"
mkdir -p "$CACHE_DIR" && cp "$SYSCTL_SAVE" "$CACHE_DIR/sysctl.baseline"
[[ $(sysctl -n net.ipv4.ip_forward) == 0 ]] || log "WARNING: net.ipv4.ip_forward is 1 on this host (not changed by us)"

# --- network -----------------------------------------------------------------------------------
log "network: bridge $BRIDGE, guards"
ip link add "$BRIDGE" type bridge
ip addr add "$POD_GW/24" dev "$BRIDGE"
ip addr add "$NODE_IP/32" dev "$BRIDGE"
ip link set "$BRIDGE" up
sysctl -qw "net.ipv6.conf.$BRIDGE.disable_ipv6=1"
# Forwarding only for packets entering from the bridge (IPv4 forwarding is per input device);
# needed for pod -> ClusterIP -> pod, which the host routes back onto the bridge after DNAT.
sysctl -qw "net.ipv4.conf.$BRIDGE.forwarding=1"
sysctl -qw net.bridge.bridge-nf-call-iptables=1
[[ ! -e /proc/sys/net/netfilter/nf_conntrack_acct ]] || sysctl -qw net.netfilter.nf_conntrack_acct=1
ip route add blackhole "$POD_CIDR"
ip route add blackhole "$NODE_NET"
# Host-originated ClusterIP traffic is DNATed by kube-proxy in OUTPUT; route it into the bridge.
ip route add "$SERVICE_CIDR" dev "$BRIDGE" src "$NODE_IP"
iptables -w -N NETPOL-CLUSTER-GUARD
iptables -w -A NETPOL-CLUSTER-GUARD -s "$POD_CIDR" ! -d "$POD_CIDR" -j DROP
iptables -w -A NETPOL-CLUSTER-GUARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP
iptables -w -I FORWARD 1 -j NETPOL-CLUSTER-GUARD

mkdir -p "$CNI_CONF_DIR" "$STATE_DIR/cni/ipam" "$STATE_DIR/cni/cache"
cat >"$CNI_CONF_DIR/10-netpol.conflist" <<CNI
{
  "cniVersion": "0.4.0",
  "name": "netpol-cluster",
  "plugins": [{
    "type": "bridge",
    "bridge": "$BRIDGE",
    "isGateway": false,
    "isDefaultGateway": false,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "dataDir": "$STATE_DIR/cni/ipam",
      "ranges": [[{"subnet": "${POD_CIDR%.0.0/16}.0.0/24", "gateway": "$POD_GW"}]],
      "routes": [{"dst": "$SERVICE_CIDR", "gw": "$POD_GW"}]
    }
  }]
}
CNI

# --- certificates, kubeconfigs -----------------------------------------------------------------
log "pki"
make_pki
for c in admin controller-manager scheduler kube-proxy kubelet; do kubeconfig "$STATE_DIR/$c.kubeconfig" "$c"; done

# --- etcd, control plane -----------------------------------------------------------------------
log "etcd, control plane"
start_component etcd "$BIN_DIR/etcd" --name netpol --data-dir "$STATE_DIR/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster netpol=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
  --unsafe-no-fsync --log-level warn

P=$PKI_DIR
start_component kube-apiserver "$BIN_DIR/kube-apiserver" \
  --etcd-servers=http://127.0.0.1:2379 \
  --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port=6443 \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --authorization-mode=Node,RBAC --allow-privileged=true --enable-admission-plugins=NodeRestriction \
  --client-ca-file="$P/ca.crt" --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
  --kubelet-client-certificate="$P/apiserver-kubelet-client.crt" --kubelet-client-key="$P/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$P/ca.crt" --kubelet-preferred-address-types=InternalIP \
  --service-account-issuer="https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --requestheader-client-ca-file="$P/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="$P/front-proxy-client.crt" --proxy-client-key-file="$P/front-proxy-client.key" \
  --cert-dir="$STATE_DIR/apiserver" --profiling=false

for _ in $(seq 120); do "${KUBECTL[@]}" get --raw /readyz >/dev/null 2>&1 && break; recorded_alive kube-apiserver || break; sleep 0.25; done
"${KUBECTL[@]}" get --raw /readyz >/dev/null 2>&1 || die "kube-apiserver not ready; see $LOG_DIR/kube-apiserver.log"

start_component kube-controller-manager "$BIN_DIR/kube-controller-manager" \
  --kubeconfig="$STATE_DIR/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$STATE_DIR/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$STATE_DIR/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --cert-dir="$STATE_DIR/controller-manager" \
  --allocate-node-cidrs --cluster-cidr="$POD_CIDR" --node-cidr-mask-size=24 --service-cluster-ip-range="$SERVICE_CIDR" \
  --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" \
  --root-ca-file="$P/ca.crt" --service-account-private-key-file="$P/sa.key" \
  --use-service-account-credentials --leader-elect=false --flex-volume-plugin-dir="$STATE_DIR/flexvolume" --profiling=false
start_component kube-scheduler "$BIN_DIR/kube-scheduler" \
  --kubeconfig="$STATE_DIR/scheduler.kubeconfig" \
  --authentication-kubeconfig="$STATE_DIR/scheduler.kubeconfig" \
  --authorization-kubeconfig="$STATE_DIR/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --cert-dir="$STATE_DIR/scheduler" --leader-elect=false --profiling=false

# --- containerd --------------------------------------------------------------------------------
log "containerd"
mkdir -p "$STATE_DIR/containerd" "$RUN_DIR/containerd"
cat >"$STATE_DIR/containerd.toml" <<TOML
version = 2
root = "$STATE_DIR/containerd"
state = "$RUN_DIR/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE_DIR/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Required here: this VM lacks CAP_SYS_RESOURCE; without it runc fails every sandbox.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$CNI_CONF_DIR"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$RUN_DIR/runc"
TOML
start_component containerd "$(command -v containerd)" --config "$STATE_DIR/containerd.toml"
for _ in $(seq 80); do [[ -S $CONTAINERD_SOCK ]] && break; sleep 0.25; done
[[ -S $CONTAINERD_SOCK ]] || die "containerd did not start; see $LOG_DIR/containerd.log"
"$(dirname "$0")/images.sh" import

# --- kubelet -----------------------------------------------------------------------------------
log "kubelet"
echo "nameserver 127.0.0.1" >"$STATE_DIR/resolv.conf" # host-network DNS never leaves the machine
cat >"$STATE_DIR/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
address: $NODE_IP
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $P/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $P/kubelet-server.crt
tlsPrivateKeyFile: $P/kubelet-server.key
clusterDNS: [$DNS_SVC_IP]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: $STATE_DIR/resolv.conf
podLogsDir: $STATE_DIR/pod-logs
volumePluginDir: $STATE_DIR/volume-plugins
failSwapOn: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
serializeImagePulls: false
YAML
start_component kubelet "$BIN_DIR/kubelet" --config="$STATE_DIR/kubelet.yaml" \
  --kubeconfig="$STATE_DIR/kubelet.kubeconfig" --root-dir="$STATE_DIR/kubelet" \
  --node-ip="$NODE_IP" --hostname-override="$NODE_NAME"

# --- kube-proxy --------------------------------------------------------------------------------
log "kube-proxy (nftables)"
cat >"$STATE_DIR/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection: {kubeconfig: $STATE_DIR/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32"]
# 0 = leave the host's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s, udpTimeout: 0s, udpStreamTimeout: 0s}
YAML
start_component kube-proxy "$BIN_DIR/kube-proxy" --config="$STATE_DIR/kube-proxy.yaml"

# --- node Ready, CoreDNS -----------------------------------------------------------------------
log "waiting for node $NODE_NAME Ready"
for _ in $(seq 120); do "${KUBECTL[@]}" get node "$NODE_NAME" >/dev/null 2>&1 && break; sleep 0.5; done
"${KUBECTL[@]}" wait --for=condition=Ready "node/$NODE_NAME" --timeout=90s >/dev/null
# kubelet raises kernel.panic and kernel.panic_on_oops when its container manager starts (before
# the node turns Ready): put the host's values back.
grep -E '^kernel\.panic(_on_oops)?=' "$SYSCTL_SAVE" | while IFS='=' read -r k v; do sysctl -qw "$k=$v"; done
log "CoreDNS"
sed -e "s|@DNS_SVC_IP@|$DNS_SVC_IP|g" -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" -e "s|@CLUSTER_DOMAIN@|$CLUSTER_DOMAIN|g" \
  "$(dirname "$0")/coredns.yaml" | "${KUBECTL[@]}" apply -f - >/dev/null
"${KUBECTL[@]}" -n kube-system rollout status deployment/coredns --timeout=120s >/dev/null
install -m 600 "$STATE_DIR/admin.kubeconfig" "$KUBECONFIG_OUT"
"${KUBECTL[@]}" wait --for=create -n default serviceaccount/default --timeout=60s >/dev/null

t_end=$(date +%s.%N)
log "cluster up in $(awk "BEGIN{printf \"%.1f\", $t_end - $t_start}")s ($(awk "BEGIN{printf \"%.1f\", $t_end - $t0}")s with build and image checks)"
print_usage
