//go:build unix

package cli

import "syscall"

// processCPU returns the process's user+system CPU time in nanoseconds: on a
// shared, overloaded machine it measures the work better than wall time.
func processCPU() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
