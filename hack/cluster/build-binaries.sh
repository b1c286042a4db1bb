#!/usr/bin/env bash
# Builds the cluster's binaries from Go modules at pinned versions into $BIN_DIR:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl,
# crictl and coredns. Skipped when the version stamp in the cache matches.
#
# Kubernetes is built from a throw-away module generated under the cache, so its dependencies
# never enter the project's go.mod. A cold build takes ~7-12 min on 2 cores; a warm one is instant.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

GO=${GO:-go}
STAMP="$BIN_DIR/.stamp"
want_stamp="kube=$KUBE_VERSION etcd=$ETCDSERVER_VERSION crictl=$CRICTL_VERSION coredns=$COREDNS_VERSION go=$($GO env GOVERSION)"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl crictl coredns)

up_to_date() {
  [[ -f $STAMP && "$(cat "$STAMP")" == "$want_stamp" ]] || return 1
  local b
  for b in "${binaries[@]}"; do [[ -x $BIN_DIR/$b ]] || return 1; done
}
if up_to_date; then
  log "binaries up to date ($want_stamp)"
  exit 0
fi

start=$(date +%s)
mkdir -p "$BIN_DIR" "$CACHE_DIR/src"
rm -f "$STAMP"
export CGO_ENABLED=0 GOFLAGS=-mod=mod

# build_module DIR MODULE-LINES... writes a go.mod in DIR that requires the given modules.
new_module() {
  local dir=$1 name=$2
  rm -rf "$dir" && mkdir -p "$dir"
  printf 'module %s\n\ngo 1.25\n' "$name" >"$dir/go.mod"
}

# --- Kubernetes -------------------------------------------------------------------------------
# k8s.io/kubernetes replaces its staging modules (k8s.io/api, client-go, ...) with ./staging
# paths; a module that requires it must pin each of them to the published v0.X.Y instead.
log "kubernetes $KUBE_VERSION: generating the build module"
kdir="$CACHE_DIR/src/kubernetes"
new_module "$kdir" netpol.local/kubebuild
kube_gomod=$(cd "$kdir" && $GO mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')
[[ -f $kube_gomod ]] || die "could not download k8s.io/kubernetes@$KUBE_VERSION"
{
  printf '\nrequire k8s.io/kubernetes %s\n\n' "$KUBE_VERSION"
  sed -n 's#^\s*\(k8s\.io/[^ ]*\) => \./staging/.*#replace \1 => \1 '"$KUBE_STAGING_VERSION"'#p' "$kube_gomod"
} >>"$kdir/go.mod"
n=$(grep -c '^replace' "$kdir/go.mod")
((n > 20)) || die "found only $n staging replacements in $kube_gomod"
minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
vpkg=k8s.io/component-base/version
ldflags="-s -w -X $vpkg.gitVersion=$KUBE_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor"
ldflags+=" -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=1970-01-01T00:00:00Z"
ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
log "kubernetes $KUBE_VERSION: building (the long part)"
(cd "$kdir" && $GO build -trimpath -ldflags "$ldflags" -o "$BIN_DIR/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl)

# --- etcd -------------------------------------------------------------------------------------
# The server module's root package is etcd's main; its replace directives block `go install`.
log "etcd $ETCDSERVER_VERSION"
edir="$CACHE_DIR/src/etcd"
new_module "$edir" netpol.local/etcdbuild
printf '\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCDSERVER_VERSION" >>"$edir/go.mod"
(cd "$edir" && $GO build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd" go.etcd.io/etcd/server/v3)

# --- crictl, CoreDNS --------------------------------------------------------------------------
log "crictl $CRICTL_VERSION, coredns $COREDNS_VERSION"
GOFLAGS= GOBIN="$BIN_DIR" $GO install -trimpath -ldflags "-s -w" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
GOFLAGS= GOBIN="$BIN_DIR" $GO install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"

for b in "${binaries[@]}"; do [[ -x $BIN_DIR/$b ]] || die "missing $BIN_DIR/$b after the build"; done
echo "$want_stamp" >"$STAMP"
log "binaries built in $(($(date +%s) - start))s into $BIN_DIR"
