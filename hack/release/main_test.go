package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeBuilds lays out <os>-<arch>/<binary> files like `make cross` does.
func fakeBuilds(t *testing.T, platforms ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range platforms {
		goos, _, _ := strings.Cut(p, "-")
		exe := pluginName
		if goos == "windows" {
			exe += ".exe"
		}
		if err := os.MkdirAll(filepath.Join(dir, p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p, exe), []byte("binary for "+p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func testOptions(t *testing.T, builds, tmpl string) options {
	t.Helper()
	dir := t.TempDir()
	lic := filepath.Join(dir, "LICENSE")
	tp := filepath.Join(dir, "netpol.yaml")
	if err := os.WriteFile(lic, []byte("licence text"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tp, []byte(tmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	return options{version: "v1.2.3", builds: builds, dist: filepath.Join(dir, "dist"), license: lic, template: tp,
		uriBase: "https://example.test/{{.Version}}", mtime: time.Unix(1700000000, 0)}
}

const twoPlatforms = `version: {{ .Version }}
a: {{ uri "linux" "amd64" }} {{ sha256 "linux" "amd64" }}
b: {{ uri "windows" "arm64" }} {{ sha256 "windows" "arm64" }}
`

// Two runs over the same binaries give byte-identical archives, whatever the
// files' own timestamps: the sums in a published krew manifest can be
// reproduced.
func TestArchivesAreDeterministic(t *testing.T) {
	builds := fakeBuilds(t, "linux-amd64", "windows-arm64")
	a, b := testOptions(t, builds, twoPlatforms), testOptions(t, builds, twoPlatforms)
	if err := release(a); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour)
	_ = os.Chtimes(filepath.Join(builds, "linux-amd64", pluginName), later, later)
	if err := release(b); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kubectl-netpol_v1.2.3_linux_amd64.tar.gz", "kubectl-netpol_v1.2.3_windows_arm64.zip", "kubectl-netpol_v1.2.3_checksums.txt", "netpol.yaml"} {
		x, err := os.ReadFile(filepath.Join(a.dist, name))
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(b.dist, name))
		if err != nil {
			t.Fatal(err)
		}
		if string(x) != string(y) {
			t.Errorf("%s differs between two runs", name)
		}
	}
	m, _ := os.ReadFile(filepath.Join(a.dist, "netpol.yaml"))
	if !strings.Contains(string(m), "a: https://example.test/v1.2.3/kubectl-netpol_v1.2.3_linux_amd64.tar.gz ") {
		t.Errorf("rendered manifest:\n%s", m)
	}
}

func TestManifestCoversExactlyTheBuiltPlatforms(t *testing.T) {
	// A platform built but missing from the template.
	err := release(testOptions(t, fakeBuilds(t, "linux-amd64", "windows-arm64", "darwin-arm64"), twoPlatforms))
	if err == nil || !strings.Contains(err.Error(), "no platform entry for darwin/arm64") {
		t.Errorf("missing template entry: err = %v", err)
	}
	// A platform in the template but not built.
	err = release(testOptions(t, fakeBuilds(t, "linux-amd64"), twoPlatforms))
	if err == nil || !strings.Contains(err.Error(), "no plugin was built for it") {
		t.Errorf("missing build: err = %v", err)
	}
}

func TestVersionMustBeSemver(t *testing.T) {
	for _, v := range []string{"1a2b3c4", "v1.2", "1.2.3", "v1.2.3-01"} {
		err := run([]string{"-version", v, "-builds", t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), "not a semantic version") {
			t.Errorf("-version %s: err = %v", v, err)
		}
	}
}

func TestVersionScriptShapesAreSemver(t *testing.T) {
	for _, v := range []string{"v0.1.0", "v0.0.0-g1a2b3c4", "v0.0.0-g0123456-dirty", "v0.1.0-3-g1a2b3c4-dirty", "v0.0.0-dev", "v1.0.0-rc.1"} {
		if !semverRE.MatchString(v) {
			t.Errorf("%s (a shape hack/version.sh prints) is rejected", v)
		}
	}
}
