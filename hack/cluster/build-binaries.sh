#!/usr/bin/env bash
# Builds the cluster's binaries from Go modules at pinned versions into $BIN_DIR:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl,
# crictl and coredns; then flanneld and the flannel CNI plugin (the multi-node cluster's pod
# network). Each part is skipped when its version stamp in the cache matches.
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

# new_module DIR NAME writes an empty go.mod in DIR (a throw-away build module).
new_module() {
  local dir=$1 name=$2
  rm -rf "$dir" && mkdir -p "$dir"
  printf 'module %s\n\ngo 1.25\n' "$name" >"$dir/go.mod"
}

# --- Flannel (own stamp: adding it never rebuilds Kubernetes) ----------------------------------
# flanneld does not `go install`: its tencentvpc backend imports a cloud SDK module the module
# proxy does not serve, and its udp backend needs cgo. It is built statically from the module's
# source with those two backends' blank imports removed (the cluster uses vxlan), in a throw-away
# copy under the cache. The flannel CNI plugin of
# containernetworking/plugins v0.9.1 (the last release that carried it) builds as is.
build_flannel() {
  local stamp="$BIN_DIR/.stamp-flannel"
  local want="flannel=$FLANNEL_VERSION cni-flannel=$CNI_FLANNEL_VERSION go=$($GO env GOVERSION)"
  if [[ -f $stamp && "$(cat "$stamp")" == "$want" && -x $BIN_DIR/flanneld && -x $BIN_DIR/cni/flannel ]]; then
    return 0
  fi
  local t=$(date +%s) fdir="$CACHE_DIR/src/flannel" src
  log "flannel $FLANNEL_VERSION, flannel CNI plugin $CNI_FLANNEL_VERSION"
  mkdir -p "$BIN_DIR/cni" "$CACHE_DIR/src"
  src=$(cd "$CACHE_DIR/src" && GOFLAGS= $GO mod download -json "github.com/flannel-io/flannel@$FLANNEL_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",\?$/\1/p')
  [[ -d $src ]] || die "could not download github.com/flannel-io/flannel@$FLANNEL_VERSION"
  rm -rf "$fdir" && cp -r "$src" "$fdir" && chmod -R u+w "$fdir"
  grep -q 'pkg/backend/tencentvpc"' "$fdir/main.go" || die "flannel $FLANNEL_VERSION: main.go no longer imports the tencentvpc backend; revisit this build step"
  sed -i -e '/pkg\/backend\/tencentvpc"/d' -e '/pkg\/backend\/udp"/d' "$fdir/main.go"
  (cd "$fdir" && CGO_ENABLED=0 GOFLAGS=-mod=mod $GO build -trimpath \
    -ldflags "-s -w -X github.com/flannel-io/flannel/pkg/version.Version=$FLANNEL_VERSION" -o "$BIN_DIR/flanneld" .)
  local cdir="$CACHE_DIR/src/cni-flannel"
  new_module "$cdir" netpol.local/cniflannel
  (cd "$cdir" && GOFLAGS=-mod=mod $GO get "github.com/containernetworking/plugins/plugins/meta/flannel@$CNI_FLANNEL_VERSION" >/dev/null 2>&1 &&
    CGO_ENABLED=0 GOFLAGS=-mod=mod $GO build -trimpath -ldflags "-s -w" -o "$BIN_DIR/cni/flannel" github.com/containernetworking/plugins/plugins/meta/flannel) ||
    die "building the flannel CNI plugin $CNI_FLANNEL_VERSION failed"
  echo "$want" >"$stamp"
  log "flannel built in $(($(date +%s) - t))s"
}

if up_to_date; then
  log "binaries up to date ($want_stamp)"
  build_flannel
  exit 0
fi

start=$(date +%s)
mkdir -p "$BIN_DIR" "$CACHE_DIR/src"
rm -f "$STAMP"
export CGO_ENABLED=0 GOFLAGS=-mod=mod


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
build_flannel
log "binaries built in $(($(date +%s) - start))s into $BIN_DIR"
