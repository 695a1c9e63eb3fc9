package latency

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/convpca/convpca/ort"
	"github.com/convpca/convpca/testmodels"
)

// fakeRunner times programs without onnxruntime: run n (0-based, warm-ups included) of a
// program takes ms(p, n) milliseconds. It counts opens and runs.
type fakeRunner struct {
	mu          sync.Mutex
	ident       string
	ms          func(p Program, n int) float64
	opens, runs int
	open        int // sessions open now
	maxOpen     int
}

func (f *fakeRunner) Identity() (string, error) { return f.ident, nil }

func (f *fakeRunner) Open(p Program) (Timer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opens++
	f.open++
	f.maxOpen = max(f.maxOpen, f.open)
	return &fakeTimer{f: f, p: p}, nil
}

type fakeTimer struct {
	f *fakeRunner
	p Program
	n int
}

func (t *fakeTimer) Run() (time.Duration, error) {
	t.f.mu.Lock()
	t.f.runs++
	t.f.mu.Unlock()
	ms := t.f.ms(t.p, t.n)
	t.n++
	return time.Duration(ms * 1e6), nil
}

func (t *fakeTimer) Close() error {
	t.f.mu.Lock()
	t.f.open--
	t.f.mu.Unlock()
	return nil
}

// macsTime is a fake layer time: 1 ms per 10^7 multiply-adds plus 0.05 ms.
func macsTime(p Program, _ int) float64 { return float64(p.MACs)/1e7 + 0.05 }

var (
	convLayer  = Layer{Name: "conv", Op: "Conv", In: 32, Out: 64, Kernel: []int{3, 3}, Pads: []int{1, 1, 1, 1}, Bias: true, Input: []int{32, 14, 14}, Batch: 8}
	gemmLayer  = Layer{Name: "fc", Op: "Gemm", In: 128, Out: 10, TransB: true, Bias: true, Input: []int{128}, Batch: 8}
	fakeCPU    = CPU{Model: "Test CPU", Flags: []string{"avx", "avx2", "fma"}, Cores: 2}
	fakeLayers = []Layer{convLayer, gemmLayer}
)

func fakeOptions(dir string, f *fakeRunner) Options {
	return Options{Runner: f, CPU: &fakeCPU, CacheDir: dir, LayerBudget: time.Minute}
}

// TestRankMultiple: the rank multiple follows the MLAS kernel width of the CPU's flags.
func TestRankMultiple(t *testing.T) {
	for _, tc := range []struct {
		name, cpuinfo string
		want          int
		model         string
	}{
		{"avx512", "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC 9B14\nstepping\t: 1\nflags\t\t: fpu sse4_1 avx avx2 fma avx512f avx512bw avx512_vnni\n\nprocessor\t: 1\nmodel name\t: other\n",
			16, "AMD EPYC 9B14 (family 25 model 17 stepping 1)"},
		{"avx2", "processor\t: 0\nmodel name\t: Intel(R) Core(TM) i7-8700\nflags\t\t: fpu sse4_1 avx avx2 fma\n", 8, "Intel(R) Core(TM) i7-8700"},
		{"avx only", "model name\t: Sandy\nflags\t\t: sse4_1 avx\n", 8, "Sandy"},
		{"sse", "model name\t: Old\nflags\t\t: fpu sse sse2 sse4_1\n", 4, "Old"},
		{"arm64", "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd asimddp i8mm\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n", 4, "(family  model implementer=0x41 part=0xd0c stepping )"},
		{"empty", "", 4, ""},
		{"avx512 flag name only in model", "model name\t: avx512f lookalike\nflags\t\t: sse4_1\n", 4, "avx512f lookalike"},
	} {
		c := ParseCPU(tc.cpuinfo)
		if got := RankMultiple(c); got != tc.want {
			t.Errorf("%s: RankMultiple = %d, want %d (flags %v)", tc.name, got, tc.want, c.Flags)
		}
		if c.Model != tc.model {
			t.Errorf("%s: model %q, want %q", tc.name, c.Model, tc.model)
		}
	}
	if c := ParseCPU("flags\t: avx2 avx512f avx512_vnni amx_tile ht\n"); !slices.Equal(c.Flags, []string{"amx_tile", "avx2", "avx512_vnni", "avx512f"}) {
		t.Errorf("flags %v: only MLAS flags, sorted", c.Flags)
	}
}

// TestGridRanks: multiples of m below n and n, at most levels of them, m and n included.
func TestGridRanks(t *testing.T) {
	for _, tc := range []struct {
		n, m, levels int
		want         []int
	}{
		{32, 16, 6, []int{16, 32}},
		{10, 16, 6, []int{10}},
		{1, 8, 6, []int{1}},
		{40, 16, 6, []int{16, 32, 40}},
		{64, 16, 6, []int{16, 32, 48, 64}},
		{128, 16, 6, []int{16, 32, 48, 64, 80, 128}},
		{512, 16, 6, []int{16, 32, 64, 128, 256, 512}},
		{512, 16, 2, []int{16, 512}},
		{512, 16, 4, []int{16, 48, 160, 512}},
		{100, 4, 5, []int{4, 8, 20, 44, 100}},
	} {
		got := gridRanks(tc.n, tc.m, tc.levels)
		if len(got) > max(tc.levels, 2) || got[0] != min(tc.m, tc.n) || got[len(got)-1] != tc.n || !slices.IsSorted(got) {
			t.Errorf("gridRanks(%d, %d, %d) = %v: want at most %d, ascending, from %d to %d", tc.n, tc.m, tc.levels, got, tc.levels, tc.m, tc.n)
		}
		if tc.want != nil && !slices.Equal(got, tc.want) {
			t.Errorf("gridRanks(%d, %d, %d) = %v, want %v", tc.n, tc.m, tc.levels, got, tc.want)
		}
	}
}

// TestSmallRanks: below the multiple, m/4 and m/2 are measured and looked up; times there are
// never interpolated across the multiple (they need not be monotone).
func TestSmallRanks(t *testing.T) {
	for _, tc := range []struct {
		m    int
		want []int
	}{{1, nil}, {2, []int{1}}, {4, []int{1, 2}}, {8, []int{2, 4}}, {16, []int{4, 8}}} {
		if got := SmallRanks(tc.m); !slices.Equal(got, tc.want) {
			t.Errorf("SmallRanks(%d) = %v, want %v", tc.m, got, tc.want)
		}
	}
	for _, tc := range []struct {
		n, m, levels int
		want         []int
	}{
		{64, 16, 4, []int{4, 8, 16, 32, 48, 64}},
		{10, 16, 6, []int{4, 8, 10}},
		{6, 16, 6, []int{4, 6}},
		{4, 16, 6, []int{4}},
		{3, 16, 6, []int{3}},
		{512, 16, 2, []int{4, 8, 16, 512}},
		{100, 1, 3, []int{1, 10, 100}},
	} {
		if got := ladderRanks(tc.n, tc.m, tc.levels); !slices.Equal(got, tc.want) {
			t.Errorf("ladderRanks(%d, %d, %d) = %v, want %v", tc.n, tc.m, tc.levels, got, tc.want)
		}
	}
	// Times below the multiple as measured on MNIST's /2/Conv: 4 faster than 16, 8 slower.
	l := Layer{Op: "Conv", In: 32, Out: 32, Kernel: []int{3, 3}, Input: []int{32, 26, 26}, Batch: 64}
	lt := &LayerTimes{Layer: l, Multiple: 16, Small: []int{4, 8}, Original: Point{Ms: 3.9},
		Input: []Point{{R: 4, Ms: 1.6}, {R: 8, Ms: 2.0}, {R: 16, Ms: 1.9}, {R: 32, Ms: 4.5}}}
	for _, tc := range []struct {
		r    int
		want float64
	}{{1, 1.6}, {4, 1.6}, {5, 2.0}, {8, 2.0}, {9, 1.9}, {16, 1.9}, {17, 4.5}, {32, 4.5}} {
		if got := lt.Time(tc.r, 0); got != tc.want {
			t.Errorf("Time(%d, 0) = %g, want %g", tc.r, got, tc.want)
		}
	}
	if r, k := lt.Round(3, 9); r != 4 || k != 16 {
		t.Errorf("Round(3, 9) = %d, %d, want 4, 16", r, k)
	}
}

// TestTimeInterpolation: Time returns measured points exactly, interpolates linearly (one
// side) and bilinearly (both), rounds ranks up to the multiple, and panics out of range.
func TestTimeInterpolation(t *testing.T) {
	l := Layer{Op: "Conv", In: 64, Out: 40, Kernel: []int{3}, Input: []int{64, 10}, Batch: 1}
	f := func(r, k int) float64 { return 1 + 0.1*float64(r) + 0.01*float64(k) + 0.001*float64(r*k) }
	lt := &LayerTimes{Layer: l, Multiple: 16, Original: Point{Ms: 9}, BothR: []int{16, 64}, BothK: []int{16, 40}}
	for _, r := range []int{16, 32, 64} {
		lt.Input = append(lt.Input, Point{R: r, Ms: f(r, 0)})
	}
	for _, k := range []int{16, 40} {
		lt.Output = append(lt.Output, Point{K: k, Ms: f(0, k)})
	}
	for _, r := range lt.BothR {
		for _, k := range lt.BothK {
			lt.Both = append(lt.Both, Point{R: r, K: k, Ms: f(r, k)})
		}
	}
	tab := &Table{Layers: []*LayerTimes{lt}}
	for _, tc := range []struct {
		r, k int
		want float64
	}{
		{0, 0, 9},
		{16, 0, f(16, 0)}, {48, 0, f(48, 0)}, {64, 0, f(64, 0)},
		{40, 0, f(48, 0)}, // rounded up to 48
		{1, 0, f(16, 0)},
		{0, 16, f(0, 16)}, {0, 32, f(0, 32)}, {0, 40, f(0, 40)},
		{0, 33, f(0, 40)}, // 33 -> 48 -> at most 40
		{16, 16, f(16, 16)}, {48, 32, f(48, 32)}, {64, 40, f(64, 40)}, {30, 20, f(32, 32)},
	} {
		if got := tab.Time(0, tc.r, tc.k); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("Time(%d, %d) = %g, want %g", tc.r, tc.k, got, tc.want)
		}
	}
	if side, ms := lt.Best(16, 16); side != "output" || ms != f(0, 16) {
		t.Errorf("Best(16, 16) = %s %g, want output %g", side, ms, f(0, 16))
	}
	if side, ms := lt.Best(0, 0); side != "original" || ms != 9 {
		t.Errorf("Best(0, 0) = %s %g, want original 9", side, ms)
	}
	for _, rk := range [][2]int{{-1, 0}, {65, 0}, {0, 41}} {
		func() {
			defer func() {
				if e := recover(); e == nil || !strings.HasPrefix(fmt.Sprint(e), "latency: ") {
					t.Errorf("Time(%d, %d): panic %v, want a latency: panic", rk[0], rk[1], e)
				}
			}()
			tab.Time(0, rk[0], rk[1])
		}()
	}
}

// TestCacheRoundTrip: a second Measure with the same cache reads every layer and runs nothing;
// a duplicate layer is measured once; the table read back equals the one measured.
func TestCacheRoundTrip(t *testing.T) {
	dir := t.TempDir()
	f := &fakeRunner{ident: "fake", ms: macsTime}
	layers := append(slices.Clone(fakeLayers), convLayer) // the conv twice
	layers[2].Name = "conv again"
	first, err := Measure(layers, fakeOptions(dir, f))
	if err != nil {
		t.Fatal(err)
	}
	if first.Measured != 2 || first.Cached != 0 || f.runs == 0 || first.Runs != f.runs {
		t.Fatalf("first Measure: measured %d, cached %d, runs %d (runner %d), want 2, 0, > 0", first.Measured, first.Cached, first.Runs, f.runs)
	}
	if f.maxOpen > groupSize {
		t.Errorf("%d sessions open at once, want at most %d", f.maxOpen, groupSize)
	}
	if first.Layers[2].Layer.Name != "conv again" || !first.Layers[2].Repeated || first.Layers[0].Repeated {
		t.Errorf("duplicate layer named %q, repeated %v (first %v)", first.Layers[2].Layer.Name, first.Layers[2].Repeated, first.Layers[0].Repeated)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) != 2 {
		t.Errorf("cache holds %d files, want 2", len(files))
	}
	runs := f.runs
	second, err := Measure(layers, fakeOptions(dir, f))
	if err != nil {
		t.Fatal(err)
	}
	if f.runs != runs || second.Runs != 0 || second.Measured != 0 || second.Cached != 2 {
		t.Errorf("second Measure ran %d programs, measured %d, cached %d; want 0, 0, 2", f.runs-runs, second.Measured, second.Cached)
	}
	for i := range layers {
		a, b := *first.Layers[i], *second.Layers[i]
		if !b.Cached {
			t.Errorf("layer %d not marked cached", i)
		}
		b.Cached, b.Repeated = a.Cached, a.Repeated
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if string(ja) != string(jb) || a.Layer.Name != b.Layer.Name {
			t.Errorf("layer %d read back differs:\n%s\n%s", i, ja, jb)
		}
	}
	// A Measure with another setup does not use these files.
	g := &fakeRunner{ident: "fake", ms: macsTime}
	o := fakeOptions(dir, g)
	o.Runtime.Threads = 2
	if tab, err := Measure(layers[:1], o); err != nil || tab.Measured != 1 || g.runs == 0 {
		t.Errorf("other threads: measured %d, runs %d, err %v; want measured again", tab.Measured, g.runs, err)
	}
	// NoCache neither reads nor writes.
	h := &fakeRunner{ident: "fake", ms: macsTime}
	o = fakeOptions(t.TempDir(), h)
	o.NoCache = true
	if tab, err := Measure(layers[:1], o); err != nil || tab.Measured != 1 {
		t.Fatal(err)
	}
	if files, _ := filepath.Glob(filepath.Join(o.CacheDir, "*")); len(files) != 0 {
		t.Errorf("NoCache wrote %v", files)
	}
}

// TestCacheKey: the key changes with everything the time depends on, not with the name or
// attributes spelled as their defaults.
func TestCacheKey(t *testing.T) {
	o := fakeOptions("", nil).withDefaultsFor(t)
	base := o.key(convLayer, "rt").file()
	changed := map[string]func(*Layer, *Options, *string){
		"threads":  func(_ *Layer, o *Options, _ *string) { o.Runtime.Threads = 4 },
		"batch":    func(l *Layer, _ *Options, _ *string) { l.Batch = 16 },
		"input":    func(l *Layer, _ *Options, _ *string) { l.Input = []int{32, 15, 14} },
		"stride":   func(l *Layer, _ *Options, _ *string) { l.Strides = []int{2, 2} },
		"bias":     func(l *Layer, _ *Options, _ *string) { l.Bias = false },
		"runtime":  func(_ *Layer, _ *Options, rt *string) { *rt = "other library" },
		"cpu":      func(_ *Layer, o *Options, _ *string) { c := *o.CPU; c.Flags = []string{"avx2", "avx512f"}; o.CPU = &c },
		"cores":    func(_ *Layer, o *Options, _ *string) { c := *o.CPU; c.Cores = 64; o.CPU = &c },
		"multiple": func(_ *Layer, o *Options, _ *string) { o.Multiple = 4 },
		"levels":   func(_ *Layer, o *Options, _ *string) { o.Levels = 3 },
	}
	for name, change := range changed {
		l, oo, rt := convLayer, o, "rt"
		change(&l, &oo, &rt)
		if oo.key(l, rt).file() == base {
			t.Errorf("changing %s leaves the cache key as it was", name)
		}
	}
	same := map[string]func(*Layer){
		"name":          func(l *Layer) { l.Name = "other" },
		"unit strides":  func(l *Layer) { l.Strides = []int{1, 1} },
		"unit dilation": func(l *Layer) { l.Dilations = []int{1, 1} },
		"NOTSET":        func(l *Layer) { l.AutoPad = "NOTSET" },
	}
	for name, change := range same {
		l := convLayer
		change(&l)
		if o.key(l, "rt").file() != base {
			t.Errorf("%s changes the cache key", name)
		}
	}
	zero := convLayer
	zero.Pads = []int{0, 0, 0, 0}
	nopad := convLayer
	nopad.Pads = nil
	if o.key(zero, "rt").file() != o.key(nopad, "rt").file() {
		t.Error("zero pads and no pads give different keys")
	}
	b0, b1 := convLayer, convLayer
	b0.Batch, b1.Batch = 0, 1
	if o.key(b0, "rt").file() != o.key(b1, "rt").file() {
		t.Error("batch 0 and batch 1 give different keys")
	}
}

// withDefaultsFor is withDefaults with a runner that is never used.
func (o Options) withDefaultsFor(t *testing.T) Options {
	t.Helper()
	o.Runner = &fakeRunner{ident: "unused", ms: macsTime}
	return o.withDefaults()
}

// TestCacheCorrupt: an unusable cache file is reported, ignored and replaced; nothing panics.
func TestCacheCorrupt(t *testing.T) {
	dir := t.TempDir()
	f := &fakeRunner{ident: "fake", ms: macsTime}
	if _, err := Measure(fakeLayers[:1], fakeOptions(dir, f)); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) != 1 {
		t.Fatalf("cache files %v", files)
	}
	good, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var e cacheEntry
	if err := json.Unmarshal(good, &e); err != nil {
		t.Fatal(err)
	}
	edit := func(fn func(*cacheEntry)) []byte {
		var c cacheEntry
		json.Unmarshal(good, &c)
		fn(&c)
		data, _ := json.Marshal(c)
		return data
	}
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"truncated", good[:len(good)/2]},
		{"garbage", []byte("\x00\xff not json")},
		{"null", []byte("null")},
		{"array", []byte("[1,2,3]")},
		{"no times", edit(func(c *cacheEntry) { c.Times = nil })},
		{"other key", edit(func(c *cacheEntry) { c.Key.Threads = 99 })},
		{"other layer", edit(func(c *cacheEntry) { c.Times.Layer.In = 3 })},
		{"negative time", edit(func(c *cacheEntry) { c.Times.Original.Ms = -1 })},
		{"missing point", edit(func(c *cacheEntry) { c.Times.Both = c.Times.Both[1:] })},
		{"unsorted ranks", edit(func(c *cacheEntry) { slices.Reverse(c.Times.Input) })},
		{"incomplete grid", edit(func(c *cacheEntry) { c.Times.Output = c.Times.Output[:len(c.Times.Output)-1] })},
		{"zero check", edit(func(c *cacheEntry) { c.Times.Checks = append(c.Times.Checks, Check{}) })},
		{"refined off the grid", edit(func(c *cacheEntry) { c.Times.Refined = []Point{{R: 7, Ms: 1, Runs: 20}} })},
		{"refined original", edit(func(c *cacheEntry) { c.Times.Refined = []Point{{Ms: 1, Runs: 20}} })},
		{"refined negative rank", edit(func(c *cacheEntry) { c.Times.Refined = []Point{{R: -8, Ms: 1, Runs: 20}} })},
		{"refined zero time", edit(func(c *cacheEntry) { c.Times.Refined = []Point{{R: 8, Runs: 20}} })},
		{"refined twice", edit(func(c *cacheEntry) { c.Times.Refined = []Point{{R: 8, Ms: 1}, {R: 8, Ms: 2}} })},
		{"refined negative original", edit(func(c *cacheEntry) { c.Times.Refined = []Point{{R: 8, Ms: 1, Runs: 20, Orig: -1}} })},
		{"huge number", []byte(strings.Replace(string(good), `"ms": `, `"ms": 1e999`, 1))},
	} {
		if err := os.WriteFile(files[0], tc.data, 0o644); err != nil {
			t.Fatal(err)
		}
		var warnings []string
		g := &fakeRunner{ident: "fake", ms: macsTime}
		o := fakeOptions(dir, g)
		o.Warn = func(msg string) { warnings = append(warnings, msg) }
		tab, err := Measure(fakeLayers[:1], o)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if tab.Measured != 1 || g.runs == 0 {
			t.Errorf("%s: measured %d layers, %d runs; want the layer measured again", tc.name, tab.Measured, g.runs)
		}
		if len(warnings) != 1 || !strings.Contains(warnings[0], "ignoring") {
			t.Errorf("%s: warnings %q, want one saying the file is ignored", tc.name, warnings)
		}
		// The file was replaced by a good one.
		h := &fakeRunner{ident: "fake", ms: macsTime}
		if tab, err := Measure(fakeLayers[:1], fakeOptions(dir, h)); err != nil || tab.Cached != 1 || h.runs != 0 {
			t.Errorf("%s: the file was not replaced (cached %d, runs %d, %v)", tc.name, tab.Cached, h.runs, err)
		}
	}
	// An unwritable cache folder is a warning, not an error.
	var warned string
	o := fakeOptions(filepath.Join(files[0], "sub"), &fakeRunner{ident: "fake", ms: macsTime})
	o.Warn = func(msg string) { warned = msg }
	if _, err := Measure(fakeLayers[:1], o); err != nil || !strings.Contains(warned, "not written") {
		t.Errorf("unwritable cache: err %v, warning %q", err, warned)
	}
}

// TestRefine: a candidate whose table time was lucky (its runs 40% fast while the table was
// measured) is timed again beside its original: Time and Noise then give the refined point,
// a layer of the same shape shares it, the cache keeps it, and a second Refine times nothing.
func TestRefine(t *testing.T) {
	lucky := true
	sessions := map[string]int{} // sessions opened per program (names repeat across layers)
	f := &fakeRunner{ident: "fake", ms: func(p Program, n int) float64 {
		id := fmt.Sprint(p.Name, p.MACs)
		if n == 0 {
			sessions[id]++
		}
		v := macsTime(p, n)
		if lucky && p.Name == "input r=8" {
			v *= 0.6
		}
		if id == fmt.Sprint("input r=16", convLayer.MACs(16, 0)) && sessions[id] == 2 {
			v *= 0.5 // its first session of Refine is a lucky one
		}
		return v
	}}
	dir := t.TempDir()
	o := fakeOptions(dir, f)
	twin := convLayer
	twin.Name = "twin"
	tab, err := Measure([]Layer{convLayer, gemmLayer, twin}, o)
	if err != nil {
		t.Fatal(err)
	}
	want := float64(convLayer.MACs(8, 0))/1e7 + 0.05
	if got := tab.Time(0, 8, 0); math.Abs(got/(0.6*want)-1) > 1e-4 {
		t.Fatalf("lucky table time %.4f ms, want %.4f", got, 0.6*want)
	}
	lucky = false
	opensBefore := f.opens
	ref, err := Refine(tab, []Candidate{{Layer: 0, R: 7}, {Layer: 1, R: 0, K: 0}}, o) // 7 rounds to 8
	if err != nil {
		t.Fatal(err)
	}
	if len(ref) != 1 || ref[0].Layer != 0 || ref[0].Point.R != 8 || ref[0].Point.K != 0 || math.Abs(ref[0].Before/(0.6*want)-1) > 1e-4 {
		t.Fatalf("refinements %+v, want one of layer 0 at (8, 0) from %.4f ms", ref, 0.6*want)
	}
	if p := ref[0].Point; p.Runs < refineSessions*refineMinTurns || math.Abs(p.Ms/want-1) > 1e-4 {
		t.Errorf("refined point %+v, want %.4f ms from at least %d turns", p, want, refineSessions*refineMinTurns)
	}
	if opened := f.opens - opensBefore; opened != 2*refineSessions {
		t.Errorf("Refine opened %d programs, want %d (the original and the candidate per session)", opened, 2*refineSessions)
	}
	for _, i := range []int{0, 2} {
		if got := tab.Time(i, 8, 0); math.Abs(got/want-1) > 1e-4 {
			t.Errorf("layer %d: time at input 8 after Refine %.4f ms, want %.4f", i, got, want)
		}
		if got := tab.Layers[i].Noise(8, 0); got != 0 {
			t.Errorf("layer %d: noise %g after an exact refinement, want 0", i, got)
		}
	}
	if len(tab.Layers[1].Refined) != 0 {
		t.Errorf("the gemm layer got refined points %+v", tab.Layers[1].Refined)
	}
	if !tab.Layers[2].Retimed(7, 0) || tab.Layers[2].Retimed(16, 0) {
		t.Errorf("Retimed(7, 0) = %v, Retimed(16, 0) = %v; want true (rounds to 8), false", tab.Layers[2].Retimed(7, 0), tab.Layers[2].Retimed(16, 0))
	}
	// Other ranks keep the grid's times.
	w16 := float64(convLayer.MACs(16, 0))/1e7 + 0.05
	if got := tab.Time(0, 16, 0); math.Abs(got/w16-1) > 1e-4 {
		t.Errorf("time at input 16 %.4f, want %.4f", got, w16)
	}
	// One lucky session of four does not move the refined time; it widens the interval.
	if ref, err := Refine(tab, []Candidate{{Layer: 0, R: 16}}, o); err != nil || len(ref) != 1 {
		t.Fatalf("refine input 16: %+v, %v", ref, err)
	} else if p := ref[0].Point; math.Abs(p.Ms/w16-1) > 1e-4 || !(p.RelCI > 0.4) {
		t.Errorf("input 16 refined to %.4f ms (interval %.2f), want %.4f ms and an interval wider than 0.4", p.Ms, p.RelCI, w16)
	}
	opens := f.opens
	if ref, err := Refine(tab, []Candidate{{Layer: 2, R: 8}}, o); err != nil || len(ref) != 0 || f.opens != opens {
		t.Errorf("second Refine: %+v, %d programs opened, %v; want nothing timed", ref, f.opens-opens, err)
	}
	// The cache holds the refined point.
	g := &fakeRunner{ident: "fake", ms: macsTime}
	again, err := Measure([]Layer{convLayer}, fakeOptions(dir, g))
	if err != nil || again.Cached != 1 || g.runs != 0 {
		t.Fatalf("cache: %d cached, %d runs, %v", again.Cached, g.runs, err)
	}
	if got := again.Time(0, 8, 0); math.Abs(got/want-1) > 1e-4 {
		t.Errorf("cached time at input 8 %.4f ms, want the refined %.4f", got, want)
	}
	for _, c := range []Candidate{{Layer: 3}, {Layer: 0, R: 33}, {Layer: 0, K: -1}} {
		if _, err := Refine(tab, []Candidate{c}, o); err == nil {
			t.Errorf("Refine(%+v): no error", c)
		}
	}
}

// TestCacheConcurrent: processes (here goroutines with their own options) measuring and
// writing the same layers at once leave valid files.
func TestCacheConcurrent(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := Measure(fakeLayers, fakeOptions(dir, &fakeRunner{ident: "fake", ms: macsTime})); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("cache folder holds %d entries (temporary files left?), want 2", len(entries))
	}
	f := &fakeRunner{ident: "fake", ms: macsTime}
	if tab, err := Measure(fakeLayers, fakeOptions(dir, f)); err != nil || tab.Cached != 2 || f.runs != 0 {
		t.Errorf("after concurrent writes: cached %d, runs %d, %v", tab.Cached, f.runs, err)
	}
}

// TestTimingStatistics: on a fake runner the medians come out right through noise, outliers
// and drift, runs stop once the confidence interval is tight (or at MaxRuns), and budget
// and minimum runs hold.
func TestTimingStatistics(t *testing.T) {
	l := convLayer
	type result struct {
		tab *Table
		f   *fakeRunner
	}
	measure := func(ms func(Program, int) float64, edit func(*Options)) result {
		f := &fakeRunner{ident: "fake", ms: ms}
		o := fakeOptions(t.TempDir(), f)
		o.NoCache = true
		if edit != nil {
			edit(&o)
		}
		tab, err := Measure([]Layer{l}, o)
		if err != nil {
			t.Fatal(err)
		}
		return result{tab, f}
	}
	check := func(name string, lt *LayerTimes, tol float64) {
		t.Helper()
		want := func(r, k int) float64 { return float64(l.MACs(r, k))/1e7 + 0.05 }
		all := append([]Point{lt.Original}, lt.Input...)
		all = append(append(all, lt.Output...), lt.Both...)
		for _, p := range all {
			if got := p.Ms; math.Abs(got/want(p.R, p.K)-1) > tol {
				t.Errorf("%s: (%d, %d) measured %.4f ms, want %.4f ± %.0f%%", name, p.R, p.K, got, want(p.R, p.K), 100*tol)
			}
		}
	}

	// Exact times: every program stops after MinRuns timed runs (its interval is 0).
	r := measure(macsTime, nil)
	lt := r.tab.Layers[0]
	check("exact", lt, 1e-5) // Durations are whole nanoseconds
	for _, p := range append(lt.Input, lt.Both...) {
		if p.Runs != 5 || p.RelCI != 0 {
			t.Errorf("exact: (%d, %d) ran %d times (CI %g), want 5 (0)", p.R, p.K, p.Runs, p.RelCI)
		}
	}
	if got := len(lt.Checks); got != 2 {
		t.Errorf("exact: %d checks, want 2", got)
	}
	for _, c := range lt.Checks {
		// One-node models each pay 0.05 ms: the sum of three is 0.1 ms more than the chain.
		if math.Abs(c.Down+c.Core+c.Up-c.Chain-0.1) > 1e-5 {
			t.Errorf("exact: check %+v: sum of parts %g, chain %g", c, c.Down+c.Core+c.Up, c.Chain)
		}
		if math.Abs(c.InterpError()) > 0.05 {
			t.Errorf("exact: check (%d, %d): interpolation off by %.1f%%", c.R, c.K, 100*c.InterpError())
		}
	}

	// Noise of ±10% and 20% of runs 5x slower: medians within 5%.
	noisy := func(p Program, n int) float64 {
		h := rand.New(rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(p.MACs), byte(p.MACs >> 8), byte(p.MACs >> 16), byte(p.MACs >> 24)}))
		v := macsTime(p, n) * (0.9 + 0.2*h.Float64())
		if h.Float64() < 0.2 {
			v *= 5
		}
		return v
	}
	r = measure(noisy, func(o *Options) { o.RelTol = 0.04 })
	check("noisy", r.tab.Layers[0], 0.06)
	if lt := r.tab.Layers[0]; lt.Original.Runs <= 5 {
		t.Errorf("noisy: the original ran %d times: noise should ask for more", lt.Original.Runs)
	}

	// Drift: the machine slows down 3x steadily over the measurement; programs interleave, so
	// their times keep their ratios.
	var clock int
	drift := func(p Program, n int) float64 {
		clock++
		return macsTime(p, n) * (1 + 2*min(float64(clock)/2000, 1))
	}
	r = measure(drift, func(o *Options) { o.MinRuns, o.MaxRuns, o.RelTol = 20, 20, 1e-9 })
	lt = r.tab.Layers[0]
	for _, p := range append(lt.Input, lt.Both...) {
		want := (float64(l.MACs(p.R, p.K))/1e7 + 0.05) / (float64(l.MACs(0, 0))/1e7 + 0.05)
		if got := p.Ms / lt.Original.Ms; math.Abs(got/want-1) > 0.1 {
			t.Errorf("drift: (%d, %d) / original = %.3f, want %.3f", p.R, p.K, got, want)
		}
	}

	// MaxRuns stops programs whose interval never closes.
	wild := func(p Program, n int) float64 { return macsTime(p, n) * float64(1+n%7) }
	r = measure(wild, func(o *Options) { o.MaxRuns = 9 })
	for _, p := range append(r.tab.Layers[0].Input, r.tab.Layers[0].Both...) {
		if p.Runs != 9 {
			t.Errorf("wild: (%d, %d) ran %d times, want MaxRuns 9", p.R, p.K, p.Runs)
		}
	}

	// The budget stops rounds once every program ran 3 times; slow programs shrink the grid.
	slow := func(p Program, n int) float64 {
		time.Sleep(time.Millisecond)
		return wild(p, n)
	}
	r = measure(slow, func(o *Options) { o.LayerBudget = 50 * time.Millisecond })
	lt = r.tab.Layers[0]
	if small := len(lt.Small); len(lt.BothR) > small+2 || len(lt.Input) > small+2 {
		t.Errorf("budget: grid %v x %v, input %d ranks: want it shrunk to the small ranks %v and 2 per side", lt.BothR, lt.BothK, len(lt.Input), lt.Small)
	}
	// A round of the slow programs takes longer than the budget (each run sleeps 1 ms), so
	// the rounds stop at exactly the minimum, however slow the machine (a wall-clock bound
	// here failed on a loaded CI machine).
	for _, p := range append(lt.Input, lt.Both...) {
		if p.Runs != hardMinRuns {
			t.Errorf("budget: (%d, %d) ran %d times, want exactly %d", p.R, p.K, p.Runs, hardMinRuns)
		}
	}
}

// TestMedianP90: the median (mean of the middle two for an even count) and the nearest-rank
// 90th percentile, worked by hand.
func TestMedianP90(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 10, 6, 7, 8, 9}
	if med, p90 := Median(xs), P90(xs); med != 5.5 || p90 != 9 {
		t.Errorf("median %v p90 %v, want 5.5 9", med, p90)
	}
	if med, p90 := Median([]float64{3}), P90([]float64{3}); med != 3 || p90 != 3 {
		t.Errorf("one value: %v %v", med, p90)
	}
	if !math.IsNaN(Median(nil)) || !math.IsNaN(P90(nil)) {
		t.Error("no values: want NaN")
	}
	if xs[0] != 5 {
		t.Error("Median sorted its argument")
	}
}

// TestRelCI: the distribution-free interval of the median.
func TestRelCI(t *testing.T) {
	if !math.IsInf(relCI([]float64{1, 2}, 0.5), 1) {
		t.Error("two values: want an infinite interval")
	}
	if got := relCI([]float64{1, 1, 1, 1, 1}, 0.5); got != 0 {
		t.Errorf("constant: %g", got)
	}
	// n = 5: [min, max] around the median 3.
	if got := relCI([]float64{5, 1, 3, 2, 4}, 0.5); got != 4.0/3 {
		t.Errorf("1..5: %g, want 4/3", got)
	}
	// n = 100: ranks 40 and 61 (1-based) of 1..100, median 50.5.
	xs := make([]float64, 100)
	for i := range xs {
		xs[i] = float64(100 - i)
	}
	if got, want := relCI(xs, 0.5), (61.0-40)/50.5; math.Abs(got-want) > 1e-12 {
		t.Errorf("1..100: %g, want %g", got, want)
	}
	// q = 0.2: ranks 12 and 29 around the quantile 20.8.
	if got, want := relCI(xs, 0.2), (29.0-12)/20.8; math.Abs(got-want) > 1e-12 {
		t.Errorf("1..100, q 0.2: %g, want %g", got, want)
	}
	for _, tc := range []struct{ q, want float64 }{{0.5, 50.5}, {0.2, 20.8}, {0, 1}, {1, 100}} {
		if got := quantile(xs, tc.q); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("quantile(1..100, %g) = %g, want %g", tc.q, got, tc.want)
		}
	}
}

// TestLayerCheck: descriptions that cannot be built are refused with the reason.
func TestLayerCheck(t *testing.T) {
	for _, tc := range []struct {
		l    Layer
		want string
	}{
		{Layer{Op: "Relu", In: 1, Out: 1, Input: []int{1}}, `op "Relu"`},
		{Layer{Op: "Conv", In: 3, Out: 4, Kernel: []int{3, 3}, Input: []int{4, 8, 8}}, "want C x spatial"},
		{Layer{Op: "Conv", In: 3, Out: 4, Kernel: []int{3, 3}, Input: []int{3, 2, 8}}, "does not fit"},
		{Layer{Op: "Conv", In: 3, Out: 4, Kernel: []int{3}, Strides: []int{1, 1}, Input: []int{3, 8}}, "strides"},
		{Layer{Op: "Conv", In: 3, Out: 4, Kernel: []int{3}, AutoPad: "SAME", Input: []int{3, 8}}, "auto_pad"},
		{Layer{Op: "Gemm", In: 3, Out: 4, Input: []int{2, 3}}, "Gemm on a 3-D input"},
		{Layer{Op: "MatMul", In: 3, Out: 4, Input: []int{5, 4}}, "want ..., K"},
		{Layer{Op: "MatMul", In: 3, Out: 4, Bias: true, Input: []int{3}}, "no bias"},
		{Layer{Op: "Conv", In: 0, Out: 4, Kernel: []int{1}, Input: []int{0, 8}}, "channels"},
	} {
		if err := tc.l.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error with %q", tc.l, err, tc.want)
		}
		if _, err := Measure([]Layer{tc.l}, fakeOptions(t.TempDir(), &fakeRunner{ident: "x", ms: macsTime})); err == nil {
			t.Errorf("%+v: Measure accepted it", tc.l)
		}
	}
}

// needRuntime skips (fails under CI) when onnxruntime cannot be loaded.
func needRuntime(t *testing.T) {
	t.Helper()
	if err := ort.InitRuntime(""); err != nil {
		testmodels.RequireOrSkip(t, fmt.Errorf("onnxruntime unavailable: %w", err))
	}
}

// ortLayers are layers of every kind the builder handles.
var ortLayers = []Layer{
	{Name: "conv2d pad stride", Op: "Conv", In: 5, Out: 7, Kernel: []int{3, 3}, Strides: []int{2, 1}, Pads: []int{1, 0, 2, 1}, Bias: true, Input: []int{5, 9, 8}, Batch: 2},
	{Name: "conv2d dilation no bias", Op: "Conv", In: 16, Out: 32, Kernel: []int{3, 3}, Dilations: []int{2, 2}, Input: []int{16, 11, 11}, Batch: 3},
	{Name: "conv1d same_upper", Op: "Conv", In: 4, Out: 6, Kernel: []int{4}, Strides: []int{3}, AutoPad: "SAME_UPPER", Bias: true, Input: []int{4, 10}, Batch: 1},
	{Name: "conv1d same_lower", Op: "Conv", In: 4, Out: 6, Kernel: []int{4}, AutoPad: "SAME_LOWER", Bias: true, Input: []int{4, 10}, Batch: 1},
	{Name: "conv2d valid", Op: "Conv", In: 3, Out: 8, Kernel: []int{2, 3}, Strides: []int{2, 2}, AutoPad: "VALID", Bias: true, Input: []int{3, 7, 9}, Batch: 2},
	{Name: "conv3d", Op: "Conv", In: 3, Out: 4, Kernel: []int{2, 3, 3}, Pads: []int{0, 1, 1, 1, 1, 1}, Bias: true, Input: []int{3, 4, 6, 6}, Batch: 2},
	{Name: "gemm transB", Op: "Gemm", In: 20, Out: 10, TransB: true, Bias: true, Input: []int{20}, Batch: 4},
	{Name: "gemm", Op: "Gemm", In: 20, Out: 10, Bias: true, Input: []int{20}, Batch: 4},
	{Name: "gemm no bias", Op: "Gemm", In: 20, Out: 10, Input: []int{20}, Batch: 4},
	{Name: "matmul 3-D", Op: "MatMul", In: 12, Out: 6, Input: []int{5, 12}, Batch: 2},
	{Name: "matmul 4-D", Op: "MatMul", In: 12, Out: 6, Input: []int{2, 3, 12}, Batch: 2},
}

// runOnce runs a program on x and returns its output and shape.
func runOnce(t *testing.T, p Program, x []float32) ([]float32, []int64) {
	t.Helper()
	s, err := ort.NewSession(p.Model, p.Input, p.Outputs, ort.RuntimeOptions{Provider: ort.CPU, Threads: 1})
	if err != nil {
		t.Fatalf("%s: %v", p.Name, err)
	}
	defer s.Close()
	var y []float32
	var shape []int64
	err = s.Run(x, p.Dims, func(outs []ort.Output) error {
		y, shape = slices.Clone(outs[0].Data), slices.Clone(outs[0].Shape)
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v", p.Name, err)
	}
	return y, shape
}

// TestBuildFullRank: every candidate model runs in onnxruntime with the shapes the layer
// predicts, and at full rank with identity down and up factors and the original weights in the
// core (and its bias on up), each factorized model gives the original layer's outputs; with
// and without context (Options.Context), which must not change what a program computes.
func TestBuildFullRank(t *testing.T) {
	needRuntime(t)
	for _, block := range []int{0, 8} {
		for _, l := range ortLayers {
			buildFullRank(t, l, block)
		}
	}
}

// buildFullRank checks the programs of l with context block (0: none): see TestBuildFullRank.
func buildFullRank(t *testing.T, l Layer, block int) {
	l.BlockedIn, l.BlockedOut = block > 0, block > 0
	{
		orig := map[string][]float32{}
		wf := func(role string, out, in int, kernel int64) []float32 {
			switch role {
			case "down", "up":
				if out != in || kernel != 1 {
					t.Fatalf("%s: %s factor %d x %d x %d at full rank", l.Name, role, out, in, kernel)
				}
				w := make([]float32, out*in)
				for i := range out {
					w[i*in+i] = 1
				}
				return w
			case "core":
				return orig["weight"]
			case "up_bias", "core_bias":
				return orig["bias"]
			}
			w := randomWeights(role, out, in, kernel)
			for i := range w {
				w[i] += 0.1 // a bias far from zero, so that a missing or doubled one shows
			}
			orig[role] = w
			return w
		}
		p, err := build(l, spec{}, wf, block)
		if err != nil {
			t.Fatalf("%s: %v", l.Name, err)
		}
		n := 1
		for _, d := range p.Dims {
			n *= int(d)
		}
		x := make([]float32, n)
		rng := rand.New(rand.NewPCG(3, 4))
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		// The context's identity depthwise Convs sit on each side of a 2-D Conv whose
		// channels are a multiple of 4.
		ctx := l.Op == "Conv" && len(l.Kernel) == 2 && block > 0
		for _, side := range []struct {
			name string
			c    int
		}{{"context_in", l.In}, {"context_out", l.Out}} {
			if got, want := bytes.Contains(p.Model, []byte(side.name)), ctx && side.c%4 == 0; got != want {
				t.Errorf("%s, block %d: %s in the program: %v, want %v", l.Name, block, side.name, got, want)
			}
		}
		// The reference: the original without context.
		p0, err := build(l, spec{}, wf, 0)
		if err != nil {
			t.Fatalf("%s: %v", l.Name, err)
		}
		want, shape := runOnce(t, p0, x)
		if !slices.Equal(shape, l.outDims(l.Out)) {
			t.Errorf("%s: output shape %v, predicted %v", l.Name, shape, l.outDims(l.Out))
		}
		for _, s := range []spec{{}, {chain, l.In, l.Out}, {chain, l.In, 0}, {chain, 0, l.Out}} {
			if !l.Bias && s.K > 0 {
				orig["bias"] = make([]float32, l.Out)
			}
			p, err := build(l, s, wf, block)
			if err != nil {
				t.Fatalf("%s %s: %v", l.Name, s, err)
			}
			got, gotShape := runOnce(t, p, x)
			if !slices.Equal(gotShape, shape) {
				t.Errorf("%s %s: shape %v, want %v", l.Name, s, gotShape, shape)
				continue
			}
			if e := maxRelErr(got, want); e > 1e-5 {
				t.Errorf("%s %s: outputs differ from the original by %.2g (relative)", l.Name, s, e)
			}
		}
		// Every candidate and part runs with the predicted shapes (random weights).
		half := func(n int) int { return max(n/2, 1) }
		for _, s := range []spec{{chain, half(l.In), half(l.Out)}, {down, half(l.In), 0}, {core, half(l.In), half(l.Out)}, {core, 0, half(l.Out)}, {up, 0, half(l.Out)}} {
			p, err := build(l, s, nil, block)
			if err != nil {
				t.Fatalf("%s %s: %v", l.Name, s, err)
			}
			n := 1
			for _, d := range p.Dims {
				n *= int(d)
			}
			_, got := runOnce(t, p, make([]float32, n))
			want := l.outDims(l.Out)
			switch s.Part {
			case down:
				want = l.inDims(s.R)
			case core:
				want = l.outDims(nz(s.K, l.Out))
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s %s: output shape %v, want %v", l.Name, s, got, want)
			}
		}
	}
}

func maxRelErr(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var d, m float64
	for i := range want {
		d = math.Max(d, math.Abs(float64(got[i])-float64(want[i])))
		m = math.Max(m, math.Abs(float64(want[i])))
	}
	return d / m
}

// TestMeasureORT: a real measurement of a small layer in onnxruntime gives a complete, positive
// table, and the cache makes the second one free.
func TestMeasureORT(t *testing.T) {
	needRuntime(t)
	l := Layer{Name: "small", Op: "Conv", In: 16, Out: 32, Kernel: []int{3, 3}, Pads: []int{1, 1, 1, 1}, Bias: true, Input: []int{16, 8, 8}, Batch: 2}
	o := Options{Runtime: ort.RuntimeOptions{Provider: ort.CPU, Threads: 1}, CacheDir: t.TempDir(), LayerBudget: 500 * time.Millisecond, Multiple: 8}
	tab, err := Measure([]Layer{l}, o)
	if err != nil {
		t.Fatal(err)
	}
	lt := tab.Layers[0]
	// Multiple 8: small ranks 2 and 4, then 8 and 16 in, 8, 16, 24 and 32 out.
	if lt.Original.Ms <= 0 || len(lt.Input) != 4 || len(lt.Output) != 6 || len(lt.Both) != len(lt.BothR)*len(lt.BothK) {
		t.Fatalf("table %+v", lt)
	}
	for r := 0; r <= l.In; r += 4 {
		for k := 0; k <= l.Out; k += 4 {
			if ms := tab.Time(0, r, k); !(ms > 0) {
				t.Errorf("Time(%d, %d) = %g", r, k, ms)
			}
		}
	}
	again, err := Measure([]Layer{l}, o)
	if err != nil || again.Cached != 1 || again.Runs != 0 {
		t.Errorf("second Measure: cached %d, runs %d, %v", again.Cached, again.Runs, err)
	}
	p, err := build(l, spec{}, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := MeasureProgram(p, o); err != nil || !(pt.Ms > 0) || pt.Runs < hardMinRuns {
		t.Errorf("MeasureProgram: %+v, %v", pt, err)
	}
}

func TestLayerTimesOrigin(t *testing.T) {
	for _, tc := range []struct {
		lt   LayerTimes
		want string
	}{
		{LayerTimes{Seconds: 1.24}, "measured in 1.2 s"},
		{LayerTimes{Seconds: 1.24, Cached: true}, "from the cache"},
		{LayerTimes{Cached: true, Repeated: true}, "same shape as an earlier layer"},
	} {
		if got := tc.lt.Origin(); got != tc.want {
			t.Errorf("Origin of %+v = %q, want %q", tc.lt, got, tc.want)
		}
	}
}

// coldRunner times a run at 2 ms when the run before it was another program's (cold caches)
// and at 1 ms when it was the same program's.
type coldRunner struct {
	last string
	runs int
}

func (c *coldRunner) Identity() (string, error)     { return "cold", nil }
func (c *coldRunner) Open(p Program) (Timer, error) { return &coldTimer{c: c, name: p.Name}, nil }

type coldTimer struct {
	c    *coldRunner
	name string
}

func (t *coldTimer) Run() (time.Duration, error) {
	t.c.runs++
	ms := 2.0
	if t.c.last == t.name {
		ms = 1
	}
	t.c.last = t.name
	return time.Duration(ms * 1e6), nil
}

func (t *coldTimer) Close() error { return nil }

// TestSettle: each turn of a program follows Options.Settle untimed runs of it, so that
// programs timed side by side are timed with their own caches warm, or a burst of several runs
// (Options.Burst: the median of a turn's runs) warms them itself.
func TestSettle(t *testing.T) {
	progs := []Program{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	for _, tc := range []struct {
		settle, burst int
		want          float64
	}{{0, 1, 1}, {2, 1, 1}, {-1, 3, 1}, {0, 0, 1}} { // settled, or warmed by the burst; cold runs would read 2 ms
		c := &coldRunner{}
		pts, err := MeasureTogether(progs, Options{Runner: c, CPU: &fakeCPU, Settle: tc.settle, Burst: tc.burst, MinRuns: 5, MaxRuns: 5, NoCache: true})
		if err != nil {
			t.Fatal(err)
		}
		settle := max(tc.settle, 0)
		if tc.settle == 0 {
			settle = 1
		}
		burst := tc.burst
		if burst == 0 {
			burst = 3
		}
		timed := 0
		for _, p := range pts {
			timed += p.Runs
			if tc.want == 1 && p.Ms != 1 || tc.want > 1 && p.Ms <= 1 {
				t.Errorf("settle %d, burst %d: %+v, want %g ms", tc.settle, tc.burst, p, tc.want)
			}
		}
		// Untimed: the reference's warm-up and settling runs too (it runs in every round).
		if min := timed * (settle + burst); c.runs < min {
			t.Errorf("settle %d, burst %d: %d runs for %d turns, want at least %d", tc.settle, tc.burst, c.runs, timed, min)
		}
	}
}

// TestBelow: the candidates one measured rank below a choice, per side it reduces.
func TestBelow(t *testing.T) {
	f := &fakeRunner{ident: "fake", ms: macsTime}
	o := fakeOptions(t.TempDir(), f)
	o.NoCache = true
	tab, err := Measure([]Layer{convLayer}, o) // 32 -> 64, multiple 8, small ranks 2 and 4
	if err != nil {
		t.Fatal(err)
	}
	lt := tab.Layers[0]
	for _, tc := range []struct {
		r, k int
		want [][2]int
	}{
		{8, 0, [][2]int{{4, 0}}},
		{7, 0, [][2]int{{4, 0}}}, // rounds to 8
		{2, 0, nil},
		{0, 16, [][2]int{{0, 8}}},
		{lt.BothR[2], lt.BothK[3], [][2]int{{lt.BothR[1], lt.BothK[3]}, {lt.BothR[2], lt.BothK[2]}}},
		{lt.BothR[0], lt.BothK[1], [][2]int{{lt.BothR[0], lt.BothK[0]}}},
		{0, 0, nil},
	} {
		if got := lt.Below(tc.r, tc.k); !slices.Equal(got, tc.want) {
			t.Errorf("Below(%d, %d) = %v, want %v (grid %v x %v)", tc.r, tc.k, got, tc.want, lt.BothR, lt.BothK)
		}
	}
}

// TestRefineLevel: a table measured in a slow minute (every program 1.5 times as long) moves
// to the level of the original's times in Refine's sessions, every candidate's time with it,
// ratios unchanged; the cache keeps the level.
func TestRefineLevel(t *testing.T) {
	slow := 1.5
	f := &fakeRunner{ident: "fake", ms: func(p Program, n int) float64 { return slow * macsTime(p, n) }}
	dir := t.TempDir()
	o := fakeOptions(dir, f)
	tab, err := Measure([]Layer{convLayer}, o)
	if err != nil {
		t.Fatal(err)
	}
	orig := float64(convLayer.MACs(0, 0))/1e7 + 0.05
	at := func(r int) float64 { return float64(convLayer.MACs(r, 0))/1e7 + 0.05 }
	check := func(when string, tab *Table, level float64) {
		t.Helper()
		lt := tab.Layers[0]
		if got := lt.Level(); math.Abs(got/level-1) > 1e-4 {
			t.Errorf("%s: level %.4f ms, want %.4f", when, got, level)
		}
		if got := lt.Time(0, 0); math.Abs(got/level-1) > 1e-4 {
			t.Errorf("%s: original %.4f ms, want the level %.4f", when, got, level)
		}
		for _, r := range []int{8, 16, 24} {
			if got, want := lt.Time(r, 0), level*at(r)/orig; math.Abs(got/want-1) > 1e-4 {
				t.Errorf("%s: input %d takes %.4f ms, want %.4f (its ratio times the level)", when, r, got, want)
			}
		}
	}
	check("as measured", tab, slow*orig)
	slow = 1
	if _, err := Refine(tab, []Candidate{{Layer: 0, R: 8}}, o); err != nil {
		t.Fatal(err)
	}
	if p := tab.Layers[0].Refined[0]; math.Abs(p.Orig/orig-1) > 1e-4 {
		t.Errorf("refined point's original %.4f ms, want %.4f", p.Orig, orig)
	}
	check("one refined point", tab, (1.5*orig+orig)/2)
	if _, err := Refine(tab, []Candidate{{Layer: 0, R: 16}}, o); err != nil {
		t.Fatal(err)
	}
	check("two refined points", tab, orig)
	again, err := Measure([]Layer{convLayer}, fakeOptions(dir, &fakeRunner{ident: "fake", ms: macsTime}))
	if err != nil || again.Cached != 1 {
		t.Fatalf("cache: %d cached, %v", again.Cached, err)
	}
	check("cached", again, orig)
}
