// Command release packs the binaries `make release` built into the release
// archives, writes their sha256 checksums and renders the krew manifest
// template with the real sums. It uses only the standard library and writes
// deterministic archives: entries in a fixed order, one fixed timestamp,
// owner root, no host user or group names, so the same binaries give the
// same archive bytes (and krew sums) on every machine.
//
// Input layout (what `make cross BIN=...` and the agent build write):
//
//	<builds>/<os>-<arch>/kubectl-netpol[.exe]   the plugin, every platform
//	<builds>/linux-<arch>/netpol-agent          the agent, when it exists
//
// Output in <dist>:
//
//	kubectl-netpol_<version>_<os>_<arch>.tar.gz (.zip on windows)  binary + LICENSE
//	netpol-agent_<version>_linux_<arch>.tar.gz                     binary + LICENSE + LICENSE.GPL-2.0
//	kubectl-netpol_<version>_checksums.txt                         `sha256sum -c` format
//	netpol.yaml                                                    the rendered krew manifest
package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"
	"time"
)

const (
	pluginName = "kubectl-netpol"
	agentName  = "netpol-agent"
)

// semverRE is what krew's manifest validation accepts: v + semantic version
// (semver.org: no leading zeros in numeric pre-release identifiers).
var semverRE = regexp.MustCompile(`^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)` +
	`(-` + preID + `(\.` + preID + `)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)

const preID = `(0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)`

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "release: %v\n", err)
		os.Exit(1)
	}
}

type options struct {
	version    string
	builds     string
	dist       string
	license    string
	bpfLicense string
	template   string
	uriBase    string
	mtime      time.Time
}

func run(args []string) error {
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	var o options
	var mtime int64
	fs.StringVar(&o.version, "version", "", "release version (hack/version.sh), a semver with a leading v")
	fs.StringVar(&o.builds, "builds", "", "directory holding <os>-<arch>/ build outputs")
	fs.StringVar(&o.dist, "dist", "dist", "output directory")
	fs.StringVar(&o.license, "license", "LICENSE", "licence of the Go code, put in every archive")
	fs.StringVar(&o.bpfLicense, "bpf-license", "probe/LICENSE.GPL-2.0", "licence of the eBPF C, put in the agent archives")
	fs.StringVar(&o.template, "template", "krew/netpol.yaml", "krew manifest template")
	fs.StringVar(&o.uriBase, "uri-base", "https://github.com/kubectl-netpol/kubectl-netpol/releases/download/{{.Version}}", "where the archives will be downloaded from (a template over .Version)")
	fs.Int64Var(&mtime, "mtime", 0, "timestamp (Unix seconds) of every archive entry, e.g. the commit time")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.mtime = time.Unix(mtime, 0).UTC()
	if !semverRE.MatchString(o.version) {
		return fmt.Errorf("-version %q is not a semantic version with a leading v (krew requires one): use hack/version.sh or pass VERSION=v1.2.3", o.version)
	}
	if o.builds == "" {
		return errors.New("-builds is required")
	}
	return release(o)
}

// artifact is one archive written to dist.
type artifact struct {
	os, arch, binary string
	name, sha256     string
}

func release(o options) error {
	license, err := os.ReadFile(o.license)
	if err != nil {
		return fmt.Errorf("reading the licence: %w", err)
	}
	if err := os.MkdirAll(o.dist, 0o755); err != nil {
		return err
	}
	dirs, err := os.ReadDir(o.builds)
	if err != nil {
		return fmt.Errorf("reading the builds: %w (run make release, which builds them first)", err)
	}
	var arts []artifact
	for _, d := range dirs { // ReadDir sorts by name
		goos, goarch, ok := strings.Cut(d.Name(), "-")
		if !d.IsDir() || !ok {
			continue
		}
		for _, bin := range []string{pluginName, agentName} {
			exe := bin
			if goos == "windows" {
				exe += ".exe"
			}
			path := filepath.Join(o.builds, d.Name(), exe)
			if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
				continue
			}
			files := []file{{name: exe, src: path, mode: 0o755}, {name: "LICENSE", data: license, mode: 0o644}}
			if bin == agentName {
				bpf, err := os.ReadFile(o.bpfLicense)
				if err != nil {
					return fmt.Errorf("reading the eBPF licence for the agent archive: %w", err)
				}
				files = append(files, file{name: filepath.Base(o.bpfLicense), data: bpf, mode: 0o644})
			}
			a := artifact{os: goos, arch: goarch, binary: exe, name: ArchiveName(bin, o.version, goos, goarch)}
			if a.sha256, err = writeArchive(filepath.Join(o.dist, a.name), files, o.mtime); err != nil {
				return fmt.Errorf("packing %s: %w", a.name, err)
			}
			fmt.Printf("  %s  %s\n", a.sha256, a.name)
			arts = append(arts, a)
		}
	}
	if err := writeChecksums(filepath.Join(o.dist, pluginName+"_"+o.version+"_checksums.txt"), arts); err != nil {
		return err
	}
	return renderManifest(o, arts)
}

// ArchiveName is the release archive of bin for one platform: zip on
// windows (what Windows users and krew expect there), tar.gz elsewhere.
func ArchiveName(bin, version, goos, goarch string) string {
	ext := ".tar.gz"
	if goos == "windows" {
		ext = ".zip"
	}
	return fmt.Sprintf("%s_%s_%s_%s%s", bin, version, goos, goarch, ext)
}

// file is one archive entry: its bytes come from src or data.
type file struct {
	name string
	src  string
	data []byte
	mode int64
}

// writeArchive writes files (in the given order) to path as tar.gz or zip
// and returns the archive's sha256.
func writeArchive(path string, files []file, mtime time.Time) (string, error) {
	var buf bytes.Buffer
	var err error
	if strings.HasSuffix(path, ".zip") {
		err = writeZip(&buf, files, mtime)
	} else {
		err = writeTarGz(&buf, files, mtime)
	}
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return "", err
	}
	sum := sha256.Sum256(buf.Bytes())
	return hex.EncodeToString(sum[:]), nil
}

func (f file) bytes() ([]byte, error) {
	if f.src == "" {
		return f.data, nil
	}
	return os.ReadFile(f.src)
}

func writeTarGz(w io.Writer, files []file, mtime time.Time) error {
	gz, _ := gzip.NewWriterLevel(w, gzip.DefaultCompression) // header: no name, zero time: deterministic
	tw := tar.NewWriter(gz)
	for _, f := range files {
		data, err := f.bytes()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(data)), ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func writeZip(w io.Writer, files []file, mtime time.Time) error {
	zw := zip.NewWriter(w)
	for _, f := range files {
		data, err := f.bytes()
		if err != nil {
			return err
		}
		hdr := &zip.FileHeader{Name: f.name, Method: zip.Deflate, Modified: mtime}
		hdr.SetMode(os.FileMode(f.mode)) // Unix mode in the external attributes: keeps the exec bit
		fw, err := zw.CreateHeader(hdr)
		if err != nil {
			return err
		}
		if _, err := fw.Write(data); err != nil {
			return err
		}
	}
	return zw.Close()
}

func writeChecksums(path string, arts []artifact) error {
	sorted := append([]artifact(nil), arts...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	var b strings.Builder
	for _, a := range sorted {
		fmt.Fprintf(&b, "%s  %s\n", a.sha256, a.name)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// renderManifest fills the krew template. Every plugin archive must be
// referenced by the template and every platform it names must have been
// built, so a platform can be neither forgotten nor shipped without a sum.
func renderManifest(o options, arts []artifact) error {
	src, err := os.ReadFile(o.template)
	if err != nil {
		return fmt.Errorf("reading the krew template: %w", err)
	}
	base, err := execString("uri-base", o.uriBase, map[string]string{"Version": o.version}, nil)
	if err != nil {
		return err
	}
	plugin := map[string]artifact{}
	for _, a := range arts {
		if strings.HasPrefix(a.name, pluginName+"_") {
			plugin[a.os+"/"+a.arch] = a
		}
	}
	used := map[string]bool{}
	lookup := func(goos, goarch string) (artifact, error) {
		a, ok := plugin[goos+"/"+goarch]
		if !ok {
			return a, fmt.Errorf("the template names %s/%s but no plugin was built for it", goos, goarch)
		}
		used[goos+"/"+goarch] = true
		return a, nil
	}
	funcs := template.FuncMap{
		"uri": func(goos, goarch string) (string, error) {
			a, err := lookup(goos, goarch)
			return strings.TrimSuffix(base, "/") + "/" + a.name, err
		},
		"sha256": func(goos, goarch string) (string, error) {
			a, err := lookup(goos, goarch)
			return a.sha256, err
		},
	}
	out, err := execString(o.template, string(src), map[string]string{"Version": o.version}, funcs)
	if err != nil {
		return err
	}
	for p := range plugin {
		if !used[p] {
			return fmt.Errorf("%s has no platform entry for %s: add one to the template", o.template, p)
		}
	}
	path := filepath.Join(o.dist, filepath.Base(o.template))
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		return err
	}
	fmt.Printf("  krew manifest: %s\n", path)
	return nil
}

func execString(name, text string, data any, funcs template.FuncMap) (string, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(funcs).Parse(text)
	if err != nil {
		return "", fmt.Errorf("parsing %s: %w", name, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("rendering %s: %w", name, err)
	}
	return b.String(), nil
}
