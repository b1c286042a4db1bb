package flow

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	flowv1 "github.com/kubectl-netpol/kubectl-netpol/flow/v1"
)

// Printer writes flows in one output format. Callers Flush at the end of each
// batch; printers buffer in between so 100k flows/s do not mean 100k writes.
type Printer interface {
	Print(*flowv1.Flow) error
	Flush() error
}

// Output formats for NewPrinter.
const (
	OutputCompact = "compact"
	OutputJSON    = "json"
)

// NewPrinter returns the printer for format ("compact" or "json"). Compact
// times are shown in loc (nil: local time).
func NewPrinter(format string, w io.Writer, loc *time.Location) (Printer, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	switch format {
	case OutputCompact:
		if loc == nil {
			loc = time.Local
		}
		return &compactPrinter{w: bw, loc: loc}, nil
	case OutputJSON:
		return &jsonPrinter{w: bw}, nil
	}
	return nil, fmt.Errorf("unknown output format %q: use compact or json", format)
}

// jsonPrinter writes JSON lines of the Flow schema (protojson, proto field
// names in lowerCamelCase, enums by name), the format --input-file reads back.
type jsonPrinter struct {
	w   *bufio.Writer
	buf []byte
}

var jsonOptions = protojson.MarshalOptions{}

func (p *jsonPrinter) Print(f *flowv1.Flow) error {
	var err error
	p.buf, err = jsonOptions.MarshalAppend(p.buf[:0], f)
	if err != nil {
		return fmt.Errorf("encoding flow: %w", err)
	}
	p.buf = append(p.buf, '\n')
	_, err = p.w.Write(p.buf)
	return err
}

func (p *jsonPrinter) Flush() error { return p.w.Flush() }

type compactPrinter struct {
	w   *bufio.Writer
	loc *time.Location
}

func (p *compactPrinter) Print(f *flowv1.Flow) error {
	_, err := p.w.WriteString(CompactLine(f, p.loc) + "\n")
	return err
}

func (p *compactPrinter) Flush() error { return p.w.Flush() }

// CompactLine renders one flow on one line:
//
//	Nov 25 18:58:34.123 node-a x/web-1:41234 -> y/db-0:3306 (svc y/db) TCP SYN DENIED NO_RULE_MATCHED isolated-by y/default-deny (ingress)
func CompactLine(f *flowv1.Flow, loc *time.Location) string {
	var b strings.Builder
	b.Grow(160)
	b.WriteString(f.GetTime().AsTime().In(loc).Format(time.StampMilli))
	b.WriteByte(' ')
	b.WriteString(orDash(NodesString(f)))
	b.WriteByte(' ')
	b.WriteString(EndpointString(f.GetSource(), f.GetIp().GetSource(), f.GetL4().GetSourcePort()))
	if f.GetIsReply() {
		b.WriteString(" <- ")
	} else {
		b.WriteString(" -> ")
	}
	b.WriteString(EndpointString(f.GetDestination(), f.GetIp().GetDestination(), f.GetL4().GetDestinationPort()))
	if svc := ServiceString(f.GetService()); svc != "" {
		b.WriteString(" (svc ")
		b.WriteString(svc)
		b.WriteByte(')')
	}
	b.WriteByte(' ')
	b.WriteString(ProtocolName(f.GetL4().GetProtocol()))
	if fl := TCPFlagsString(f.GetL4().GetTcpFlags()); fl != "" {
		b.WriteByte(' ')
		b.WriteString(fl)
	}
	b.WriteByte(' ')
	b.WriteString(VerdictName(f.GetVerdict()))
	b.WriteByte(' ')
	b.WriteString(ReasonName(f.GetReason()))
	if pol := PolicySummary(f); pol != "" {
		b.WriteByte(' ')
		b.WriteString(pol)
	}
	if a := AuditString(f.GetAudit()); a != "" {
		b.WriteByte(' ')
		b.WriteString(a)
	}
	if n := f.GetConnections(); n > 1 {
		fmt.Fprintf(&b, " x%d connections", n) // a kernel aggregate of repeats
	}
	if f.GetType() == flowv1.EventType_EVENT_TYPE_END {
		fmt.Fprintf(&b, " packets=%d bytes=%d", f.GetPackets(), f.GetBytes())
		if d := f.GetDuration(); d != nil {
			fmt.Fprintf(&b, " duration=%s", d.AsDuration().Round(time.Millisecond))
		}
	}
	if a := f.GetAggregate(); a != nil {
		fmt.Fprintf(&b, " x%d since %s (history)", a.GetConnections(), a.GetFirstSeen().AsTime().In(loc).Format(time.Stamp))
		if f.GetBytes() > 0 {
			fmt.Fprintf(&b, " packets=%d bytes=%d", f.GetPackets(), f.GetBytes())
		}
	}
	if w := f.GetWhatif(); w != nil {
		b.WriteString(" WHATIF ")
		b.WriteString(VerdictName(w.GetVerdict()))
		if w.GetChanged() {
			b.WriteString(" (CHANGED)")
		}
		// Unchanged: the flow's own policies already say why.
		if w.GetChanged() && len(w.GetDecidedBy()) > 0 {
			b.WriteString(" by ")
			for i, r := range w.GetDecidedBy() {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(PolicyRefString(r))
			}
		}
	}
	return b.String()
}

// EndpointName is "ns/pod" for a pod, "node/NAME" for a node's address (a
// hostNetwork pod is its node), else the address ("?" when unknown).
func EndpointName(ep *flowv1.Endpoint, ip string) string {
	switch {
	case ep.GetPod() != "":
		return ep.GetNamespace() + "/" + ep.GetPod()
	case ep.GetNodeName() != "":
		return "node/" + ep.GetNodeName()
	case ip == "":
		return "?"
	}
	return ip
}

// EndpointString is EndpointName with ":port" (an address's IPv6 in brackets).
func EndpointString(ep *flowv1.Endpoint, ip string, port uint32) string {
	host := EndpointName(ep, ip)
	if port == 0 {
		return host
	}
	if ep.GetPod() == "" && ep.GetNodeName() == "" {
		return net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10))
	}
	return host + ":" + strconv.FormatUint(uint64(port), 10)
}

// IsNodeHealthCheck reports whether f is an allowed connection from a node
// to a pod on that same node: kubelet probes (and other host processes),
// never subject to NetworkPolicy, which fill a quiet cluster's flows. Drops
// are never health checks to hide.
func IsNodeHealthCheck(f *flowv1.Flow) bool {
	src, dst := f.GetSource(), f.GetDestination()
	if src.GetPod() != "" || src.GetNodeName() == "" || dst.GetPod() == "" || f.GetVerdict() == flowv1.Verdict_VERDICT_DENIED {
		return false
	}
	on := dst.GetNodeName()
	if on == "" {
		on = f.GetNode() // an agent that does not name the pod's node reports its own pods
	}
	return on == src.GetNodeName()
}

// NodesString is the node that reported f, or for a flow merged from two
// observation points "src-node+dst-node" (egress side first).
func NodesString(f *flowv1.Flow) string {
	obs := f.GetObservations()
	if len(obs) == 0 {
		return f.GetNode()
	}
	names := make([]string, len(obs))
	for i, o := range obs {
		names[i] = o.GetNode()
	}
	return strings.Join(names, "+")
}

// ServiceString is "ns/name" of the Service dialled, or "".
func ServiceString(s *flowv1.Service) string {
	if s.GetName() == "" {
		return ""
	}
	return s.GetNamespace() + "/" + s.GetName()
}

// TCPFlagsString is e.g. "SYN-ACK"; "" when no flag is set.
func TCPFlagsString(t *flowv1.TCPFlags) string {
	if t == nil {
		return ""
	}
	var parts []string
	for _, fl := range []struct {
		on   bool
		name string
	}{{t.Syn, "SYN"}, {t.Fin, "FIN"}, {t.Rst, "RST"}, {t.Psh, "PSH"}, {t.Ack, "ACK"}, {t.Urg, "URG"}, {t.Ece, "ECE"}, {t.Cwr, "CWR"}} {
		if fl.on {
			parts = append(parts, fl.name)
		}
	}
	return strings.Join(parts, "-")
}

// PolicyRefString is "ns/name (ingress rule 0)" or "ns/name (egress)" for
// a NetworkPolicy, and for a ClusterNetworkPolicy rule e.g.
// "Admin cnp deny-monitoring (prio 10) ingress rule 0 deny-all".
func PolicyRefString(r *flowv1.PolicyRef) string {
	var b strings.Builder
	if r.GetKind() == KindClusterNetworkPolicy {
		if t := r.GetTier(); t != flowv1.ClusterTier_CLUSTER_TIER_UNSPECIFIED {
			b.WriteString(TierName(t))
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "cnp %s", r.GetName())
		if r.GetTier() != flowv1.ClusterTier_CLUSTER_TIER_UNSPECIFIED {
			fmt.Fprintf(&b, " (prio %d)", r.GetPriority())
		}
		b.WriteByte(' ')
		b.WriteString(strings.ToLower(DirectionName(r.GetDirection())))
		if r.RuleIndex != nil {
			fmt.Fprintf(&b, " rule %d", r.GetRuleIndex())
			if r.GetRuleName() != "" {
				b.WriteByte(' ')
				b.WriteString(r.GetRuleName())
			}
		}
		return b.String()
	}
	if r.GetKind() != "" && r.GetKind() != "NetworkPolicy" {
		b.WriteString(r.GetKind())
		b.WriteByte(' ')
	}
	if r.GetNamespace() != "" {
		b.WriteString(r.GetNamespace())
		b.WriteByte('/')
	}
	b.WriteString(r.GetName())
	b.WriteString(" (")
	b.WriteString(strings.ToLower(DirectionName(r.GetDirection())))
	if r.RuleIndex != nil {
		fmt.Fprintf(&b, " rule %d", r.GetRuleIndex())
	}
	b.WriteByte(')')
	return b.String()
}

// PolicySummary names the policies that decided f: "allowed-by …",
// "denied-by …" or "isolated-by …"; "" when none did. For a flow seen at
// two nodes it is each observation point's, e.g.
// "egress@node-a allowed-by x/web (egress rule 0); ingress@node-b isolated-by y/db (ingress)".
func PolicySummary(f *flowv1.Flow) string {
	if obs := f.GetObservations(); len(obs) > 0 {
		parts := make([]string, len(obs))
		for i, o := range obs {
			parts[i] = ObservationString(o)
		}
		return strings.Join(parts, "; ")
	}
	return refsSummary(f.GetAllowedBy(), f.GetDeniedBy(), f.GetIsolatedBy())
}

// ObservationString is one observation point: "egress@node-a DENIED isolated-by x/p (egress)";
// the verdict is left out when allowed and a policy says so.
func ObservationString(o *flowv1.Observation) string {
	s := strings.ToLower(DirectionName(o.GetDirection())) + "@" + o.GetNode()
	pol := refsSummary(o.GetAllowedBy(), o.GetDeniedBy(), o.GetIsolatedBy())
	if o.GetVerdict() != flowv1.Verdict_VERDICT_ALLOWED || pol == "" {
		s += " " + VerdictName(o.GetVerdict())
		if o.GetReason() != flowv1.Reason_REASON_UNSPECIFIED && o.GetVerdict() == flowv1.Verdict_VERDICT_ALLOWED {
			s += " " + ReasonName(o.GetReason())
		}
	}
	if pol != "" {
		s += " " + pol
	}
	return s
}

// AuditString is the would-be outcome of an audited flow, e.g.
// "would-be DENIED by Admin cnp x (prio 1) ingress rule 0" or
// "would-be DENIED isolated-by ns/p (ingress)"; "" without one.
func AuditString(a *flowv1.Audit) string {
	if a == nil {
		return ""
	}
	s := "would-be " + VerdictName(a.GetWouldBe())
	if r := a.GetRule(); r != nil {
		return s + " by " + PolicyRefString(r)
	}
	if pol := refsSummary(nil, nil, a.GetIsolatedBy()); pol != "" {
		return s + " " + pol
	}
	return s + " " + ReasonName(a.GetReason())
}

func refsSummary(allowed, denied, isolated []*flowv1.PolicyRef) string {
	for _, g := range []struct {
		label string
		refs  []*flowv1.PolicyRef
	}{{"allowed-by", allowed}, {"denied-by", denied}, {"isolated-by", isolated}} {
		if len(g.refs) == 0 {
			continue
		}
		parts := make([]string, len(g.refs))
		for i, r := range g.refs {
			parts[i] = PolicyRefString(r)
		}
		return g.label + " " + strings.Join(parts, ", ")
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
