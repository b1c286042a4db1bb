# shellcheck shell=bash
# Certificates and kubeconfigs of the test cluster, made with openssl (ECDSA P-256, 10 days).
# Sourced by up.sh after lib.sh.

# cert NAME CN [O] [SANS]: a key and a certificate signed by the cluster CA.
cert() {
  local name=$1 cn=$2 o=${3:-} sans=${4:-} subj="/CN=$2"
  [[ -n $o ]] && subj="/O=$o/CN=$cn"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI_DIR/$name.key" 2>/dev/null
  openssl req -new -key "$PKI_DIR/$name.key" -subj "$subj" -out "$PKI_DIR/$name.csr" 2>/dev/null
  local ext="$PKI_DIR/$name.ext"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [[ -n $sans ]]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$sans"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } >"$ext"
  openssl x509 -req -in "$PKI_DIR/$name.csr" -CA "$PKI_DIR/${CA:-ca}.crt" -CAkey "$PKI_DIR/${CA:-ca}.key" \
    -CAcreateserial -days 10 -sha256 -extfile "$ext" -out "$PKI_DIR/$name.crt" 2>/dev/null
  rm -f "$PKI_DIR/$name.csr" "$ext"
}

ca() {
  local name=$1
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI_DIR/$name.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI_DIR/$name.key" -subj "/CN=netpol-cluster-$name" -days 10 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI_DIR/$name.crt" 2>/dev/null
}

make_pki() {
  mkdir -p "$PKI_DIR" && chmod 700 "$PKI_DIR"
  ca ca
  ca front-proxy-ca
  local apisans="DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN,DNS:localhost,IP:$NODE_IP,IP:$KUBERNETES_SVC_IP,IP:127.0.0.1"
  cert apiserver kube-apiserver "" "$apisans"
  cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
  cert admin kubernetes-admin system:masters
  cert controller-manager system:kube-controller-manager
  cert scheduler system:kube-scheduler
  cert kube-proxy system:kube-proxy
  cert kubelet "system:node:$NODE_NAME" system:nodes
  cert kubelet-server "$NODE_NAME" "" "DNS:$NODE_NAME,IP:$NODE_IP,IP:127.0.0.1"
  CA=front-proxy-ca cert front-proxy-client front-proxy-client
  cert flannel netpol:flannel   # flanneld (multi-node); RBAC in node.sh
  # Service-account tokens are signed with RSA (what every consumer supports).
  openssl genrsa -out "$PKI_DIR/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI_DIR/sa.key" -pubout -out "$PKI_DIR/sa.pub" 2>/dev/null
  chmod 600 "$PKI_DIR"/*.key
}

# node_pki NAME IP: the client and serving certificates of node NAME's kubelet (multi-node).
node_pki() {
  cert "kubelet-$1" "system:node:$1" system:nodes
  cert "kubelet-server-$1" "$1" "" "DNS:$1,IP:$2,IP:127.0.0.1"
  chmod 600 "$PKI_DIR"/*.key
}

# kubeconfig FILE CERT-NAME: a kubeconfig with the certificates embedded, for the API server.
kubeconfig() {
  local file=$1 name=$2
  b64() { base64 -w0 <"$PKI_DIR/$1"; }
  cat >"$file" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: netpol
  cluster:
    server: https://$NODE_IP:6443
    certificate-authority-data: $(b64 ca.crt)
users:
- name: $name
  user:
    client-certificate-data: $(b64 "$name.crt")
    client-key-data: $(b64 "$name.key")
contexts:
- name: netpol
  context: {cluster: netpol, user: $name}
current-context: netpol
KUBECONFIG
  chmod 600 "$file"
}
