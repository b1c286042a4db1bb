#!/usr/bin/env bash
# make bench-peers-datapath: the agent against a peer enforcer, kube-router v2.1.0 (its
# network-policy controller alone, iptables + ipset), on the same 3-node Flannel test cluster,
# the same pods and the same policies, in one run. Only one enforcer runs at a time; each is
# removed (and kube-router's rules and ipsets proved gone) before the next.
#   1. BenchmarkInstalledAgentCost, modes none / kube-router / netpol (the agent as installed),
#      A B C C B A per round, PEERS_ROUNDS rounds, 1000 policies: TCP connect rate to the pod IP
#      and through a ClusterIP, iperf3; medians, ratios to none, the enforcer's CPU per connection.
#   2. BenchmarkPolicyChangeEnforced at 100 and 1000 policies, kube-router then netpol (then
#      netpol and kube-router again with PEERS_LATENCY_ABBA=1): write -> the datapath drops /
#      admits, p50 and p99 over PEERS_CHANGES changes of each kind.
# Brings the cluster up (cached binaries, kube-router built once: hack/cluster/build-peers.sh)
# and tears it down whatever happened, like make e2e; KEEP_CLUSTER=1 keeps it. The log goes to
# PEERS_LOG (default .cache/bench-peers-datapath.log).
#
# PEERS_PARTS="cost latency" (default) picks the parts, PEERS_LATENCY_POLICIES the sizes ("100 1000").
# PEERS_SMOKE=1: one pass, 1 s arms, 100 policies for the connect rate, 10 changes: checks the
# harness (set-up, enforcement of both, removal proved) in ~8-10 min with a warm cache and
# cluster bring-up; not figures to quote.
set -euo pipefail
source "$(dirname "$0")/cluster/lib.sh"
export VERSION
require_root
GO=${GO:-go}
((NODES >= 2)) || die "NODES=$NODES: the peer runs on the multi-node cluster (each node its own firewall); use NODES>=2"

rounds=${PEERS_ROUNDS:-3} secs=${PEERS_SECS:-4} changes=${PEERS_CHANGES:-50}
smoke=()
if [[ ${PEERS_SMOKE:-0} == 1 ]]; then
  rounds=1 secs=${PEERS_SECS:-1} changes=${PEERS_CHANGES:-10}
  smoke=(NETPOL_COST_SMOKE=1)
fi
logfile=${PEERS_LOG:-$REPO_ROOT/.cache/bench-peers-datapath.log}
mkdir -p "$(dirname "$logfile")"

"$REPO_ROOT/hack/cluster/build-peers.sh"
if [[ ${KEEP_CLUSTER:-0} != 1 ]]; then
  trap 'rc=$?; "$REPO_ROOT/hack/cluster/down.sh" || rc=1; exit $rc' EXIT
fi
"$REPO_ROOT/hack/cluster/up.sh"
cd "$REPO_ROOT"
t0=$(date +%s)
{
  echo "# make bench-peers-datapath $(date -u +%FT%TZ) rounds=$rounds secs=$secs changes=$changes smoke=${PEERS_SMOKE:-0} NODES=$NODES"
  echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs; commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
} | tee "$logfile"
# bench VAR=VALUE... -- GO-TEST-FLAGS...
bench() {
  local envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done
  shift
  env KUBECONFIG="$KUBECONFIG_OUT" NETPOL_AGENT_IMAGE="$AGENT_IMAGE" NETPOL_CLUSTER_CACHE="$CACHE_DIR" "${envs[@]}" \
    "$GO" test -tags e2e -count=1 -timeout 60m -run '^$' -v "$@" ./test/e2e/ 2>&1 | tee -a "$logfile"
  return "${PIPESTATUS[0]}"
}
parts=${PEERS_PARTS:-cost latency}
[[ $parts != *cost* ]] || bench "${smoke[@]}" NETPOL_COST_MODES=none,kube-router,defaults NETPOL_COST_CLUSTERIP=1 NETPOL_COST_SECS="$secs" \
  NETPOL_COST_ROUNDS="$rounds" -- -bench '^BenchmarkInstalledAgentCost$' -benchtime 1x
order=(kube-router netpol)
[[ ${PEERS_LATENCY_ABBA:-0} == 1 ]] && order+=(netpol kube-router)
for n in $([[ $parts == *latency* ]] && echo "${PEERS_LATENCY_POLICIES:-100 1000}"); do
  for e in "${order[@]}"; do
    echo "# policy change, $e, $n policies" | tee -a "$logfile"
    bench NETPOL_LATENCY_ENFORCER="$e" NETPOL_LATENCY_POLICIES="$n" NETPOL_LATENCY_CHANGES="$changes" \
      -- -bench '^BenchmarkPolicyChangeEnforced$' -benchtime 1x
  done
done
echo "# done in $(($(date +%s) - t0)) s; load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$logfile"
echo "# results:"
grep -E '^(Benchmark|# )' "$logfile"
