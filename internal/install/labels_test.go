package install

import (
	"regexp"
	"strings"
	"testing"
)

// labelValueRE is the Kubernetes label value syntax (validation.IsValidLabelValue).
var labelValueRE = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)

func TestVersionLabelValue(t *testing.T) {
	for in, want := range map[string]string{
		"v0.1.0":                  "v0.1.0",
		"v0.1.0-3-g1a2b3c4-dirty": "v0.1.0-3-g1a2b3c4-dirty",
		"v0.0.0-dev+1a2b3c4":      "v0.0.0-dev-1a2b3c4",
		"-v1-":                    "v1",
		"":                        "",
	} {
		if got := VersionLabelValue(in); got != want {
			t.Errorf("VersionLabelValue(%q) = %q, want %q", in, got, want)
		}
	}
	long := VersionLabelValue("v1.0.0-" + strings.Repeat("x", 80) + "+-")
	if len(long) > 63 || !labelValueRE.MatchString(long) {
		t.Errorf("VersionLabelValue of a long version = %q (%d chars), not a valid label value", long, len(long))
	}
}
