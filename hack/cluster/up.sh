#!/usr/bin/env bash
# Brings up the test cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# containerd (Debian's, with its own config, root and socket), kubelet, kube-proxy (nftables
# mode) and CoreDNS (no upstream).
#   NODES=1: one node on the host, pods on bridge k8sbr0 (bridge CNI).
#   NODES=N (N >= 2, default 3): the control plane on the host; N nodes, each its own network + mount + UTS
#   namespace with containerd, kubelet, kube-proxy, flanneld (vxlan) and bpffs, joined by k8sbr0
#   as the underlay (hack/cluster/node.sh).
# bpffs is mounted on every node, as systemd does on most distributions (and unmounted again by
# down.sh where this script mounted it).
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
source "$(dirname "$0")/configs.sh"
source "$(dirname "$0")/node.sh"
require_root
[[ $NODES =~ ^[1-9]$ ]] || die "NODES=$NODES: use 1 to 9"

KUBECTL=("$BIN_DIR/kubectl" --kubeconfig "$STATE_DIR/admin.kubeconfig")
components=(etcd kube-apiserver kube-controller-manager kube-scheduler)
if ((NODES == 1)); then
  components+=(containerd kubelet kube-proxy)
else
  for i in $(seq "$NODES"); do for c in containerd kubelet kube-proxy flanneld; do components+=("$c@$(node_name "$i")"); done; done
fi

print_usage() {
  cat <<USAGE

The test cluster is up ($(nodes_summary), pods $POD_CIDR, services $SERVICE_CIDR).
  export KUBECONFIG=$KUBECONFIG_OUT
  export PATH=$REPO_ROOT/bin:$BIN_DIR:\$PATH   # kubectl and the kubectl-netpol plugin
  KUBECONFIG=$KUBECONFIG_OUT kubectl netpol explain <ns>/<src-pod> <ns>/<dst-pod> --port 3306
  KUBECONFIG=$KUBECONFIG_OUT kubectl get pods -A
Logs: $LOG_DIR   Tear down: make cluster-down
USAGE
}

nodes_summary() {
  if ((NODES == 1)); then echo "node $NODE_NAME"; else echo "$NODES nodes $(node_name 1)..$(node_name "$NODES"), flannel vxlan"; fi
}

healthy() {
  local c
  # The same shape as asked for: one node on the host, or NODES namespace nodes.
  if ((NODES == 1)); then ! multinode || return 1; else [[ -f $NODES_FILE && $(wc -l <"$NODES_FILE") == "$NODES" ]] || return 1; fi
  # The same mode: scale mode widens the cluster CIDR and raises limits at start.
  if [[ $SCALE == 1 ]]; then [[ -f $SCALE_FILE ]] || return 1; else [[ ! -f $SCALE_FILE ]] || return 1; fi
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
if [[ -e $STATE_DIR || -e $RUN_DIR ]] || ip link show "$BRIDGE" >/dev/null 2>&1 || multinode; then
  log "removing the leftovers of a previous cluster"
  "$(dirname "$0")/down.sh"
fi
t_start=$(date +%s.%N)
mkdir -p "$STATE_DIR" "$RUN_DIR" "$LOG_DIR" "$PID_DIR" "$(dirname "$KUBECONFIG_OUT")"
echo "$REPO_ROOT" >"$STATE_DIR/owner"
# Scale mode: room in etcd, in the API server and the controller-manager for 100k pods and 1k
# node leases (renewed every 50 s: kwok's lease is 200 s, so a node is declared unreachable
# only after 240 s without one).
etcd_scale=() apiserver_scale=() cm_scale=()
if [[ $SCALE == 1 ]]; then
  : >"$SCALE_FILE"
  etcd_scale=(--quota-backend-bytes=8589934592)
  apiserver_scale=(--max-requests-inflight=1000 --max-mutating-requests-inflight=500)
  cm_scale=(--kube-api-qps=200 --kube-api-burst=400 --node-monitor-grace-period=240s)
fi

# --- host settings, saved first so down.sh restores them ---------------------------------------
saved_sysctls=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
  kernel.panic kernel.panic_on_oops vm.overcommit_memory)
[[ -e /proc/sys/net/bridge ]] || modprobe br_netfilter 2>/dev/null || die "br_netfilter is missing: Services need net.bridge.bridge-nf-call-iptables"
# The agent's flow-end summaries count packets and bytes only with conntrack accounting on.
[[ ! -e /proc/sys/net/netfilter/nf_conntrack_acct ]] || saved_sysctls+=(net.netfilter.nf_conntrack_acct)
for s in "${saved_sysctls[@]}"; do echo "$s=$(sysctl -n "$s")"; done >"$SYSCTL_SAVE"
mkdir -p "$CACHE_DIR" && cp "$SYSCTL_SAVE" "$CACHE_DIR/sysctl.baseline"
[[ $(sysctl -n net.ipv4.ip_forward) == 0 ]] || log "WARNING: net.ipv4.ip_forward is 1 on this host (not changed by us)"

# --- bpffs: mounted on a real node by systemd; the agent (no CAP_SYS_ADMIN) cannot mount it ----
# On several nodes each node mounts its own (node.sh); on one node the host is the node.
if ((NODES == 1)) && ! mountpoint -q /sys/fs/bpf; then
  log "bpffs: mounting it at /sys/fs/bpf, as systemd does on a node (down.sh unmounts it)"
  mount -t bpf -o mode=0700 bpffs /sys/fs/bpf
  echo "/sys/fs/bpf" >"$STATE_DIR/bpffs-mounted"
fi

# --- network -----------------------------------------------------------------------------------
log "network: bridge $BRIDGE, guards"
ip link add "$BRIDGE" type bridge
((NODES > 1)) || ip addr add "$POD_GW/24" dev "$BRIDGE"
ip addr add "$NODE_IP/32" dev "$BRIDGE"
ip link set "$BRIDGE" up
sysctl -qw "net.ipv6.conf.$BRIDGE.disable_ipv6=1"
ip route add blackhole "$POD_CIDR"
ip route add blackhole "$NODE_NET"
[[ $SCALE != 1 ]] || ip route add blackhole "$SCALE_POD_CIDR"
if ((NODES == 1)); then
  # Forwarding only for packets entering from the bridge (IPv4 forwarding is per input device);
  # needed for pod -> ClusterIP -> pod, which the host routes back onto the bridge after DNAT.
  sysctl -qw "net.ipv4.conf.$BRIDGE.forwarding=1"
  sysctl -qw net.bridge.bridge-nf-call-iptables=1
  [[ ! -e /proc/sys/net/netfilter/nf_conntrack_acct ]] || sysctl -qw net.netfilter.nf_conntrack_acct=1
  # Host-originated ClusterIP traffic is DNATed by kube-proxy in OUTPUT; route it into the bridge.
  ip route add "$SERVICE_CIDR" dev "$BRIDGE" src "$NODE_IP"
else
  # No kube-proxy on the host: nothing here may send to a Service address.
  ip route add blackhole "$SERVICE_CIDR"
fi
iptables -w -N NETPOL-CLUSTER-GUARD
iptables -w -A NETPOL-CLUSTER-GUARD -s "$POD_CIDR" ! -d "$POD_CIDR" -j DROP
iptables -w -A NETPOL-CLUSTER-GUARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP
iptables -w -I FORWARD 1 -j NETPOL-CLUSTER-GUARD

if ((NODES == 1)); then
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
fi

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
  --unsafe-no-fsync --log-level warn "${etcd_scale[@]}"

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
  --cert-dir="$STATE_DIR/apiserver" --profiling=false "${apiserver_scale[@]}"

for _ in $(seq 120); do "${KUBECTL[@]}" get --raw /readyz >/dev/null 2>&1 && break; recorded_alive kube-apiserver || break; sleep 0.25; done
"${KUBECTL[@]}" get --raw /readyz >/dev/null 2>&1 || die "kube-apiserver not ready; see $LOG_DIR/kube-apiserver.log"

start_component kube-controller-manager "$BIN_DIR/kube-controller-manager" \
  --kubeconfig="$STATE_DIR/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$STATE_DIR/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$STATE_DIR/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --cert-dir="$STATE_DIR/controller-manager" \
  --allocate-node-cidrs --cluster-cidr="$CLUSTER_CIDR" --node-cidr-mask-size=24 --service-cluster-ip-range="$SERVICE_CIDR" \
  --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" \
  --root-ca-file="$P/ca.crt" --service-account-private-key-file="$P/sa.key" \
  --use-service-account-credentials --leader-elect=false --flex-volume-plugin-dir="$STATE_DIR/flexvolume" --profiling=false \
  "${cm_scale[@]}"
start_component kube-scheduler "$BIN_DIR/kube-scheduler" \
  --kubeconfig="$STATE_DIR/scheduler.kubeconfig" \
  --authentication-kubeconfig="$STATE_DIR/scheduler.kubeconfig" \
  --authorization-kubeconfig="$STATE_DIR/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --cert-dir="$STATE_DIR/scheduler" --leader-elect=false --profiling=false

echo "nameserver 127.0.0.1" >"$STATE_DIR/resolv.conf" # host-network DNS never leaves the machine
if ((NODES > 1)); then
  nodes_up
  # kubelet raises kernel.panic and kernel.panic_on_oops when it starts: put the host's back.
  grep -E '^kernel\.panic(_on_oops)?=' "$SYSCTL_SAVE" | while IFS='=' read -r k v; do sysctl -qw "$k=$v"; done
else
# --- containerd --------------------------------------------------------------------------------
log "containerd"
mkdir -p "$STATE_DIR/containerd" "$RUN_DIR/containerd"
containerd_config "$STATE_DIR/containerd.toml" "$STATE_DIR/containerd" "$RUN_DIR/containerd" "$CONTAINERD_SOCK" \
  "$STATE_DIR/containerd-opt" "$CNI_BIN_DIR" "$CNI_CONF_DIR" "$RUN_DIR/runc"
start_component containerd "$(command -v containerd)" --config "$STATE_DIR/containerd.toml"
for _ in $(seq 80); do [[ -S $CONTAINERD_SOCK ]] && break; sleep 0.25; done
[[ -S $CONTAINERD_SOCK ]] || die "containerd did not start; see $LOG_DIR/containerd.log"
"$(dirname "$0")/images.sh" import

# --- kubelet -----------------------------------------------------------------------------------
log "kubelet"
kubelet_config "$STATE_DIR/kubelet.yaml" "$NODE_IP" "$CONTAINERD_SOCK" kubelet-server "$STATE_DIR/pod-logs" "$STATE_DIR/volume-plugins"
start_component kubelet "$BIN_DIR/kubelet" --config="$STATE_DIR/kubelet.yaml" \
  --kubeconfig="$STATE_DIR/kubelet.kubeconfig" --root-dir="$STATE_DIR/kubelet" \
  --node-ip="$NODE_IP" --hostname-override="$NODE_NAME"

# --- kube-proxy --------------------------------------------------------------------------------
log "kube-proxy (nftables)"
kube_proxy_config "$STATE_DIR/kube-proxy.yaml" "$NODE_NAME" "$NODE_IP"
start_component kube-proxy "$BIN_DIR/kube-proxy" --config="$STATE_DIR/kube-proxy.yaml"

# --- node Ready, CoreDNS -----------------------------------------------------------------------
log "waiting for node $NODE_NAME Ready"
for _ in $(seq 120); do "${KUBECTL[@]}" get node "$NODE_NAME" >/dev/null 2>&1 && break; sleep 0.5; done
"${KUBECTL[@]}" wait --for=condition=Ready "node/$NODE_NAME" --timeout=90s >/dev/null
# kubelet raises kernel.panic and kernel.panic_on_oops when its container manager starts (before
# the node turns Ready): put the host's values back.
grep -E '^kernel\.panic(_on_oops)?=' "$SYSCTL_SAVE" | while IFS='=' read -r k v; do sysctl -qw "$k=$v"; done
fi
log "CoreDNS"
sed -e "s|@DNS_SVC_IP@|$DNS_SVC_IP|g" -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" -e "s|@CLUSTER_DOMAIN@|$CLUSTER_DOMAIN|g" \
  "$(dirname "$0")/coredns.yaml" | "${KUBECTL[@]}" apply -f - >/dev/null
"${KUBECTL[@]}" -n kube-system rollout status deployment/coredns --timeout=120s >/dev/null
# ClusterNetworkPolicy (sigs.k8s.io/network-policy-api): the experimental channel's CRD, as the
# module ships it (its bundle-version and channel annotations kept), so the agent, the CLI and the
# upstream CNP suite find the API. Server-side apply: no 144 kB last-applied annotation added.
log "ClusterNetworkPolicy CRD (network-policy-api $NETPOL_API_VERSION, experimental channel)"
npapi=$(cd "$CACHE_DIR" && GOFLAGS= ${GO:-go} mod download -json "sigs.k8s.io/network-policy-api@$NETPOL_API_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",\?$/\1/p')
[[ -d $npapi ]] || die "could not download sigs.k8s.io/network-policy-api@$NETPOL_API_VERSION"
"${KUBECTL[@]}" apply --server-side -f "$npapi/config/crd/experimental/policy.networking.k8s.io_clusternetworkpolicies.yaml" >/dev/null
"${KUBECTL[@]}" wait --for=condition=Established crd/clusternetworkpolicies.policy.networking.k8s.io --timeout=60s >/dev/null
install -m 600 "$STATE_DIR/admin.kubeconfig" "$KUBECONFIG_OUT"
"${KUBECTL[@]}" wait --for=create -n default serviceaccount/default --timeout=60s >/dev/null

t_end=$(date +%s.%N)
log "cluster up in $(awk "BEGIN{printf \"%.1f\", $t_end - $t_start}")s ($(awk "BEGIN{printf \"%.1f\", $t_end - $t0}")s with build and image checks)"
print_usage
