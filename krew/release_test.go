//go:build release

// Package krew_test checks a real release: the archives, their checksums and
// the rendered krew manifest that `make release` writes. Run it with
//
//	make release-test    (builds the release into dist/, then runs this)
//
// or `go test -tags release ./krew/`, which runs `make release` itself into
// a temporary directory. It validates the manifest with krew's own
// validate-krew-manifest and installs every platform's archive with krew.
package krew_test

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	krewModule = "sigs.k8s.io/krew"
	krewVer    = "v0.4.4"
	homepage   = "https://github.com/kubectl-netpol/kubectl-netpol"
)

var pluginPlatforms = []string{"darwin/amd64", "darwin/arm64", "linux/amd64", "linux/arm64", "windows/amd64", "windows/arm64"}
var agentPlatforms = []string{"linux/amd64", "linux/arm64"}

// manifest is the part of krew's index.Plugin this test reads.
type manifest struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version          string `json:"version"`
		Homepage         string `json:"homepage"`
		ShortDescription string `json:"shortDescription"`
		Caveats          string `json:"caveats"`
		Platforms        []struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			URI    string `json:"uri"`
			Sha256 string `json:"sha256"`
			Bin    string `json:"bin"`
		} `json:"platforms"`
	} `json:"spec"`
}

// release returns the dist directory and version under test, running a
// real `make release` when make release-test has not provided one.
func release(t *testing.T) (dist, version string) {
	t.Helper()
	dist, version = os.Getenv("NETPOL_DIST"), os.Getenv("NETPOL_VERSION")
	if dist != "" && version != "" {
		return dist, version
	}
	out, err := exec.Command("../hack/version.sh").Output()
	if err != nil {
		t.Fatalf("hack/version.sh: %v", err)
	}
	version = strings.TrimSpace(string(out))
	dist = t.TempDir()
	cmd := exec.Command("make", "-C", "..", "release", "DIST="+dist, "VERSION="+version)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make release: %v\n%s", err, b)
	}
	return dist, version
}

func archiveName(bin, version, platform string) string {
	goos, goarch, _ := strings.Cut(platform, "/")
	ext := ".tar.gz"
	if goos == "windows" {
		ext = ".zip"
	}
	return fmt.Sprintf("%s_%s_%s_%s%s", bin, version, goos, goarch, ext)
}

func TestRelease(t *testing.T) {
	dist, version := release(t)
	license, err := os.ReadFile("../LICENSE")
	if err != nil {
		t.Fatal(err)
	}
	gpl, err := os.ReadFile("../probe/LICENSE.GPL-2.0")
	if err != nil {
		t.Fatal(err)
	}

	// The expected archives, derived from the spec, not from the packer.
	want := map[string]map[string][]byte{} // archive -> file -> content (nil: the binary)
	for _, p := range pluginPlatforms {
		bin := "kubectl-netpol"
		if strings.HasPrefix(p, "windows/") {
			bin += ".exe"
		}
		want[archiveName("kubectl-netpol", version, p)] = map[string][]byte{bin: nil, "LICENSE": license}
	}
	if _, err := os.Stat("../cmd/netpol-agent"); err == nil {
		for _, p := range agentPlatforms {
			want[archiveName("netpol-agent", version, p)] = map[string][]byte{"netpol-agent": nil, "LICENSE": license, "LICENSE.GPL-2.0": gpl}
		}
	} else {
		t.Log("cmd/netpol-agent does not exist yet: no agent archives expected")
	}

	sums := readChecksums(t, filepath.Join(dist, "kubectl-netpol_"+version+"_checksums.txt"))
	if got, exp := sortedKeys(sums), sortedKeys(want); strings.Join(got, " ") != strings.Join(exp, " ") {
		t.Fatalf("checksums list %v\nwant exactly %v", got, exp)
	}
	for name, files := range want {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dist, name))
			if err != nil {
				t.Fatal(err)
			}
			if got := sha256Hex(data); got != sums[name] {
				t.Errorf("sha256 %s, checksums file says %s", got, sums[name])
			}
			entries := readArchive(t, name, data)
			if got, exp := sortedKeys(entries), sortedKeys(files); strings.Join(got, " ") != strings.Join(exp, " ") {
				t.Fatalf("entries %v, want %v", got, exp)
			}
			for f, content := range files {
				e := entries[f]
				if content != nil {
					if !bytes.Equal(e.data, content) {
						t.Errorf("%s differs from the repository's", f)
					}
					continue
				}
				if e.mode&0o111 != 0o111 {
					t.Errorf("%s mode %o: not executable by everyone", f, e.mode)
				}
				checkBinary(t, f, e.data, platformOf(name))
			}
		})
	}

	m := readManifest(t, filepath.Join(dist, "netpol.yaml"))
	t.Run("manifest", func(t *testing.T) {
		if m.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || m.Kind != "Plugin" || m.Metadata.Name != "netpol" {
			t.Errorf("header: %s %s %s", m.APIVersion, m.Kind, m.Metadata.Name)
		}
		if m.Spec.Version != version || m.Spec.Homepage != homepage {
			t.Errorf("version %q homepage %q, want %q %q", m.Spec.Version, m.Spec.Homepage, version, homepage)
		}
		if !strings.Contains(m.Spec.Caveats, "kubectl netpol uninstall") {
			t.Errorf("caveats do not say how to remove the agent")
		}
		seen := map[string]bool{}
		for _, p := range m.Spec.Platforms {
			platform := p.Selector.MatchLabels["os"] + "/" + p.Selector.MatchLabels["arch"]
			name := archiveName("kubectl-netpol", version, platform)
			seen[platform] = true
			if len(p.Selector.MatchLabels) != 2 {
				t.Errorf("%s: selector %v, want exactly os and arch", platform, p.Selector.MatchLabels)
			}
			if exp := homepage + "/releases/download/" + version + "/" + name; p.URI != exp {
				t.Errorf("%s: uri %s, want %s", platform, p.URI, exp)
			}
			if p.Sha256 != sums[name] || p.Sha256 == "" {
				t.Errorf("%s: sha256 %q, archive's is %q", platform, p.Sha256, sums[name])
			}
			bin := "kubectl-netpol"
			if strings.HasPrefix(platform, "windows/") {
				bin += ".exe"
			}
			if p.Bin != bin {
				t.Errorf("%s: bin %q, want %q", platform, p.Bin, bin)
			}
		}
		if len(m.Spec.Platforms) != len(pluginPlatforms) || len(seen) != len(pluginPlatforms) {
			t.Errorf("platforms %v, want one entry each for %v", seen, pluginPlatforms)
		}
	})

	t.Run("validate-krew-manifest", func(t *testing.T) {
		validate := func(path string) ([]byte, error) {
			return goRun(t, "", krewModule+"/cmd/validate-krew-manifest@"+krewVer, "-manifest", path, "-skip-install")
		}
		if out, err := validate(filepath.Join(dist, "netpol.yaml")); err != nil {
			t.Fatalf("validate-krew-manifest rejected the manifest: %v\n%s", err, out)
		}
		// The validator must be able to fail: a broken sum is rejected.
		bad := filepath.Join(t.TempDir(), "netpol.yaml")
		raw, _ := os.ReadFile(filepath.Join(dist, "netpol.yaml"))
		broken := strings.Replace(string(raw), m.Spec.Platforms[0].Sha256, "not-a-sum", 1)
		if err := os.WriteFile(bad, []byte(broken), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := validate(bad); err == nil {
			t.Errorf("validate-krew-manifest accepted a manifest with sha256 %q:\n%s", "not-a-sum", out)
		}
	})

	// What validate-krew-manifest does without -skip-install, done with krew
	// itself (no kubectl needed): install every platform's archive from the
	// local manifest, check LICENSE and the binary were put in place, and run
	// the plugin krew installed for this machine.
	t.Run("krew-install", func(t *testing.T) {
		for _, platform := range pluginPlatforms {
			goos, goarch, _ := strings.Cut(platform, "/")
			root := t.TempDir()
			archive := filepath.Join(dist, archiveName("kubectl-netpol", version, platform))
			env := []string{"KREW_ROOT=" + root, "KREW_OS=" + goos, "KREW_ARCH=" + goarch, "KREW_NO_UPGRADE_CHECK=1"}
			out, err := goRun(t, strings.Join(env, "\n"), krewModule+"/cmd/krew@"+krewVer,
				"install", "--manifest="+filepath.Join(dist, "netpol.yaml"), "--archive="+archive)
			if err != nil {
				t.Errorf("%s: krew install: %v\n%s", platform, err, out)
				continue
			}
			dir := filepath.Join(root, "store", "netpol", version)
			for _, f := range []string{"LICENSE", filepath.Base(archiveBinary(platform))} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("%s: krew did not install %s: %v", platform, f, err)
				}
			}
			if goos != runtime.GOOS || goarch != runtime.GOARCH {
				continue
			}
			link := filepath.Join(root, "bin", "kubectl-netpol")
			got, err := exec.Command(link, "version", "--client", "-o", "json").Output()
			if err != nil {
				t.Fatalf("running the plugin krew installed: %v", err)
			}
			var v struct {
				Client struct {
					Version    string `json:"version"`
					AgentImage string `json:"agentImage"`
				} `json:"client"`
			}
			if err := json.Unmarshal(got, &v); err != nil || v.Client.Version != version || !strings.HasSuffix(v.Client.AgentImage, ":"+version) {
				t.Errorf("installed plugin reports %s (err %v), want version %s and an agent image tagged with it", got, err, version)
			}
		}
	})
}

func archiveBinary(platform string) string {
	if strings.HasPrefix(platform, "windows/") {
		return "kubectl-netpol.exe"
	}
	return "kubectl-netpol"
}

// goRun runs `go run pkg@version args...` outside this module (so krew's
// dependencies never enter go.mod) with extra environment lines.
func goRun(t *testing.T, env string, pkg string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command("go", append([]string{"run", pkg}, args...)...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	if env != "" {
		cmd.Env = append(cmd.Env, strings.Split(env, "\n")...)
	}
	return cmd.CombinedOutput()
}

func readChecksums(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != 64 {
			t.Fatalf("%s: line %q is not `sha256sum` format", path, sc.Text())
		}
		sums[name] = sum
	}
	return sums
}

type entry struct {
	mode int64
	data []byte
}

func readArchive(t *testing.T, name string, data []byte) map[string]entry {
	t.Helper()
	entries := map[string]entry{}
	if strings.HasSuffix(name, ".zip") {
		zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range zr.File {
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			entries[f.Name] = entry{int64(f.Mode().Perm()), b}
		}
		return entries
	}
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return entries
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: entry %s type %c uid %d gid %d, want a regular file owned by root", name, h.Name, h.Typeflag, h.Uid, h.Gid)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		entries[h.Name] = entry{h.Mode & 0o7777, b}
	}
}

// platformOf returns "os/arch" from an archive name.
func platformOf(name string) string {
	base := strings.TrimSuffix(strings.TrimSuffix(name, ".tar.gz"), ".zip")
	parts := strings.Split(base, "_")
	return parts[len(parts)-2] + "/" + parts[len(parts)-1]
}

// checkBinary checks the executable's format and machine match the platform
// its archive is named for.
func checkBinary(t *testing.T, name string, data []byte, platform string) {
	t.Helper()
	goos, goarch, _ := strings.Cut(platform, "/")
	r := bytes.NewReader(data)
	var got string
	switch goos {
	case "linux":
		f, err := elf.NewFile(r)
		if err != nil {
			t.Errorf("%s is not ELF: %v", name, err)
			return
		}
		got = map[elf.Machine]string{elf.EM_X86_64: "amd64", elf.EM_AARCH64: "arm64"}[f.Machine]
	case "darwin":
		f, err := macho.NewFile(r)
		if err != nil {
			t.Errorf("%s is not Mach-O: %v", name, err)
			return
		}
		got = map[macho.Cpu]string{macho.CpuAmd64: "amd64", macho.CpuArm64: "arm64"}[f.Cpu]
	case "windows":
		f, err := pe.NewFile(r)
		if err != nil {
			t.Errorf("%s is not PE: %v", name, err)
			return
		}
		got = map[uint16]string{pe.IMAGE_FILE_MACHINE_AMD64: "amd64", pe.IMAGE_FILE_MACHINE_ARM64: "arm64"}[f.Machine]
	}
	if got != goarch {
		t.Errorf("%s is built for %q, want %s", name, got, platform)
	}
}

func readManifest(t *testing.T, path string) manifest {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := yaml.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
