package latency

import (
	"math"
	"testing"
)

// TestNoise: a candidate's noise is the half width of the confidence interval of the widest
// grid point its time is interpolated from (a ratio to the original's turns beside it).
func TestNoise(t *testing.T) {
	l := Layer{Op: "Conv", In: 64, Out: 40, Kernel: []int{3}, Input: []int{64, 10}, Batch: 1}
	lt := &LayerTimes{Layer: l, Multiple: 16, Original: Point{Ms: 9, RelCI: 0.06},
		Input:  []Point{{R: 16, Ms: 2, RelCI: 0.08}, {R: 32, Ms: 3, RelCI: 0.02}, {R: 64, Ms: 5, RelCI: 0.04}},
		Output: []Point{{K: 16, Ms: 2, RelCI: 0.1}, {K: 40, Ms: 3, RelCI: 0.02}},
		BothR:  []int{16, 64}, BothK: []int{16, 40},
		Both: []Point{{R: 16, K: 16, Ms: 1, RelCI: 0.02}, {R: 16, K: 40, Ms: 2, RelCI: 0.3},
			{R: 64, K: 16, Ms: 3, RelCI: 0.04}, {R: 64, K: 40, Ms: 4, RelCI: 0.02}},
	}
	for _, tc := range []struct {
		r, k int
		ci   float64 // the candidate's widest RelCI
	}{
		{0, 0, -1},
		{32, 0, 0.02}, {48, 0, 0.04}, {20, 0, 0.02}, // 20 -> 32
		{0, 16, 0.1}, {0, 32, 0.1}, {0, 40, 0.02},
		{16, 16, 0.02}, {64, 40, 0.02}, {32, 16, 0.04}, {32, 32, 0.3},
	} {
		want := tc.ci / 2
		if tc.ci < 0 {
			want = 0
		}
		if got := lt.Noise(tc.r, tc.k); math.Abs(got-want) > 1e-12 {
			t.Errorf("Noise(%d, %d) = %g, want %g", tc.r, tc.k, got, want)
		}
	}
}

// TestMeasureTogether: programs timed side by side get their own medians, each from enough runs
// to meet the tolerance, in order.
func TestMeasureTogether(t *testing.T) {
	f := &fakeRunner{ident: "fake", ms: func(p Program, n int) float64 {
		base := map[string]float64{"a": 8, "b": 5}[p.Name]
		return base * (1 + 0.01*float64(n%3)) // a little spread
	}}
	o := fakeOptions(t.TempDir(), f)
	pts, err := MeasureTogether([]Program{{Name: "a"}, {Name: "b"}}, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 2 || math.Abs(pts[0].Ms-8.08) > 0.09 || math.Abs(pts[1].Ms-5.05) > 0.06 {
		t.Fatalf("points %+v", pts)
	}
	for _, p := range pts {
		if p.Runs < 5 || p.RelCI > 0.05 {
			t.Errorf("point %+v: too few runs or too wide", p)
		}
	}
	if f.open != 0 {
		t.Errorf("%d sessions left open", f.open)
	}
	if _, err := MeasureTogether(nil, o); err == nil {
		t.Error("no programs: no error")
	}
}
