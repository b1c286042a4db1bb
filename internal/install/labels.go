// Package install holds what identifies an agent installation in a cluster:
// the default namespace and the labels every object of ours carries. The
// install, uninstall, status and version commands all find the agent through
// these, so they are defined once here.
package install

import "strings"

// DefaultNamespace is where `kubectl netpol install` puts the agent unless
// told otherwise with --namespace.
const DefaultNamespace = "netpol-system"

// Label keys, the Kubernetes recommended ones.
const (
	LabelName    = "app.kubernetes.io/name"
	LabelVersion = "app.kubernetes.io/version"
	LabelPartOf  = "app.kubernetes.io/part-of"
)

// Label values.
const (
	// AgentName is the LabelName of the agent DaemonSet and its pods.
	AgentName = "netpol-agent"
	// PartOf is the LabelPartOf of every object install creates; uninstall
	// deletes exactly the objects carrying it.
	PartOf = "kubectl-netpol"
)

// AgentSelector selects the agent DaemonSet and its pods.
const AgentSelector = LabelName + "=" + AgentName

// ProjectSelector selects every object install created.
const ProjectSelector = LabelPartOf + "=" + PartOf

// VersionLabelValue turns a version into a valid label value (at most 63
// characters of [A-Za-z0-9._-], alphanumeric at both ends), so the agent's
// LabelVersion can always be compared with the plugin's own version passed
// through the same function.
func VersionLabelValue(v string) string {
	b := []byte(v)
	for i, c := range b {
		if !(c == '.' || c == '_' || c == '-' || isAlnum(c)) {
			b[i] = '-'
		}
	}
	if len(b) > 63 {
		b = b[:63]
	}
	return strings.TrimFunc(string(b), func(r rune) bool { return r > 127 || !isAlnum(byte(r)) })
}

func isAlnum(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}
