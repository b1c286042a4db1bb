// Package agentclient is how the CLI reaches the node agents: Discover lists
// the agent pods of an installation (one per node), and Dial opens a gRPC
// connection to one of them through the API server's pods/portforward.
//
// The agent runs with hostNetwork and listens on 127.0.0.1 only, so nothing
// is exposed on the node network: the kubelet connects to the agent's port
// inside the pod's (the node's) network namespace, and the bytes travel in a
// stream of the port-forward connection. Access control is therefore
// Kubernetes RBAC alone: `list` on pods to find the agents and `create` on
// pods/portforward to reach them, both in the install namespace.
//
// One port-forward connection is opened per pod; every gRPC (re)dial creates
// a fresh error+data stream pair in it, the way kubectl port-forward does
// for each accepted connection, but with no local listener: the data stream
// itself is the net.Conn handed to gRPC.
//
// The package builds on every OS and imports nothing linux-only.
package agentclient
