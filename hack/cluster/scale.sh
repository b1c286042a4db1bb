#!/usr/bin/env bash
# Scale mode of the test cluster (make scale-up): on a cluster brought up with SCALE=1 (up.sh),
# starts kwok (sigs.k8s.io/kwok, built by build-kwok.sh) as a host process against the real API
# server, managing only the fake nodes (label type=kwok), then creates SCALE_NODES fake nodes,
# SCALE_PODS pods over one namespace per 100 pods (plus SCALE_BIG_NAMESPACE_PODS in one namespace)
# and SCALE_POLICIES NetworkPolicies through the API server (test/scale/load: parallel writers,
# protobuf) and waits until kwok has every pod Running with its own address. The real nodes get
# the label netpol.test/real-node=true: install the agent with
#   kubectl netpol install --node-selector netpol.test/real-node=true
# so that its DaemonSet (which tolerates every taint) stays off the fake nodes.
# Writes .cluster/scale (sizes, timings, install flags). make cluster-down removes it all.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/proc.sh"
require_root
[[ -f $SCALE_FILE ]] || die "the cluster is not in scale mode: bring it up with SCALE=1 hack/cluster/up.sh (make scale-up does)"
SCALE_NODES=${SCALE_NODES:-100}
SCALE_PODS=${SCALE_PODS:-10000}
SCALE_POLICIES=${SCALE_POLICIES:-1000}
SCALE_BIG_NAMESPACE_PODS=${SCALE_BIG_NAMESPACE_PODS:-1000}
((SCALE_NODES >= 1 && SCALE_NODES <= 1000)) || die "SCALE_NODES=$SCALE_NODES: use 1 to 1000 (the widened cluster CIDR has room for 1,020 /24s)"
KUBECTL=("$BIN_DIR/kubectl" --kubeconfig "$STATE_DIR/admin.kubeconfig")
GO=${GO:-go}

"$(dirname "$0")/build-kwok.sh"
log "labelling the real nodes $REAL_NODE_LABEL=true"
"${KUBECTL[@]}" label nodes -l 'type!=kwok' --overwrite "$REAL_NODE_LABEL=true" >/dev/null

if ! recorded_alive kwok; then
  log "kwok $KWOK_VERSION (fake nodes with type=kwok; lease 200 s)"
  start_component kwok "$BIN_DIR/kwok" --kubeconfig "$STATE_DIR/admin.kubeconfig" --config "$BIN_DIR/kwok-stages.yaml" \
    --manage-nodes-with-label-selector type=kwok --node-lease-duration-seconds 200 \
    --server-address 127.0.0.1:10247 --cidr 10.247.255.0/24 -v WARN   # INFO logs every patch: 100k lines
  sleep 1
  recorded_alive kwok || die "kwok exited; see $LOG_DIR/kwok.log"
fi

log "building the loader (test/scale/load)"
(cd "$REPO_ROOT" && $GO build -o "$BIN_DIR/scale-load" ./test/scale/load)
t=$(date +%s.%N)
"$BIN_DIR/scale-load" -kubeconfig "$STATE_DIR/admin.kubeconfig" -nodes "$SCALE_NODES" -pods "$SCALE_PODS" \
  -policies "$SCALE_POLICIES" -big-namespace-pods "$SCALE_BIG_NAMESPACE_PODS" -node-address "$SCALE_NODE_ADDR" |
  tee "$LOG_DIR/scale-load.log"
took=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t}")
mkdir -p "$(dirname "$SCALE_OUT")"
cat >"$SCALE_OUT" <<OUT
nodes=$SCALE_NODES
pods=$((SCALE_PODS + SCALE_BIG_NAMESPACE_PODS))
policies=$SCALE_POLICIES
big_namespace_pods=$SCALE_BIG_NAMESPACE_PODS
install_flags=--node-selector $REAL_NODE_LABEL=true
load_seconds=$took
OUT
log "scale objects ready in ${took}s: $SCALE_NODES fake nodes, $((SCALE_PODS + SCALE_BIG_NAMESPACE_PODS)) pods, $SCALE_POLICIES NetworkPolicies"
cat <<USAGE

  export KUBECONFIG=$KUBECONFIG_OUT
  kubectl netpol install --node-selector $REAL_NODE_LABEL=true --pprof
  make bench-scale      # the agent's figures at this size (docs/perf.md)
USAGE
