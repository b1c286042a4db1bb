#!/usr/bin/env bash
# Cleanliness check: exits 1 and lists every trace of the test cluster still on the machine
# (processes, mounts, network namespaces, links, addresses, routes, nftables/iptables chains,
# cgroups, host paths, sysctls not restored). Run by down.sh; `make cluster-check` runs it alone.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_root

left=()
found() { left+=("$1"); }

# Processes: any of the cluster's binaries, anything using its containerd socket or state.
for p in /proc/[0-9]*; do
  pid=${p#/proc/}
  [[ $pid == "$$" ]] && continue
  exe=$(readlink -f "$p/exe" 2>/dev/null) || continue
  cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
  if [[ $exe == "$BIN_DIR"/* ]] || [[ $cmd == *"$RUN_DIR/"* || $cmd == *"$STATE_DIR/"* ]]; then
    found "process $pid: $cmd"
  fi
done
[[ -d $PID_DIR ]] && found "pid records in $PID_DIR"
for p in $(find /sys/fs/cgroup -path '*/kubepods*' -name cgroup.procs -exec cat {} + 2>/dev/null); do found "process $p in a kubepods cgroup"; done

# Mounts and network namespaces.
while read -r m; do found "mount $m"; done < <(awk '{print $5}' /proc/self/mountinfo | grep -E "^($STATE_DIR|$RUN_DIR|/run/containerd|/var/lib/kubelet|/run/netns/cni-|/var/run/netns/cni-)" || true)
for ns in /run/netns/cni-*; do [[ -e $ns ]] && found "network namespace $ns"; done
# Several nodes: namespace files, the node veths, cgroup roots, mount-point dirs made on the host.
[[ -e $NODE_NS_DIR ]] && found "node namespace dir $NODE_NS_DIR"
while read -r l; do found "link $l"; done < <(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^(k8sn[0-9]|flannel\.|cni0$)' || true)
while read -r c; do found "cgroup $c"; done < <(find /sys/fs/cgroup -maxdepth 2 -type d -name 'netpol-node-*' 2>/dev/null || true)
[[ -e $HOST_MOUNTPOINTS ]] && found "record of host mount points $HOST_MOUNTPOINTS"
for p in /run/flannel "$NODES_OUT"; do [[ -e $p ]] && found "path $p"; done

# Links, addresses, routes.
ip link show "$BRIDGE" >/dev/null 2>&1 && found "link $BRIDGE"
while read -r a; do found "address: $a"; done < <(ip -o -4 addr show | grep -E " (10\.244|10\.250)\." || true)
while read -r r; do found "route: $r"; done < <(ip route show table all | grep -E "(^|[ ])(blackhole )?(10\.244|10\.250|10\.96)\." || true)

# Firewall.
nft list tables 2>/dev/null | grep -q kube-proxy && found "nftables: $(nft list tables | grep kube-proxy | tr '\n' ' ')"
for ipt in iptables ip6tables iptables-legacy ip6tables-legacy; do
  command -v "$ipt" >/dev/null || continue
  for table in filter nat mangle; do
    "$ipt" -w -t "$table" -S 2>/dev/null | grep -qE 'KUBE-|NETPOL-CLUSTER' && found "$ipt -t $table: $("$ipt" -w -t "$table" -S | grep -E 'KUBE-|NETPOL-CLUSTER' | head -3 | tr '\n' ';')"
  done
done

# kube-router (make bench-peers-datapath) runs in the nodes; its ipsets must not be on the host.
if command -v ipset >/dev/null; then
  while read -r s; do found "ipset $s"; done < <(ipset list -n 2>/dev/null | grep -E '^(inet6:)?KUBE-(SRC|DST)-' || true)
fi

# cgroups.
while read -r c; do found "cgroup $c"; done < <(find /sys/fs/cgroup -maxdepth 2 -type d -name 'kubepods*' 2>/dev/null || true)

# Host paths.
for p in "$STATE_DIR" "$RUN_DIR" /run/containerd /var/lib/kubelet /var/log/containers /var/log/pods /var/lib/cni/results \
  /var/lib/cni/networks/netpol-cluster /opt/containerd /var/lib/containerd /var/run/kubernetes "$KUBECONFIG_OUT" \
  "$AGENT_PIN_ROOT" "$AGENT_HISTORY_ROOT"; do
  [[ -e $p ]] && found "path $p"
done

# sysctls: as recorded before the last bring-up; the safety-critical one regardless.
if [[ -f $CACHE_DIR/sysctl.baseline ]]; then
  while IFS='=' read -r k v; do
    cur=$(sysctl -n "$k" 2>/dev/null || echo missing)
    [[ $cur == "$v" ]] || found "sysctl $k=$cur (was $v)"
  done <"$CACHE_DIR/sysctl.baseline"
fi
[[ -f $CACHE_DIR/sysctl.baseline || $(sysctl -n net.ipv4.ip_forward) == 0 ]] || found "sysctl net.ipv4.ip_forward=1"

if ((${#left[@]})); then
  log "cluster-check FAILED: ${#left[@]} trace(s) of the test cluster left:"
  printf '  %s\n' "${left[@]}" >&2
  exit 1
fi
log "cluster-check: clean (no process, mount, netns, link, route, chain, cgroup, path or sysctl left)"
