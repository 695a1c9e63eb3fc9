package latency

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/ort"
	"github.com/convpca/convpca/testmodels"
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
		if got := ParseCacheSize(tc.in); got != tc.want {
			t.Errorf("ParseCacheSize(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
	dir := t.TempDir()
	for name, size := range map[string]string{"index0": "48K\n", "index2": "2048K\n", "index3": "32768K\n", "index4": "bad\n"} {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "size"), []byte(size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := readCacheSize(dir); got != 32<<20 {
		t.Errorf("largest cache of %s: %d bytes, want %d", dir, got, 32<<20)
	}
	if got := readCacheSize(filepath.Join(dir, "none")); got != 0 {
		t.Errorf("no cache entries: %d bytes, want 0", got)
	}
}

// TestPressured: the bundled MNIST model holds 205802 float weights (823208 bytes); the rule
// compares them with the cache, and the layer's Evict reaches its programs and its cache key.
func TestPressured(t *testing.T) {
	m, err := onnxio.Load(testmodels.Path("mnist_cnn.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cache int64
		want  bool
	}{{0, false}, {512 << 10, true}, {823207, true}, {823208, false}, {32 << 20, false}} {
		if got := Pressured(m.Graph, tc.cache); got != tc.want {
			t.Errorf("Pressured(MNIST, %d bytes) = %v, want %v", tc.cache, got, tc.want)
		}
	}
	l := convLayer
	l.Evict = true
	for _, s := range []spec{{}, {chain, 8, 16}} {
		p, err := build(l, s, nil, 8)
		if err != nil {
			t.Fatal(err)
		}
		if !p.Evict {
			t.Errorf("%s of an evicting layer: program does not evict", s)
		}
	}
	o := fakeOptions(t.TempDir(), nil).withDefaults()
	if o.key(l, "rt").file() == o.key(convLayer, "rt").file() {
		t.Error("a layer timed with the cache swept shares its cache file with the same layer timed without")
	}
}

// TestEvictRun: onnxruntime runs a program with the cache swept before each run.
func TestEvictRun(t *testing.T) {
	needRuntime(t)
	l := convLayer
	l.Evict = true
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
}
