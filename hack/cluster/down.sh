#!/usr/bin/env bash
# Tears the test cluster down and removes every trace, then runs check.sh.
# Works on a healthy cluster and on the leftovers of a crashed one (SIGKILLed kubelet or
# containerd, a killed session): pod sandboxes are removed through CRI so the CNI DEL runs
# (containerd is restarted for that when it died), then processes, mounts, network namespaces,
# links, routes, nftables/iptables chains, cgroups and host paths are removed and the host's
# sysctls restored. Only recorded PIDs and processes of this cluster's own containerd socket and
# kubepods cgroups are ever signalled.
#
#   hack/cluster/down.sh [--no-check]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/proc.sh"
source "$(dirname "$0")/pki.sh"
source "$(dirname "$0")/configs.sh"
source "$(dirname "$0")/node.sh"
require_root
t0=$(date +%s.%N)

crictl_() { "$BIN_DIR/crictl" --runtime-endpoint "unix://$CONTAINERD_SOCK" --image-endpoint "unix://$CONTAINERD_SOCK" --timeout 20s "$@"; }

# 1. Stop the node agents first so nothing recreates pods meanwhile.
for c in kubelet kube-proxy kube-scheduler kube-controller-manager; do stop_component "$c"; done
# Several nodes: each node's components, pods, namespaces, links and routes (node.sh).
if multinode || compgen -G "$STATE_DIR/nodes/*/" >/dev/null; then nodes_down; fi

# 2. Pod sandboxes through CRI: stopping a sandbox runs the CNI DEL (veth, IPAM, netns).
if [[ -f $STATE_DIR/containerd.toml && -x $BIN_DIR/crictl ]]; then
  if ! recorded_alive containerd; then
    log "containerd is not running: starting it to remove the pod sandboxes through CRI"
    rm -f "$CONTAINERD_SOCK"
    start_component containerd "$(command -v containerd)" --config "$STATE_DIR/containerd.toml"
    for _ in $(seq 80); do [[ -S $CONTAINERD_SOCK ]] && break; sleep 0.25; done
  fi
  if [[ -S $CONTAINERD_SOCK ]]; then
    crictl_ stopp $(crictl_ pods -q 2>/dev/null) >/dev/null 2>&1 || true
    crictl_ rmp -a -f >/dev/null 2>&1 || log "crictl rmp failed; removing what is left by hand"
  fi
fi
stop_component containerd
for c in kube-apiserver etcd; do stop_component "$c"; done

# 3. Processes left by a crash: shims of this cluster's containerd and whatever runs in the
#    kubepods cgroups (pod processes). Both belong to this cluster alone.
our_procs() {
  local p
  for p in /proc/[0-9]*; do
    tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "$CONTAINERD_SOCK" && echo "${p#/proc/}"
  done
  find /sys/fs/cgroup -path '*/kubepods*' -name cgroup.procs -exec cat {} + 2>/dev/null
  true
}
for sig in TERM KILL; do
  pids=$(our_procs | sort -u | grep -v "^$$\$" || true)
  [[ -z $pids ]] && break
  log "signalling leftover processes ($sig): $(echo $pids)"
  kill -"$sig" $pids 2>/dev/null || true
  sleep 1
done

# 4. Mounts under the cluster's paths, deepest first (pod volumes, rootfs, netns, shm).
mounts() {
  awk '{print $5}' /proc/self/mountinfo | grep -E "^($STATE_DIR|$RUN_DIR|/run/containerd|/var/lib/kubelet|/run/netns/cni-|/var/run/netns/cni-)" | sort -r
}
for _ in 1 2 3; do
  m=$(mounts || true)
  [[ -z $m ]] && break
  while read -r mp; do umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true; done <<<"$m"
done

# 5. Network namespaces made by the CNI for pods, then links and routes.
for ns in /run/netns/cni-*; do [[ -e $ns ]] && { ip netns delete "${ns##*/}" 2>/dev/null || rm -f "$ns"; }; done
if ip link show "$BRIDGE" >/dev/null 2>&1; then
  for l in $(ip -o link show master "$BRIDGE" | awk -F': ' '{print $2}' | cut -d@ -f1); do ip link delete "$l" 2>/dev/null || true; done
  ip link delete "$BRIDGE"
fi
for r in "blackhole $POD_CIDR" "blackhole $NODE_NET" "blackhole $SERVICE_CIDR" "$SERVICE_CIDR"; do
  while ip route del $r 2>/dev/null; do :; done
done

# 6. Firewall: our guard chain, kube-proxy's nftables tables, any KUBE-* chain (kubelet's).
if iptables -w -C FORWARD -j NETPOL-CLUSTER-GUARD 2>/dev/null; then
  while iptables -w -D FORWARD -j NETPOL-CLUSTER-GUARD 2>/dev/null; do :; done
fi
iptables -w -F NETPOL-CLUSTER-GUARD 2>/dev/null && iptables -w -X NETPOL-CLUSTER-GUARD 2>/dev/null || true
for fam in ip ip6 inet; do nft delete table "$fam" kube-proxy 2>/dev/null || true; done
for ipt in iptables ip6tables iptables-legacy ip6tables-legacy; do
  command -v "$ipt" >/dev/null || continue
  for table in filter nat mangle; do
    chains=$("$ipt" -w -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}') || true
    [[ -z $chains ]] && continue
    # Remove the jumps into KUBE-* chains from the built-in chains, then the chains themselves.
    "$ipt" -w -t "$table" -S 2>/dev/null | awk '$1 == "-A" && $2 !~ /^KUBE-/ && / -j KUBE-/' | while read -r _ rule; do
      eval "$ipt -w -t $table -D $rule" 2>/dev/null || true
    done
    for c in $chains; do "$ipt" -w -t "$table" -F "$c" 2>/dev/null || true; done
    for c in $chains; do "$ipt" -w -t "$table" -X "$c" 2>/dev/null || true; done
  done
done

# 7. cgroups the kubelet made (deepest first; they are empty once their processes are gone).
for root in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
  find "$root" -maxdepth 1 -type d -name 'kubepods*' 2>/dev/null | while read -r k; do
    find "$k" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
done

# 8. sysctls back to what they were before the cluster.
if [[ -f $SYSCTL_SAVE ]]; then
  while IFS='=' read -r k v; do sysctl -qw "$k=$v" 2>/dev/null || true; done <"$SYSCTL_SAVE"
fi

# 9. The datapath an agent installed in this cluster left on the node (the host's namespace):
#    enforcement outlives the agent by design (pinned links and maps), so without its cluster it
#    would go on applying a dead cluster's policy to whatever reuses the pod addresses. Removing
#    the pins detaches the programs.
rm -rf "$AGENT_PIN_ROOT"
# The agents' connection history (uninstall removes it; a cluster torn down without uninstall
# leaves it, and the next cluster's agents would read a dead cluster's connections).
rm -rf "$AGENT_HISTORY_ROOT"
# bpffs, when up.sh mounted it (as systemd would have) and nothing else pinned anything there since.
if [[ -f $STATE_DIR/bpffs-mounted ]] && mountpoint -q /sys/fs/bpf; then
  if [[ -z $(ls -A /sys/fs/bpf) ]]; then
    umount /sys/fs/bpf
  else
    log "bpffs at /sys/fs/bpf holds pins of others ($(ls /sys/fs/bpf | head -3 | tr '\n' ' ')): left mounted"
  fi
fi

# 10. Host paths: the cluster's own, and those the components hard-code.
rm -rf "$STATE_DIR" "$RUN_DIR" "$KUBECONFIG_OUT" /run/containerd/s /var/log/containers /var/lib/cni/results \
  /var/lib/kubelet/device-plugins /var/lib/kubelet/plugins_registry /var/lib/kubelet/plugins
rmdir /run/containerd /var/lib/kubelet /var/lib/cni 2>/dev/null || true

log "cluster down in $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}")s"
[[ ${1:-} == --no-check ]] || exec "$(dirname "$0")/check.sh"
