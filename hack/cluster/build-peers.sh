#!/usr/bin/env bash
# Builds the peer enforcers the same-run benchmarks compare the agent with (make
# bench-peers-datapath) into $BIN_DIR/peers: kube-router KUBE_ROUTER_VERSION, run there with only
# its network-policy controller. Skipped when the version stamp in the cache matches.
#
# kube-router is built with `go install MODULE@VERSION`, outside any module of this repository:
# the peer never enters the product's go.mod (that version has reported security flaws; it is a
# measuring stick here, never shipped). It runs on the test cluster's nodes only. Its firewall
# needs Debian's ipset (hack/install-deps.sh). A cold build takes ~2-4 min on 2 cores.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

GO=${GO:-go}
PEERS_DIR="$BIN_DIR/peers"
stamp="$PEERS_DIR/.stamp"
want="kube-router=$KUBE_ROUTER_VERSION go=$($GO env GOVERSION)"
if [[ -f $stamp && "$(cat "$stamp")" == "$want" && -x $PEERS_DIR/kube-router ]]; then
  log "peers up to date ($want)"
  exit 0
fi
command -v ipset >/dev/null || die "kube-router needs ipset: run hack/install-deps.sh (make deps)"
t=$(date +%s)
log "kube-router $KUBE_ROUTER_VERSION (network-policy controller only; a benchmark peer)"
mkdir -p "$PEERS_DIR"
rm -f "$stamp"
# GOFLAGS cleared: -mod=... of a caller would apply to a module that is not ours.
GOFLAGS= CGO_ENABLED=0 GOBIN="$PEERS_DIR" $GO install -trimpath \
  -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$KUBE_ROUTER_VERSION" \
  "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@$KUBE_ROUTER_VERSION" ||
  die "building kube-router $KUBE_ROUTER_VERSION failed"
echo "$want" >"$stamp"
log "kube-router built in $(($(date +%s) - t))s into $PEERS_DIR"
