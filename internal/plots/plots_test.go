package plots

import (
	"image/png"
	"math"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/convpca/convpca/compress"
	"github.com/convpca/convpca/rewrite"
)

// plotReport has two applied layers, one factorized on both sides and one on the output side
// with trailing zero eigenvalues, and a skipped layer that gets no plot.
func plotReport() *rewrite.Report {
	decay := func(n int, rate float64) []float64 {
		s := make([]float64, n)
		for i := range s {
			s[i] = 3 * math.Exp(-rate*float64(i))
		}
		return s
	}
	zeros := decay(16, 0.5)
	zeros[13], zeros[14], zeros[15] = 0, 0, -1e-18 // rank-deficient, with rounding below zero
	return &rewrite.Report{Layers: []rewrite.Layer{
		{Name: "/1/Conv", Side: rewrite.SideBoth, InChannels: 32, OutChannels: 64, InRank: 12, Rank: 20,
			Applied: true, InSpectrum: decay(32, 0.3), OutSpectrum: decay(64, 0.15)},
		{Name: "/2/Conv", Side: rewrite.SideOutput, InChannels: 8, OutChannels: 16, Rank: 6,
			Applied: true, OutSpectrum: zeros},
		{Name: "/3/Conv", Side: rewrite.SideOutput, InChannels: 16, OutChannels: 16,
			Reason: "saves nothing", OutSpectrum: decay(16, 0.1)},
	}}
}

func TestWritePlots(t *testing.T) {
	probes := []compress.Probe{
		{Target: 0.02, MACRatio: 38, Score: 12.5, Accuracy: 0.862},
		{Target: 0.2, MACRatio: 4.9, Score: 0.2, Accuracy: 0.985, OK: true},
		{Target: 0.063, MACRatio: 15.2, Score: 1.4, Accuracy: 0.973},
		{Target: 0.11, MACRatio: 8.8, Score: 0.5, Accuracy: 0.982, OK: true},
	}
	errProbes := []compress.Probe{
		{Target: 0.02, MACRatio: 40, Score: 0.31},
		{Target: 0.2, MACRatio: 5, Score: 0.012, OK: true},
	}
	for _, tc := range []struct {
		name   string
		probes []compress.Probe
		want   []string
	}{
		{"spectra", nil, []string{"1_Conv.png", "2_Conv.png"}},
		{"accuracy search", probes, []string{"1_Conv.png", "2_Conv.png", "search.png"}},
		{"error search", errProbes, []string{"1_Conv.png", "2_Conv.png", "search.png"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "plots") // writePlots creates it
			if err := Write(dir, plotReport(), tc.probes); err != nil {
				t.Fatal(err)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range entries {
				got = append(got, e.Name())
			}
			sort.Strings(got)
			if len(got) != len(tc.want) {
				t.Fatalf("files %v, want %v (no temporary files left)", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("files %v, want %v", got, tc.want)
				}
				checkPNG(t, filepath.Join(dir, got[i]))
			}
		})
	}
}

// checkPNG decodes a plot and checks its size and that it is not blank: a white background
// with black text and at least two more colours (the lines or points).
func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() != 960 || b.Dy() != 576 {
		t.Errorf("%s is %dx%d, want 960x576", path, b.Dx(), b.Dy())
	}
	colours := map[[3]uint32]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, bl >> 8}]++
		}
	}
	white := colours[[3]uint32{255, 255, 255}]
	if n := b.Dx() * b.Dy(); white < n/2 || white == n {
		t.Errorf("%s: %d of %d pixels white", path, white, n)
	}
	// Saturated colours (not greys): the data drawn, not just axes and text.
	saturated := 0
	for c, n := range colours {
		hi, lo := max(c[0], c[1], c[2]), min(c[0], c[1], c[2])
		if hi-lo > 100 && n >= 20 {
			saturated++
		}
	}
	if len(colours) < 10 || saturated < 1 {
		t.Errorf("%s: %d colours, %d saturated: looks blank", path, len(colours), saturated)
	}
}

func TestPlotFileNames(t *testing.T) {
	layers := []rewrite.Layer{{Name: "/2/Conv"}, {Name: "/2/Conv/"}, {Name: "search"}, {Name: "../x y"}, {Name: "/"}, {Name: "2_conv"}}
	want := []string{"2_Conv.png", "2_Conv-2.png", "search-2.png", "x_y.png", "layer.png", "2_conv-3.png"}
	got := plotFileNames(layers)
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("plotFileNames: %q, want %q", got, want)
			break
		}
	}
}

func TestNormalisedSpectrum(t *testing.T) {
	xys := normalisedSpectrum([]float64{4, 2, 0, -1, math.NaN()})
	want := []float64{1, 0.5, spectrumFloor, spectrumFloor, spectrumFloor}
	for i, xy := range xys {
		if xy.X != float64(i+1) || xy.Y != want[i] {
			t.Errorf("point %d: (%v, %v), want (%d, %v)", i, xy.X, xy.Y, i+1, want[i])
		}
	}
	for _, xy := range normalisedSpectrum([]float64{0, 0}) {
		if xy.Y != spectrumFloor {
			t.Errorf("all-zero spectrum: %v, want the floor", xy.Y)
		}
	}
}

func TestOffScale(t *testing.T) {
	for _, tc := range []struct {
		probes []compress.Probe
		want   float64
	}{
		{[]compress.Probe{{Score: 0.2, OK: true}, {Score: 1.5}, {Score: 87}}, 4.5},
		{[]compress.Probe{{Score: 0.5, OK: true}, {Score: 0.125}}, 0.75}, // the largest score within the bound sets it
		{[]compress.Probe{{Score: 0.2, OK: true}}, math.Inf(1)},
	} {
		if got := offScale(tc.probes); got != tc.want {
			t.Errorf("offScale(%v) = %v, want %v", tc.probes, got, tc.want)
		}
	}
}
