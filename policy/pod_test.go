package policy_test

import (
	"fmt"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
	. "github.com/kubectl-netpol/kubectl-netpol/policy/policytest"
)

// recordWorld is a Synthetic world with what records must carry besides
// labels: sidecar and plain init containers' ports, an ambiguous named
// port, dual-stack, hostNetwork and finished pods, ClusterNetworkPolicies.
func recordWorld(pods, policies int, seed uint64) *policy.Snapshot {
	s := Synthetic(pods, policies, seed)
	SyntheticCluster(s, 10, seed)
	always := corev1.ContainerRestartPolicyAlways
	for i, p := range s.Pods {
		p.Spec.NodeName = fmt.Sprintf("node-%d", i%2)
		switch i % 6 {
		case 0:
			p.Spec.InitContainers = []corev1.Container{{Name: "proxy", RestartPolicy: &always,
				Ports: []corev1.ContainerPort{{Name: "proxy", ContainerPort: 15001}}},
				{Name: "setup", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 1}}}}
		case 1:
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: fmt.Sprintf("fd00::%x", i)})
		case 2:
			p.Spec.HostNetwork = true
			p.Status.PodIP, p.Status.PodIPs = "172.31.0.1", nil
		case 3:
			p.Status.Phase = corev1.PodFailed
		case 4:
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "side",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8081}}})
		}
	}
	return s
}

// One engine: pods given as records (what the agent keeps) and as objects
// (what the CLI reads) give the same datapath and the same decisions,
// explanations included, and the Engine's pods read the same.
func TestPodRecordsDecideAsObjects(t *testing.T) {
	objects := recordWorld(300, 80, 3)
	records := *objects
	records.Pods = nil
	for _, p := range objects.Pods {
		records.PodRecords = append(records.PodRecords, policy.NewPod(p.DeepCopy()))
	}
	eo, err := policy.NewEngine(objects)
	if err != nil {
		t.Fatal(err)
	}
	er, err := policy.NewEngine(&records)
	if err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{"node-0", "node-1"} {
		do, err := eo.Compile(node)
		if err != nil {
			t.Fatal(err)
		}
		dr, err := er.Compile(node)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(dr, do) {
			t.Fatalf("node %s: the datapath from records differs from the one from objects", node)
		}
	}
	if len(er.Pods()) != len(objects.Pods) {
		t.Fatalf("Pods() has %d, want %d", len(er.Pods()), len(objects.Pods))
	}
	ports := []int32{8080, 9090, 53, 15001, 8081, 1}
	decisions := 0
	for i, src := range objects.Pods {
		if i%7 != 0 {
			continue
		}
		for j, dst := range objects.Pods {
			if j%5 != 0 {
				continue
			}
			proto := corev1.ProtocolTCP
			if (i+j)%4 == 0 {
				proto = corev1.ProtocolUDP
			}
			port := ports[(i+j)%len(ports)]
			want := eo.Evaluate(policy.Traffic{Src: policy.Peer{Pod: src}, Dst: policy.Peer{Pod: dst}, Protocol: proto, Port: port})
			// The records' Engine hands out objects made from its records:
			// callers (explain, check, matrix) pass those back in.
			rs, rd := er.Pod(src.Namespace, src.Name), er.Pod(dst.Namespace, dst.Name)
			if rs == nil || rd == nil {
				t.Fatalf("Pod(%s/%s) or Pod(%s/%s) is nil", src.Namespace, src.Name, dst.Namespace, dst.Name)
			}
			got := er.Evaluate(policy.Traffic{Src: policy.Peer{Pod: rs}, Dst: policy.Peer{Pod: rd}, Protocol: proto, Port: port})
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s/%s -> %s/%s %s/%d: from records\n%+v\nfrom objects\n%+v", src.Namespace, src.Name, dst.Namespace, dst.Name, proto, port, got, want)
			}
			n, nw, nerr := policy.ResolvePort(rd, "http", corev1.ProtocolTCP)
			m, mw, merr := policy.ResolvePort(dst, "http", corev1.ProtocolTCP)
			if n != m || !reflect.DeepEqual(nw, mw) || (nerr == nil) != (merr == nil) {
				t.Fatalf("named port http of %s/%s: %d %v %v from the record's object, %d %v %v from the pod", dst.Namespace, dst.Name, n, nw, nerr, m, mw, merr)
			}
			decisions++
		}
	}
	if decisions < 1000 {
		t.Fatalf("only %d decisions compared", decisions)
	}
	for _, ip := range []string{"10.128.0.7", "fd00::1", "172.31.0.1"} {
		a, b := eo.PodByIP(Addr(ip)), er.PodByIP(Addr(ip))
		if (a == nil) != (b == nil) || (a != nil && (a.Name != b.Name || a.UID != b.UID)) {
			t.Errorf("PodByIP(%s): %v from records, %v from objects", ip, b, a)
		}
	}
}

// A record keeps what policy reads and compares equal across updates
// that change nothing of it.
func TestPodRecordSameForPolicy(t *testing.T) {
	p := Pod("shop", "web", WithLabels("app=web"), WithIP("10.0.0.1"), WithPort("http", 8080, ""))
	a := policy.NewPod(p)
	q := p.DeepCopy()
	q.ResourceVersion = "7"
	q.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	q.Spec.Containers[0].Image = "other"
	if !a.SameForPolicy(policy.NewPod(q)) {
		t.Error("an update invisible to policy changed the record")
	}
	if !a.SameForPolicy(a.DeepCopy()) {
		t.Error("a deep copy differs")
	}
	for name, change := range map[string]func(*corev1.Pod){
		"label":       func(p *corev1.Pod) { p.Labels["app"] = "api" },
		"address":     func(p *corev1.Pod) { p.Status.PodIP, p.Status.PodIPs = "10.0.0.2", nil },
		"named port":  func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 8081 },
		"node":        func(p *corev1.Pod) { p.Spec.NodeName = "n2" },
		"phase":       func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded },
		"hostNetwork": func(p *corev1.Pod) { p.Spec.HostNetwork = true },
	} {
		q := p.DeepCopy()
		change(q)
		if a.SameForPolicy(policy.NewPod(q)) {
			t.Errorf("a %s change left the record the same", name)
		}
	}
}

// ShareWith shares only what is equal: a record that takes another's labels
// map and ports reads the same as before (SameForPolicy compares the ports
// too).
func TestPodShareWith(t *testing.T) {
	first := policy.NewPod(Pod("shop", "web-1", WithLabels("app=web"), WithIP("10.0.0.1"), WithPort("http", 8080, "")))
	for name, tc := range map[string]struct {
		pod          *corev1.Pod
		sharesLabels bool
	}{
		"replica":     {Pod("shop", "web-2", WithLabels("app=web"), WithIP("10.0.0.2"), WithPort("http", 8080, "")), true},
		"other port":  {Pod("shop", "web-3", WithLabels("app=web"), WithIP("10.0.0.3"), WithPort("http", 9090, "")), true},
		"other label": {Pod("shop", "api-1", WithLabels("app=api"), WithIP("10.0.0.4"), WithPort("http", 8080, "")), false},
	} {
		p := policy.NewPod(tc.pod)
		before := p.DeepCopy()
		p.ShareWith(first)
		if !p.SameForPolicy(before) {
			t.Errorf("%s: sharing changed what the record reads", name)
		}
		if shared := reflect.ValueOf(p.Labels).Pointer() == reflect.ValueOf(first.Labels).Pointer(); shared != tc.sharesLabels {
			t.Errorf("%s: labels shared %v, want %v", name, shared, tc.sharesLabels)
		}
	}
}
