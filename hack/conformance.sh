#!/usr/bin/env bash
# make conformance-netpol / make conformance-cnp: runs an upstream conformance suite nobody here
# wrote against the agent on the test cluster, and prints as its last line
#
#   netpol e2e: passed P of T (skipped: ...)          hack/conformance.sh netpol
#   cnp conformance: passed P of T (exempt: ...)      hack/conformance.sh cnp
#
# `hack/conformance.sh netpol cnp` (make conformance) runs both on one cluster bring-up and prints
# both lines, netpol's first.
#
# T counts the tests that ran; the ones left out are named with the reason: only those that need
# SCTP sockets, which this kernel lacks (CONFIG_IP_SCTP unset).
#
# Steps: build the suite and its agnhost (cached by version stamp: hack/cluster/build-conformance.sh),
# bring the cluster up with that agnhost imported on every node (or use a running one), install the
# agent as make e2e does (`kubectl netpol install --image $AGENT_IMAGE`), run the suite, summarize
# (hack/conformance), tear the cluster down whatever happened (KEEP_CLUSTER=1 keeps it). The
# suite's output and reports stay in .cache/conformance/SUITE/ (git-ignored).
#
#   netpol: e2e.test of k8s.io/kubernetes $KUBE_VERSION, Ginkgo focus "[sig-network] Netpol"
#           (Netpol, Netpol [LinuxOnly], Netpol API), skipping [Feature:SCTPConnectivity];
#           NETPOL_E2E_PROCS Ginkgo processes (3).
#   cnp:    TestConformance of sigs.k8s.io/network-policy-api $NETPOL_API_VERSION, standard profile
#           plus ClusterNetworkPolicyNamedPorts and ClusterNetworkPolicyEgressNodePeers.
set -euo pipefail
source "$(dirname "$0")/cluster/lib.sh"
export VERSION
require_root
GO=${GO:-go}
suites=("$@")
((${#suites[@]})) || die "usage: $0 netpol|cnp... (both: one cluster bring-up for the two)"
for suite in "${suites[@]}"; do [[ $suite == netpol || $suite == cnp ]] || die "unknown suite $suite: use netpol or cnp"; done
OUT=$BIN_DIR/conformance
SCTP_REASON="need SCTP sockets, which this kernel lacks (CONFIG_IP_SCTP unset)"

t0=$(date +%s)
for suite in "${suites[@]}"; do nice -n 10 "$REPO_ROOT/hack/cluster/build-conformance.sh" "$suite"; done
(cd "$REPO_ROOT" && $GO build -o "$OUT/summary" ./hack/conformance)
t_built=$(date +%s)

if [[ ${KEEP_CLUSTER:-0} != 1 ]]; then
  trap 'rc=$?; "$REPO_ROOT/hack/cluster/down.sh" || rc=1; exit $rc' EXIT
fi
CONFORMANCE_IMAGES="${suites[*]}" "$REPO_ROOT/hack/cluster/up.sh"
t_up=$(date +%s)

# The agnhost image must be on every node under the suite's name: a missing one would be pulled.
for suite in "${suites[@]}"; do
  ref=$(cat "$OUT/$suite.agnhost-image")
  for s in "$CONTAINERD_SOCK" "$RUN_DIR"/nodes/*/containerd.sock; do
    [[ -S $s ]] || continue
    images=$(ctr --address "$s" -n k8s.io images ls -q)
    grep -qxF "$ref" <<<"$images" || die "$ref is not in containerd $s"
  done
done

log "installing the agent ($AGENT_IMAGE) as make e2e does"
(cd "$REPO_ROOT" && CGO_ENABLED=0 $GO build -trimpath -ldflags "-s -w $VERSION_LDFLAGS" -o bin/kubectl-netpol ./cmd/kubectl-netpol)
"$REPO_ROOT/bin/kubectl-netpol" --kubeconfig "$KUBECONFIG_OUT" install --image "$AGENT_IMAGE" --timeout 3m

# run_suite SUITE: runs it, writing its output under $work and its summary arguments to
# $work/summary.args (one per line); returns the suite's exit status.
run_suite() {
  local suite=$1 work="$REPO_ROOT/.cache/conformance/$1" rc=0 args=()
  rm -rf "$work" && mkdir -p "$work"
  case $suite in
  netpol)
    local focus='\[sig-network\] Netpol' procs=${NETPOL_E2E_PROCS:-3}
    log "e2e.test: $focus (skipping SCTP), $procs Ginkgo processes, output in $work/e2e.log"
    # In parallel as upstream CI runs it (no Netpol spec is [Serial]); no flake attempts: a flaky
    # verdict is a finding. No --provider: the framework's "skeleton".
    (cd "$work" && KUBECONFIG=$KUBECONFIG_OUT "$OUT/ginkgo" --procs="$procs" \
      --focus="$focus" --skip='\[Feature:SCTPConnectivity\]' \
      --json-report=report.json --output-dir="$work" --no-color --timeout=2h -v \
      "$OUT/e2e.test" -- --kubeconfig="$KUBECONFIG_OUT" --report-dir="$work" \
      >"$work/e2e.log" 2>&1) || rc=$?
    args=(-label "netpol e2e" -left-out-word skipped -ginkgo "$work/report.json" -focus "$focus"
      -allow-skip '\[Feature:SCTPConnectivity\]' -skip-reason "$SCTP_REASON")
    ;;
  cnp)
    # Left out: the tests whose every subtest sends SCTP, and the one subtest of each node-peer
    # test that does (its TCP and UDP checks go with it: one subtest). Run: everything else.
    local exempt_tests=(CNPAdminTierEgressSCTP CNPAdminTierIngressSCTP CNPAdminTierGress CNPAdminTierPortRange
      CNPAdminTierEgressInlineCIDRPeers CNPBaselineTierEgressSCTP CNPBaselineTierIngressSCTP
      CNPBaselineTierGress CNPBaselineTierPortRange CNPBaselineTierEgressInlineCIDRPeers)
    local exempt_sub="Should_support_a_'deny-egress'_rule_policy_for_egress-node-peer"
    local exempt_sub_of=(CNPAdminTierEgressNodePeers CNPBaselineTierEgressNodePeers) runs t
    runs=$(grep -vxF -f <(printf '%s\n' "${exempt_tests[@]}") "$OUT/cnp.tests" | paste -sd'|')
    log "cnp conformance.test: $(wc -l <"$OUT/cnp.tests") tests, ${#exempt_tests[@]} exempt; output in $work/test.log"
    (cd "$work" && KUBECONFIG=$KUBECONFIG_OUT "$OUT/cnp-conformance.test" -test.v=test2json -test.timeout=90m \
      -test.run "^TestConformance\$/^($runs)\$" \
      -test.skip "^TestConformance\$/^($(printf '%s\n' "${exempt_sub_of[@]}" | paste -sd'|'))\$/^$exempt_sub\$" \
      -supported-features ClusterNetworkPolicyNamedPorts,ClusterNetworkPolicyEgressNodePeers \
      >"$work/test.log" 2>&1) || rc=$?
    $GO tool test2json -t <"$work/test.log" >"$work/events.json"
    args=(-label "cnp conformance" -left-out-word exempt -gotest "$work/events.json" -parent TestConformance -all "$OUT/cnp.tests")
    for t in "${exempt_tests[@]}"; do args+=(-exempt "$t=$SCTP_REASON"); done
    for t in "${exempt_sub_of[@]}"; do args+=(-exempt "$t/$exempt_sub=$SCTP_REASON"); done
    ;;
  esac
  printf '%s\n' "${args[@]}" >"$work/summary.args"
  return $rc
}

times=()
for suite in "${suites[@]}"; do
  t=$(date +%s)
  rc=0
  run_suite "$suite" || rc=$?
  times+=("$suite $(($(date +%s) - t))s (exit $rc)")
done
t_end=$(date +%s)
if [[ ${KEEP_CLUSTER:-0} != 1 ]]; then
  trap - EXIT
  "$REPO_ROOT/hack/cluster/down.sh"
fi
log "times: build $((t_built - t0))s, cluster up + images $((t_up - t_built))s, agent + suites $((t_end - t_up))s (${times[*]}), total $((t_end - t0))s"
# The last line(s), one per suite; exit 1 when a test failed.
status=0
for suite in "${suites[@]}"; do
  mapfile -t args <"$REPO_ROOT/.cache/conformance/$suite/summary.args"
  "$OUT/summary" "${args[@]}" || status=$?
done
exit $status
