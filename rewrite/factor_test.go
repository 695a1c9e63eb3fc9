package rewrite

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/convpca/convpca/calib"
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
	c := factorCost(32, 32, 9, true, 0, 8, 26*26, 576)
	if c.MACs != 1327104+147456 || c.Params != 8*288+32*8+32 {
		t.Errorf("factorCost(output side) = %+v", c)
	}
	// Input rank 4 as well: down 4x32 at 26·26 = 86,528; core 8x(4·9) at 576 = 165,888.
	c = factorCost(32, 32, 9, true, 4, 8, 26*26, 576)
	if c.MACs != 86528+165888+147456 || c.Params != 4*32+8*36+32*8+32 {
		t.Errorf("factorCost(both) = %+v", c)
	}
	// Input side only: the core keeps the bias.
	c = factorCost(32, 32, 9, true, 4, 0, 26*26, 576)
	if c.MACs != 86528+576*32*36 || c.Params != 4*32+32*36+32 {
		t.Errorf("factorCost(input side) = %+v", c)
	}
}

// TestInputSide compares Conv(W U) on Uᵀx with Conv(W) on U Uᵀ x, computed directly for random
// patches; at full rank it must equal Conv(W) on x.
func TestInputSide(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const out, in, kk = 5, 6, 4
	for _, r := range []int{in, 3, 1} {
		w := randDense(rng, out, in*kk)
		u := orthonormal(rng, in, r)
		core := InputSide(w, in, u)
		if rr, cc := core.Dims(); rr != out || cc != r*kk {
			t.Fatalf("core is %dx%d", rr, cc)
		}
		for trial := 0; trial < 10; trial++ {
			x := randDense(rng, in, kk) // one patch: in channels x kk kernel taps
			var ux, pux mat.Dense
			ux.Mul(u.T(), x) // r x kk: what the 1x1 Conv(Uᵀ) gives
			pux.Mul(u, &ux)  // in x kk: the projected input
			for o := 0; o < out; o++ {
				got, ref, orig := 0.0, 0.0, 0.0
				for j := 0; j < r; j++ {
					for p := 0; p < kk; p++ {
						got += core.At(o, j*kk+p) * ux.At(j, p)
					}
				}
				for i := 0; i < in; i++ {
					for p := 0; p < kk; p++ {
						ref += w.At(o, i*kk+p) * pux.At(i, p)
						orig += w.At(o, i*kk+p) * x.At(i, p)
					}
				}
				if math.Abs(got-ref) > 1e-10 {
					t.Fatalf("r=%d: Conv(W U)(Uᵀx) = %v, Conv(W)(U Uᵀ x) = %v", r, got, ref)
				}
				if r == in && math.Abs(got-orig) > 1e-10 {
					t.Fatalf("full rank: %v != %v", got, orig)
				}
			}
		}
	}
}

// TestOutputAwareInput: on random layers (1x1 and 3x3 kernels) and correlated inputs, the
// output-aware basis reconstructs the layer exactly at full rank, its Values predict the
// output error of each truncation (for 1x1 kernels, where the tap approximation is exact, up
// to the ridge), and it is never worse in output error than the PCA of the input's second moment.
func TestOutputAwareInput(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, kk := range []int{1, 9} {
		const out, in, n = 7, 6, 400
		w := randDense(rng, out, in*kk)
		// Inputs with a strong direction the weights barely read: energy-based PCA keeps it.
		mix := randDense(rng, in, in)
		xs := make([]*mat.Dense, n) // each in x kk
		c := mat.NewSymDense(in, nil)
		for s := range xs {
			z := randDense(rng, in, kk)
			var x mat.Dense
			x.Mul(mix, z)
			for p := 0; p < kk; p++ {
				x.Set(0, p, x.At(0, p)*20)
			}
			xs[s] = &x
			for i := 0; i < in; i++ {
				for j := i; j < in; j++ {
					v := 0.0
					for p := 0; p < kk; p++ {
						v += x.At(i, p) * x.At(j, p)
					}
					c.SetSym(i, j, c.At(i, j)+v/float64(n*kk))
				}
			}
		}
		basis, err := OutputAwareInput(w, in, c)
		if err != nil {
			t.Fatal(err)
		}
		// Output error, per position, of the layer when its input is projected by P = Up Down.
		errOf := func(down, up *mat.Dense) float64 {
			var p mat.Dense
			p.Mul(up, down)
			e := 0.0
			for _, x := range xs {
				var px mat.Dense
				px.Mul(&p, x)
				for o := 0; o < out; o++ {
					d := 0.0
					for i := 0; i < in; i++ {
						for q := 0; q < kk; q++ {
							d += w.At(o, i*kk+q) * (x.At(i, q) - px.At(i, q))
						}
					}
					e += d * d
				}
			}
			return e / float64(n) // one output position per sample
		}
		energy, err := calib.Eigen(c)
		if err != nil {
			t.Fatal(err)
		}
		for r := 1; r <= in; r++ {
			down := mat.DenseCopyOf(basis.Down.Slice(0, r, 0, in))
			up := mat.DenseCopyOf(basis.Up.Slice(0, in, 0, r))
			got := errOf(down, up)
			pred := 0.0
			for _, v := range basis.Values[r:] {
				pred += v
			}
			u := mat.DenseCopyOf(energy.Vectors.Slice(0, in, 0, r))
			ref := errOf(mat.DenseCopyOf(u.T()), u)
			if r == in && got > 1e-9 {
				t.Errorf("kk=%d full rank: output error %g", kk, got)
			}
			// The Values are exact in the ridged metric M + δI (WeightRidge): within 3% here.
			if kk == 1 && math.Abs(got-pred) > 3e-2*pred+1e-9 {
				t.Errorf("kk=%d r=%d: output error %g, Values predict %g", kk, r, got, pred)
			}
			if kk == 1 && got > ref*(1+1e-6)+1e-9 {
				t.Errorf("kk=%d r=%d: output-aware error %g above the energy PCA's %g", kk, r, got, ref)
			}
			t.Logf("kk=%d r=%d: output-aware %.4g, energy PCA %.4g, predicted %.4g", kk, r, got, ref, pred)
		}
	}
}

// TestLinearOutputPCA: the output PCA of a dense layer taken from its input statistics equals
// the eigendecomposition of W Σ Wᵀ computed directly (values; vectors up to sign, compared as
// projectors), for more outputs than inputs (rank-deficient) and fewer; the mean is W μ + b.
func TestLinearOutputPCA(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	for _, dims := range [][2]int{{9, 4}, {3, 6}} {
		out, in := dims[0], dims[1]
		w := randDense(rng, out, in)
		b, mu := randVec(rng, out), randVec(rng, in)
		a := randDense(rng, in, in)
		cov := mat.NewSymDense(in, nil)
		cov.SymOuterK(1, a)
		p, mean, err := LinearOutputPCA(w, b, mu, cov)
		if err != nil {
			t.Fatal(err)
		}
		var wc, direct mat.Dense
		wc.Mul(w, cov)
		direct.Mul(&wc, w.T())
		sym := mat.NewSymDense(out, nil)
		for i := 0; i < out; i++ {
			for j := i; j < out; j++ {
				sym.SetSym(i, j, direct.At(i, j))
			}
		}
		ref, err := calib.Eigen(sym)
		if err != nil {
			t.Fatal(err)
		}
		k := min(out, in)
		if len(p.Values) != k {
			t.Fatalf("%dx%d: %d components, want %d", out, in, len(p.Values), k)
		}
		for i := 0; i < k; i++ {
			if math.Abs(p.Values[i]-ref.Values[i]) > 1e-9*(1+ref.Values[0]) {
				t.Errorf("%dx%d: value %d = %g, direct %g", out, in, i, p.Values[i], ref.Values[i])
			}
		}
		for _, r := range []int{1, k} {
			var pp, pr mat.Dense
			v, u := p.Vectors.Slice(0, out, 0, r), ref.Vectors.Slice(0, out, 0, r)
			pp.Mul(v, v.T())
			pr.Mul(u, u.T())
			if !mat.EqualApprox(&pp, &pr, 1e-8) {
				t.Errorf("%dx%d: projector onto %d components differs from the direct one", out, in, r)
			}
		}
		var wm mat.VecDense
		wm.MulVec(w, mat.NewVecDense(in, mu))
		for o := 0; o < out; o++ {
			if math.Abs(mean[o]-(wm.AtVec(o)+b[o])) > 1e-12 {
				t.Errorf("%dx%d: mean[%d] = %g, want %g", out, in, o, mean[o], wm.AtVec(o)+b[o])
			}
		}
	}
}
