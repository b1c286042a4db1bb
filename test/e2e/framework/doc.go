// Package framework connects end-to-end tests to the local test cluster (hack/cluster, started
// by `make cluster-up` or `make e2e`) and gives them the few verbs they share: a throw-away
// namespace, netprobe pods, exec in a pod, and connectivity probes reported as JSON.
//
// Tests using it carry the build tag e2e and live under test/e2e. They find the cluster through
// KUBECONFIG (make e2e sets it to .cluster/kubeconfig). Without a cluster they skip, or fail
// when the CI environment variable is set.
//
// Typical use:
//
//	c := framework.Connect(t)
//	ns := c.NewNamespace(t, "demo")
//	srv := c.StartProbe(t, ns, "server", map[string]string{"app": "server"})
//	cli := c.StartProbe(t, ns, "client", nil)
//	r := c.Probe(t, cli, framework.Target{Host: srv.Status.PodIP, Port: 80, Protocol: "tcp"})
//	if !r[0].OK { t.Fatal(r[0].Error) }
package framework
