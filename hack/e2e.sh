#!/usr/bin/env bash
# make e2e: brings the test cluster up if needed, runs the end-to-end tests (build tag e2e,
# ./test/e2e/...) with KUBECONFIG set, and tears the cluster down afterwards whatever happened,
# ending with the cleanliness check. KEEP_CLUSTER=1 leaves it up; E2E_ARGS adds go test flags
# (e.g. E2E_ARGS='-run TestPodToPod -v').
set -euo pipefail
source "$(dirname "$0")/cluster/lib.sh"
require_root
GO=${GO:-go}

if [[ ${KEEP_CLUSTER:-0} != 1 ]]; then
  trap 'rc=$?; "$REPO_ROOT/hack/cluster/down.sh" || rc=1; exit $rc' EXIT
fi
"$REPO_ROOT/hack/cluster/up.sh"
cd "$REPO_ROOT"
# shellcheck disable=SC2086
KUBECONFIG="$KUBECONFIG_OUT" NETPOL_AGENT_IMAGE="$AGENT_IMAGE" $GO test -tags e2e -count=1 -timeout 30m ${E2E_ARGS:-} ./test/e2e/... ./tui
