package calib

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// TestStats compares the streamed mean and covariance with a direct two-pass computation,
// and checks that merging two halves equals adding the whole.
func TestStats(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n, c, sp = 5, 4, 6
	x := make([]float32, n*c*sp)
	for i := range x {
		x[i] = float32(rng.NormFloat64()*2 + float64(i%c))
	}
	s := NewStats(c)
	s.AddNCHW(x, n, c, sp)

	// Reference: vectors are x[i, :, p].
	mu := make([]float64, c)
	for i := 0; i < n; i++ {
		for ch := 0; ch < c; ch++ {
			for p := 0; p < sp; p++ {
				mu[ch] += float64(x[(i*c+ch)*sp+p]) / (n * sp)
			}
		}
	}
	cov := make([]float64, c*c)
	for i := 0; i < n; i++ {
		for p := 0; p < sp; p++ {
			for a := 0; a < c; a++ {
				for b := 0; b < c; b++ {
					da := float64(x[(i*c+a)*sp+p]) - mu[a]
					db := float64(x[(i*c+b)*sp+p]) - mu[b]
					cov[a*c+b] += da * db / (n * sp)
				}
			}
		}
	}
	if s.Count != n*sp {
		t.Fatalf("Count = %d", s.Count)
	}
	gotMu, gotCov := s.Mean(), s.Covariance()
	for a := 0; a < c; a++ {
		if math.Abs(gotMu[a]-mu[a]) > 1e-12 {
			t.Errorf("mean[%d] = %v, want %v", a, gotMu[a], mu[a])
		}
		for b := 0; b < c; b++ {
			if math.Abs(gotCov.At(a, b)-cov[a*c+b]) > 1e-12 {
				t.Errorf("cov[%d,%d] = %v, want %v", a, b, gotCov.At(a, b), cov[a*c+b])
			}
		}
	}

	h1, h2 := NewStats(c), NewStats(c)
	h1.AddNCHW(x[:2*c*sp], 2, c, sp)
	h2.AddNCHW(x[2*c*sp:], 3, c, sp)
	if err := h1.Merge(h2); err != nil {
		t.Fatal(err)
	}
	for i := range s.Outer {
		if math.Abs(h1.Outer[i]-s.Outer[i]) > 1e-9 {
			t.Fatalf("merged outer[%d] = %v, whole %v", i, h1.Outer[i], s.Outer[i])
		}
	}
	if err := h1.Merge(NewStats(c + 1)); err == nil {
		t.Error("merging statistics of another dimension succeeded")
	}

	x[7] = float32(math.NaN())
	s.AddNCHW(x, n, c, sp)
	if s.Finite() {
		t.Error("statistics with NaN report finite")
	}
}

// TestEigen checks a hand-worked case, [[2 1] [1 2]] with eigenvalues 3 and 1 and
// eigenvectors (1, 1)/√2 and (1, −1)/√2, and on a random matrix that C V = V Λ and VᵀV = I.
func TestEigen(t *testing.T) {
	p, err := Eigen(mat.NewSymDense(2, []float64{2, 1, 1, 2}))
	if err != nil {
		t.Fatal(err)
	}
	r := 1 / math.Sqrt2
	want := [][]float64{{r, r}, {r, -r}}
	for j, wv := range want {
		if math.Abs(p.Values[j]-[]float64{3, 1}[j]) > 1e-12 {
			t.Errorf("value %d = %v", j, p.Values[j])
		}
		dot := p.Vectors.At(0, j)*wv[0] + p.Vectors.At(1, j)*wv[1]
		if math.Abs(math.Abs(dot)-1) > 1e-12 { // sign-insensitive
			t.Errorf("vector %d = %v, want ±%v", j, mat.Col(nil, j, p.Vectors), wv)
		}
	}

	rng := rand.New(rand.NewPCG(5, 6))
	const d = 9
	a := mat.NewDense(d, 20, nil)
	for i := 0; i < d; i++ {
		for j := 0; j < 20; j++ {
			a.Set(i, j, rng.NormFloat64())
		}
	}
	c := mat.NewSymDense(d, nil)
	c.SymOuterK(1, a)
	p, err = Eigen(c)
	if err != nil {
		t.Fatal(err)
	}
	var vtv, cv mat.Dense
	vtv.Mul(p.Vectors.T(), p.Vectors)
	cv.Mul(c, p.Vectors)
	for i := 0; i < d; i++ {
		if i > 0 && p.Values[i] > p.Values[i-1] {
			t.Errorf("values not descending: %v", p.Values)
		}
		for j := 0; j < d; j++ {
			if math.Abs(vtv.At(i, j)-b2f(i == j)) > 1e-10 {
				t.Fatalf("VᵀV[%d,%d] = %v", i, j, vtv.At(i, j))
			}
			if math.Abs(cv.At(i, j)-p.Vectors.At(i, j)*p.Values[j]) > 1e-9 {
				t.Fatalf("CV != VΛ at %d,%d", i, j)
			}
		}
	}
	bad := mat.NewSymDense(2, []float64{math.NaN(), 0, 0, 1})
	if _, err := Eigen(bad); err == nil {
		t.Error("Eigen of NaN succeeded")
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// TestAddShifted: sums about a shift, converted by AddShifted, equal the raw sums AddNCHW
// accumulates (both in float64), for a shift far from the data and one near it.
func TestAddShifted(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const n, c, sp = 6, 5, 7
	x := make([]float32, n*c*sp)
	for i := range x {
		x[i] = float32(100 + rng.NormFloat64()*float64(1+i%c))
	}
	want := NewStats(c)
	want.AddNCHW(x, n, c, sp)
	for _, shift := range [][]float64{{0, 0, 0, 0, 0}, {100, 99, 101, 100.5, 98}, {-3, 7, 1e3, 0, 2}} {
		d := make([]float64, c)
		g := make([]float64, c*c)
		for i := 0; i < n; i++ {
			for p := 0; p < sp; p++ {
				for a := 0; a < c; a++ {
					va := float64(x[(i*c+a)*sp+p]) - shift[a]
					d[a] += va
					for b := 0; b < c; b++ {
						g[a*c+b] += va * (float64(x[(i*c+b)*sp+p]) - shift[b])
					}
				}
			}
		}
		got := NewStats(c)
		got.AddShifted(n*sp, shift, d, g)
		if got.Count != want.Count {
			t.Fatalf("Count %d, want %d", got.Count, want.Count)
		}
		for i := range want.Sum {
			if e := math.Abs(got.Sum[i]-want.Sum[i]) / math.Abs(want.Sum[i]); e > 1e-13 {
				t.Errorf("shift %v: Sum[%d] = %v, want %v", shift, i, got.Sum[i], want.Sum[i])
			}
		}
		for a := 0; a < c; a++ {
			for b := a; b < c; b++ {
				w := want.Outer[a*c+b]
				if e := math.Abs(got.Outer[a*c+b]-w) / math.Abs(w); e > 1e-12 {
					t.Errorf("shift %v: Outer[%d,%d] = %v, want %v", shift, a, b, got.Outer[a*c+b], w)
				}
			}
		}
	}
}
