//go:build !unix

// Package cputime reads the process's CPU time (zero where unsupported).
package cputime

import "time"

// Process is zero: no rusage here.
func Process() time.Duration { return 0 }
