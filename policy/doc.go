// Package policy is THE NetworkPolicy engine of kubectl-netpol: pure Go, no
// clients, no I/O. The CLI (explain, check, matrix, watch) and the node agent's
// datapath compiler both use it, so what the CLI says and what the kernel does
// cannot disagree.
//
// A Snapshot (pods, namespaces, networking.k8s.io/v1 NetworkPolicies) is
// indexed once by NewEngine; Engine.Evaluate then answers one Traffic at a time
// with a Decision that explains itself: which policies isolate each side,
// which policy / rule / peer / port allowed the traffic, and, when nothing
// did, why each rule of each selecting policy did not match.
package policy
