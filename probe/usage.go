//go:build linux

package probe

// MapUsage is how full one of the datapath's maps is.
type MapUsage struct {
	Name         string
	Entries, Max uint64
}

// MapUsage reports the entries this process wrote (or recovered from the
// pins) in the maps that grow with the cluster, against their capacity: what
// `kubectl netpol status` shows as pressure. Policy slots count two per
// endpoint (ingress and egress).
func (p *Probe) MapUsage() []MapUsage {
	p.mu.Lock()
	defer p.mu.Unlock()
	hosts := uint64(len(p.state.hosts))
	return []MapUsage{
		{Name: "netpol_hosts", Entries: hosts, Max: uint64(p.objs.NetpolHosts.MaxEntries())},
		{Name: "netpol_ipcache", Entries: uint64(len(p.state.ipcache)) - hosts, Max: uint64(p.objs.NetpolIpcache.MaxEntries())},
		{Name: "netpol_endpoints", Entries: uint64(len(p.state.endpoints)), Max: uint64(p.objs.NetpolEndpoints.MaxEntries())},
		{Name: "netpol_policy_slots", Entries: 2 * uint64(len(p.state.pairs)), Max: uint64(p.objs.NetpolPolicySlots.MaxEntries())},
	}
}
