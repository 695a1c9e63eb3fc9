package latency

// cpuid executes the CPUID instruction with the leaf in EAX and the subleaf in ECX.
func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)

// hostCPUID is the processor's CPUID, for cpuidCacheSizes.
var hostCPUID = cpuid
