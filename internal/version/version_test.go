package version

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

func TestIsRelease(t *testing.T) {
	for v, want := range map[string]bool{
		"v0.1.0":                  true,
		"v1.12.3":                 true,
		"v0.2.0-rc.1":             true,
		"v0.1.0-3-g1a2b3c4":       false, // commits after a tag
		"v0.1.0-dirty":            false,
		"v0.1.0-3-g1a2b3c4-dirty": false,
		"v0.0.0-g1a2b3c4":         false, // no tag yet
		"v0.0.0-dev":              false,
		"v0.0.0-dev+1a2b3c4":      false,
		"v0.1.0+meta":             false,
		"0.1.0":                   false,
		"1a2b3c4":                 false,
		"":                        false,
	} {
		if got := IsRelease(v); got != want {
			t.Errorf("IsRelease(%q) = %v, want %v", v, got, want)
		}
	}
}

var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

func TestImageTag(t *testing.T) {
	for in, want := range map[string]string{
		"v0.1.0":                  "v0.1.0",
		"v0.1.0-3-g1a2b3c4-dirty": "v0.1.0-3-g1a2b3c4-dirty",
		"v0.0.0-dev+1a2b3c4":      "v0.0.0-dev-1a2b3c4",
		"-x":                      "_x",
		"":                        "unknown",
		strings.Repeat("a", 200):  strings.Repeat("a", 128),
	} {
		got := ImageTag(in)
		if got != want {
			t.Errorf("ImageTag(%q) = %q, want %q", in, got, want)
		}
		if !tagRE.MatchString(got) {
			t.Errorf("ImageTag(%q) = %q is not a valid image tag", in, got)
		}
	}
}

func TestDefaultAgentImage(t *testing.T) {
	defer func(v, r string) { version, agentImageRepository = v, r }(version, agentImageRepository)
	version, agentImageRepository = "v0.3.1", "example.test/netpol/agent"
	if got, want := DefaultAgentImage(), "example.test/netpol/agent:v0.3.1"; got != want {
		t.Errorf("DefaultAgentImage() = %q, want %q", got, want)
	}
	version = "v0.0.0-dev+abc"
	if got := DefaultAgentImage(); strings.HasSuffix(got, ":latest") || !strings.HasSuffix(got, ":v0.0.0-dev-abc") {
		t.Errorf("DefaultAgentImage() for a dev build = %q", got)
	}
}

func TestSkew(t *testing.T) {
	if s := Skew("v0.2.0", "v0.2.0"); s != "" {
		t.Errorf("equal versions reported skew %q", s)
	}
	for _, tc := range []struct{ client, agent, want string }{
		{"v0.3.0", "v0.2.9", "kubectl netpol install"},
		{"v0.2.0", "v1.0.0", "upgrade the plugin"},
		{"v0.2.0-dirty", "v0.2.0", "different trees"},
		{"garbage", "v0.2.0", "different trees"},
	} {
		if s := Skew(tc.client, tc.agent); !strings.Contains(s, tc.want) {
			t.Errorf("Skew(%q, %q) = %q, want it to mention %q", tc.client, tc.agent, s, tc.want)
		}
	}
}

// TestVersionScriptIsSemver runs the one version source on this checkout and
// checks it prints what krew and image tags accept.
func TestVersionScriptIsSemver(t *testing.T) {
	out, err := exec.Command("../../hack/version.sh").Output()
	if err != nil {
		t.Fatalf("hack/version.sh: %v", err)
	}
	v := strings.TrimSpace(string(out))
	if !semverRE.MatchString(v) || strings.Contains(v, "+") {
		t.Errorf("hack/version.sh printed %q, not a semver usable as an image tag", v)
	}
}
