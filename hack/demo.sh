#!/usr/bin/env bash
# make demo: brings the test cluster up, deploys the sample app of examples/demo (web -> db on
# TCP 3306, plus another client), installs the agent, applies the classic db-policy, and shows
# the kernel enforcing it, kubectl netpol explaining the allowed and the denied connection,
# the agent's status and the flows it recorded. The cluster stays up to explore;
# `make cluster-down` removes it.
set -euo pipefail
source "$(dirname "$0")/cluster/lib.sh"
export VERSION # the images up.sh builds are the ones installed here
require_root

"$REPO_ROOT/hack/cluster/up.sh" >/dev/null
export KUBECONFIG="$KUBECONFIG_OUT"
kubectl() { "$BIN_DIR/kubectl" "$@"; }
ns=netpol-demo
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

say "deploying the sample app (examples/demo/app.yaml)"
kubectl apply -f "$REPO_ROOT/examples/demo/app.yaml"
if [[ -f $NODES_FILE ]] && (($(wc -l <"$NODES_FILE") > 1)); then
  # Several nodes: the database on one node, its clients on another, so every connection
  # crosses Flannel's vxlan and is judged on both nodes (egress at web's, ingress at db's).
  place() { kubectl -n "$ns" patch "deploy/$1" --type merge -p "{\"spec\":{\"template\":{\"spec\":{\"nodeSelector\":{\"kubernetes.io/hostname\":\"$2\"}}}}}" >/dev/null; }
  place db "$(node_name 1)"
  place web "$(node_name 2)"
  place other "$(node_name 2)"
  echo "placed db on $(node_name 1), web and other on $(node_name 2)"
fi
kubectl -n "$ns" rollout status deploy/db deploy/web deploy/other --timeout=120s
pod() { kubectl -n "$ns" get pod -l "app=$1" -o jsonpath='{.items[0].metadata.name}'; }
web=$(pod web) db=$(pod db) other=$(pod other)
kubectl -n "$ns" get pods -o wide

plugin="$REPO_ROOT/bin/kubectl-netpol"
[[ -x $plugin ]] || make -C "$REPO_ROOT" --no-print-directory build >/dev/null
probe_db() {
  for c in "$web" "$other"; do
    printf '%s -> db:3306  ' "$c"
    kubectl -n "$ns" exec "$c" -- /netprobe connect -timeout 2s "db.$ns:3306" 2>/dev/null | grep -o '"ok":[a-z]*,"error":"[^"]*"' || echo
  done
}

say "installing the enforcing agent: kubectl netpol install (image $AGENT_IMAGE, built from this tree)"
show "$plugin" install --image "$AGENT_IMAGE"

say "real connections to db:3306 before any policy: both clients get through"
probe_db

say "applying the classic db-policy (examples/demo/policy.yaml): db accepts only app=web on TCP 3306"
kubectl apply -f "$REPO_ROOT/examples/demo/policy.yaml"
sleep 1

say "real connections again: the agent now drops other -> db in the kernel"
probe_db

say "kubectl netpol explain: web -> db on 3306 (allowed by db-policy)"
show "$plugin" explain "$ns/$web" "$ns/$db" --port 3306 || true
say "kubectl netpol explain: other -> db on 3306 (denied: db-policy selects db and admits only app=web)"
show "$plugin" explain "$ns/$other" "$ns/$db" --port 3306 || true

say "kubectl netpol status: the agent on each node"
show "$plugin" status || true

say "kubectl netpol watch: the verdicts the kernel just gave, and why"
show "$plugin" watch -n "$ns" --last 10 -o compact || true

cat <<EOF2

The demo app stays up. Try it yourself:
  export KUBECONFIG=$KUBECONFIG_OUT
  export PATH=$REPO_ROOT/bin:$BIN_DIR:\$PATH
  kubectl netpol explain $ns/$other $ns/$db --port 3306
  kubectl netpol watch -n $ns          # live flows in the terminal UI (q quits)
  kubectl netpol uninstall             # removes the agent and everything it put on the node
Remove everything with: make cluster-down
EOF2
