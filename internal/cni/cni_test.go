package cni

import (
	"strings"
	"testing"
)

// Captured node facts, one per row of the CNI table (docs/install.md). The
// Flannel and bridge rows are what the agent gathers on the test cluster;
// the others are the names, kinds, programs, pins and chains each CNI's
// sources and documentation give (none of them can run here).
var (
	testClusterFlannelConf = `{"cniVersion":"0.3.1","name":"netpol-flannel","plugins":[{"type":"flannel","delegate":{"hairpinMode":true}},{"type":"portmap"}]}`
	testClusterBridgeConf  = `{"cniVersion":"0.4.0","name":"netpol-cluster","plugins":[{"type":"bridge","bridge":"k8sbr0"}]}`
	calicoConf             = `{"name":"k8s-pod-network","cniVersion":"0.3.1","plugins":[{"type":"calico","datastore_type":"kubernetes"},{"type":"portmap"},{"type":"bandwidth"}]}`
	ciliumConf             = `{"cniVersion":"0.3.1","name":"cilium","plugins":[{"type":"cilium-cni","enable-debug":false}]}`
	weaveConf              = `{"cniVersion":"0.3.0","name":"weave","plugins":[{"name":"weave","type":"weave-net","hairpinMode":true},{"type":"portmap"}]}`
	kubeRouterConf         = `{"cniVersion":"0.3.0","name":"mynet","plugins":[{"name":"kubernetes","type":"bridge","bridge":"kube-bridge","isDefaultGateway":true}]}`
	ptpConf                = `{"cniVersion":"0.4.0","name":"ptp-net","plugins":[{"type":"ptp","ipMasq":true}]}`
)

func pod(name string, progs ...string) Link {
	return Link{Name: name, Kind: "veth", PodPeer: true, TCPrograms: progs}
}

func bridgePort(name, bridge string) Link {
	return Link{Name: name, Kind: "veth", PodPeer: true, Master: bridge}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name     string
		facts    Facts
		want     string // Result.String()
		coverage Coverage
		enforces bool
		evidence string // one piece of evidence that must be named
	}{
		{
			name: "Flannel vxlan (the 3-node test cluster)",
			facts: Facts{
				ConfFiles: map[string]string{"10-flannel.conflist": testClusterFlannelConf},
				Links: []Link{{Name: "eth0", Kind: "veth"}, {Name: "flannel.1", Kind: "vxlan"}, {Name: "cni0", Kind: "bridge"},
					bridgePort("veth1a2b3c4d", "cni0"), bridgePort("veth5e6f7a8b", "cni0")},
			},
			want: "Flannel (vxlan)", coverage: CoverageFull, evidence: "link flannel.1 (vxlan)",
		},
		{
			name: "Flannel vxlan, links only (conf dir not readable)",
			facts: Facts{Links: []Link{{Name: "flannel.1", Kind: "vxlan"}, {Name: "cni0", Kind: "bridge"},
				bridgePort("veth1a2b3c4d", "cni0")}},
			want: "Flannel (vxlan)", coverage: CoverageFull,
		},
		{
			name: "Flannel host-gw from its ConfigMap",
			facts: Facts{
				ConfFiles:  map[string]string{"10-flannel.conflist": testClusterFlannelConf},
				Links:      []Link{{Name: "cni0", Kind: "bridge"}, bridgePort("veth1", "cni0")},
				ConfigMaps: map[string]map[string]string{"kube-flannel/kube-flannel-cfg": {"net-conf.json": `{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`}},
			},
			want: "Flannel (host-gw)", coverage: CoverageFull,
		},
		{
			name:  "Flannel wireguard",
			facts: Facts{Links: []Link{{Name: "flannel-wg", Kind: "wireguard"}, {Name: "cni0", Kind: "bridge"}}},
			want:  "Flannel (wireguard)", coverage: CoverageFull,
		},
		{
			name: "bridge (the 1-node test cluster)",
			facts: Facts{
				ConfFiles: map[string]string{"10-netpol.conflist": testClusterBridgeConf},
				Links:     []Link{{Name: "k8sbr0", Kind: "bridge"}, bridgePort("veth0d1e2f3a", "k8sbr0")},
			},
			want: "bridge", coverage: CoverageFull, evidence: "plugin bridge",
		},
		{
			name:  "bridge, links only",
			facts: Facts{Links: []Link{{Name: "k8sbr0", Kind: "bridge"}, bridgePort("veth0d1e2f3a", "k8sbr0"), {Name: "docker0", Kind: "bridge"}}},
			want:  "bridge", coverage: CoverageFull, evidence: "bridge k8sbr0 with 1 pod ports",
		},
		{
			name:  "ptp",
			facts: Facts{ConfFiles: map[string]string{"10-ptp.conflist": ptpConf}, Links: []Link{pod("veth1234")}},
			want:  "ptp", coverage: CoverageFull,
		},
		{
			name: "Calico iptables (iptables-nft)",
			facts: Facts{
				ConfFiles: map[string]string{"10-calico.conflist": calicoConf, "calico-kubeconfig": "apiVersion: v1"},
				Links:     []Link{{Name: "tunl0", Kind: "ipip"}, pod("cali1b2c3d4e5f6"), pod("cali7a8b9c0d1e2")},
				Chains:    []Chain{{"ip", "filter", "FORWARD"}, {"ip", "filter", "cali-FORWARD"}, {"ip", "filter", "cali-pi-_abc"}},
			},
			want: "Calico (iptables)", coverage: CoverageFull, enforces: true, evidence: "chain ip filter cali-FORWARD",
		},
		{
			name: "Calico iptables (legacy iptables: no nftables chain)",
			facts: Facts{
				ConfFiles: map[string]string{"10-calico.conflist": calicoConf},
				Links:     []Link{{Name: "vxlan.calico", Kind: "vxlan"}, pod("cali1b2c3d4e5f6")},
			},
			want: "Calico (iptables)", coverage: CoverageFull, enforces: true, evidence: "link vxlan.calico (vxlan)",
		},
		{
			name: "Calico nftables",
			facts: Facts{
				ConfFiles: map[string]string{"10-calico.conflist": calicoConf},
				Links:     []Link{{Name: "vxlan.calico", Kind: "vxlan"}, pod("cali1b2c3d4e5f6")},
				Chains:    []Chain{{"ip", "calico", "filter-FORWARD"}, {"ip6", "calico", "filter-FORWARD"}},
			},
			want: "Calico (nftables)", coverage: CoverageFull, enforces: true, evidence: "chain ip calico filter-FORWARD",
		},
		{
			name: "Calico eBPF",
			facts: Facts{
				ConfFiles: map[string]string{"10-calico.conflist": calicoConf},
				Links: []Link{{Name: "bpfout.cali", Kind: "veth"}, pod("cali1b2c3d4e5f6", "cali_tc_preambl", "cali_tc_preambl"),
					{Name: "eth0", Kind: "veth", TCPrograms: []string{"cali_tc_preambl"}}},
				Pins: []string{"tc/globals/cali_v4_state4", "tc/globals/cali_v4_ct3", "calico/bpf_dataplane_state"},
			},
			want: "Calico (eBPF)", coverage: CoverageNone, evidence: "tc program cali_tc_preambl on cali1b2c3d4e5f6",
		},
		{
			name:  "Calico eBPF from the API (FELIX_BPFENABLED)",
			facts: Facts{DaemonSets: []DaemonSet{{Namespace: "calico-system", Name: "calico-node", Env: map[string]string{"FELIX_BPFENABLED": "true"}}}},
			want:  "Calico (eBPF)", coverage: CoverageNone, evidence: "DaemonSet calico-system/calico-node",
		},
		{
			name: "Canal (Flannel network, Calico policy)",
			facts: Facts{
				ConfFiles: map[string]string{"10-canal.conflist": calicoConf},
				Links:     []Link{{Name: "flannel.1", Kind: "vxlan"}, pod("cali1b2c3d4e5f6")},
				Chains:    []Chain{{"ip", "filter", "cali-FORWARD"}},
			},
			want: "Canal (vxlan)", coverage: CoverageFull, enforces: true,
		},
		{
			name: "Cilium tunnel (vxlan), from the links and pins",
			facts: Facts{
				ConfFiles: map[string]string{"05-cilium.conflist": ciliumConf},
				Links: []Link{{Name: "cilium_net", Kind: "veth"}, {Name: "cilium_host", Kind: "veth", TCPrograms: []string{"cil_to_host", "cil_from_host"}},
					{Name: "cilium_vxlan", Kind: "vxlan", TCPrograms: []string{"cil_from_overlay"}}, pod("lxc1a2b3c4d5e6f", "cil_from_contai"), pod("lxc_health", "cil_from_contai")},
				Pins: []string{"tc/globals/cilium_calls_00042", "tc/globals/cilium_lxc", "tc/globals/cilium_ct4_global"},
			},
			want: "Cilium (vxlan tunnel)", coverage: CoverageNone, evidence: "tc program cil_from_contai on lxc1a2b3c4d5e6f",
		},
		{
			name: "Cilium tunnel (geneve) from cilium-config",
			facts: Facts{
				DaemonSets: []DaemonSet{{Namespace: "kube-system", Name: "cilium"}},
				ConfigMaps: map[string]map[string]string{"kube-system/cilium-config": {"routing-mode": "tunnel", "tunnel-protocol": "geneve"}},
			},
			want: "Cilium (geneve tunnel)", coverage: CoverageNone,
		},
		{
			name: "Cilium with default configuration (missing keys: tunnel, vxlan)",
			facts: Facts{
				DaemonSets: []DaemonSet{{Namespace: "kube-system", Name: "cilium"}},
				ConfigMaps: map[string]map[string]string{"kube-system/cilium-config": {"cluster-name": "default"}},
			},
			want: "Cilium (vxlan tunnel)", coverage: CoverageNone,
		},
		{
			name: "Cilium native routing, eBPF host routing",
			facts: Facts{
				Links:      []Link{{Name: "cilium_host", Kind: "veth"}, pod("lxc1a2b3c4d5e6f", "cil_from_contai")},
				ConfigMaps: map[string]map[string]string{"kube-system/cilium-config": {"routing-mode": "native", "kube-proxy-replacement": "true"}},
			},
			want: "Cilium (native routing)", coverage: CoverageNone,
		},
		{
			name: "Cilium native routing, legacy host routing, endpoint routes",
			facts: Facts{
				Links: []Link{{Name: "cilium_host", Kind: "veth"}, pod("lxc1a2b3c4d5e6f", "cil_from_contai")},
				ConfigMaps: map[string]map[string]string{"kube-system/cilium-config": {"routing-mode": "native",
					"enable-host-legacy-routing": "true", "enable-endpoint-routes": "true"}},
			},
			want: "Cilium (native routing, legacy host routing, endpoint routes)", coverage: CoveragePartial,
		},
		{
			name: "Cilium before 1.14 (tunnel: disabled)",
			facts: Facts{
				Links:      []Link{{Name: "cilium_host", Kind: "veth"}},
				ConfigMaps: map[string]map[string]string{"kube-system/cilium-config": {"tunnel": "disabled"}},
			},
			want: "Cilium (native routing)", coverage: CoverageNone,
		},
		{
			name: "Weave Net fastdp",
			facts: Facts{
				ConfFiles: map[string]string{"10-weave.conflist": weaveConf},
				Links: []Link{{Name: "weave", Kind: "bridge"}, {Name: "datapath", Kind: "openvswitch"}, {Name: "vethwe-bridge", Kind: "veth"},
					{Name: "vethwe-datapath", Kind: "veth"}, {Name: "vxlan-6784", Kind: "vxlan"}, bridgePort("vethwepl1a2b3c4", "weave")},
				Chains: []Chain{{"ip", "filter", "WEAVE-NPC"}, {"ip", "filter", "WEAVE-NPC-INGRESS"}},
			},
			want: "Weave Net (fastdp)", coverage: CoverageFull, enforces: true, evidence: "chain ip filter WEAVE-NPC",
		},
		{
			name: "kube-router",
			facts: Facts{
				ConfFiles: map[string]string{"10-kuberouter.conflist": kubeRouterConf},
				Links:     []Link{{Name: "kube-bridge", Kind: "bridge"}, {Name: "kube-dummy-if", Kind: "dummy"}, bridgePort("veth1a2b", "kube-bridge")},
				Chains:    []Chain{{"ip", "filter", "KUBE-ROUTER-FORWARD"}, {"ip", "filter", "KUBE-NWPLCY-DEFAULT"}},
			},
			want: "kube-router", coverage: CoverageFull, enforces: true,
		},
		{
			name: "kube-router without its firewall",
			facts: Facts{
				Links:      []Link{{Name: "kube-bridge", Kind: "bridge"}},
				DaemonSets: []DaemonSet{{Namespace: "kube-system", Name: "kube-router", Args: []string{"--run-router=true", "--run-firewall=false"}}},
			},
			want: "kube-router", coverage: CoverageFull,
		},
		{
			name:  "unknown: no CNI mark at all",
			facts: Facts{Links: []Link{{Name: "lo", Kind: "device"}, {Name: "eth0", Kind: "veth"}}},
			want:  "unknown", coverage: CoverageUnknown,
		},
		{
			name:  "the agent's own tcx program is not a CNI's",
			facts: Facts{Links: []Link{{Name: "k8sbr0", Kind: "bridge"}, bridgePort("veth1", "k8sbr0")}},
			want:  "bridge", coverage: CoverageFull,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Classify(tt.facts)
			if r.String() != tt.want || r.Coverage != tt.coverage || r.EnforcesPolicy != tt.enforces {
				t.Errorf("Classify = %s coverage %s enforces %v, want %s coverage %s enforces %v\nevidence: %v",
					r, r.Coverage, r.EnforcesPolicy, tt.want, tt.coverage, tt.enforces, r.Evidence)
			}
			if r.Why == "" {
				t.Error("no explanation")
			}
			if tt.evidence != "" && !strings.Contains(strings.Join(r.Evidence, "\n"), tt.evidence) {
				t.Errorf("evidence %q lacks %q", r.Evidence, tt.evidence)
			}
		})
	}
}

func TestAdvice(t *testing.T) {
	for _, tt := range []struct {
		r     Result
		force bool
		want  string
	}{
		{Classify(Facts{Links: []Link{{Name: "flannel.1", Kind: "vxlan"}}}), false, "enforces every NetworkPolicy"},
		{Result{Name: "Calico", Mode: "iptables", Coverage: CoverageFull, EnforcesPolicy: true, Why: "x"}, false, "a packet passes only if both accept it"},
		{Result{Name: "Calico", Mode: "iptables", Coverage: CoverageFull, EnforcesPolicy: true, Why: "x"}, false, "`kubectl netpol explain` predicts the agent's verdict"},
		{Result{Name: "Cilium", Mode: "vxlan tunnel", Coverage: CoverageNone, Why: "x"}, true, "almost none of the pod traffic"},
		{Result{Name: "Cilium", Mode: "native routing", Coverage: CoveragePartial, Why: "x"}, true, "only part of the pod traffic"},
		{Result{Coverage: CoverageUnknown}, false, "no known CNI found"},
	} {
		lines, force := Advice(tt.r)
		text := strings.Join(lines, "\n")
		if force != tt.force || !strings.Contains(text, tt.want) {
			t.Errorf("Advice(%s) = force %v\n%s\nwant force %v and %q", tt.r, force, text, tt.force, tt.want)
		}
	}
}
