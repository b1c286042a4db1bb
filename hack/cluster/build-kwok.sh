#!/usr/bin/env bash
# Builds kwok (sigs.k8s.io/kwok, KWOK_VERSION) into $BIN_DIR/kwok for the scale mode of the test
# cluster (hack/cluster/scale.sh), and writes the Stages it runs with into $BIN_DIR/kwok-stages.yaml:
# standalone kwok has none built in, so they are taken from the same module (node-initialize,
# node-heartbeat-with-lease, pod-ready, pod-complete, pod-delete), after kwok's own configuration
# (parallelism). Skipped when the version stamp in the cache matches. `go install MODULE@VERSION`,
# outside any module of this repository. A cold build takes ~1.5 min on 2 cores.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

GO=${GO:-go}
stamp="$BIN_DIR/.stamp-kwok"
want="kwok=$KWOK_VERSION config=2 go=$($GO env GOVERSION)"   # config=N: bump when the written config changes
if [[ -f $stamp && "$(cat "$stamp")" == "$want" && -x $BIN_DIR/kwok && -f $BIN_DIR/kwok-stages.yaml ]]; then
  log "kwok up to date ($want)"
  exit 0
fi
t=$(date +%s)
log "kwok $KWOK_VERSION"
mkdir -p "$BIN_DIR" "$CACHE_DIR/src"
rm -f "$stamp"
# GOFLAGS cleared: -mod=... of a caller would apply to a module that is not ours.
GOFLAGS= CGO_ENABLED=0 GOBIN="$BIN_DIR" $GO install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" ||
  die "building kwok $KWOK_VERSION failed"
src=$(cd "$CACHE_DIR/src" && GOFLAGS= $GO mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",\?$/\1/p')
[[ -d $src ]] || die "could not download sigs.k8s.io/kwok@$KWOK_VERSION"
# kwok patches 4 pods at a time by default: ~140 pods/s on this machine, 8 min for 100k. More
# in parallel keeps up with the loader.
cat >"$BIN_DIR/kwok-stages.yaml" <<'YAML'
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  podPlayStageParallelism: 16
  nodePlayStageParallelism: 8
  nodeLeaseParallelism: 8
YAML
stages=(node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete)
for s in "${stages[@]}"; do
  [[ -f $src/kustomize/stage/$s.yaml ]] || die "kwok $KWOK_VERSION has no kustomize/stage/$s.yaml; revisit this build step"
  echo "---"
  cat "$src/kustomize/stage/$s.yaml"
done >>"$BIN_DIR/kwok-stages.yaml"
echo "$want" >"$stamp"
log "kwok built in $(($(date +%s) - t))s into $BIN_DIR"
