// Package version holds the build's version and the agent image derived from
// it. Both are stamped at link time by the Makefile from hack/version.sh, the
// one version source of the tree:
//
//	-ldflags "-X github.com/kubectl-netpol/kubectl-netpol/internal/version.version=v0.1.0
//	          -X github.com/kubectl-netpol/kubectl-netpol/internal/version.agentImageRepository=example.org/netpol/agent"
//
// Without ldflags the version falls back to the module version recorded by the
// Go toolchain, so a plain `go install` still reports something meaningful.
// The plugin and the agent link the same variables, so a client and an agent
// built from one tree always agree, and a mismatch means version skew.
package version

import (
	"fmt"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
)

// version is set by -ldflags; empty in plain `go build` output.
var version string

// agentImageRepository is the image repository (no tag) of the agent. It has
// no registry host on purpose: hack/ imports images named localhost/... into
// the test cluster's containerd, and a distributor sets their own repository
// at link time (make AGENT_IMAGE_REPO=...).
var agentImageRepository = "localhost/kubectl-netpol/agent"

// devVersion is reported when neither ldflags nor build info carry a version.
const devVersion = "v0.0.0-dev"

// Version returns the version of this binary, e.g. "v0.1.0" or "v0.1.0-3-gabc123-dirty".
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			return v
		}
		if rev := vcsRevision(bi); rev != "" {
			return devVersion + "+" + rev
		}
	}
	return devVersion
}

// vcsRevision returns the short VCS revision (with "-dirty" when modified) from build info.
func vcsRevision(bi *debug.BuildInfo) string {
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" && dirty {
		rev += "-dirty"
	}
	return rev
}

// semverRE matches vMAJOR.MINOR.PATCH with an optional pre-release and build
// metadata, the shape hack/version.sh always prints.
var semverRE = regexp.MustCompile(`^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+([0-9A-Za-z.-]+))?$`)

// describeRE matches what `git describe` appends after a tag ("-3-gabc123").
var describeRE = regexp.MustCompile(`(^|-)\d+-g[0-9a-f]+($|-)`)

// IsRelease reports whether v is a tagged release: a semantic version above
// v0.0.0 that is neither a commit after a tag nor built from a modified tree.
// Only a release has an agent image that anyone but the builder can pull.
func IsRelease(v string) bool {
	m := semverRE.FindStringSubmatch(v)
	if m == nil || m[5] != "" {
		return false
	}
	if m[1] == "0" && m[2] == "0" && m[3] == "0" {
		return false
	}
	pre := m[4]
	return !strings.Contains(pre, "dirty") && !strings.Contains(pre, "dev") && !describeRE.MatchString(pre)
}

// AgentImageRepository returns the agent's image repository without a tag.
func AgentImageRepository() string { return agentImageRepository }

// DefaultAgentImage returns the agent image matching this plugin: the
// repository with this binary's version as the tag, never ":latest". For a
// build that is not a release (IsRelease(Version()) is false) the image
// exists only where it was built from the same tree (hack/ imports it into
// the local cluster); anywhere else the user must pass --image.
func DefaultAgentImage() string {
	return agentImageRepository + ":" + ImageTag(Version())
}

// ImageTag turns a version into a valid image tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}):
// "+" (semver build metadata, from `go install` builds) and any other
// character a tag cannot hold become "-".
func ImageTag(v string) string {
	b := []byte(v)
	for i, c := range b {
		ok := c == '_' || c == '.' || c == '-' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
		if !ok || (i == 0 && (c == '.' || c == '-')) {
			b[i] = '_'
			if i > 0 {
				b[i] = '-'
			}
		}
	}
	if len(b) > 128 {
		b = b[:128]
	}
	if len(b) == 0 {
		return "unknown"
	}
	return string(b)
}

// Skew describes how the agent's version differs from the client's. It is
// empty when they are equal. Install both from one release to avoid it:
// upgrading the plugin and then running `kubectl netpol install` does that.
func Skew(client, agent string) string {
	if client == agent {
		return ""
	}
	switch compareCore(client, agent) {
	case -1:
		return fmt.Sprintf("the agent (%s) is newer than this plugin (%s): upgrade the plugin (kubectl krew upgrade netpol)", agent, client)
	case 1:
		return fmt.Sprintf("the agent (%s) is older than this plugin (%s): run `kubectl netpol install` to upgrade it", agent, client)
	default:
		return fmt.Sprintf("the agent (%s) and this plugin (%s) were built from different trees: run `kubectl netpol install` with the plugin you mean to keep", agent, client)
	}
}

// compareCore compares the MAJOR.MINOR.PATCH of two versions: -1, 0 or 1, and
// 0 also when either does not parse (the caller then only knows they differ).
func compareCore(a, b string) int {
	ma, mb := semverRE.FindStringSubmatch(a), semverRE.FindStringSubmatch(b)
	if ma == nil || mb == nil {
		return 0
	}
	for i := 1; i <= 3; i++ {
		x, _ := strconv.Atoi(ma[i])
		y, _ := strconv.Atoi(mb[i])
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
	}
	return 0
}
