//go:build !unix

package whatif

import "time"

func cpuTime() time.Duration { return 0 }
