// Package version holds the build's version, stamped at link time with
//
//	-ldflags "-X github.com/kubectl-netpol/kubectl-netpol/internal/version.version=v0.1.0"
//
// and falling back to the module version recorded by the Go toolchain, so a
// plain `go install` still reports something meaningful.
package version

import (
	"runtime/debug"
	"strings"
)

// version is set by -ldflags; empty in plain `go build` output.
var version string

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

// IsRelease reports whether v looks like a tagged release (no dev or dirty suffix),
// which is when a default image tag can be derived from it.
func IsRelease(v string) bool {
	return strings.HasPrefix(v, "v") && !strings.Contains(v, "-dev") && !strings.Contains(v, "dirty")
}
