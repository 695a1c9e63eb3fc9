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
