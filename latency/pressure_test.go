package latency

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/convpca/convpca/ort"
)

func TestParseCacheSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"32768K\n", 32 << 20},
		{"2M", 2 << 20},
		{"1G", 1 << 30},
		{"512", 512},
		{"", 0},
		{"-4K", 0},
		{"32768KB", 0},
		{"lots", 0},
	} {
		if got := parseCacheSize(tc.in); got != tc.want {
			t.Errorf("parseCacheSize(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
	// A fake sysfs tree: level-1 caches and unreadable entries are left out, equal sizes kept once.
	dir := t.TempDir()
	for name, files := range map[string][3]string{
		"index0": {"1", "Data", "48K"},
		"index1": {"1", "Instruction", "32K"},
		"index2": {"2", "Unified", "1024K"},
		"index3": {"3", "Unified", "32768K"},
		"index4": {"3", "Unified", "bad"},
		"index5": {"x", "Unified", "8M"},
		"index6": {"2", "Data", "1M"},
	} {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		for i, f := range []string{"level", "type", "size"} {
			if err := os.WriteFile(filepath.Join(dir, name, f), []byte(files[i]+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got, want := readCacheSizes(dir), []int64{1 << 20, 32 << 20}; !slices.Equal(got, want) {
		t.Errorf("caches of %s: %v bytes, want %v", dir, got, want)
	}
	if got := readCacheSizes(filepath.Join(dir, "none")); got != nil {
		t.Errorf("no cache entries: %v, want none", got)
	}
}

// TestPressure: a layer is timed with the caches swept when its weights exceed the smallest
// cache (a core's own), by half again the largest; its Sweep reaches its programs and its
// cache key.
func TestPressure(t *testing.T) {
	const l2, l3 = 1 << 20, 32 << 20
	gemm := Layer{Op: "Gemm", In: 1280, Out: 1000, Bias: true, Input: []int{1280}, Batch: 8}   // 5120000 bytes
	conv := Layer{Op: "Conv", In: 256, Out: 256, Kernel: []int{3, 3}, Input: []int{256, 4, 4}} // 2359296 bytes
	for _, tc := range []struct {
		l      Layer
		caches []int64
		want   int64
	}{
		{gemm, nil, 0},
		{gemm, []int64{l2, l3}, l3 + l3/2},
		{gemm, []int64{5120000, l3}, 0},
		{gemm, []int64{5119999, l3}, l3 + l3/2},
		{gemm, []int64{l3}, 0},
		{conv, []int64{l2}, l2 + l2/2},
		{conv, []int64{4 << 20, l3}, 0},
		{convLayer, []int64{l2, l3}, 0},
		{gemm, []int64{l2, 508 << 20}, MaxSweptCache + MaxSweptCache/2},
	} {
		if got := Pressure(tc.l, tc.caches); got != tc.want {
			t.Errorf("Pressure(%s, caches %v) = %d, want %d", tc.l, tc.caches, got, tc.want)
		}
	}
	l := convLayer
	l.Sweep = 3 << 20
	for _, s := range []spec{{}, {chain, 8, 16}} {
		p, err := build(l, s, nil, 8)
		if err != nil {
			t.Fatal(err)
		}
		if p.Sweep != l.Sweep {
			t.Errorf("%s of a layer sweeping %d bytes: program sweeps %d", s, l.Sweep, p.Sweep)
		}
	}
	o := fakeOptions(t.TempDir(), nil).withDefaults()
	if o.key(l, "rt").file() == o.key(convLayer, "rt").file() {
		t.Error("a layer timed with the cache swept shares its cache file with the same layer timed without")
	}
	l2l := l
	l2l.Sweep = 48 << 20
	if o.key(l, "rt").file() == o.key(l2l, "rt").file() {
		t.Error("layers timed with sweeps of different sizes share a cache file")
	}
}

// TestSweepRun: onnxruntime runs a program with the cache swept before each run.
func TestSweepRun(t *testing.T) {
	needRuntime(t)
	l := convLayer
	l.Sweep = 1 << 20
	p, err := build(l, spec{}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := NewRunner(ort.RuntimeOptions{Threads: 1, Provider: ort.CPU})
	tm, err := r.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer tm.Close()
	for range 3 {
		if d, err := tm.Run(); err != nil || d <= 0 {
			t.Fatalf("run: %v, %v", d, err)
		}
	}
	// The buffer swept was written: read-only fresh pages would all be the kernel's zero page.
	sweeper.Lock()
	defer sweeper.Unlock()
	if len(sweeper.buf) < 1<<20 {
		t.Fatalf("sweep buffer of %d bytes, want at least %d", len(sweeper.buf), 1<<20)
	}
	for i := 0; i < len(sweeper.buf); i += 4096 {
		if sweeper.buf[i] == 0 {
			t.Fatalf("sweep buffer's page at byte %d never written", i)
		}
	}
}

// fakeCPUID answers CPUID queries from a table of leaf and subleaf; zeros elsewhere, as real
// processors answer for leaves they lack.
type fakeCPUID map[[2]uint32][4]uint32

func (f fakeCPUID) query(eax, ecx uint32) (a, b, c, d uint32) {
	r := f[[2]uint32{eax, ecx}]
	return r[0], r[1], r[2], r[3]
}

// det encodes one cache's deterministic parameters (CPUID leaf 4 or 0x8000001D): type (1
// data, 2 instruction, 3 unified), level, ways, partitions, line size and sets.
func det(kind, level, ways, parts, line, sets uint32) [4]uint32 {
	return [4]uint32{kind | level<<5, (ways-1)<<22 | (parts-1)<<12 | (line - 1), sets - 1, 0}
}

func TestCPUIDCacheSizes(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    fakeCPUID
		want []int64
	}{
		{"intel leaf 4", fakeCPUID{
			{0, 0}: {0x1b}, {0x80000000, 0}: {0x80000008},
			{4, 0}: det(1, 1, 12, 1, 64, 64), {4, 1}: det(2, 1, 8, 1, 64, 64),
			{4, 2}: det(3, 2, 20, 1, 64, 1024), {4, 3}: det(3, 3, 12, 1, 64, 49152),
			{0x80000006, 0}: {0, 0, 1280 << 16, 0},
		}, []int64{20 * 64 * 1024, 12 * 64 * 49152}},
		{"amd 0x8000001D", fakeCPUID{
			{0, 0}: {0x10}, {0x80000000, 0}: {0x80000021},
			{0x8000001D, 0}: det(1, 1, 8, 1, 64, 64), {0x8000001D, 1}: det(2, 1, 8, 1, 64, 64),
			{0x8000001D, 2}: det(3, 2, 8, 1, 64, 2048), {0x8000001D, 3}: det(3, 3, 16, 1, 64, 32768),
			{0x80000006, 0}: {0, 0, 1024 << 16, 64 << 18},
		}, []int64{1 << 20, 32 << 20}},
		{"amd legacy leaf only", fakeCPUID{
			{0, 0}: {0xd}, {0x80000000, 0}: {0x80000021},
			{0x80000006, 0}: {0, 0, 1024 << 16, 1016 << 18},
		}, []int64{1 << 20, 508 << 20}},
		{"intel legacy L2 only", fakeCPUID{
			{0, 0}: {2}, {0x80000000, 0}: {0x80000008},
			{4, 2}:          det(3, 2, 20, 1, 64, 1024), // beyond the maximum leaf: not asked
			{0x80000006, 0}: {0, 0, 256 << 16, 0},
		}, []int64{256 << 10}},
		{"nothing", fakeCPUID{{0, 0}: {1}, {0x80000000, 0}: {0x80000004}}, nil},
	} {
		if got := cpuidCacheSizes(tc.f.query); !slices.Equal(got, tc.want) {
			t.Errorf("%s: cpuidCacheSizes = %v, want %v", tc.name, got, tc.want)
		}
	}
}
