#!/usr/bin/env bash
# Installs the Debian packages the build, the tests and the local cluster need.
# Idempotent: does nothing when everything is present.
set -euo pipefail

packages=(
  make git ca-certificates
  clang-14 llvm-14 libbpf-dev bpftool    # eBPF: bpf2go compiles probe/*.c
  iproute2 iptables nftables conntrack   # datapath tests: netns, veth, bridges, kube-proxy-style NAT
  containerd runc containernetworking-plugins openssl  # the local single-node cluster
  tmux                                   # the TUI tested in a real terminal
  iperf3                                 # datapath throughput A/B (probe: BenchmarkDatapathAB)
  bash-static                            # the conformance suites' agnhost image (its pods run /bin/bash)
  ipset                                  # kube-router, the peer of make bench-peers-datapath
  protobuf-compiler libprotobuf-dev      # make proto: flow/v1 (protoc + well-known .proto includes)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
