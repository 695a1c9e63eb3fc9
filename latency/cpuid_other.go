//go:build !amd64

package latency

// hostCPUID is nil where there is no CPUID instruction: cpuidCacheSizes then knows nothing.
var hostCPUID func(eax, ecx uint32) (a, b, c, d uint32)
