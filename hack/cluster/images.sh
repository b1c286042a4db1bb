#!/usr/bin/env bash
# Builds the cluster's container images without docker and, with "import", loads them into the
# cluster's containerd (namespace k8s.io). Images are one-layer docker-save tars written by
# hack/imagebuilder into $IMAGES_DIR; every name is localhost/...:local and pods use them with
# imagePullPolicy: Never, so nothing is ever pulled.
#
#   hack/cluster/images.sh [build]   build every image tar
#   hack/cluster/images.sh import    build, then import into the running cluster's containerd
#
# Adding an image (e.g. the agent's): one line in the IMAGES section below,
#   go_image NAME GO-PACKAGE PATH-IN-IMAGE [ENTRYPOINT ARGS...]
# builds the package statically and packs it as the image's only file and entrypoint (VARIANT=x
# keeps a second image of the same repository apart: its tar and binary get the suffix -x); or
#   file_image NAME LOCAL-FILE PATH-IN-IMAGE [ENTRYPOINT ARGS...]
# packs an already built binary.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
GO=${GO:-go}
mode=${1:-build}

mkdir -p "$IMAGES_DIR/bin"
builder="$IMAGES_DIR/bin/imagebuilder"
(cd "$REPO_ROOT" && CGO_ENABLED=0 $GO build -trimpath -o "$builder" ./hack/imagebuilder)

tars=()
# file_image NAME FILE DEST [ENTRYPOINT...]: pack FILE at DEST; entrypoint defaults to DEST.
file_image() {
  local name=$1 file=$2 dest=$3
  shift 3
  local out="$IMAGES_DIR/$(basename "${name%%:*}")${VARIANT:+-$VARIANT}.tar" args=()
  local e
  for e in "${@:-$dest}"; do args+=(-entrypoint "$e"); done
  "$builder" -o "$out" -name "$name" -file "$dest=$file" -label "org.opencontainers.image.source=kubectl-netpol" "${args[@]}"
  tars+=("$out")
}
# go_image NAME PACKAGE DEST [ENTRYPOINT...]: build PACKAGE statically, then file_image.
go_image() {
  local name=$1 pkg=$2 dest=$3
  shift 3
  local bin="$IMAGES_DIR/bin/$(basename "$dest")${VARIANT:+-$VARIANT}"
  (cd "$REPO_ROOT" && CGO_ENABLED=0 GOOS=linux $GO build -trimpath -ldflags "-s -w ${GO_LDFLAGS:-}" -o "$bin" "$pkg")
  file_image "$name" "$bin" "$dest" "$@"
}

# --- IMAGES -------------------------------------------------------------------------------------
go_image "$PAUSE_IMAGE" ./hack/images/pause /pause
go_image "$NETPROBE_IMAGE" ./test/images/netprobe /netprobe
GO_LDFLAGS=$VERSION_LDFLAGS go_image "$AGENT_IMAGE" ./cmd/netpol-agent /netpol-agent
VARIANT=upgrade GO_LDFLAGS=${VERSION_LDFLAGS/version.version=$VERSION/version.version=$AGENT_UPGRADE_VERSION} \
  go_image "$AGENT_UPGRADE_IMAGE" ./cmd/netpol-agent /netpol-agent
[[ -x $BIN_DIR/coredns ]] && file_image "$COREDNS_IMAGE" "$BIN_DIR/coredns" /coredns
# The upstream conformance suites' agnhost, when hack/conformance.sh asks (CONFORMANCE_IMAGES:
# netpol and/or cnp): built from Kubernetes' sources by build-conformance.sh and named exactly as
# the suite runs it (a registry name, not localhost/...), so the kubelet finds it and never pulls.
# As agnhost's own image: entrypoint /agnhost, default command "pause", and a bash (static,
# Debian's bash-static: the CNP suite's pods run "/bin/bash -c /agnhost ...").
for suite in ${CONFORMANCE_IMAGES:-}; do
  ref=$(cat "$BIN_DIR/conformance/$suite.agnhost-image" 2>/dev/null) || die "no agnhost built for the $suite suite: run hack/cluster/build-conformance.sh $suite"
  [[ -x /bin/bash-static ]] || die "/bin/bash-static is missing: make deps (Debian's bash-static)"
  out="$IMAGES_DIR/agnhost-${ref##*:}.tar"
  "$builder" -o "$out" -name "$ref" -file "/agnhost=$BIN_DIR/conformance/agnhost-${ref##*:}" -file /bin/bash=/bin/bash-static \
    -entrypoint /agnhost -cmd pause -label "org.opencontainers.image.source=kubectl-netpol"
  tars+=("$out")
done
# ------------------------------------------------------------------------------------------------

log "images built: ${tars[*]##*/}"
if [[ $mode == import ]]; then
  # One containerd on one node; on several nodes, one per node (hack/cluster/node.sh).
  socks=()
  for s in "$CONTAINERD_SOCK" "$RUN_DIR"/nodes/*/containerd.sock; do [[ -S $s ]] && socks+=("$s"); done
  ((${#socks[@]})) || die "no containerd of the test cluster is running ($CONTAINERD_SOCK, $RUN_DIR/nodes/*/containerd.sock): run make cluster-up"
  for s in "${socks[@]}"; do
    for t in "${tars[@]}"; do
      ctr --address "$s" -n k8s.io images import "$t" >/dev/null
    done
  done
  log "images imported into containerd (namespace k8s.io) on ${#socks[@]} node(s)"
fi
