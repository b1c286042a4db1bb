#!/usr/bin/env bash
# make e2e: brings the test cluster up if needed, runs the end-to-end tests (build tag e2e,
# ./test/e2e/...) with KUBECONFIG set, and tears the cluster down afterwards whatever happened,
# ending with the cleanliness check. KEEP_CLUSTER=1 leaves it up; E2E_ARGS adds go test flags
# (e.g. E2E_ARGS='-run TestPodToPod -v').
set -euo pipefail
source "$(dirname "$0")/cluster/lib.sh"
# One version for the images up.sh builds and the tests that install them.
export VERSION
require_root
GO=${GO:-go}

if [[ ${KEEP_CLUSTER:-0} != 1 ]]; then
  trap 'rc=$?; "$REPO_ROOT/hack/cluster/down.sh" || rc=1; exit $rc' EXIT
fi
"$REPO_ROOT/hack/cluster/up.sh"
cd "$REPO_ROOT"
# The OpenTelemetry Collector the OTLP export test sends to: built from the Collector's Go
# modules (test/otelcol, its own module; the Go build cache makes a rebuild quick).
log "building the test OpenTelemetry Collector (test/otelcol)"
$GO build -C test/otelcol -o "$BIN_DIR/otelcol" .
export NETPOL_OTELCOL="$BIN_DIR/otelcol"
# kube-router, the peer enforcer TestKubeRouterPeer starts and proves gone (cached by stamp).
"$REPO_ROOT/hack/cluster/build-peers.sh"
# -parallel 32: every test that runs beside the conformance cases gets its goroutine at once;
# they take turns among themselves (test/e2e runBesideConformance), at most two run at a time.
# shellcheck disable=SC2086
KUBECONFIG="$KUBECONFIG_OUT" NETPOL_AGENT_IMAGE="$AGENT_IMAGE" NETPOL_AGENT_UPGRADE_IMAGE="$AGENT_UPGRADE_IMAGE" $GO test -tags e2e -count=1 -timeout 30m -parallel 32 ${E2E_ARGS:-} ./test/e2e/... ./tui
if [[ -z ${E2E_ARGS:-} ]]; then
  # The short version of the installed agent's cost benchmark (docs/perf.md has the full one):
  # the harness works and the agent's cost stays within a loose bound.
  KUBECONFIG="$KUBECONFIG_OUT" NETPOL_AGENT_IMAGE="$AGENT_IMAGE" NETPOL_COST_SMOKE=1 \
    $GO test -tags e2e -count=1 -timeout 15m -run '^$' -bench InstalledAgentCost -benchtime 1x ./test/e2e/
fi
