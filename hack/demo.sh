#!/usr/bin/env bash
# make demo: brings the test cluster up, deploys the sample app of examples/demo (web -> db on
# TCP 3306, plus another client), applies the classic db-policy, and shows kubectl netpol
# explaining the allowed and the denied connection. The cluster stays up to explore;
# `make cluster-down` removes it.
set -euo pipefail
source "$(dirname "$0")/cluster/lib.sh"
require_root

"$REPO_ROOT/hack/cluster/up.sh" >/dev/null
export KUBECONFIG="$KUBECONFIG_OUT"
kubectl() { "$BIN_DIR/kubectl" "$@"; }
ns=netpol-demo
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

say "deploying the sample app (examples/demo/app.yaml)"
kubectl apply -f "$REPO_ROOT/examples/demo/app.yaml"
kubectl -n "$ns" rollout status deploy/db deploy/web deploy/other --timeout=120s
pod() { kubectl -n "$ns" get pod -l "app=$1" -o jsonpath='{.items[0].metadata.name}'; }
web=$(pod web) db=$(pod db) other=$(pod other)
kubectl -n "$ns" get pods -o wide

say "real connections to db:3306 (netprobe, JSON per attempt)"
kubectl -n "$ns" exec "$web" -- /netprobe connect -timeout 2s "db.$ns:3306" || true
kubectl -n "$ns" exec "$other" -- /netprobe connect -timeout 2s "db.$ns:3306" || true
echo "(no enforcing agent is installed on this cluster yet, so the datapath lets both through)"

say "applying the classic db-policy (examples/demo/policy.yaml): db accepts only app=web on TCP 3306"
kubectl apply -f "$REPO_ROOT/examples/demo/policy.yaml"

plugin="$REPO_ROOT/bin/kubectl-netpol"
if [[ ! -x $plugin ]] && grep -q 'NewCmdExplain' "$REPO_ROOT"/internal/cli/*.go 2>/dev/null; then
  make -C "$REPO_ROOT" --no-print-directory build >/dev/null
fi
if [[ -x $plugin ]] && "$plugin" explain --help >/dev/null 2>&1; then
  say "kubectl netpol explain: web -> db on 3306 (allowed by db-policy)"
  show "$plugin" explain "$ns/$web" "$ns/$db" --port 3306 || true
  say "kubectl netpol explain: other -> db on 3306 (denied: db-policy selects db and admits only app=web)"
  show "$plugin" explain "$ns/$other" "$ns/$db" --port 3306 || true
else
  say "kubectl netpol explain is not built into bin/kubectl-netpol yet (internal/cli is in progress); run 'make build' once it lands"
fi

cat <<EOF2

The demo app stays up. Try it yourself:
  export KUBECONFIG=$KUBECONFIG_OUT
  PATH=$REPO_ROOT/bin:$BIN_DIR:\$PATH kubectl netpol explain $ns/$other $ns/$db --port 3306
Remove everything with: make cluster-down
EOF2
