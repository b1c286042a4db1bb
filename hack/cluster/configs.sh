# shellcheck shell=bash
# Configuration files of a node's containerd, kubelet and kube-proxy: one form for the host node
# (NODES=1, up.sh) and the namespace nodes (node.sh). Sourced after lib.sh.

# containerd_config FILE ROOT STATE SOCKET OPT-DIR CNI-BIN-DIR CNI-CONF-DIR RUNC-ROOT
containerd_config() {
  cat >"$1" <<TOML
version = 2
root = "$2"
state = "$3"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$4"
[plugins."io.containerd.internal.v1.opt"]
  path = "$5"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Required here: this VM lacks CAP_SYS_RESOURCE; without it runc fails every sandbox.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$6"
    conf_dir = "$7"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$8"
TOML
}

# kubelet_config FILE NODE-IP CONTAINERD-SOCKET SERVING-CERT-NAME POD-LOGS-DIR VOLUME-PLUGIN-DIR [CGROUP-ROOT]
kubelet_config() {
  cat >"$1" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
${7:+cgroupRoot: $7}
containerRuntimeEndpoint: unix://$3
address: $2
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI_DIR/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI_DIR/$4.crt
tlsPrivateKeyFile: $PKI_DIR/$4.key
clusterDNS: [$DNS_SVC_IP]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: $STATE_DIR/resolv.conf
podLogsDir: $5
volumePluginDir: $6
failSwapOn: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
serializeImagePulls: false
YAML
}

# kube_proxy_config FILE NODE-NAME NODE-IP
kube_proxy_config() {
  cat >"$1" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection: {kubeconfig: $STATE_DIR/kube-proxy.kubeconfig}
hostnameOverride: $2
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$3/32"]
# 0 = leave the host's conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s, udpTimeout: 0s, udpStreamTimeout: 0s}
YAML
}
