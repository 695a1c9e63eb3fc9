// Package rewrite factorizes Conv (and Gemm/MatMul, dense.go) layers with the PCA of their
// activations: the maths as pure functions on matrices (this file, refit.go), rank rules
// (rank.go) and budgeted allocation (alloc.go, sensitivity.go), the cost model (cost.go), and
// the graph edits that replace a layer by cheaper ones (conv.go, compress.go, layerfit.go), and
// the exact graph rewrites that make a model faster without changing what it computes
// (simplify.go: Simplify, Blocked).
// It works from statistics and measured losses handed to it (package calib's values); the
// passes over data that produce them are package compress's.
//
// It must not import onnxruntime (package ort) or the data readers: its tests run without
// an onnxruntime library.
//
// Output side: with V (out x k) the leading eigenvectors of the covariance of a Conv's output
// and μ its mean, y = W∗x + b is approximated by its projection μ + V Vᵀ (y − μ), computed as
// Conv(Vᵀ W) with k channels and no bias, followed by a 1x1 Conv with weight V and bias
// μ − V Vᵀ μ + V Vᵀ b. At full rank V Vᵀ = I and the output is unchanged.
package rewrite

import (
	"errors"
	"fmt"
	"math"

	"github.com/convpca/convpca/calib"
	"gonum.org/v1/gonum/mat"
)

// OutputSide returns the output-side factorization of a Conv whose weight, reshaped to
// out x m (m = in/group · prod(kernel)), is w, with bias b (nil for none), output mean mu
// (length out) and v, an out x k matrix of orthonormal columns:
//
//	core = Vᵀ W            (k x m, the reduced Conv's weight, no bias)
//	bias = μ − V Vᵀ μ + V Vᵀ b   (length out, the bias of the 1x1 Conv whose weight is V)
func OutputSide(w *mat.Dense, b, mu []float64, v *mat.Dense) (core *mat.Dense, bias []float64) {
	out, _ := w.Dims()
	vr, k := v.Dims()
	if vr != out || len(mu) != out || (b != nil && len(b) != out) {
		panic(fmt.Sprintf("rewrite: OutputSide shapes: w %d rows, v %dx%d, mu %d, b %d", out, vr, k, len(mu), len(b)))
	}
	core = new(mat.Dense)
	core.Mul(v.T(), w)

	// r = μ − b; bias = μ − V Vᵀ r.
	r := mat.NewVecDense(out, append([]float64(nil), mu...))
	if b != nil {
		r.SubVec(r, mat.NewVecDense(out, b))
	}
	var t mat.VecDense
	t.MulVec(v.T(), r)
	var p mat.VecDense
	p.MulVec(v, &t)
	bias = make([]float64, out)
	for i := range bias {
		bias[i] = mu[i] - p.AtVec(i)
	}
	return core, bias
}

// InputSide returns the weight of the Conv that reads the r-channel projection Uᵀx of its
// input instead of x. w is the weight as out x (in·kk) row-major (in input channels, kk kernel
// elements per channel: the ONNX layout out x in x kernel...), u is in x r with orthonormal
// columns. The result is out x (r·kk): W U applied along the input-channel axis,
//
//	core[o, j, p] = Σ_i w[o, i, p] · u[i, j].
//
// The projection is uncentred (no bias on the 1x1 Conv(Uᵀ) that computes Uᵀx), so it maps the
// zeros a padded Conv adds at its borders to zeros: Conv(W U) ∘ Conv(Uᵀ) equals Conv(W) ∘
// (U Uᵀ), exactly at every position, padded ones included, and equals Conv(W) at full rank.
func InputSide(w *mat.Dense, in int, u *mat.Dense) *mat.Dense {
	out, cols := w.Dims()
	ur, r := u.Dims()
	if ur != in || cols%in != 0 {
		panic(fmt.Sprintf("rewrite: InputSide shapes: w %dx%d, in %d, u %dx%d", out, cols, in, ur, r))
	}
	kk := cols / in
	core := mat.NewDense(out, r*kk, nil)
	// For each output channel, reshape its row to in x kk, then core row = Uᵀ · that (r x kk).
	var t mat.Dense
	for o := 0; o < out; o++ {
		row := mat.NewDense(in, kk, w.RawRowView(o))
		t.Reset()
		t.Mul(u.T(), row)
		copy(core.RawRowView(o), t.RawMatrix().Data)
	}
	return core
}

// LinearOutputPCA returns the PCA of the output of a dense layer y = W x + b (W out x in)
// from the mean mu and covariance cov (in x in) of its input, without capturing y: its mean
// is W mu + b and its covariance W cov Wᵀ, of rank at most in. With cov = Q Λ Qᵀ and the thin
// SVD W Q Λ^½ = U S Zᵀ, the eigenvalues are S² and the eigenvectors U's columns, so only
// min(out, in) components are returned (Vectors out x min(out, in)): the others have
// eigenvalue 0 and y − E[y] lies in their complement, so projecting onto all of them is exact.
func LinearOutputPCA(w *mat.Dense, b, mu []float64, cov *mat.SymDense) (calib.PCA, []float64, error) {
	out, in := w.Dims()
	inPCA, err := calib.Eigen(cov)
	if err != nil {
		return calib.PCA{}, nil, err
	}
	l := mat.NewDense(in, in, nil)
	for j := 0; j < in; j++ {
		s := math.Sqrt(inPCA.Values[j])
		for i := 0; i < in; i++ {
			l.Set(i, j, inPCA.Vectors.At(i, j)*s)
		}
	}
	var wl mat.Dense
	wl.Mul(w, l)
	var svd mat.SVD
	if !svd.Factorize(&wl, mat.SVDThin) {
		return calib.PCA{}, nil, errors.New("singular value decomposition did not converge")
	}
	s := svd.Values(nil)
	var u mat.Dense
	svd.UTo(&u)
	k := len(s)
	p := calib.PCA{Values: make([]float64, k), Vectors: mat.DenseCopyOf(u.Slice(0, out, 0, k))}
	for j := 0; j < k; j++ {
		p.Values[j] = s[j] * s[j]
	}
	calib.SignFix(p.Vectors) // the sign convention of calib.Eigen
	mean := make([]float64, out)
	var wm mat.VecDense
	wm.MulVec(w, mat.NewVecDense(in, mu))
	for o := range mean {
		mean[o] = wm.AtVec(o)
		if b != nil {
			mean[o] += b[o]
		}
	}
	return p, mean, nil
}

// InputBasis is an output-aware input-side factorization of one layer: at rank r, the 1x1
// down projection is Down's first r rows (r x in) and the core is InputSide(W, in, Up's first
// r columns (in x r)). Values[i] is the squared output error (per position) that component i
// carries, descending, so discarding the components from r on costs Σ_{i≥r} Values[i].
type InputBasis struct {
	Down, Up *mat.Dense // in x in each: rows and columns ordered by Values
	Values   []float64
}

// WeightRidge is the relative ridge of the input-side weight metric: directions the weights
// hardly read are weighed as if their gain were 1% of the largest (1e-4 in squared gain), so
// that the basis stays well conditioned in float32.
const WeightRidge = 1e-4

// OutputAwareInput chooses the input-side projection of a layer of weight w (out x in·kk,
// the ONNX layout) and input second moment c = E[x xᵀ] (in x in, uncentred: the projection
// has no bias, so padded zeros stay zeros) by the error it causes in the layer's output, not
// by the input's energy. Approximating the output error of projecting x by P = Up Down as
// E‖Σ_t W_t (x_t − P x_t)‖² ≈ tr(M (I − P) c (I − P)ᵀ), with M = Σ_t W_tᵀ W_t over the kernel
// taps t (exact for 1x1 kernels and dense layers; for larger kernels it leaves out the
// correlation of neighbouring taps), the best rank-r P follows from the SVD R L = U S Zᵀ,
// where Rᵀ R = M + δI (R the Cholesky factor) and c = L Lᵀ (computed as the eigenproblem
// R c Rᵀ = U S² Uᵀ):
//
//	Down = Uᵀ R,  Up = R⁻¹ U,  error at rank r = Σ_{i≥r} S_i²
//
// (whitening by the data as in SVD-LLM and ASVD, by the weights as in asymmetric
// reconstruction). At full rank Up Down = R⁻¹ U Uᵀ R = I: the layer is unchanged. δ is
// WeightRidge times M's largest diagonal entry.
func OutputAwareInput(w *mat.Dense, in int, c *mat.SymDense) (InputBasis, error) {
	out, cols := w.Dims()
	if cols%in != 0 || c.SymmetricDim() != in {
		panic(fmt.Sprintf("rewrite: OutputAwareInput shapes: w %dx%d, in %d, c %d", out, cols, in, c.SymmetricDim()))
	}
	kk := cols / in
	// M = Σ_t W_tᵀ W_t = Wrᵀ Wr with Wr (out·kk x in) holding each tap's W_t as a block of rows.
	wr := mat.NewDense(out*kk, in, nil)
	for o := 0; o < out; o++ {
		row := w.RawRowView(o)
		for i := 0; i < in; i++ {
			for t := 0; t < kk; t++ {
				wr.Set(o*kk+t, i, row[i*kk+t])
			}
		}
	}
	m := mat.NewSymDense(in, nil)
	m.SymOuterK(1, wr.T())
	// R: the Cholesky factor of M + δI (any R with Rᵀ R = M + δI serves), δ relative to M's
	// largest diagonal entry.
	top := 0.0
	for i := 0; i < in; i++ {
		top = math.Max(top, m.At(i, i))
	}
	delta := WeightRidge * top
	if delta == 0 {
		delta = 1
	}
	for i := 0; i < in; i++ {
		m.SetSym(i, i, m.At(i, i)+delta)
	}
	var chol mat.Cholesky
	if !chol.Factorize(m) {
		return InputBasis{}, errors.New("weight metric is not positive definite")
	}
	var rt, rtInv mat.TriDense
	chol.UTo(&rt)
	if err := rtInv.InverseTri(&rt); err != nil {
		return InputBasis{}, fmt.Errorf("weight metric: %w", err)
	}
	r, rInv := mat.DenseCopyOf(&rt), mat.DenseCopyOf(&rtInv)
	// R C Rᵀ = (R L)(R L)ᵀ = U S² Uᵀ: the left singular vectors of R L by one symmetric
	// eigenproblem.
	var rc, rcr mat.Dense
	rc.Mul(r, c)
	rcr.Mul(&rc, r.T())
	sym := mat.NewSymDense(in, nil)
	for i := 0; i < in; i++ {
		for j := i; j < in; j++ {
			sym.SetSym(i, j, (rcr.At(i, j)+rcr.At(j, i))/2)
		}
	}
	e, err := calib.Eigen(sym)
	if err != nil {
		return InputBasis{}, fmt.Errorf("input statistics: %w", err)
	}
	b := InputBasis{Down: mat.NewDense(in, in, nil), Up: mat.NewDense(in, in, nil), Values: e.Values}
	b.Down.Mul(e.Vectors.T(), r)
	b.Up.Mul(rInv, e.Vectors)
	return b, nil
}
