//go:build !linux

package latency

import "time"

// threadCPU is not available on this system: timings use the wall clock.
func threadCPU() (time.Duration, bool) { return 0, false }
