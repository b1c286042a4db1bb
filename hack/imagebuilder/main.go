// Command imagebuilder writes a container image as a `docker save` tar, without docker or a
// registry, so that `ctr -n k8s.io images import` can load it into the test cluster's containerd.
//
// The image has one layer holding the given files (and their parent directories). Output is
// deterministic: entries are sorted and every timestamp is the Unix epoch, so the same inputs
// give the same image ID.
//
// Usage:
//
//	imagebuilder -o out.tar -name localhost/netprobe:local -entrypoint /netprobe \
//	    -file /netprobe=bin/netprobe [-file /etc/x=path:0644] [-env K=V] [-label k=v]
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// fileSpec is one file placed in the image: DEST=SRC[:MODE].
type fileSpec struct {
	dest string
	src  string
	mode int64
}

func parseFileSpec(s string) (fileSpec, error) {
	dest, src, ok := strings.Cut(s, "=")
	if !ok || !path.IsAbs(dest) || src == "" {
		return fileSpec{}, fmt.Errorf("-file %q: want /path/in/image=local/path[:mode]", s)
	}
	f := fileSpec{dest: path.Clean(dest), src: src, mode: 0o755}
	if i := strings.LastIndex(src, ":"); i > 0 {
		if m, err := strconv.ParseInt(src[i+1:], 8, 64); err == nil {
			f.src, f.mode = src[:i], m
		}
	}
	return f, nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "imagebuilder:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("imagebuilder", flag.ContinueOnError)
	out := fs.String("o", "", "output tar path (docker save format)")
	name := fs.String("name", "", "image reference, e.g. localhost/netprobe:local")
	var files, entrypoint, cmd, env, labels listFlag
	fs.Var(&files, "file", "DEST=SRC[:octal mode] file to add (repeatable)")
	fs.Var(&entrypoint, "entrypoint", "entrypoint argument (repeatable, in order)")
	fs.Var(&cmd, "cmd", "default command argument (repeatable, in order)")
	fs.Var(&env, "env", "KEY=VALUE environment variable (repeatable)")
	fs.Var(&labels, "label", "KEY=VALUE image label (repeatable)")
	user := fs.String("user", "", "user the container runs as (e.g. 65532:65532)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *name == "" || len(files) == 0 {
		return errors.New("-o, -name and at least one -file are required")
	}
	if !strings.Contains(*name, ":") {
		return fmt.Errorf("-name %q: include a tag, e.g. %s:local", *name, *name)
	}
	var specs []fileSpec
	for _, f := range files {
		s, err := parseFileSpec(f)
		if err != nil {
			return err
		}
		specs = append(specs, s)
	}
	layer, err := buildLayer(specs)
	if err != nil {
		return err
	}
	img := image{Name: *name, Entrypoint: entrypoint, Cmd: cmd, Env: env, User: *user, Labels: map[string]string{}}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		img.Labels[k] = v
	}
	data, err := img.save(layer)
	if err != nil {
		return err
	}
	return os.WriteFile(*out, data, 0o644)
}

// epoch is the timestamp of every entry, for reproducible image IDs.
var epoch = time.Unix(0, 0).UTC()

// buildLayer returns an uncompressed layer tar with the files and every parent directory.
func buildLayer(specs []fileSpec) ([]byte, error) {
	dirs := map[string]bool{}
	for _, s := range specs {
		for d := path.Dir(s.dest); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var names []string
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	sort.Slice(specs, func(i, j int) bool { return specs[i].dest < specs[j].dest })

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range names {
		h := &tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
	}
	for _, s := range specs {
		content, err := os.ReadFile(s.src)
		if err != nil {
			return nil, fmt.Errorf("reading %s for %s: %w", s.src, s.dest, err)
		}
		h := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(s.dest, "/"), Mode: s.mode, Size: int64(len(content)), ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(content); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// image is the runtime configuration of the image.
type image struct {
	Name       string
	Entrypoint []string
	Cmd        []string
	Env        []string
	User       string
	Labels     map[string]string
}

// save returns the docker-save archive: <config>.json, <layer>/layer.tar and manifest.json.
func (img image) save(layer []byte) ([]byte, error) {
	layerSum := sha256.Sum256(layer)
	layerID := hex.EncodeToString(layerSum[:])
	env := img.Env
	if len(env) == 0 {
		env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	config := map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      epoch.Format(time.RFC3339),
		"config": map[string]any{
			"Entrypoint": img.Entrypoint,
			"Cmd":        img.Cmd,
			"Env":        env,
			"User":       img.User,
			"Labels":     img.Labels,
			"WorkingDir": "/",
		},
		"rootfs":  map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + layerID}},
		"history": []map[string]any{{"created": epoch.Format(time.RFC3339), "created_by": "imagebuilder"}},
	}
	configJSON, err := json.Marshal(config)
	if err != nil {
		return nil, err
	}
	configSum := sha256.Sum256(configJSON)
	configName := hex.EncodeToString(configSum[:]) + ".json"
	manifest, err := json.Marshal([]map[string]any{{
		"Config":   configName,
		"RepoTags": []string{img.Name},
		"Layers":   []string{layerID + "/layer.tar"},
	}})
	if err != nil {
		return nil, err
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: layerID + "/", Mode: 0o755, ModTime: epoch}); err != nil {
		return nil, err
	}
	for _, e := range []struct {
		name string
		data []byte
	}{{configName, configJSON}, {layerID + "/layer.tar", layer}, {"manifest.json", manifest}} {
		if err := add(e.name, e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
