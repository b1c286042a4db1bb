package history

// NodeCounts are one connection pair's counts per judging node. A
// connection between two nodes is recorded by both (egress at the source's,
// ingress at the destination's), so readers count it once: the largest of
// the nodes' counts (Max). A pair has one or two nodes: slices beat a map.
type NodeCounts[C any] struct {
	nodes  []string
	counts []C
}

// Of is node's counts, added when new.
func (n *NodeCounts[C]) Of(node string) *C {
	for i, m := range n.nodes {
		if m == node {
			return &n.counts[i]
		}
	}
	var zero C
	n.nodes = append(n.nodes, node)
	n.counts = append(n.counts, zero)
	return &n.counts[len(n.counts)-1]
}

// Max is the largest of get over the nodes.
func (n *NodeCounts[C]) Max(get func(*C) uint64) uint64 {
	var m uint64
	for i := range n.counts {
		m = max(m, get(&n.counts[i]))
	}
	return m
}

// Nodes are the judging nodes, in the order first seen.
func (n *NodeCounts[C]) Nodes() []string { return n.nodes }
