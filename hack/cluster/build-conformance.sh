#!/usr/bin/env bash
# Builds the upstream conformance suites nobody here wrote, and the agnhost binaries they run,
# into $BIN_DIR/conformance, each part skipped when its version stamp in the cache matches
# (like build-binaries.sh):
#
#   hack/cluster/build-conformance.sh netpol   Kubernetes' e2e.test (test/e2e of k8s.io/kubernetes
#                                              $KUBE_VERSION), the Ginkgo CLI it was built with
#                                              and the agnhost version it names
#   hack/cluster/build-conformance.sh cnp      the ClusterNetworkPolicy suite
#                                              (sigs.k8s.io/network-policy-api/conformance
#                                              $NETPOL_API_VERSION, TestConformance) and agnhost:2.45
#
# Each is built from a throw-away module generated under the cache, so none of their
# dependencies enters the project's go.mod. agnhost is built from test/images/agnhost of the
# Kubernetes release whose test/images/agnhost/VERSION is the tag wanted; images.sh packs it under
# exactly the image name the suite runs (recorded here as SUITE.agnhost-image), with a static bash
# (the CNP suite's pods run "/bin/bash -c /agnhost ...").
#
# One change to the CNP suite, made in a copy and checked: its base manifests lose the SCTP
# server containers (agnhost porter on SERVE_SCTP_PORT_*), which exit at once on a kernel without
# SCTP and would keep every base pod from turning Ready. The tests that poke SCTP are exempt
# (hack/conformance.sh names them); no other byte of the suite changes.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

GO=${GO:-go}
OUT=$BIN_DIR/conformance
go_version=$($GO env GOVERSION)
export CGO_ENABLED=0

# new_module DIR NAME writes an empty go.mod in DIR (a throw-away build module).
new_module() {
  local dir=$1 name=$2
  rm -rf "$dir" && mkdir -p "$dir"
  printf 'module %s\n\ngo 1.25\n' "$name" >"$dir/go.mod"
}

# module_dir MODULE@VERSION prints the module's directory in the module cache (downloading it).
module_dir() {
  local d
  d=$(cd "$CACHE_DIR" && GOFLAGS= $GO mod download -json "$1" | sed -n 's/^\s*"Dir": "\(.*\)",\?$/\1/p')
  [[ -d $d ]] || die "could not download $1"
  echo "$d"
}

# kube_module DIR KUBE_VERSION: a build module requiring k8s.io/kubernetes KUBE_VERSION with
# every staging module it replaces by ./staging pinned to the matching published v0.X.Y.
kube_module() {
  local dir=$1 kv=$2 gomod n
  new_module "$dir" netpol.local/kube-"${kv//./-}"
  gomod=$(cd "$CACHE_DIR" && GOFLAGS= $GO mod download -json "k8s.io/kubernetes@$kv" | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')
  [[ -f $gomod ]] || die "could not download k8s.io/kubernetes@$kv"
  {
    printf '\nrequire k8s.io/kubernetes %s\n\n' "$kv"
    sed -n 's#^\s*\(k8s\.io/[^ ]*\) => \./staging/.*#replace \1 => \1 v0.'"${kv#v1.}"'#p' "$gomod"
  } >>"$dir/go.mod"
  n=$(grep -c '^replace' "$dir/go.mod")
  ((n > 20)) || die "found only $n staging replacements in $gomod"
}

# stamped NAME WANT FILE...: true when NAME's stamp is WANT and every FILE exists.
stamped() {
  local name=$1 want=$2 f
  shift 2
  [[ -f $OUT/.stamp-$name && "$(cat "$OUT/.stamp-$name")" == "$want" ]] || return 1
  for f in "$@"; do [[ -x $f ]] || return 1; done
}

# build_agnhost TAG KUBE_VERSION: $OUT/agnhost-TAG from test/images/agnhost of KUBE_VERSION,
# which must carry TAG in its VERSION file.
build_agnhost() {
  local tag=$1 kv=$2 want dir src t
  want="agnhost=$tag kube=$kv go=$go_version" dir="$CACHE_DIR/src/agnhost-$tag"
  stamped "agnhost-$tag" "$want" "$OUT/agnhost-$tag" && return 0
  t=$(date +%s)
  log "agnhost $tag from k8s.io/kubernetes $kv"
  src=$(module_dir "k8s.io/kubernetes@$kv")
  [[ $(cat "$src/test/images/agnhost/VERSION") == "$tag" ]] ||
    die "k8s.io/kubernetes $kv carries agnhost $(cat "$src/test/images/agnhost/VERSION"), not $tag: pin the release whose test/images/agnhost/VERSION is $tag"
  kube_module "$dir" "$kv"
  (cd "$dir" && GOFLAGS=-mod=mod $GO build -trimpath -ldflags "-s -w" -o "$OUT/agnhost-$tag" k8s.io/kubernetes/test/images/agnhost)
  echo "$want" >"$OUT/.stamp-agnhost-$tag"
  log "agnhost $tag built in $(($(date +%s) - t))s"
}

# The agnhost tag an e2e.test of KUBE_VERSION runs (test/utils/image/manifest.go).
e2e_agnhost_tag() {
  local src
  src=$(module_dir "k8s.io/kubernetes@$KUBE_VERSION")
  sed -n 's/.*configs\[Agnhost\] = Config{[^,]*, "agnhost", "\([^"]*\)"}.*/\1/p' "$src/test/utils/image/manifest.go"
}

build_netpol() {
  local tag want
  tag=$(e2e_agnhost_tag)
  [[ -n $tag ]] || die "no agnhost tag found in k8s.io/kubernetes $KUBE_VERSION test/utils/image/manifest.go"
  # e2e.test of this Kubernetes runs agnhost $tag, built from the same release.
  build_agnhost "$tag" "$KUBE_VERSION"
  want="kube=$KUBE_VERSION go=$go_version"
  if stamped e2e "$want" "$OUT/e2e.test" "$OUT/ginkgo"; then
    log "e2e.test up to date ($want)"
  else
    build_e2e
  fi
  # The name e2e.test runs agnhost under, asked from e2e.test itself (the framework's own
  # registry settings, as the tests will use them).
  local ref
  ref=$("$OUT/e2e.test" --list-images 2>/dev/null | grep "/agnhost:$tag\$" | sort -u) ||
    die "e2e.test --list-images names no agnhost:$tag"
  echo "$ref" >"$OUT/netpol.agnhost-image"
}

build_e2e() {
  local dir="$CACHE_DIR/src/kube-e2e" minor vpkg ldflags t
  t=$(date +%s)
  log "e2e.test of k8s.io/kubernetes $KUBE_VERSION (the long part)"
  kube_module "$dir" "$KUBE_VERSION"
  minor=${KUBE_VERSION#v1.}
  minor=${minor%%.*}
  vpkg=k8s.io/component-base/version
  ldflags="-s -w -X $vpkg.gitVersion=$KUBE_VERSION -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor"
  ldflags+=" -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=1970-01-01T00:00:00Z"
  (cd "$dir" && GOFLAGS=-mod=mod $GO test -c -vet=off -trimpath -ldflags "$ldflags" -o "$OUT/e2e.test" k8s.io/kubernetes/test/e2e)
  # The Ginkgo CLI at the version e2e.test links (Kubernetes' go.mod), to run specs in parallel.
  (cd "$dir" && GOFLAGS=-mod=mod $GO build -trimpath -ldflags "-s -w" -o "$OUT/ginkgo" github.com/onsi/ginkgo/v2/ginkgo)
  echo "$want" >"$OUT/.stamp-e2e"
  log "e2e.test built in $(($(date +%s) - t))s"
}

# The SCTP server containers the CNP suite's base manifests start, one per StatefulSet and port
# (gryffindor, slytherin, hufflepuff, ravenclaw: 9003, 9005; centaur: two host ports).
CNP_SCTP_CONTAINERS=10

build_cnp() {
  local want="netpol-api=$NETPOL_API_VERSION agnhost=$CNP_AGNHOST_TAG go=$go_version sctp-servers=removed"
  local dir="$CACHE_DIR/src/cnp-conformance" src m tag removed t
  src=$(module_dir "sigs.k8s.io/network-policy-api@$NETPOL_API_VERSION")
  tag=$(sed -n 's#.*image: .*/agnhost:\(.*\)$#\1#p' "$src/conformance/base/manifests.yaml" | sort -u)
  [[ $tag == "$CNP_AGNHOST_TAG" ]] || die "network-policy-api $NETPOL_API_VERSION runs agnhost '$tag', lib.sh pins $CNP_AGNHOST_TAG: update CNP_AGNHOST_TAG and CNP_AGNHOST_KUBE_VERSION"
  build_agnhost "$CNP_AGNHOST_TAG" "$CNP_AGNHOST_KUBE_VERSION"
  sed -n 's#.*image: \(.*/agnhost:.*\)$#\1#p' "$src/conformance/base/manifests.yaml" | sort -u >"$OUT/cnp.agnhost-image"
  # Every test of the suite (ShortName), for the summary: a test neither run nor exempt is an error.
  sed -n 's/^\s*ShortName:\s*"\(.*\)",$/\1/p' "$src"/conformance/tests/*.go | sort >"$OUT/cnp.tests"
  stamped cnp "$want" "$OUT/cnp-conformance.test" && { log "cnp conformance.test up to date ($want)"; return 0; }
  t=$(date +%s)
  log "ClusterNetworkPolicy conformance suite $NETPOL_API_VERSION"
  new_module "$dir" netpol.local/cnpconformance
  cp -r "$src" "$dir/network-policy-api" && chmod -R u+w "$dir/network-policy-api"
  m=$dir/network-policy-api/conformance/base/manifests.yaml
  # Drop each container block (from "- name:" at the containers' indent to the next one or the
  # end of the list) that serves SCTP.
  awk '
    function flush() { if (blk != "") { if (blk ~ /SERVE_SCTP_PORT_/) dropped++; else printf "%s", blk }; blk = "" }
    /^        - name: / { flush(); inblk = 1 }
    inblk && !/^        - name: / && !/^          / { flush(); inblk = 0 }
    inblk { blk = blk $0 "\n"; next }
    { print }
    END { flush(); print dropped > "/dev/stderr" }
  ' "$m" >"$m.new" 2>"$dir/dropped"
  removed=$(cat "$dir/dropped")
  [[ $removed == "$CNP_SCTP_CONTAINERS" ]] && ! grep -q 'SCTP' "$m.new" ||
    die "network-policy-api $NETPOL_API_VERSION base manifests: removed $removed SCTP server containers, expected $CNP_SCTP_CONTAINERS; revisit this build step"
  mv "$m.new" "$m"
  {
    printf '\nrequire sigs.k8s.io/network-policy-api %s\n' "$NETPOL_API_VERSION"
    printf '\nreplace sigs.k8s.io/network-policy-api => ./network-policy-api\n'
  } >>"$dir/go.mod"
  (cd "$dir" && GOFLAGS=-mod=mod $GO test -c -vet=off -trimpath -ldflags "-s -w" -o "$OUT/cnp-conformance.test" sigs.k8s.io/network-policy-api/conformance)
  echo "$want" >"$OUT/.stamp-cnp"
  log "cnp conformance.test built in $(($(date +%s) - t))s"
}

mkdir -p "$OUT" "$CACHE_DIR/src"
case ${1:-} in
netpol) build_netpol ;;
cnp) build_cnp ;;
*) die "usage: $0 netpol|cnp" ;;
esac
