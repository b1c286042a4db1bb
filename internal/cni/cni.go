package cni

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Facts are what a node, or the API, shows of the CNI. Every field is
// optional: classification uses what is there.
type Facts struct {
	// ConfFiles are the node's CNI configuration files (file name ->
	// content), e.g. "10-flannel.conflist".
	ConfFiles map[string]string `json:"confFiles,omitempty"`
	Links     []Link            `json:"links,omitempty"`
	// Pins are paths under the node's bpffs, relative to its root
	// ("tc/globals/cilium_calls_00042").
	Pins []string `json:"pins,omitempty"`
	// Chains are the nftables chains (iptables-nft rules are nftables
	// chains too).
	Chains []Chain `json:"chains,omitempty"`
	// DaemonSets and ConfigMaps come from the API (install's preflight, or
	// the agent where RBAC lets it read them).
	DaemonSets []DaemonSet `json:"daemonSets,omitempty"`
	// ConfigMaps: "namespace/name" -> data.
	ConfigMaps map[string]map[string]string `json:"configMaps,omitempty"`
}

// Link is one network interface of the node.
type Link struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // netlink kind: veth, bridge, vxlan, ipip, wireguard, openvswitch, ...
	// PodPeer is set on a veth whose peer lives in another network
	// namespace (a pod's).
	PodPeer bool `json:"podPeer,omitempty"`
	// Master is the bridge (or other master) the link is a port of.
	Master string `json:"master,omitempty"`
	// TCPrograms are the names of the tc (cls_bpf) and tcx programs
	// attached to the link, the agent's own excluded.
	TCPrograms []string `json:"tcPrograms,omitempty"`
}

// Chain is one nftables chain.
type Chain struct {
	Family string `json:"family"` // ip, ip6, inet, ...
	Table  string `json:"table"`
	Name   string `json:"name"`
}

// DaemonSet is a CNI's node agent as the API shows it.
type DaemonSet struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Images    []string          `json:"images,omitempty"`
	Env       map[string]string `json:"env,omitempty"` // of every container, merged
	Args      []string          `json:"args,omitempty"`
}

// Coverage is how much pod traffic passes the netfilter hooks the agent
// enforces on.
type Coverage string

// Coverages.
const (
	// CoverageFull: every pod packet passes netfilter (with conntrack).
	CoverageFull Coverage = "full"
	// CoveragePartial: some pod traffic passes, some is redirected past it.
	CoveragePartial Coverage = "partial"
	// CoverageNone: pod traffic is redirected past netfilter; the agent sees
	// only stray packets.
	CoverageNone Coverage = "none"
	// CoverageUnknown: no CNI recognised.
	CoverageUnknown Coverage = "unknown"
)

// Result is the CNI identified and what it means for the agent.
type Result struct {
	// Name is the CNI ("Flannel", "bridge", "ptp", "Calico", "Canal",
	// "Cilium", "Weave Net", "kube-router"); "" when none is recognised.
	Name string `json:"name,omitempty"`
	// Mode is the CNI's datapath mode where it matters ("vxlan",
	// "iptables", "eBPF", "vxlan tunnel", ...).
	Mode     string   `json:"mode,omitempty"`
	Coverage Coverage `json:"coverage"`
	// EnforcesPolicy: the CNI enforces NetworkPolicy too, so both enforce
	// the same objects and a packet passes only if both accept it.
	EnforcesPolicy bool `json:"enforcesPolicy,omitempty"`
	// Evidence are the facts the classification rests on.
	Evidence []string `json:"evidence,omitempty"`
	// Why says what the coverage means, in a sentence.
	Why string `json:"why,omitempty"`
}

// String is "Name (mode)", or "unknown".
func (r Result) String() string {
	if r.Name == "" {
		return "unknown"
	}
	if r.Mode == "" {
		return r.Name
	}
	return r.Name + " (" + r.Mode + ")"
}

// Bypasses reports whether the CNI's datapath takes some or all pod traffic
// past netfilter.
func (r Result) Bypasses() bool {
	return r.Coverage == CoveragePartial || r.Coverage == CoverageNone
}

// signals gathers, per CNI, the facts that point at it.
type signals map[string][]string

func (s signals) add(cni, format string, args ...any) {
	ev := fmt.Sprintf(format, args...)
	if !slices.Contains(s[cni], ev) {
		s[cni] = append(s[cni], ev)
	}
}

// CNI keys of signals.
const (
	keyCilium     = "Cilium"
	keyCalico     = "Calico"
	keyCanal      = "Canal"
	keyWeave      = "Weave Net"
	keyKubeRouter = "kube-router"
	keyFlannel    = "Flannel"
	keyBridge     = "bridge"
	keyPTP        = "ptp"
)

// Classify identifies the CNI from f. The first CNI of this order with any
// signal wins: an eBPF datapath (Cilium, Calico) leaves its marks beside a
// bridge or a tunnel, never the other way round.
func Classify(f Facts) Result {
	s := signals{}
	confSignals(f, s)
	linkSignals(f, s)
	for _, p := range f.Pins {
		base := p[strings.LastIndex(p, "/")+1:]
		switch {
		case strings.HasPrefix(base, "cilium_"):
			s.add(keyCilium, "pinned map %s", p)
		case strings.HasPrefix(base, "cali_") || strings.HasPrefix(p, "calico/"):
			s.add(keyCalico, "pinned map %s", p)
		}
	}
	for _, c := range f.Chains {
		switch {
		case c.Table == "calico" || strings.HasPrefix(c.Name, "cali-"):
			s.add(keyCalico, "chain %s %s %s", c.Family, c.Table, c.Name)
		case strings.HasPrefix(c.Name, "WEAVE-NPC"):
			s.add(keyWeave, "chain %s %s %s", c.Family, c.Table, c.Name)
		case strings.HasPrefix(c.Name, "KUBE-ROUTER-") || strings.HasPrefix(c.Name, "KUBE-NWPLCY-"):
			s.add(keyKubeRouter, "chain %s %s %s", c.Family, c.Table, c.Name)
		case c.Table == "cilium" || strings.HasPrefix(c.Name, "CILIUM_"):
			s.add(keyCilium, "chain %s %s %s", c.Family, c.Table, c.Name)
		}
	}
	for _, ds := range f.DaemonSets {
		if k := daemonSetCNI(ds.Name); k != "" {
			s.add(k, "DaemonSet %s/%s", ds.Namespace, ds.Name)
		}
	}
	for _, key := range sortedKeys(f.ConfigMaps) {
		switch key[strings.Index(key, "/")+1:] {
		case "cilium-config":
			s.add(keyCilium, "ConfigMap %s", key)
		case "calico-config":
			s.add(keyCalico, "ConfigMap %s", key)
		case "kube-flannel-cfg":
			s.add(keyFlannel, "ConfigMap %s", key)
		case "canal-config":
			s.add(keyCanal, "ConfigMap %s", key)
		}
	}
	// Canal is Flannel's network with Calico's policy (Felix in iptables
	// mode): Calico's veths beside Flannel's tunnel.
	if len(s[keyCalico]) > 0 && len(s[keyFlannel]) > 0 && len(s[keyCanal]) == 0 && !calicoEBPF(f, s) {
		s[keyCanal] = append(append([]string{}, s[keyFlannel]...), s[keyCalico]...)
	}
	for _, key := range []string{keyCilium, keyCanal, keyCalico, keyWeave, keyKubeRouter, keyFlannel, keyBridge, keyPTP} {
		if ev := s[key]; len(ev) > 0 {
			r := classifyAs(key, f, s)
			r.Evidence = ev
			return r
		}
	}
	return Result{Coverage: CoverageUnknown,
		Why: "no known CNI recognised: the agent enforces what passes the netfilter hooks; the bypass self-check tells whether pod traffic does"}
}

func classifyAs(key string, f Facts, s signals) Result {
	switch key {
	case keyCilium:
		return cilium(f)
	case keyCalico:
		if calicoEBPF(f, s) {
			return Result{Name: keyCalico, Mode: "eBPF", Coverage: CoverageNone,
				Why: "Calico's eBPF dataplane redirects pod traffic between interfaces with tc programs: it skips routing, conntrack and netfilter, so the agent sees only stray packets"}
		}
		mode := "iptables"
		if calicoNFT(f) {
			mode = "nftables"
		}
		return Result{Name: keyCalico, Mode: mode, Coverage: CoverageFull, EnforcesPolicy: true,
			Why: "pod traffic passes netfilter with conntrack; Calico enforces NetworkPolicy too: both enforce the same objects and a packet passes only if both accept it"}
	case keyCanal:
		return Result{Name: keyCanal, Mode: flannelMode(f), Coverage: CoverageFull, EnforcesPolicy: true,
			Why: "Flannel's network with Calico's policy: pod traffic passes netfilter; Calico enforces NetworkPolicy too, so a packet passes only if both accept it"}
	case keyWeave:
		mode := "sleeve"
		if slices.ContainsFunc(f.Links, func(l Link) bool { return l.Name == "datapath" }) {
			mode = "fastdp"
		}
		return Result{Name: keyWeave, Mode: mode, Coverage: CoverageFull, EnforcesPolicy: true,
			Why: "pods are ports of the weave bridge and br_netfilter passes their traffic to netfilter; weave-npc enforces NetworkPolicy too, so a packet passes only if both accept it"}
	case keyKubeRouter:
		enforces := true
		for _, ds := range f.DaemonSets {
			if daemonSetCNI(ds.Name) == keyKubeRouter && slices.Contains(ds.Args, "--run-firewall=false") {
				enforces = false
			}
		}
		r := Result{Name: keyKubeRouter, Coverage: CoverageFull, EnforcesPolicy: enforces,
			Why: "pods are ports of kube-bridge and their traffic passes netfilter"}
		if enforces {
			r.Why += "; kube-router's firewall enforces NetworkPolicy too, so a packet passes only if both accept it"
		}
		return r
	case keyFlannel:
		return Result{Name: keyFlannel, Mode: flannelMode(f), Coverage: CoverageFull,
			Why: "pods are ports of the cni0 bridge: their traffic passes netfilter when br_netfilter is on (the bridge-nf-call-iptables check)"}
	case keyBridge:
		return Result{Name: keyBridge, Coverage: CoverageFull,
			Why: "pods are ports of a Linux bridge: their traffic passes netfilter when br_netfilter is on (the bridge-nf-call-iptables check)"}
	case keyPTP:
		return Result{Name: keyPTP, Coverage: CoverageFull, Why: "pods are routed over veths: their traffic passes netfilter's FORWARD hook"}
	}
	return Result{Coverage: CoverageUnknown}
}

// confSignals reads the CNI configuration files: their names and the
// plugin types they chain.
func confSignals(f Facts, s signals) {
	for _, name := range sortedKeys(f.ConfFiles) {
		lower := strings.ToLower(name)
		for _, key := range []string{keyCilium, keyCanal, keyCalico, keyFlannel, keyWeave} {
			if strings.Contains(lower, strings.ToLower(strings.Fields(key)[0])) {
				s.add(key, "CNI configuration %s", name)
			}
		}
		if strings.Contains(lower, "kuberouter") || strings.Contains(lower, "kube-router") {
			s.add(keyKubeRouter, "CNI configuration %s", name)
		}
		for _, typ := range pluginTypes(f.ConfFiles[name]) {
			switch typ {
			case "cilium-cni":
				s.add(keyCilium, "CNI configuration %s: plugin %s", name, typ)
			case "calico":
				s.add(keyCalico, "CNI configuration %s: plugin %s", name, typ)
			case "flannel":
				s.add(keyFlannel, "CNI configuration %s: plugin %s", name, typ)
			case "weave-net", "weave-plugin":
				s.add(keyWeave, "CNI configuration %s: plugin %s", name, typ)
			case "bridge":
				s.add(keyBridge, "CNI configuration %s: plugin %s", name, typ)
			case "ptp":
				s.add(keyPTP, "CNI configuration %s: plugin %s", name, typ)
			}
		}
	}
}

// pluginTypes are the "type" fields of a .conf or .conflist (and of a
// Flannel delegate), in order; nothing for a file that is not JSON.
func pluginTypes(content string) []string {
	var conf struct {
		Type     string `json:"type"`
		Delegate *struct {
			Type string `json:"type"`
		} `json:"delegate"`
		Plugins []struct {
			Type string `json:"type"`
		} `json:"plugins"`
	}
	if json.Unmarshal([]byte(content), &conf) != nil {
		return nil
	}
	var out []string
	if conf.Type != "" {
		out = append(out, conf.Type)
	}
	for _, p := range conf.Plugins {
		out = append(out, p.Type)
	}
	return out
}

func linkSignals(f Facts, s signals) {
	for _, l := range f.Links {
		n := l.Name
		switch {
		case n == "cilium_host" || n == "cilium_net" || n == "cilium_vxlan" || n == "cilium_geneve" || n == "cilium_wg0":
			s.add(keyCilium, "link %s (%s)", n, l.Kind)
		case strings.HasPrefix(n, "lxc") && l.Kind == "veth" && len(l.TCPrograms) > 0:
			s.add(keyCilium, "pod link %s with tc programs %s", n, strings.Join(l.TCPrograms, ", "))
		case strings.HasPrefix(n, "cali") && l.Kind == "veth":
			s.add(keyCalico, "pod links cali* (veth)")
		case n == "vxlan.calico" || n == "vxlan-v6.calico" || n == "wireguard.cali" || (n == "tunl0" && hasCalicoLinks(f)):
			s.add(keyCalico, "link %s (%s)", n, l.Kind)
		case n == "weave" || n == "vxlan-6784" || strings.HasPrefix(n, "vethwe-"):
			s.add(keyWeave, "link %s (%s)", n, l.Kind)
		case n == "kube-bridge" || n == "kube-dummy-if":
			s.add(keyKubeRouter, "link %s (%s)", n, l.Kind)
		case n == "flannel.1" || n == "flannel-v6.1" || n == "flannel-wg" || n == "flannel-wg-v6":
			s.add(keyFlannel, "link %s (%s)", n, l.Kind)
		}
		for _, p := range l.TCPrograms {
			switch {
			case strings.HasPrefix(p, "cil_") || strings.Contains(p, "from-container") || strings.Contains(p, "from_container"):
				s.add(keyCilium, "tc program %s on %s", p, n)
			case strings.HasPrefix(p, "cali_") || strings.HasPrefix(p, "calico_"):
				s.add(keyCalico, "tc program %s on %s", p, n)
			}
		}
	}
	// A bridge with pod ports and nothing else recognised: the bridge plugin
	// (or a bridge CNI that left no other mark).
	ports := map[string]int{}
	for _, l := range f.Links {
		if l.PodPeer && l.Master != "" {
			ports[l.Master]++
		}
	}
	for _, l := range f.Links {
		if l.Kind == "bridge" && ports[l.Name] > 0 {
			s.add(keyBridge, "bridge %s with %d pod ports", l.Name, ports[l.Name])
		}
	}
}

func hasCalicoLinks(f Facts) bool {
	return slices.ContainsFunc(f.Links, func(l Link) bool { return strings.HasPrefix(l.Name, "cali") && l.Kind == "veth" })
}

// calicoEBPF: Felix's tc programs on the pod interfaces, its maps pinned
// under tc/globals, or its configuration asking for the eBPF dataplane.
func calicoEBPF(f Facts, s signals) bool {
	for _, ev := range s[keyCalico] {
		if strings.HasPrefix(ev, "tc program") || strings.HasPrefix(ev, "pinned map") {
			return true
		}
	}
	for _, ds := range f.DaemonSets {
		if daemonSetCNI(ds.Name) == keyCalico && strings.EqualFold(ds.Env["FELIX_BPFENABLED"], "true") {
			return true
		}
	}
	return false
}

func calicoNFT(f Facts) bool {
	for _, c := range f.Chains {
		if c.Table == "calico" {
			return true
		}
	}
	for _, ds := range f.DaemonSets {
		if daemonSetCNI(ds.Name) == keyCalico && strings.EqualFold(ds.Env["FELIX_NFTABLESMODE"], "Enabled") {
			return true
		}
	}
	return false
}

// flannelMode: the backend of net-conf.json when the ConfigMap is readable,
// else the tunnel link's kind.
func flannelMode(f Facts) string {
	for _, key := range sortedKeys(f.ConfigMaps) {
		if strings.HasSuffix(key, "/kube-flannel-cfg") || strings.HasSuffix(key, "/canal-config") {
			var nc struct{ Backend struct{ Type string } }
			if json.Unmarshal([]byte(f.ConfigMaps[key]["net-conf.json"]), &nc) == nil && nc.Backend.Type != "" {
				return strings.ToLower(nc.Backend.Type)
			}
		}
	}
	for _, l := range f.Links {
		switch l.Name {
		case "flannel-wg", "flannel-wg-v6":
			return "wireguard"
		case "flannel.1", "flannel-v6.1":
			return "vxlan"
		}
	}
	return "host-gw"
}

// cilium reads the mode from cilium-config when it is readable (a missing
// key means the default), else from the links.
func cilium(f Facts) Result {
	var cfg map[string]string
	for _, key := range sortedKeys(f.ConfigMaps) {
		if strings.HasSuffix(key, "/cilium-config") {
			cfg = f.ConfigMaps[key]
		}
	}
	routing := cfg["routing-mode"]
	if routing == "" {
		// Before 1.14: tunnel=vxlan|geneve|disabled.
		switch cfg["tunnel"] {
		case "disabled":
			routing = "native"
		case "vxlan", "geneve":
			routing = "tunnel"
		}
	}
	proto := cfg["tunnel-protocol"]
	if proto == "" {
		proto = cfg["tunnel"]
	}
	for _, l := range f.Links {
		switch l.Name {
		case "cilium_vxlan":
			if routing == "" {
				routing = "tunnel"
			}
			if proto == "" || proto == "disabled" {
				proto = "vxlan"
			}
		case "cilium_geneve":
			if routing == "" {
				routing = "tunnel"
			}
			if proto == "" || proto == "disabled" {
				proto = "geneve"
			}
		}
	}
	if routing == "" {
		if cfg != nil {
			routing = "tunnel" // Cilium's default
		} else {
			routing = "native"
		}
	}
	r := Result{Name: keyCilium, Coverage: CoverageNone}
	if routing == "tunnel" {
		if proto == "" || proto == "disabled" {
			proto = "vxlan"
		}
		r.Mode = proto + " tunnel"
		r.Why = "Cilium delivers traffic between pods of a node veth to veth and cross-node traffic through its tunnel with tc programs: netfilter never sees it"
		return r
	}
	r.Mode = "native routing"
	legacy, endpointRoutes := cfg["enable-host-legacy-routing"] == "true", cfg["enable-endpoint-routes"] == "true"
	if legacy && endpointRoutes {
		r.Mode += ", legacy host routing, endpoint routes"
		r.Coverage = CoveragePartial
		r.Why = "cross-node pod traffic passes netfilter's FORWARD hook, but Cilium delivers traffic between pods of a node veth to veth: the agent enforces only the former"
		return r
	}
	r.Why = "Cilium redirects pod traffic between interfaces with tc programs (eBPF host routing, local delivery): netfilter never sees it"
	return r
}

// daemonSetCNI maps a CNI's DaemonSet name to its CNI.
func daemonSetCNI(name string) string {
	switch {
	case name == "cilium":
		return keyCilium
	case name == "calico-node":
		return keyCalico
	case name == "canal":
		return keyCanal
	case name == "weave-net":
		return keyWeave
	case name == "kube-router":
		return keyKubeRouter
	case strings.HasPrefix(name, "kube-flannel") || name == "flannel":
		return keyFlannel
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Advice is what `kubectl netpol install` says beside r: what works, what
// does not, and whether installing needs --force (the agent could not
// enforce on some pod traffic).
func Advice(r Result) (lines []string, needsForce bool) {
	switch r.Coverage {
	case CoverageUnknown:
		return []string{"no known CNI found (a CNI under another name is not recognised): the agent enforces what passes the netfilter hooks; " +
			"after install, `kubectl netpol status` shows the CNI each agent finds on its node and whether pod traffic bypasses the agent"}, false
	case CoverageNone, CoveragePartial:
		what := "the agent would see and enforce almost none of the pod traffic"
		if r.Coverage == CoveragePartial {
			what = "the agent would enforce only part of the pod traffic"
		}
		return []string{
			fmt.Sprintf("%s: %s", r, r.Why),
			what + ", silently for the traffic it never sees; NetworkPolicy here is " + enforcer(r) + "'s to enforce",
			"with --force the agent installs anyway: `kubectl netpol status` then shows each node as not enforcing (or partially) once its pods exchange traffic, and `explain`, `check` and `matrix` work as without the agent",
		}, true
	}
	lines = []string{fmt.Sprintf("%s: %s", r, r.Why)}
	if r.EnforcesPolicy {
		lines = append(lines, fmt.Sprintf("both %s and the agent enforce the same NetworkPolicy objects: a packet passes only if both accept it; "+
			"`kubectl netpol explain` predicts the agent's verdict (for standard NetworkPolicy %s should agree), and `watch` shows what the agent decided", r.Name, r.Name))
	} else {
		lines = append(lines, "the agent enforces every NetworkPolicy on this CNI and reports a verdict for every flow")
	}
	return lines, false
}

func enforcer(r Result) string {
	if r.Name == "" {
		return "the CNI"
	}
	return r.Name
}
