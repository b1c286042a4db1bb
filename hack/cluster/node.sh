# shellcheck shell=bash
# The nodes of the multi-node test cluster (NODES >= 2). Sourced by up.sh and down.sh after
# lib.sh, proc.sh and pki.sh. Facts behind every step: notes/multinode.md.
#
# A node is three namespaces (network, mount, UTS) pinned by files in $NODE_NS_DIR. Inside it:
# its own containerd, kubelet, kube-proxy (nftables), flanneld (vxlan, --ip-masq) and bpffs, like
# a real node; tmpfs over every path kubelet, containerd and CNI hard-code, so nodes never share
# state. Its eth0 is a veth on $BRIDGE, the underlay that also carries the control plane's
# address. Network safety as on one node: no default route anywhere (host, nodes, pods), no NAT
# to the outside (flannel masquerades only what leaves the pod range, and nothing leaves the
# nodes), host routes only for the node addresses and pod subnets, inside the /16 blackholes.

# Paths kubelet, containerd and CNI use whatever their flags say; each node gets its own tmpfs.
NODE_TMPFS=(/run/netns /run/flannel /run/containerd /var/lib/cni /var/lib/kubelet /var/log/containers /var/log/pods)

# node_namespaces NAME: create the node's namespaces and its private mounts.
node_namespaces() {
  local n=$1 d
  if ! mountpoint -q "$NODE_NS_DIR"; then
    mkdir -p "$NODE_NS_DIR"
    mount --bind "$NODE_NS_DIR" "$NODE_NS_DIR"
    mount --make-private "$NODE_NS_DIR"
  fi
  # Mount points created on the host for the node's tmpfs: recorded, removed at teardown.
  for d in "${NODE_TMPFS[@]}"; do
    [[ -e $d ]] || { mkdir -p "$d" && echo "$d" >>"$HOST_MOUNTPOINTS"; }
  done
  touch "$NODE_NS_DIR/$n.net" "$NODE_NS_DIR/$n.mnt" "$NODE_NS_DIR/$n.uts"
  # shellcheck disable=SC2016
  unshare --net="$NODE_NS_DIR/$n.net" --mount="$NODE_NS_DIR/$n.mnt" --uts="$NODE_NS_DIR/$n.uts" --propagation slave \
    bash -euc '
      hostname "$1"
      # The copies of the other nodes namespace files, and the hosts bpffs if it has one:
      # hidden mounts show up as their parents go, so repeat until none is left.
      for _ in 1 2 3 4 5; do umount -l "$2" 2>/dev/null || break; done
      for _ in 1 2 3 4 5; do mountpoint -q /sys/fs/bpf || break; umount -l /sys/fs/bpf; done
      shift 2
      for d in "$@"; do mount -t tmpfs -o mode=0755 "netpol-node" "$d"; done
      # What systemd does on a real node: bpffs mounted, and mounts shared within the node (so
      # mountPropagation Bidirectional works there, as on a real node).
      mount -t bpf -o mode=0700 bpffs /sys/fs/bpf
      mount --make-rshared /
    ' node-init "$n" "$NODE_NS_DIR" "${NODE_TMPFS[@]}"
}

# node_network I: the node's eth0 on the underlay, its sysctls, the host's routes to it.
node_network() {
  local i=$1 n ip link
  n=$(node_name "$i") ip=$(node_ip "$i") link=$(node_link "$i")
  ip link add "$link" type veth peer name "${link}p"
  ip link set "${link}p" netns "$NODE_NS_DIR/$n.net"
  ip link set "$link" master "$BRIDGE" up
  node_exec "$n" bash -euc '
    ip link set lo up
    ip link set "$1" name eth0
    ip addr add "$2/24" dev eth0
    ip link set eth0 up
    # Host-network processes (the agent, flanneld) reach Services: a route is chosen before
    # kube-proxy DNATs them (a real node has its default route). Un-DNATed, they die in the
    # host blackhole.
    ip route add "$3" via "$4" dev eth0
    # Per network namespace: this node forwards for its pods; the host keeps ip_forward=0.
    sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
    [[ ! -e /proc/sys/net/netfilter/nf_conntrack_acct ]] || sysctl -qw net.netfilter.nf_conntrack_acct=1
  ' node-net "${link}p" "$ip" "$SERVICE_CIDR" "$NODE_IP"
  ip route add "$ip/32" dev "$BRIDGE" src "$NODE_IP"
}

# node_cgroups NAME: kubelet's cgroupRoot, made in every v1 controller (cpuset filled from its parent).
node_cgroups() {
  local n=$1 c
  for c in /sys/fs/cgroup/*/; do
    [[ -d $c ]] || continue
    mkdir -p "$c$n"
    if [[ -f ${c}cpuset.cpus ]]; then
      cat "${c}cpuset.cpus" >"$c$n/cpuset.cpus"
      cat "${c}cpuset.mems" >"$c$n/cpuset.mems"
    fi
  done
}

# node_configs I: containerd, kubelet, kube-proxy and CNI configuration of node I.
node_configs() {
  local i=$1 n ip nd nr
  n=$(node_name "$i") ip=$(node_ip "$i") nd=$STATE_DIR/nodes/$(node_name "$i") nr=$RUN_DIR/nodes/$(node_name "$i")
  mkdir -p "$nd/containerd" "$nd/cni/net.d" "$nr/containerd"
  node_pki "$n" "$ip"
  kubeconfig "$nd/kubelet.kubeconfig" "kubelet-$n"
  containerd_config "$nd/containerd.toml" "$nd/containerd" "$nr/containerd" "$nr/containerd.sock" \
    "$nd/containerd-opt" "$CNI_MULTI_BIN_DIR" "$nd/cni/net.d" "$nr/runc"
  # The flannel plugin delegates to bridge with the node's subnet from flanneld. ipMasq false:
  # the v0.9.1 plugin would otherwise set the opposite of flanneld's --ip-masq and masquerade
  # pod-to-pod traffic. No default route in pods: routes to the pod range (flannel adds it), the
  # service and the node ranges only.
  cat >"$nd/cni/net.d/10-flannel.conflist" <<CNI
{
  "cniVersion": "0.3.1",
  "name": "netpol-flannel",
  "plugins": [
    {
      "type": "flannel",
      "subnetFile": "/run/flannel/subnet.env",
      "dataDir": "/var/lib/cni/flannel",
      "delegate": {
        "hairpinMode": true,
        "isGateway": true,
        "isDefaultGateway": false,
        "ipMasq": false
      },
      "ipam": {
        "routes": [{"dst": "$SERVICE_CIDR"}, {"dst": "$NODE_NET"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CNI
  kubelet_config "$nd/kubelet.yaml" "$ip" "$nr/containerd.sock" "kubelet-server-$n" "$nd/pod-logs" "$nd/volume-plugins" "/$n"
  kube_proxy_config "$nd/kube-proxy.yaml" "$n" "$ip"
}

# node_start_runtime I: containerd and kubelet of node I.
node_start_runtime() {
  local i=$1 n nd nr
  n=$(node_name "$i") nd=$STATE_DIR/nodes/$(node_name "$i") nr=$RUN_DIR/nodes/$(node_name "$i")
  IN_NODE=$n start_component "containerd@$n" "$(command -v containerd)" --config "$nd/containerd.toml"
  for _ in $(seq 80); do [[ -S $nr/containerd.sock ]] && break; sleep 0.25; done
  [[ -S $nr/containerd.sock ]] || die "containerd of $n did not start; see $LOG_DIR/containerd@$n.log"
  node_start_kubelet "$i"
}

node_start_kubelet() {
  local n nd
  n=$(node_name "$1") nd=$STATE_DIR/nodes/$(node_name "$1")
  IN_NODE=$n start_component "kubelet@$n" "$BIN_DIR/kubelet" --config="$nd/kubelet.yaml" \
    --kubeconfig="$nd/kubelet.kubeconfig" --root-dir="$nd/kubelet" \
    --node-ip="$(node_ip "$1")" --hostname-override="$n"
}

node_start_flanneld() {
  local n
  n=$(node_name "$1")
  ENV_VARS="NODE_NAME=$n" IN_NODE=$n start_component "flanneld@$n" "$BIN_DIR/flanneld" \
    --kube-subnet-mgr --kubeconfig-file="$STATE_DIR/flannel.kubeconfig" --iface=eth0 --ip-masq \
    --net-config-path="$FLANNEL_CONF" --subnet-file=/run/flannel/subnet.env
}

node_start_kube_proxy() {
  local n
  n=$(node_name "$1")
  IN_NODE=$n start_component "kube-proxy@$n" "$BIN_DIR/kube-proxy" --config="$STATE_DIR/nodes/$n/kube-proxy.yaml"
}

# node_start_network I: flanneld (once the node has its podCIDR) and kube-proxy of node I.
node_start_network() {
  local i=$1 n cidr
  n=$(node_name "$i")
  for _ in $(seq 120); do
    cidr=$("${KUBECTL[@]}" get node "$n" -o jsonpath='{.spec.podCIDR}' 2>/dev/null) && [[ -n $cidr ]] && break
    sleep 0.25
  done
  [[ -n $cidr ]] || die "node $n got no podCIDR; see $LOG_DIR/kubelet@$n.log and kube-controller-manager.log"
  node_start_flanneld "$i"
  node_start_kube_proxy "$i"
  # The host reaches the node's pods through the node (tests dial pod addresses from the host).
  ip route add "$cidr" via "$(node_ip "$i")" dev "$BRIDGE"
  echo "$cidr" >"$STATE_DIR/nodes/$n/podcidr"
}

# nodes_common: what every node shares (CNI binaries, flannel's network config and RBAC).
nodes_common() {
  mkdir -p "$CNI_MULTI_BIN_DIR"
  local p
  for p in "$CNI_BIN_DIR"/*; do ln -sf "$p" "$CNI_MULTI_BIN_DIR/"; done
  install -m 0755 "$BIN_DIR/cni/flannel" "$CNI_MULTI_BIN_DIR/flannel"
  printf '{"Network": "%s", "Backend": {"Type": "vxlan"}}\n' "$POD_CIDR" >"$FLANNEL_CONF"
  kubeconfig "$STATE_DIR/flannel.kubeconfig" flannel
  "${KUBECTL[@]}" apply -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "netpol:flannel"}
rules:
- {apiGroups: [""], resources: [nodes], verbs: [get, list, watch, patch]}
- {apiGroups: [""], resources: [nodes/status], verbs: [patch]}
- {apiGroups: [""], resources: [pods], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "netpol:flannel"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "netpol:flannel"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "netpol:flannel"}]
YAML
}

# nodes_up: bring up nodes 1..NODES and wait for them Ready with flannel's subnet in place.
nodes_up() {
  local i n
  nodes_common
  mkdir -p "$(dirname "$NODES_OUT")"
  : >"$NODES_FILE"
  for i in $(seq "$NODES"); do
    n=$(node_name "$i")
    log "node $n ($(node_ip "$i")): namespaces, network, containerd, kubelet"
    echo "$n $(node_ip "$i")" >>"$NODES_FILE"
    node_namespaces "$n"
    node_network "$i"
    node_cgroups "$n"
    node_configs "$i"
    node_start_runtime "$i"
  done
  images_import
  for i in $(seq "$NODES"); do node_start_network "$i"; done
  for i in $(seq "$NODES"); do
    n=$(node_name "$i")
    for _ in $(seq 120); do node_exec "$n" test -s /run/flannel/subnet.env && break; sleep 0.25; done
    node_exec "$n" test -s /run/flannel/subnet.env || die "flanneld on $n wrote no subnet file; see $LOG_DIR/flanneld@$n.log"
  done
  log "waiting for nodes Ready"
  for i in $(seq "$NODES"); do "${KUBECTL[@]}" wait --for=condition=Ready "node/$(node_name "$i")" --timeout=90s >/dev/null; done
  {
    echo "# name ip netns-file mntns-file utsns-file (hack/cluster/node.sh; for tests)"
    for i in $(seq "$NODES"); do
      n=$(node_name "$i")
      echo "$n $(node_ip "$i") $NODE_NS_DIR/$n.net $NODE_NS_DIR/$n.mnt $NODE_NS_DIR/$n.uts"
    done
  } >"$NODES_OUT"
}

# images_import: this tree's images into every node's containerd.
images_import() { "$REPO_ROOT/hack/cluster/images.sh" import; }

# node_down NAME: remove node NAME and every trace of it; works on a crashed node too.
node_down() {
  local n=$1 nd=$STATE_DIR/nodes/$1 nr=$RUN_DIR/nodes/$1 c
  local have_ns=0
  [[ -e $NODE_NS_DIR/$n.mnt ]] && mountpoint -q "$NODE_NS_DIR/$n.mnt" 2>/dev/null && have_ns=1
  for c in kubelet kube-proxy flanneld; do stop_component "$c@$n"; done
  if ((have_ns)) && [[ -f $nd/containerd.toml && -x $BIN_DIR/crictl ]]; then
    if ! recorded_alive "containerd@$n"; then
      rm -f "$nr/containerd.sock"
      IN_NODE=$n start_component "containerd@$n" "$(command -v containerd)" --config "$nd/containerd.toml"
      for _ in $(seq 80); do [[ -S $nr/containerd.sock ]] && break; sleep 0.25; done
    fi
    if [[ -S $nr/containerd.sock ]]; then
      local cr=("$BIN_DIR/crictl" --runtime-endpoint "unix://$nr/containerd.sock" --image-endpoint "unix://$nr/containerd.sock" --timeout 20s)
      # shellcheck disable=SC2046
      node_exec "$n" "${cr[@]}" stopp $(node_exec "$n" "${cr[@]}" pods -q 2>/dev/null) >/dev/null 2>&1 || true
      node_exec "$n" "${cr[@]}" rmp -a -f >/dev/null 2>&1 || log "crictl rmp on $n failed; removing what is left by hand"
    fi
  fi
  stop_component "containerd@$n"
  # Shims of this node's containerd and its pods' processes.
  local pids sig
  for sig in TERM KILL; do
    pids=$({
      for p in /proc/[0-9]*; do tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "$nr/" && echo "${p#/proc/}"; done
      find /sys/fs/cgroup/*/"$n" -name cgroup.procs -exec cat {} + 2>/dev/null
      true
    } | sort -u | grep -v "^$$\$" || true)
    [[ -z $pids ]] && break
    log "signalling leftover processes of $n ($sig): $(echo $pids)"
    kill -"$sig" $pids 2>/dev/null || true
    sleep 1
  done
  for c in /sys/fs/cgroup/*/"$n"; do [[ -d $c ]] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null; done
  # The namespaces go with their last file (and the veth, flannel.1, cni0 and the mounts with them).
  local f
  for f in net mnt uts; do
    umount "$NODE_NS_DIR/$n.$f" 2>/dev/null || umount -l "$NODE_NS_DIR/$n.$f" 2>/dev/null || true
    rm -f "$NODE_NS_DIR/$n.$f"
  done
  local i=${n##*-}
  ip link delete "$(node_link "$i")" 2>/dev/null || true
  while ip route del "$(node_ip "$i")/32" 2>/dev/null; do :; done
  [[ -f $nd/podcidr ]] && while ip route del "$(cat "$nd/podcidr")" 2>/dev/null; do :; done
  rm -rf "$nd" "$nr"
}

# nodes_down: every node of the multi-node cluster, then what they shared on the host.
nodes_down() {
  local n
  for f in "$NODE_NS_DIR"/*.mnt "$STATE_DIR"/nodes/*/; do
    [[ -e $f ]] || continue
    n=$(basename "${f%.mnt}")
    [[ $n == netpol-node-* ]] && echo "$n"
  done | sort -u | while read -r n; do node_down "$n"; done
  # Pod subnets routed to nodes whose state is gone (a killed bring-up).
  ip route show | awk -v cidr="${POD_CIDR%.0.0/16}." '$1 ~ "^"cidr && $2 == "via" {print $1}' | while read -r r; do ip route del "$r" 2>/dev/null || true; done
  if mountpoint -q "$NODE_NS_DIR" 2>/dev/null; then umount "$NODE_NS_DIR" 2>/dev/null || umount -l "$NODE_NS_DIR"; fi
  rm -rf "$NODE_NS_DIR" "$NODES_FILE" "$NODES_OUT"
  if [[ -f $HOST_MOUNTPOINTS ]]; then
    sort -ru "$HOST_MOUNTPOINTS" | while read -r d; do rmdir "$d" 2>/dev/null || true; done
    rm -f "$HOST_MOUNTPOINTS"
  fi
}
