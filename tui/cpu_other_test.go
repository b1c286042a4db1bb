//go:build !unix

package tui_test

import "time"

// processCPU is not measured here: the benchmark reports 0 CPU.
func processCPU() time.Duration { return 0 }
