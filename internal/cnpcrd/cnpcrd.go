// Package cnpcrd finds the ClusterNetworkPolicy CRDs that ship in the
// sigs.k8s.io/network-policy-api module this repository builds against, so
// test API servers and the test cluster install exactly the CRD whose Go
// types the engine uses (annotations kept as released). It reads the module
// from the Go module cache through `go list`, so it is for tests and
// tooling with the go command at hand, never for the shipped binaries.
package cnpcrd

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Module is the module the CRDs and API types come from.
const Module = "sigs.k8s.io/network-policy-api"

// Channels are the release channels of the CRDs: standard, and
// experimental (named ports, node and domainNames peers).
const (
	Standard     = "standard"
	Experimental = "experimental"
)

// ModuleDir is the directory of the module version go.mod requires, e.g.
// $GOMODCACHE/sigs.k8s.io/network-policy-api@v0.3.0, downloaded if needed.
// It must run inside this repository (the go command resolves the version).
func ModuleDir() (dir, version string, err error) {
	out, err := exec.Command("go", "mod", "download", "-json", Module).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", "", fmt.Errorf("go mod download %s: %v: %s", Module, err, ee.Stderr)
		}
		return "", "", fmt.Errorf("go mod download %s: %w", Module, err)
	}
	var m struct{ Dir, Version, Error string }
	if err := json.Unmarshal(out, &m); err != nil {
		return "", "", fmt.Errorf("go mod download %s: %w", Module, err)
	}
	if m.Error != "" || m.Dir == "" {
		return "", "", fmt.Errorf("go mod download %s: %s", Module, m.Error)
	}
	return m.Dir, m.Version, nil
}

// Path is the ClusterNetworkPolicy CRD file of a channel in the module.
func Path(channel string) (string, error) {
	if channel != Standard && channel != Experimental {
		return "", fmt.Errorf("CRD channel %q: use %q or %q", channel, Standard, Experimental)
	}
	dir, _, err := ModuleDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "config", "crd", channel, "policy.networking.k8s.io_clusternetworkpolicies.yaml"), nil
}

// CRD returns the bytes of the ClusterNetworkPolicy CRD of a channel, as
// released in the module (one CustomResourceDefinition document).
func CRD(channel string) ([]byte, error) {
	p, err := Path(channel)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}
