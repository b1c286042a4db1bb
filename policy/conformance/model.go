package conformance

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodLabelKey is the label every model pod carries with its name as value (pod=a).
const PodLabelKey = "pod"

// DefaultPodCIDR is where DefaultEnv puts the model pods. It is outside the
// ranges the local test cluster uses (10.244.0.0/16 pods, 10.250.0.0/16 node,
// 10.96.0.0/16 services), so datapath tests can use it in their own network
// namespaces.
const DefaultPodCIDR = "10.77.0.0/16"

var (
	modelNamespaces = []string{"x", "y", "z"}
	modelPodNames   = []string{"a", "b", "c"}
)

// PodRef names a model pod the way upstream prints it: "x/a" is pod a in the
// logical namespace x.
type PodRef string

// NewPodRef returns the PodRef of pod name in the logical namespace ns.
func NewPodRef(ns, name string) PodRef { return PodRef(ns + "/" + name) }

// Namespace is the logical namespace of the pod ("x").
func (p PodRef) Namespace() string { ns, _, _ := strings.Cut(string(p), "/"); return ns }

// Name is the pod's name ("a").
func (p PodRef) Name() string { _, name, _ := strings.Cut(string(p), "/"); return name }

// Model is the topology of one case: which pods exist and which ports and
// protocols each pod's container declares and serves. The namespaces x, y and
// z always exist, even those without pods, as upstream creates all three.
type Model struct {
	Namespaces []string
	Pods       []PodRef
	Ports      []int32
	Protocols  []corev1.Protocol
}

// FullModel is the largest model any case uses: x, y, z × a, b, c, ports 80
// and 81, TCP, UDP and SCTP.
func FullModel() Model {
	var pods []PodRef
	for _, ns := range modelNamespaces {
		for _, name := range modelPodNames {
			pods = append(pods, NewPodRef(ns, name))
		}
	}
	return Model{
		Namespaces: slices.Clone(modelNamespaces),
		Pods:       pods,
		Ports:      []int32{80, 81},
		Protocols:  []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP},
	}
}

// PortName is the container port name upstream gives (port, protocol): serve-80-tcp.
func PortName(port int32, protocol corev1.Protocol) string {
	return fmt.Sprintf("serve-%d-%s", port, strings.ToLower(string(protocol)))
}

// ContainerPorts are the ports every pod of the model declares, protocols outer, ports inner.
func (m Model) ContainerPorts() []corev1.ContainerPort {
	var out []corev1.ContainerPort
	for _, proto := range m.Protocols {
		for _, port := range m.Ports {
			out = append(out, corev1.ContainerPort{Name: PortName(port, proto), ContainerPort: port, Protocol: proto})
		}
	}
	return out
}

// PodIPs maps each model pod to its address.
type PodIPs map[PodRef]netip.Addr

// AssignPodIPs gives every pod of the full model a deterministic address in
// prefix: the n-th namespace (x=1) and m-th pod (a=1) get offset n*256+m, so
// in 10.77.0.0/16 x/a is 10.77.1.1 and z/c is 10.77.3.3. IPv6 prefixes work
// the same way (fd00:77::/64 gives fd00:77::101 to x/a).
func AssignPodIPs(prefix netip.Prefix) (PodIPs, error) {
	prefix = prefix.Masked()
	if host := prefix.Addr().BitLen() - prefix.Bits(); host < 10 {
		return nil, fmt.Errorf("pod CIDR %s is too small: need at least a /%d", prefix, prefix.Addr().BitLen()-10)
	}
	base := prefix.Addr().AsSlice()
	ips := PodIPs{}
	for n, ns := range modelNamespaces {
		for m, name := range modelPodNames {
			addr := slices.Clone(base)
			offset := (n+1)*256 + m + 1
			addr[len(addr)-1] |= byte(offset)
			addr[len(addr)-2] |= byte(offset >> 8)
			ip, _ := netip.AddrFromSlice(addr)
			ips[NewPodRef(ns, name)] = ip
		}
	}
	return ips, nil
}

// Env is what a run supplies to build the cases: the pods' addresses and,
// on a shared cluster, the real names of the logical namespaces.
type Env struct {
	PodIPs PodIPs
	// NamespaceNames maps the logical namespaces x, y, z to the names used in
	// the cluster; missing entries keep the logical name.
	NamespaceNames map[string]string
}

// DefaultEnv keeps the logical namespace names and puts the pods in DefaultPodCIDR.
func DefaultEnv() Env {
	ips, err := AssignPodIPs(netip.MustParsePrefix(DefaultPodCIDR))
	if err != nil {
		panic(err) // unreachable: DefaultPodCIDR is a constant /16
	}
	return Env{PodIPs: ips}
}

// Namespace returns the real name of a logical namespace.
func (e Env) Namespace(logical string) string {
	if real, ok := e.NamespaceNames[logical]; ok && real != "" {
		return real
	}
	return logical
}

// NamespaceObject builds the Namespace for a logical namespace, labelled as
// the API server labels it (kubernetes.io/metadata.name) plus extra.
func (e Env) NamespaceObject(logical string, extra map[string]string) *corev1.Namespace {
	name := e.Namespace(logical)
	labels := map[string]string{corev1.LabelMetadataName: name}
	maps.Copy(labels, extra)
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

// PodObject builds the running Pod for ref in model m: label pod=<name> plus
// extra, one container declaring the model's ports, and the pod IP from the
// Env when there is one.
func (e Env) PodObject(m Model, ref PodRef, extra map[string]string) *corev1.Pod {
	labels := map[string]string{PodLabelKey: ref.Name()}
	maps.Copy(labels, extra)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: ref.Name(), Namespace: e.Namespace(ref.Namespace()), Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "agnhost",
			Ports: m.ContainerPorts(),
		}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if ip, ok := e.PodIPs[ref]; ok {
		pod.Status.PodIP = ip.String()
		pod.Status.PodIPs = []corev1.PodIP{{IP: ip.String()}}
	}
	return pod
}
