#!/usr/bin/env bash
# Prints the one version of this tree: the plugin, the agent, the archives, the
# krew manifest and the agent image tag all use it.
#
#   tag v0.2.0 on HEAD, clean  -> v0.2.0
#   3 commits after v0.2.0     -> v0.2.0-3-g1a2b3c4
#   uncommitted changes        -> ...-dirty
#   no tag yet                 -> v0.0.0-g1a2b3c4[-dirty]
#   not a git checkout         -> v0.0.0-dev
#
# The output is always a semantic version with a leading "v" (krew requires
# one) and a valid image tag (no "+"), so nothing downstream rewrites it.
# $VERSION, when set, wins (e.g. `make release VERSION=v0.2.0`).
set -euo pipefail

if [[ -n "${VERSION:-}" ]]; then
  echo "$VERSION"
  exit 0
fi
cd "$(dirname "$0")/.."
if ! d=$(git describe --tags --always --dirty --match 'v[0-9]*' 2>/dev/null); then
  echo v0.0.0-dev
  exit 0
fi
# A tag matching v<major>.<minor>.<patch> (describe only picks those) is already
# semver; a bare abbreviated hash becomes a pre-release of v0.0.0. The "g"
# keeps an all-digit hash from being a numeric identifier with a leading zero,
# which semver forbids.
if [[ $d =~ ^v[0-9]+\.[0-9]+\.[0-9]+ ]]; then
  echo "$d"
else
  echo "v0.0.0-g$d"
fi
