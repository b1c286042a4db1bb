package cli

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-netpol/kubectl-netpol/policy"
)

// parseProtocol accepts TCP, UDP or SCTP in any letter case; "" is "".
func parseProtocol(s string) (corev1.Protocol, error) {
	switch p := corev1.Protocol(strings.ToUpper(s)); p {
	case "", corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		return p, nil
	}
	return "", fmt.Errorf("unknown protocol %q: use TCP, UDP or SCTP", s)
}

// parsePortNumber parses 1-65535.
func parsePortNumber(s string) (int32, bool, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, false, nil // not a number: a port name
	}
	if n < 1 || n > 65535 {
		return 0, true, fmt.Errorf("port %d is out of range 1-65535", n)
	}
	return int32(n), true, nil
}

// portSpec is one port/protocol to evaluate and how to present it.
type portSpec struct {
	Port     int32
	Protocol corev1.Protocol
	// Name is the container port name (declared ports) or the name the user gave.
	Name string
	// Other marks the representative "any other port".
	Other bool
	// Warnings from resolving a named port.
	Warnings []policy.Warning
}

func (p portSpec) String() string {
	s := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
	switch {
	case p.Other:
		s += " (any other port)"
	case p.Name != "":
		s += fmt.Sprintf(" (%s)", p.Name)
	}
	return s
}

// resolveUserPort turns --port (number or name) into a portSpec against dst.
func resolveUserPort(port string, proto corev1.Protocol, dst endpoint) (portSpec, error) {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	n, isNum, err := parsePortNumber(port)
	if err != nil {
		return portSpec{}, err
	}
	if isNum {
		ps := portSpec{Port: n, Protocol: proto}
		for _, d := range declaredPorts(dst.Pod, proto) {
			if d.Port == n {
				ps.Name = d.Name // say which declared port the number is
			}
		}
		return ps, nil
	}
	if dst.Pod == nil {
		return portSpec{}, fmt.Errorf("--port %q is a name, but the destination %s is not a pod: named ports exist only on pods; give a number", port, dst)
	}
	num, warns, err := policy.ResolvePort(dst.Pod, port, proto)
	if err != nil {
		return portSpec{}, fmt.Errorf("--port %s: %v", port, strings.TrimSuffix(err.Error(), ": "+policy.ErrNamedPortAbsent.Error()))
	}
	return portSpec{Port: num, Protocol: proto, Name: port, Warnings: warns}, nil
}

// declaredPorts lists the container ports dst declares (restartable init
// containers included), of protocol proto unless proto is "", sorted.
func declaredPorts(pod *corev1.Pod, proto corev1.Protocol) []portSpec {
	if pod == nil {
		return nil
	}
	seen := map[string]bool{}
	var out []portSpec
	add := func(cs []corev1.Container, initContainers bool) {
		for _, c := range cs {
			if initContainers && (c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
				continue
			}
			for _, p := range c.Ports {
				pr := p.Protocol
				if pr == "" {
					pr = corev1.ProtocolTCP
				}
				if proto != "" && pr != proto {
					continue
				}
				k := fmt.Sprintf("%d/%s", p.ContainerPort, pr)
				if seen[k] {
					continue
				}
				seen[k] = true
				out = append(out, portSpec{Port: p.ContainerPort, Protocol: pr, Name: p.Name})
			}
		}
	}
	add(pod.Spec.InitContainers, true)
	add(pod.Spec.Containers, false)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Protocol != out[j].Protocol {
			return out[i].Protocol > out[j].Protocol // TCP, then UDP, then SCTP
		}
		return out[i].Port < out[j].Port
	})
	return out
}

// otherPort picks the representative of "any other port" for proto: the
// lowest port from 1024 up (then below) neither declared by the destination nor named (as a number,
// range or resolved name) by any rule of the policies that decide this
// traffic. ok is false when every port is named.
func otherPort(e *policy.Engine, src, dst endpoint, proto corev1.Protocol, declared []portSpec) (int32, bool) {
	taken := make([]bool, 65536)
	for _, p := range declared {
		if p.Protocol == proto {
			taken[p.Port] = true
		}
	}
	mark := func(pod *corev1.Pod, dir policy.Direction) {
		if pod == nil {
			return
		}
		for _, ref := range e.SelectingPolicies(pod, dir) {
			for i := range e.RuleCount(ref, dir) {
				rule := policy.RuleRef{Policy: ref, Direction: dir, Index: i}
				_, ports, _, allPorts, ok := e.RuleShape(rule)
				if !ok || allPorts {
					continue
				}
				for j := range ports {
					ranges, _ := e.PortRanges(rule, j, dst.Pod)
					for _, r := range ranges {
						if r.Protocol != proto || r.AllPorts() {
							continue
						}
						for p := r.First; p <= r.Last; p++ {
							taken[p] = true
						}
					}
				}
			}
		}
	}
	mark(src.Pod, policy.Egress)
	mark(dst.Pod, policy.Ingress)
	// Start above the well-known ports so the example reads as "some port", not a service.
	for _, r := range [][2]int{{1024, 65535}, {1, 1023}} {
		for p := r[0]; p <= r[1]; p++ {
			if !taken[p] {
				return int32(p), true
			}
		}
	}
	return 0, false
}
