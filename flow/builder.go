package flow

import (
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// FilterKind names one command-line filter.
type FilterKind int

// Filter kinds. The unprefixed endpoint kinds (Namespace, Pod, Label, IP,
// Port) match either side of a flow; From*/To* match the source/destination.
const (
	Namespace FilterKind = iota
	FromNamespace
	ToNamespace
	Pod
	FromPod
	ToPod
	Label
	FromLabel
	ToLabel
	IP
	FromIP
	ToIP
	Port
	FromPort
	ToPort
	Verdict
	Reason
	Protocol
	Policy
	Node
	Service
	Direction
	Type
)

// side says which endpoint(s) a kind constrains.
type side int

const (
	sideNone side = iota
	sideEither
	sideSource
	sideDestination
)

// FilterBuilder turns command-line filters, in the order given, into the
// allowlist and denylist of an ObserveRequest with `hubble observe`
// semantics: filters AND together; an either-side filter (--namespace, --pod,
// --label, --ip, --port) splits the filter into a source variant and a
// destination variant that OR together; Not makes the next filter go to the
// denylist instead (negated filters AND together there too, so
// `--not --namespace a --not --verdict denied` hides denied flows touching a).
type FilterBuilder struct {
	allow, deny filterPair
	negateNext  bool
}

// filterPair is Hubble's left/right pair: left gets the source side of
// either-side filters, right the destination side.
type filterPair struct {
	left, right flowv1.FlowFilter
	used, split bool
}

// Not negates the next filter added.
func (b *FilterBuilder) Not() { b.negateNext = true }

// Add adds one filter value; errors name the value and what is expected.
func (b *FilterBuilder) Add(kind FilterKind, value string) error {
	p := &b.allow
	if b.negateNext {
		p = &b.deny
		b.negateNext = false
	}
	return p.add(kind, value)
}

// Allowlist returns the filters built so far for ObserveRequest.allowlist.
func (b *FilterBuilder) Allowlist() []*flowv1.FlowFilter { return b.allow.filters() }

// Denylist returns the filters built so far for ObserveRequest.denylist.
func (b *FilterBuilder) Denylist() []*flowv1.FlowFilter { return b.deny.filters() }

// PendingNot reports a trailing --not with no filter after it.
func (b *FilterBuilder) PendingNot() bool { return b.negateNext }

func (p *filterPair) filters() []*flowv1.FlowFilter {
	if !p.used {
		return nil
	}
	l := proto.Clone(&p.left).(*flowv1.FlowFilter)
	if !p.split {
		return []*flowv1.FlowFilter{l}
	}
	return []*flowv1.FlowFilter{l, proto.Clone(&p.right).(*flowv1.FlowFilter)}
}

func (p *filterPair) add(kind FilterKind, v string) error {
	p.used = true
	var s side
	switch kind {
	case Namespace, Pod, Label, IP, Port:
		s = sideEither
	case FromNamespace, FromPod, FromLabel, FromIP, FromPort:
		s = sideSource
	case ToNamespace, ToPod, ToLabel, ToIP, ToPort:
		s = sideDestination
	}
	if s == sideEither {
		p.split = true
	}
	for i, ff := range []*flowv1.FlowFilter{&p.left, &p.right} {
		src := s == sideSource || (s == sideEither && i == 0)
		if err := addValue(ff, kind, src, v); err != nil {
			return err
		}
	}
	// Validate once, so a bad value fails here with its flag's meaning
	// rather than later in CompileFilter.
	_, err := compileOne(&p.left)
	return err
}

func addValue(ff *flowv1.FlowFilter, kind FilterKind, src bool, v string) error {
	pick := func(s, d *[]string) {
		if src {
			*s = append(*s, v)
		} else {
			*d = append(*d, v)
		}
	}
	switch kind {
	case Namespace, FromNamespace, ToNamespace:
		pick(&ff.SourceNamespace, &ff.DestinationNamespace)
	case Pod, FromPod, ToPod:
		pick(&ff.SourcePod, &ff.DestinationPod)
	case Label, FromLabel, ToLabel:
		pick(&ff.SourceLabel, &ff.DestinationLabel)
	case IP, FromIP, ToIP:
		pick(&ff.SourceIp, &ff.DestinationIp)
	case Port, FromPort, ToPort:
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("port %q: want a number from 1 to 65535", v)
		}
		if src {
			ff.SourcePort = append(ff.SourcePort, uint32(n))
		} else {
			ff.DestinationPort = append(ff.DestinationPort, uint32(n))
		}
	case Verdict:
		x, err := ParseVerdict(v)
		if err != nil {
			return err
		}
		ff.Verdict = append(ff.Verdict, x)
	case Reason:
		x, err := ParseReason(v)
		if err != nil {
			return err
		}
		ff.Reason = append(ff.Reason, x)
	case Protocol:
		x, err := ParseProtocol(v)
		if err != nil {
			return err
		}
		ff.Protocol = append(ff.Protocol, x)
	case Direction:
		x, err := ParseDirection(v)
		if err != nil {
			return err
		}
		ff.Direction = append(ff.Direction, x)
	case Type:
		x, err := parseEnum("event type", "EVENT_TYPE_", v, flowv1.EventType_value, nil)
		if err != nil {
			return err
		}
		ff.Type = append(ff.Type, flowv1.EventType(x))
	case Policy:
		ff.Policy = append(ff.Policy, v)
	case Node:
		ff.Node = append(ff.Node, v)
	case Service:
		ff.Service = append(ff.Service, v)
	default:
		return fmt.Errorf("unknown filter kind %d", kind)
	}
	return nil
}
