//go:build unix

// Package cputime reads the process's CPU time, which benchmarks report per
// op besides wall time: the shared machines they run on are often
// oversubscribed, and CPU time is what the work costs.
package cputime

import (
	"syscall"
	"time"
)

// Process is the process's user+system CPU time.
func Process() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
