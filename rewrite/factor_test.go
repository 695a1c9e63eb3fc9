package rewrite

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

func randDense(rng *rand.Rand, r, c int) *mat.Dense {
	d := make([]float64, r*c)
	for i := range d {
		d[i] = rng.NormFloat64()
	}
	return mat.NewDense(r, c, d)
}

func randVec(rng *rand.Rand, n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = rng.NormFloat64()
	}
	return v
}

// orthonormal returns the first k columns of a random n x n orthogonal matrix.
func orthonormal(rng *rand.Rand, n, k int) *mat.Dense {
	var qr mat.QR
	qr.Factorize(randDense(rng, n, n))
	var q mat.Dense
	qr.QTo(&q)
	return mat.DenseCopyOf(q.Slice(0, n, 0, k))
}

// TestOutputSide compares the factorized layer, V·(core·x) + bias, with the projection of the
// original output computed directly, μ + V Vᵀ (W x + b − μ), on random inputs; at full rank
// it must equal the original output.
func TestOutputSide(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const out, m, cols = 7, 12, 40
	for _, tc := range []struct {
		name string
		k    int
		bias bool
	}{{"full", out, true}, {"full-nobias", out, false}, {"k3", 3, true}, {"k1-nobias", 1, false}} {
		t.Run(tc.name, func(t *testing.T) {
			w := randDense(rng, out, m)
			mu := randVec(rng, out)
			var b []float64
			if tc.bias {
				b = randVec(rng, out)
			}
			v := orthonormal(rng, out, tc.k)
			core, bias := OutputSide(w, b, mu, v)
			if r, c := core.Dims(); r != tc.k || c != m {
				t.Fatalf("core is %dx%d, want %dx%d", r, c, tc.k, m)
			}
			x := randDense(rng, m, cols)
			for j := 0; j < cols; j++ {
				xj := x.ColView(j)
				// Reference: the projected original output.
				var y mat.VecDense
				y.MulVec(w, xj)
				for i := 0; i < out; i++ {
					if b != nil {
						y.SetVec(i, y.AtVec(i)+b[i])
					}
				}
				orig := mat.VecDenseCopyOf(&y)
				for i := 0; i < out; i++ {
					y.SetVec(i, y.AtVec(i)-mu[i])
				}
				var p, ref mat.VecDense
				p.MulVec(v.T(), &y)
				ref.MulVec(v, &p)
				// Factorized layer.
				var h, got mat.VecDense
				h.MulVec(core, xj)
				got.MulVec(v, &h)
				for i := 0; i < out; i++ {
					want := ref.AtVec(i) + mu[i]
					if d := math.Abs(got.AtVec(i) + bias[i] - want); d > 1e-10 {
						t.Fatalf("column %d channel %d: factorized %v, projection %v", j, i, got.AtVec(i)+bias[i], want)
					}
					if tc.k == out {
						if d := math.Abs(want - orig.AtVec(i)); d > 1e-10 {
							t.Fatalf("full rank changed output %d by %g", i, d)
						}
					}
				}
			}
		})
	}
}

func TestRule(t *testing.T) {
	vals := []float64{10, 5, 3, 1, 0.5, 0.009, 0}
	for _, tc := range []struct {
		rule Rule
		want int
	}{
		{Rule{Threshold: 1e-3}, 5}, // 0.009 < 1e-3·10
		{Rule{Threshold: 0.1}, 4},  // ≥ 1
		{Rule{Threshold: 0.5}, 2},
		{Rule{Threshold: 1}, 1},
		{Rule{Threshold: 0}, 7},
		{Rule{Energy: 0.5}, 1},     // 10/19.509 = 0.5126
		{Rule{Energy: 0.8}, 3},     // 18/19.509 = 0.9226 ≥ 0.8, 15/19.509 = 0.769
		{Rule{Energy: 0.95}, 4},    // 19/19.509 = 0.9739
		{Rule{Energy: 1}, 6},       // the zero eigenvalue adds nothing
		{Rule{Threshold: 1e-3}, 5}, // repeated on purpose: Rank has no state
		{Rule{Energy: 0.99999999}, 6},
	} {
		if got := tc.rule.Rank(vals); got != tc.want {
			t.Errorf("%v.Rank = %d, want %d", tc.rule, got, tc.want)
		}
	}
	if got := (Rule{Threshold: 1e-3}).Rank([]float64{0, 0, 0}); got != 1 {
		t.Errorf("rank of an all-zero spectrum = %d, want 1", got)
	}
	if got := Retained(vals, 3); math.Abs(got-18/19.509) > 1e-12 {
		t.Errorf("Retained = %v", got)
	}
	for _, bad := range []Rule{{Energy: 1.5}, {Energy: -0.1}, {Threshold: -1}, {Threshold: 2}} {
		if bad.Check() == nil {
			t.Errorf("%+v passed Check", bad)
		}
	}
}

// TestCost checks the cost model on the MNIST network's second Conv (32->32, 3x3, 24x24
// output), counted by hand: 24·24·32·32·9 = 5,308,416 MACs, 32·32·9 + 32 = 9,248 parameters.
func TestCost(t *testing.T) {
	if got := ConvMACs(32, 32, 9, 24*24); got != 5308416 {
		t.Errorf("ConvMACs = %d", got)
	}
	if got := ConvParams(32, 32, 9, true); got != 9248 {
		t.Errorf("ConvParams = %d", got)
	}
	// Rank 8: core 8x(32·9) at 576 positions = 1,327,104; up 32x8 = 147,456.
	c := outputSideCost(32, 288, 8, 576)
	if c.MACs != 1327104+147456 || c.Params != 8*288+32*8+32 {
		t.Errorf("outputSideCost = %+v", c)
	}
}
