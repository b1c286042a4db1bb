package flowv1_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedCodeIsCurrent regenerates the Go code into a temporary
// directory with the pinned plugins and compares it with the committed files,
// so a proto edit without `make proto` fails here rather than at the agent.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("protoc not found: hack/install-deps.sh installs protobuf-compiler")
		}
		t.Skip("protoc not found: install protobuf-compiler and libprotobuf-dev (hack/install-deps.sh)")
	}
	tmp := t.TempDir()
	for _, plugin := range []string{
		"google.golang.org/protobuf/cmd/protoc-gen-go",
		"google.golang.org/grpc/cmd/protoc-gen-go-grpc",
	} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(tmp, filepath.Base(plugin)), plugin).CombinedOutput()
		if err != nil {
			t.Fatalf("building %s: %v\n%s", plugin, err, out)
		}
	}
	cmd := exec.Command("protoc", "-I", ".", "-I", "/usr/include",
		"--plugin=protoc-gen-go="+filepath.Join(tmp, "protoc-gen-go"),
		"--go_out="+tmp, "--go_opt=paths=source_relative",
		"--plugin=protoc-gen-go-grpc="+filepath.Join(tmp, "protoc-gen-go-grpc"),
		"--go-grpc_out="+tmp, "--go-grpc_opt=paths=source_relative",
		"flow.proto")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, out)
	}
	for _, f := range []string{"flow.pb.go", "flow_grpc.pb.go"} {
		want, err := os.ReadFile(filepath.Join(tmp, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run `make proto` and commit the result", f)
		}
	}
}
