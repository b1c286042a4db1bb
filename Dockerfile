# The netpol-agent image, for publishing to your own registry:
#
#   docker build --build-arg VERSION=$(hack/version.sh) -t <your-repo>/netpol-agent:$(hack/version.sh) .
#   kubectl netpol install --image <your-repo>/netpol-agent:<version>
#
# Build the plugin with `make build AGENT_IMAGE_REPO=<your-repo>/netpol-agent` and it defaults to
# that image. The local test cluster gets the same image without docker: hack/ packs the same
# static binary at /netpol-agent, entrypoint /netpol-agent, into a docker-save tar for ctr import.
#
# The build stage uses the Go image of the version go.mod names; the result holds one static
# binary (CGO_ENABLED=0, the eBPF objects are embedded by bpf2go) and the licences, nothing else:
# no shell, no libc, no package manager. It is "distroless" in the strict sense (FROM scratch).

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION} AS build
ARG VERSION=v0.0.0-dev
ARG TARGETOS=linux
ARG TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath \
      -ldflags "-s -w -X github.com/kubectl-netpol/kubectl-netpol/internal/version.version=${VERSION}" \
      -o /out/netpol-agent ./cmd/netpol-agent

FROM scratch
ARG VERSION=v0.0.0-dev
LABEL org.opencontainers.image.title="netpol-agent" \
      org.opencontainers.image.description="kubectl-netpol node agent: NetworkPolicy enforcement and flow verdicts in eBPF" \
      org.opencontainers.image.source="https://github.com/kubectl-netpol/kubectl-netpol" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0 AND GPL-2.0-only"
# The Go code is Apache-2.0; the eBPF programs embedded in the binary are GPL-2.0 (the kernel
# only offers GPL-only helpers to GPL programs), so both texts ship with it.
COPY LICENSE /licenses/LICENSE
COPY probe/LICENSE.GPL-2.0 /licenses/LICENSE.GPL-2.0
COPY --from=build /out/netpol-agent /netpol-agent

# Why root (UID 0), and which capabilities the DaemonSet gives it.
#
# The agent cannot run as a non-root UID: Kubernetes adds capabilities to the bounding and
# permitted sets of UID 0 only; a non-root process gets them only through ambient or file
# capabilities, which the kubelet does not set and which allowPrivilegeEscalation: false (no_new_privs)
# blocks. And the objects it manages are root's: /sys/fs/bpf is a root-owned 0700-style directory
# where the maps and links are pinned so enforcement survives agent restarts, and netfilter and
# conntrack are per-network-namespace state guarded by CAP_NET_ADMIN in the host's namespace.
#
# So the pod runs as UID 0 but is NOT privileged: `install` drops ALL capabilities and adds back
#   BPF        load programs, create maps, pin them in bpffs (bpf(2) without CAP_SYS_ADMIN)
#   NET_ADMIN  attach BPF netfilter links and TCX programs (networking program types and links
#              need it), and delete the conntrack entries of connections a policy change revokes
#   PERFMON    let the verifier accept the programs' reads through kernel pointers (the netfilter
#              context's sk_buff and its conntrack entry are BTF pointers, "allowed only to
#              CAP_PERFMON and CAP_SYS_ADMIN")
#   SYS_ADMIN  only where the node has no bpffs mounted at /sys/fs/bpf and the agent must mount it
#              (an init step; the long-running container does not need it)
# with readOnlyRootFilesystem (the image is one binary), allowPrivilegeEscalation: false, the host
# network (the hooks are the node's), and /sys/fs/bpf mounted from the host.
USER 0:0
ENTRYPOINT ["/netpol-agent"]
