# kubectl-netpol — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO       ?= go
BIN      := bin
# One version for the plugin, the agent, the archives, the krew manifest and the image tag
# (hack/version.sh: git describe, made semver). AGENT_IMAGE_REPO has no registry host: set yours.
# Expanded once, so one build never mixes two versions.
VERSION          ?= $(shell hack/version.sh)
VERSION          := $(VERSION)
AGENT_IMAGE_REPO ?= localhost/kubectl-netpol/agent
LDFLAGS  := -s -w -X github.com/kubectl-netpol/kubectl-netpol/internal/version.version=$(VERSION) \
	-X github.com/kubectl-netpol/kubectl-netpol/internal/version.agentImageRepository=$(AGENT_IMAGE_REPO)
CLI_PLATFORMS := linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64

.PHONY: help
help: ## Show this help
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z0-9_-]+:.*## /{printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Install the Debian packages the build, tests and local cluster need (idempotent; root)
	hack/install-deps.sh

.PHONY: build
build: ## Build the kubectl-netpol plugin into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/kubectl-netpol ./cmd/kubectl-netpol

.PHONY: run-example
run-example: build ## Explain the bundled example offline (examples/db-policy): a denial, then the what-if fix
	$(BIN)/kubectl-netpol explain -f examples/db-policy web/frontend-1 db/mysql-0 --port 3306
	@echo
	$(BIN)/kubectl-netpol explain -f examples/db-policy web/frontend-1 db/mysql-0 --port 3306 --with-policy examples/db-policy-fix/db-policy.yaml

.PHONY: cross
cross: ## Build the CLI for linux/darwin/windows x amd64/arm64 (proves it never imports linux-only code)
	@set -e; for p in $(CLI_PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; ext=; [ $$os = windows ] && ext=.exe; \
	  echo "  $$os/$$arch"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/cross/$$os-$$arch/kubectl-netpol$$ext ./cmd/kubectl-netpol; \
	done

DIST           ?= dist
AGENT_PLATFORMS := linux/amd64 linux/arm64

.PHONY: release
release: ## Build the release into $(DIST)/: plugin archives, agent archives, sha256 checksums, krew manifest
	rm -rf $(DIST)
	$(MAKE) --no-print-directory cross BIN=$(DIST)/build VERSION=$(VERSION) AGENT_IMAGE_REPO=$(AGENT_IMAGE_REPO)
	@set -e; if [ ! -d cmd/netpol-agent ]; then \
	  echo "release: cmd/netpol-agent does not exist yet: no agent archives"; \
	else for p in $(AGENT_PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; echo "  agent $$os/$$arch"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DIST)/build/cross/$$os-$$arch/netpol-agent ./cmd/netpol-agent; \
	done; fi
	$(GO) run ./hack/release -version $(VERSION) -builds $(DIST)/build/cross -dist $(DIST) \
	  -mtime $$(git log -1 --format=%ct 2>/dev/null || echo 0)

.PHONY: release-test release-check
release-test: release ## make release, then make release-check
	$(MAKE) --no-print-directory release-check

release-check: ## Check the release make release left in $(DIST)/: every archive and sum, validate-krew-manifest, krew install from the archive
	NETPOL_DIST=$(abspath $(DIST)) NETPOL_VERSION=$(VERSION) $(GO) test -tags release -count=1 -v ./krew/

.PHONY: test
test: ## Run the unit tests (the README's test command runs this and more: see .ci/run)
	$(GO) test ./...

.PHONY: bench-policy
bench-policy: ## Policy engine benchmarks at 10k pods / 2k policies and the 1k x 1k x 2 matrix (figures: docs/perf.md)
	$(GO) test -run '^$$' -bench . -benchtime 2s -count 3 ./policy/

# bench/peers is its own Go module, so the peer it measures never enters the
# product's go.mod. GONOSUMDB: np-guard/netpol-analyzer depends on
# github.com/np-guard/models, which has no entry in the public checksum
# database; its hashes are pinned in bench/peers/go.sum instead, which Go
# still verifies.
.PHONY: bench-peers
bench-peers: ## Ours vs np-guard/netpol-analyzer on the same 10k-pod / 2k-policy input: load, one query, 10k queries, memory, check -f end to end (figures: docs/perf.md)
	cd bench/peers && GONOSUMDB=github.com/np-guard/models $(GO) test -run 'TestVerdictsAgree|TestCheckFilesAgree' -v -bench . -benchtime 2s -count 3 .

# The same-run datapath comparison with kube-router v2.1.0 on the test cluster (root, takes the
# cluster: run it under the machine's cluster lock). kube-router is built outside the product's
# go.mod (hack/cluster/build-peers.sh). PEERS_ROUNDS, PEERS_SECS, PEERS_CHANGES; PEERS_SMOKE=1
# is the short check (~10 min).
.PHONY: bench-peers-datapath
bench-peers-datapath: ## none / kube-router / netpol on the 3-node cluster: connect rate (pod IP, ClusterIP), iperf3, policy change at 100 and 1000 policies (figures: docs/perf.md)
	hack/bench-peers-datapath.sh

.PHONY: fuzz-policy
fuzz-policy: ## Fuzz the policy engine against its reference evaluator, FUZZTIME each (default 60s)
	$(GO) test -run '^$$' -fuzz '^FuzzEvaluate$$' -fuzztime $(or $(FUZZTIME),60s) ./policy/
	$(GO) test -run '^$$' -fuzz '^FuzzNewEngine$$' -fuzztime $(or $(FUZZTIME),60s) ./policy/

.PHONY: proto
proto: ## Regenerate flow/v1 Go code from flow/v1/flow.proto (protoc + plugins pinned as go.mod tools)
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	$(GO) build -o $(BIN)/protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc
	protoc -I flow/v1 -I /usr/include \
	  --plugin=protoc-gen-go=$(BIN)/protoc-gen-go --go_out=flow/v1 --go_opt=paths=source_relative \
	  --plugin=protoc-gen-go-grpc=$(BIN)/protoc-gen-go-grpc --go-grpc_out=flow/v1 --go-grpc_opt=paths=source_relative \
	  flow/v1/flow.proto

.PHONY: generate
generate: ## Regenerate the committed eBPF objects and bindings (bpf2go + clang-14: probe/netpol_bpfel.{go,o})
	cd probe && $(GO) generate ./...

.PHONY: generate-check
generate-check: generate ## Fail when regenerating changes a committed file
	@git diff --exit-code --stat -- probe/ || { echo "generated files are stale: run 'make generate' and commit"; exit 1; }

.PHONY: lint
lint: ## go vet + staticcheck (from the tools module in hack/tools)
	$(GO) vet ./...
	cd hack/tools && $(GO) build -o ../../$(BIN)/staticcheck honnef.co/go/tools/cmd/staticcheck
	$(BIN)/staticcheck ./...

.PHONY: tidy
tidy: ## go mod tidy for every module
	$(GO) mod tidy
	cd hack/tools && $(GO) mod tidy

.PHONY: check
check: deps ## Everything CI runs: lint, cross-builds, unit, privileged, release and e2e tests (run as root)
	$(MAKE) lint
	$(MAKE) generate-check
	$(MAKE) release-test   # its make release cross-builds the CLI for all six platforms (what make cross does)
	hack/cluster/build-binaries.sh   # etcd and kube-apiserver for the tests against a real API server (cached)
	NETPOL_REQUIRE_APISERVER=1 $(GO) test -count=1 -parallel 3 ./...   # probe: the three conformance runs at once
	$(MAKE) e2e

# --- local test cluster (hack/cluster; see README "Test cluster") --------------------------------
# NODES=1: one node on the host (bridge CNI, fastest); NODES=2..9: nodes in namespaces with
# real Flannel (vxlan) between them, what users run. 3 by default.
NODES ?= 3
export NODES

.PHONY: cluster-up
cluster-up: ## Build (cached) and start the test cluster, NODES=3 by default (1: one node on the host); writes .cluster/kubeconfig (root)
	hack/cluster/up.sh

.PHONY: cluster-down
cluster-down: ## Stop the test cluster, remove every trace of it, then run cluster-check (root)
	hack/cluster/down.sh

.PHONY: cluster-check
cluster-check: ## Fail if any process, mount, netns, link, route, chain, cgroup, path or sysctl of the cluster is left
	hack/cluster/check.sh

# --- scale mode (hack/cluster/scale.sh; docs/perf.md "Scale with simulated nodes") ---------------
# kwok keeps SCALE_NODES fake nodes and SCALE_PODS (+ SCALE_BIG_NAMESPACE_PODS in one namespace)
# pods Running on the real API server, with SCALE_POLICIES NetworkPolicies; the real NODES run
# the agent. Tear down with make cluster-down.
SCALE_NODES              ?= 100
SCALE_PODS               ?= 10000
SCALE_POLICIES           ?= 1000
SCALE_BIG_NAMESPACE_PODS ?= 1000
SCALE_ENV = VERSION=$(VERSION) AGENT_IMAGE_REPO=$(AGENT_IMAGE_REPO) SCALE_NODES=$(SCALE_NODES) SCALE_PODS=$(SCALE_PODS) \
	SCALE_POLICIES=$(SCALE_POLICIES) SCALE_BIG_NAMESPACE_PODS=$(SCALE_BIG_NAMESPACE_PODS)

.PHONY: scale-up
scale-up: ## The test cluster in scale mode: kwok's SCALE_NODES fake nodes, SCALE_PODS pods, SCALE_POLICIES NetworkPolicies (default 100/10k/1k) (root)
	$(SCALE_ENV) SCALE=1 hack/cluster/up.sh
	$(SCALE_ENV) hack/cluster/scale.sh

.PHONY: bench-scale
bench-scale: ## On the scale cluster: the agent's ready time, RSS, heap, maps, pod churn; explain/matrix/check timings (BenchmarkScaleAgent)
	$(SCALE_ENV) hack/bench-scale.sh BenchmarkScaleAgent

.PHONY: bench-scale-latency
bench-scale-latency: ## On the scale cluster: policy change -> enforced, p50/p99 over 200 changes (BenchmarkPolicyChangeEnforced)
	$(SCALE_ENV) hack/bench-scale.sh BenchmarkPolicyChangeEnforced

.PHONY: scale-smoke
scale-smoke: ## CI's short scale run: scale-up at 10 nodes / 1k pods / 100 policies, bench-scale in short, cluster-down (root)
	$(MAKE) --no-print-directory scale-up SCALE_NODES=10 SCALE_PODS=1000 SCALE_POLICIES=100 SCALE_BIG_NAMESPACE_PODS=100 || { hack/cluster/down.sh; exit 1; }
	NETPOL_SCALE_SMOKE=1 NETPOL_SCALE_CHURN_RATE=20 NETPOL_SCALE_CHURN_SECS=10 $(SCALE_ENV) hack/bench-scale.sh BenchmarkScaleAgent; \
	  rc=$$?; hack/cluster/down.sh || rc=1; exit $$rc

.PHONY: images
images: ## Build the local images (pause, netprobe, coredns) without docker; import them if the cluster runs
	@export VERSION=$(VERSION) AGENT_IMAGE_REPO=$(AGENT_IMAGE_REPO); if [ -n "$$(ls /run/netpol-cluster/containerd/containerd.sock /run/netpol-cluster/nodes/*/containerd.sock 2>/dev/null)" ]; then hack/cluster/images.sh import; else hack/cluster/images.sh build; fi

.PHONY: e2e
e2e: ## cluster-up, go test -tags e2e ./test/e2e/..., cluster-down (KEEP_CLUSTER=1 keeps it; E2E_ARGS='-run X -v')
	hack/e2e.sh

# Upstream suites nobody here wrote, against the agent on the test cluster (hack/conformance.sh):
# the suite and its agnhost are built from Go modules (cached by version stamp), the cluster is
# brought up (or used) and torn down; the last line is "<suite>: passed P of T (...)".
.PHONY: conformance-netpol
conformance-netpol: ## Kubernetes' NetworkPolicy e2e tests (e2e.test of v1.37.2, focus Netpol, SCTP skipped) against the agent (root)
	VERSION=$(VERSION) AGENT_IMAGE_REPO=$(AGENT_IMAGE_REPO) hack/conformance.sh netpol

.PHONY: conformance-cnp
conformance-cnp: ## The ClusterNetworkPolicy suite (network-policy-api v0.3.0, + NamedPorts, EgressNodePeers; SCTP exempt) against the agent (root)
	VERSION=$(VERSION) AGENT_IMAGE_REPO=$(AGENT_IMAGE_REPO) hack/conformance.sh cnp

.PHONY: conformance
conformance: ## Both suites above on one cluster bring-up (what .ci/run runs with CONFORMANCE=1) (root)
	VERSION=$(VERSION) AGENT_IMAGE_REPO=$(AGENT_IMAGE_REPO) hack/conformance.sh netpol cnp

.PHONY: demo
demo: deps build ## Start the cluster, deploy examples/demo (web -> db:3306 + db-policy) and explain it
	hack/demo.sh
