package latency

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Cache pressure. A layer timed alone, run after run, finds its weights in the processor's
// caches; in a model, the other layers' weights and activations (and on a virtual machine,
// other tenants) take the caches between two runs of it, and a layer whose weights are large
// for its work reads them from farther away. torchvision's ResNet-18 (64x64 inputs, batch 8,
// one thread): layer4's 3x3 Convs (512 channels on 2x2, 9.4 MB of weights each) took 1.21 ms
// alone and 1.6 ms in the model (onnxruntime's profile), and factorized at 288:224,
// layer4.1/conv2 saved 1.09 ms in the model against 0.77 ms in its table. MobileNetV2's
// classifier (a 1280 x 1000 Gemm at batch 8, 5 MB of weights in a model of 14 MB, well inside
// this machine's 32 MB L3) took 0.165 ms alone and 0.368 ms in the model; its factorization
// saved 0.20 ms there against 0.076 ms in its table. Layers with small weights and much work,
// the early ones, were not slower in the model.
//
// So FromNode's callers set Layer.Sweep to Pressure's answer: where a layer's weights exceed
// the smallest cache of level 2 or above (a core's own), half again the largest. Each run of
// the layer's programs is then preceded, untimed and on the thread that runs it, by a read of
// that many bytes and then of the program's input, which in the model comes straight from the
// layer before: weights cold, input warm. Sweeping every layer costs time for little where the
// weights are small: a read of 1.5x a 32 MB cache takes about 2 ms, against layers of 0.02 to
// 0.3 ms on MobileNetV2, whose tables then took 796 s instead of 195 (303 s with its three
// large layers alone cold).
//
// Cold is an upper bound. In a model, a large layer's weights are partly in the shared cache:
// MobileNetV3-small's two classifier Gemms (2.4 and 4 MB) took 0.08 and 0.12 ms warm, 0.24 and
// 0.39 ms cold, and what their factorizations saved in the model lay between the two (the
// whole model predicted 16% optimistic cold, 21% pessimistic warm; MobileNetV2 1% optimistic
// cold, 16% pessimistic warm). Tried and dropped: sweeping only a core's own cache (MobileNetV2
// and V3 still 14% and 19% pessimistic), and sweeping as many bytes as the model's other
// weights (MobileNetV3 26% pessimistic: the other 6 MB of weights left the Gemms' in the L3).
//
// The buffer swept is written once when made: a fresh buffer only read maps every page to the
// kernel's one zero page, and reading it evicts nothing (48 MB read in 9.4 ms, written and read
// in 2 ms; the first sweep, before this, evicted only translations).

// CacheSizes returns the sizes in bytes of cpu0's data and unified caches of level 2 and above,
// smallest first, as Linux's sysfs lists them, else (on virtual machines that list none, as
// Firecracker's) as the processor's CPUID says (cpuidCacheSizes); nil where unknown.
func CacheSizes() []int64 {
	caches.Do(func() {
		caches.sizes = readCacheSizes("/sys/devices/system/cpu/cpu0/cache")
		if len(caches.sizes) == 0 && hostCPUID != nil {
			caches.sizes = cpuidCacheSizes(hostCPUID)
		}
	})
	return caches.sizes
}

// cpuidCacheSizes returns the sizes in bytes of the data and unified caches of level 2 and
// above that x86 CPUID query reports, smallest first: from the deterministic cache parameters
// (leaf 4 on Intel, 0x8000001D on AMD: ways x partitions x line size x sets), else from AMD's
// older leaf 0x80000006 (L2 in KB in ECX[31:16], L3 in 512 KB units in EDX[31:18]; Intel's
// gives L2 alone); nil when none answers. A virtual machine's CPUID may be the host's or made
// up (one here reported no deterministic parameters and an L3 of 508 MB): Pressure bounds what
// it sweeps.
func cpuidCacheSizes(query func(eax, ecx uint32) (a, b, c, d uint32)) []int64 {
	maxLeaf, _, _, _ := query(0, 0)
	maxExt, _, _, _ := query(0x80000000, 0)
	var sizes []int64
	for _, leaf := range []uint32{4, 0x8000001D} {
		if leaf < 0x80000000 && leaf > maxLeaf || leaf >= 0x80000000 && leaf > maxExt {
			continue
		}
		for i := uint32(0); i < 16; i++ {
			a, b, c, _ := query(leaf, i)
			kind, level := a&31, (a>>5)&7
			if kind == 0 {
				break
			}
			if level < 2 || kind == 2 { // 2: instruction cache
				continue
			}
			ways, parts, line := int64(b>>22)+1, int64(b>>12&1023)+1, int64(b&4095)+1
			sizes = append(sizes, ways*parts*line*(int64(c)+1))
		}
		if len(sizes) > 0 {
			break
		}
	}
	if len(sizes) == 0 && maxExt >= 0x80000006 {
		_, _, c, d := query(0x80000006, 0)
		if l2 := int64(c >> 16); l2 > 0 {
			sizes = append(sizes, l2<<10)
		}
		if l3 := int64(d >> 18); l3 > 0 {
			sizes = append(sizes, l3*512<<10)
		}
	}
	slices.Sort(sizes)
	return slices.Compact(sizes)
}

var caches struct {
	sync.Once
	sizes []int64
}

// readCacheSizes returns the sizes of dir's index*/ entries of level 2 and above that hold
// data (type Data or Unified), smallest first, skipping unreadable ones.
func readCacheSizes(dir string) []int64 {
	entries, _ := filepath.Glob(filepath.Join(dir, "index*"))
	var sizes []int64
	for _, e := range entries {
		read := func(name string) string {
			data, _ := os.ReadFile(filepath.Join(e, name))
			return strings.TrimSpace(string(data))
		}
		level, err := strconv.Atoi(read("level"))
		if err != nil || level < 2 || read("type") == "Instruction" {
			continue
		}
		if n := parseCacheSize(read("size")); n > 0 {
			sizes = append(sizes, n)
		}
	}
	slices.Sort(sizes)
	return slices.Compact(sizes)
}

// parseCacheSize reads a sysfs cache size ("32768K", "2M", "512"), in bytes; 0 when malformed.
func parseCacheSize(s string) int64 {
	s = strings.TrimSpace(s)
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n * mult
}

// MaxSweptCache bounds the largest cache Pressure sweeps, in bytes: a read of 1.5x 64 MB takes
// some 4 ms, against layers of a fraction of a millisecond, and a virtual machine may report a
// cache it does not give one core (508 MB by CPUID on one here).
const MaxSweptCache = 64 << 20

// Pressure returns the bytes each run of layer l's programs reads first (Layer.Sweep) on a
// machine with caches (sizes in bytes, smallest first: CacheSizes): where l's weights (4 bytes
// an element) exceed the smallest, which a core has to itself, half again the largest (at most
// MaxSweptCache); else 0, as where caches is empty.
func Pressure(l Layer, caches []int64) int64 {
	if len(caches) == 0 || 4*int64(l.In)*int64(l.Out)*l.kernelSize() <= caches[0] {
		return 0
	}
	last := min(caches[len(caches)-1], MaxSweptCache)
	return last + last/2
}

// sweep reads n bytes of a buffer kept for it, evicting what a program left in the caches
// smaller than n; sink keeps the reads from being optimized away. The buffer is written when
// made: the pages of fresh memory that is only read all map the kernel's one zero page, and
// reading them evicts nothing.
func sweep(n int64) {
	sweeper.Lock()
	if int64(len(sweeper.buf)) < n {
		b := make([]byte, n)
		for i := 0; i < len(b); i += 64 {
			b[i] = 1
		}
		sweeper.buf = b
	}
	b := sweeper.buf[:n]
	sweeper.Unlock()
	var s byte
	for i := 0; i < len(b); i += 64 {
		s += b[i]
	}
	sink.Add(uint32(s))
}

var (
	sweeper struct {
		sync.Mutex
		buf []byte
	}
	sink atomic.Uint32 // sweeps may run in concurrent Measures
)

// touch reads x, as the layer before would have left it in the cache.
func touch(x []float32) {
	var s float32
	for i := 0; i < len(x); i += 16 {
		s += x[i]
	}
	sink.Add(uint32(s))
}
