package rewrite

import (
	"math"
	"testing"

	"github.com/convpca/convpca/calib"
)

// synthPlan is a 3x3 Conv of in -> out channels at positions positions with geometric spectra.
func synthPlan(name string, in, out int, positions int64, decay float64) *Plan {
	p := &Plan{Layer: Layer{Name: name, Op: "Conv", InChannels: in, OutChannels: out}}
	p.conv = &Conv{Dims: []int64{int64(out), int64(in), 3, 3}, Weight: make([]float64, out*in*9)}
	p.in, p.kk, p.spatialIn, p.spatialOut = in, 9, positions, positions
	spectrum := func(n int) calib.PCA {
		v := make([]float64, n)
		for i := range v {
			v[i] = math.Pow(decay, float64(i))
		}
		return calib.PCA{Values: v}
	}
	p.inPCA, p.outPCA = spectrum(in), spectrum(out)
	p.Before = Cost{MACs: ConvMACs(out, in, 9, positions)}
	return p
}

// TestAllocate: the allocation meets the target, uses multiples of the rank multiple (or full
// rank), and is maximal: raising any one rank by a step would break the target.
func TestAllocate(t *testing.T) {
	for _, tc := range []struct {
		target   float64
		multiple int
	}{{0.5, 1}, {0.2, 1}, {0.3, 4}, {0.25, 8}} {
		plans := []*Plan{synthPlan("a", 16, 32, 400, 0.7), synthPlan("b", 32, 64, 100, 0.8), synthPlan("c", 64, 64, 25, 0.9)}
		opts := Options{Side: SideBoth, TargetMACs: tc.target, RankMultiple: tc.multiple}
		if err := Allocate(plans, opts); err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		var before, after int64
		for _, p := range plans {
			before += p.Before.MACs
			if p.Reason == "" {
				after += p.After.MACs
			} else {
				after += p.Before.MACs
			}
			for _, r := range [][2]int{{p.InRank, p.in}, {p.Rank, p.OutChannels}} {
				if r[0] != 0 && r[0] != r[1] && r[0]%tc.multiple != 0 {
					t.Errorf("%+v: layer %s rank %d is not a multiple of %d", tc, p.Name, r[0], tc.multiple)
				}
			}
		}
		if float64(after) > tc.target*float64(before) {
			t.Errorf("%+v: %d of %d MACs kept, over the target", tc, after, before)
		}
		if float64(after) < 0.8*tc.target*float64(before) {
			t.Errorf("%+v: %d of %d MACs kept: far under the target (refill failed?)", tc, after, before)
		}
	}
}
