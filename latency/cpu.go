package latency

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
)

// CPU is what the cache key and the rank grid need to know of the processor.
type CPU struct {
	Model string   // "model name" of /proc/cpuinfo (family, model and stepping on x86)
	Flags []string // the flags that choose MLAS kernels, sorted
	Cores int      // logical CPUs this process may use
}

// mlasFlags are the /proc/cpuinfo flags (x86 "flags", arm64 "Features") on which MLAS, the
// CPU provider's kernel library, chooses its float and integer kernels (platform.cpp).
var mlasFlags = []string{
	"sse4_1", "avx", "fma", "avx2", "f16c",
	"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
	"avx_vnni", "avx_vnni_int8", "avx_ne_convert",
	"amx_tile", "amx_int8", "amx_bf16", "amx_fp16",
	"asimd", "asimddp", "asimdhp", "i8mm", "bf16", "sve", "sve2", "sme", "sme2",
}

// ParseCPU reads the text of /proc/cpuinfo (the first processor's entry).
func ParseCPU(cpuinfo string) CPU {
	var c CPU
	var family, model, stepping string
	seen := map[string]bool{}
	for _, line := range strings.Split(cpuinfo, "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			if strings.TrimSpace(line) == "" && (c.Model != "" || len(seen) > 0) {
				break // the first processor is enough
			}
			continue
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		switch key {
		case "model name", "Model", "Hardware":
			if c.Model == "" {
				c.Model = val
			}
		case "cpu family":
			family = val
		case "model":
			model = val
		case "stepping":
			stepping = val
		case "CPU implementer", "CPU part", "CPU variant":
			model += key[4:] + "=" + val + " "
		case "flags", "Features":
			for _, f := range strings.Fields(val) {
				if slices.Contains(mlasFlags, f) {
					seen[f] = true
				}
			}
		}
	}
	if family != "" || model != "" {
		c.Model = strings.TrimSpace(fmt.Sprintf("%s (family %s model %s stepping %s)", c.Model, family, strings.TrimSpace(model), stepping))
	}
	for f := range seen {
		c.Flags = append(c.Flags, f)
	}
	slices.Sort(c.Flags)
	c.Cores = runtime.NumCPU()
	return c
}

// Has reports whether the CPU has a flag.
func (c CPU) Has(flag string) bool { return slices.Contains(c.Flags, flag) }

// String is the CPU's identity in cache keys: model, MLAS flags and usable cores.
func (c CPU) String() string {
	return fmt.Sprintf("%s; %s; %s; %d cores", runtime.GOARCH, c.Model, strings.Join(c.Flags, " "), c.Cores)
}

var host struct {
	sync.Once
	cpu CPU
}

// HostCPU returns this machine's CPU, read from /proc/cpuinfo (on other systems only the
// architecture and core count are known).
func HostCPU() CPU {
	host.Do(func() {
		data, _ := os.ReadFile("/proc/cpuinfo")
		host.cpu = ParseCPU(string(data))
	})
	return host.cpu
}

// RankMultiple returns the rank multiple at which onnxruntime's CPU provider computes channels
// without waste on this CPU: 16 with AVX-512F, 8 with AVX2 (or AVX), else 4.
//
// Why: MLAS (onnxruntime/core/mlas/lib/platform.cpp) sets its NCHWc block size to 16 floats
// (one zmm register) when AVX512F is usable and 8 (one ymm register) otherwise on x86-64; a
// 2-D Conv is run in the blocked NCHWc layout only when its output channels (and its input
// channels, unless fewer than one block) are multiples of that block (the NchwcTransformer),
// and falls back to im2col + SGEMM otherwise. SGEMM itself works on panels of 16 columns
// (MLAS_SGEMM_STRIDEN_THREAD_ALIGN; "AVX512F can efficiently handle 32") of the output, which
// for a Gemm or MatMul are the output channels, and on 4 (AVX), 6 (FMA3) or 12 (AVX512F) rows
// at a time. So channel counts off the multiple pay for the padded remainder, or lose the
// NCHWc path altogether. Without AVX (SSE, or arm64 NEON) registers hold 4 floats.
func RankMultiple(c CPU) int {
	switch {
	case c.Has("avx512f"):
		return 16
	case c.Has("avx2"), c.Has("avx"):
		return 8
	}
	return 4
}

// NCHWcBlock is the channel block of onnxruntime's blocked NCHWc layout on this CPU (MLAS's
// block width, RankMultiple), or 0 where onnxruntime does not use the layout (without AVX).
func NCHWcBlock(c CPU) int {
	if b := RankMultiple(c); b >= 8 {
		return b
	}
	return 0
}
