#!/usr/bin/env bash
# make check, the README's test command: lint, generate-check, the test cluster's binaries, the
# unit and privileged tests and make e2e, with make release building beside them at the lowest
# priority (nice 19, idle I/O class, one compile at a time): its six cross builds (~9 min of CPU
# on a cold machine) take mostly the CPU the tests leave idle (the real-packet tests and the e2e
# suite mostly wait). Not SCHED_IDLE: a build starved outright while it holds a kernel lock that
# the cluster needs (a fork holds cgroup_threadgroup_rwsem, which runc's cgroup moves wait for)
# can stall a node; a cold CI run with SCHED_IDLE lost a node on its restart. Then make
# release-check tests the archives.
set -euo pipefail
cd "$(dirname "$0")/.."
make=${MAKE:-make}
go=${GO:-go}

$make --no-print-directory lint
$make --no-print-directory generate-check

log=$(mktemp -t netpol-release.XXXXXX)
# Its own process group, so that an interruption stops its go builds too.
GOFLAGS="${GOFLAGS:+$GOFLAGS }-p=1" setsid nice -n 19 ionice -c 3 $make --no-print-directory release >"$log" 2>&1 &
release=$!
trap 'kill -TERM -- -"$release" 2>/dev/null || true; wait "$release" 2>/dev/null || true; rm -f "$log"' EXIT

hack/cluster/build-binaries.sh # etcd and kube-apiserver for the tests against a real API server (cached)
NETPOL_REQUIRE_APISERVER=1 $go test -count=1 -parallel 3 ./... # probe: the three conformance runs at once
$make --no-print-directory e2e

echo "== make release (built beside the tests)"
rc=0
wait "$release" || rc=$?
trap 'rm -f "$log"' EXIT
cat "$log"
((rc == 0)) || { echo "make release failed (exit $rc)" >&2; exit "$rc"; }
$make --no-print-directory release-check
