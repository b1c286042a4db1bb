//go:build linux

package main

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestHeapLimit(t *testing.T) {
	for _, tc := range []struct {
		container, gomemlimit string
		want                  int64
		set                   bool
	}{
		{"536870912", "", 429496728, true}, // 512Mi: 80 %
		{"536870912", "300MiB", 0, false},  // the user's GOMEMLIMIT wins
		{"", "", 0, false},                 // no limit
		{"0", "", 0, false},
		{"lots", "", 0, false},
	} {
		got, set := heapLimit(tc.container, tc.gomemlimit)
		if got != tc.want || set != tc.set {
			t.Errorf("heapLimit(%q, %q) = %d, %v; want %d, %v", tc.container, tc.gomemlimit, got, set, tc.want, tc.set)
		}
	}
}

// TestSetNiceCoversEveryThread runs setNice in a child process (niceness
// cannot be lowered again without CAP_SYS_NICE) and reads back each of its
// threads' niceness from /proc.
func TestSetNiceCoversEveryThread(t *testing.T) {
	if os.Getenv("NETPOL_TEST_SET_NICE") != "" {
		if err := setNice(7); err != nil {
			t.Fatal(err)
		}
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			raw, err := os.ReadFile("/proc/self/task/" + task.Name() + "/stat")
			if err != nil {
				continue // the thread exited
			}
			// Field 19 (nice) counted after the command's closing parenthesis.
			f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
			if n, _ := strconv.Atoi(f[16]); n != 7 {
				t.Errorf("thread %s: niceness %d, want 7", task.Name(), n)
			}
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSetNiceCoversEveryThread$", "-test.count=1")
	cmd.Env = append(os.Environ(), "NETPOL_TEST_SET_NICE=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}
