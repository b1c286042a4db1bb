#!/usr/bin/env bash
# make bench-scale / bench-scale-latency / scale-smoke: runs one benchmark of test/e2e (build
# tag e2e) once against the running scale cluster (make scale-up), with the agent image of this
# tree imported first. The cluster stays up (make cluster-down).
#   hack/bench-scale.sh BenchmarkScaleAgent|BenchmarkPolicyChangeEnforced
set -euo pipefail
source "$(dirname "$0")/cluster/lib.sh"
export VERSION
require_root
GO=${GO:-go}
[[ -f $SCALE_OUT ]] || die "no scale cluster ($SCALE_OUT is missing): run make scale-up first"
"$REPO_ROOT/hack/cluster/images.sh" import
cd "$REPO_ROOT"
KUBECONFIG="$KUBECONFIG_OUT" NETPOL_AGENT_IMAGE="$AGENT_IMAGE" \
  $GO test -tags e2e -count=1 -timeout 60m -run '^$' -bench "^$1\$" -benchtime 1x -v ./test/e2e/
