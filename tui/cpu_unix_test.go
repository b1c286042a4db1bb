//go:build unix

package tui_test

import (
	"syscall"
	"time"
)

// processCPU is this process's user+system CPU time (every thread, GC
// included), which other processes competing for the cores do not inflate.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
