#!/usr/bin/env bash
# Restarts whatever of a node's containerd, kubelet, kube-proxy and flanneld is not running, with
# the arguments up.sh gave them (for tests that kill a node's components, and after a crash):
#   hack/cluster/restart-node.sh netpol-node-2
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/proc.sh"
source "$(dirname "$0")/pki.sh"
source "$(dirname "$0")/configs.sh"
source "$(dirname "$0")/node.sh"
require_root
n=${1:?usage: restart-node.sh NODE-NAME}
[[ $n =~ ^netpol-node-([1-9])$ ]] || die "$n: not a node of the multi-node cluster (netpol-node-1..9)"
i=${BASH_REMATCH[1]}
grep -q "^$n " "$NODES_FILE" 2>/dev/null || die "$n is not running (see $NODES_FILE)"
KUBECTL=("$BIN_DIR/kubectl" --kubeconfig "$STATE_DIR/admin.kubeconfig")
nd=$STATE_DIR/nodes/$n nr=$RUN_DIR/nodes/$n
if ! recorded_alive "containerd@$n"; then
  log "$n: starting containerd"
  rm -f "$nr/containerd.sock"
  IN_NODE=$n start_component "containerd@$n" "$(command -v containerd)" --config "$nd/containerd.toml"
  for _ in $(seq 80); do [[ -S $nr/containerd.sock ]] && break; sleep 0.25; done
fi
if ! recorded_alive "kubelet@$n"; then
  log "$n: starting kubelet"
  node_start_kubelet "$i"
  grep -E '^kernel\.panic(_on_oops)?=' "$SYSCTL_SAVE" | while IFS='=' read -r k v; do sysctl -qw "$k=$v"; done
fi
recorded_alive "flanneld@$n" || { log "$n: starting flanneld"; node_start_flanneld "$i"; }
recorded_alive "kube-proxy@$n" || { log "$n: starting kube-proxy"; node_start_kube_proxy "$i"; }
"${KUBECTL[@]}" wait --for=condition=Ready "node/$n" --timeout=90s >/dev/null
log "$n: running"
