package calib

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/mat"
)

// Stats accumulates, in float64, the count, sum and sum of outer products of a stream of
// vectors of dimension Dim. For a Conv activation of shape N x C x spatial..., each of the
// N·prod(spatial) positions gives one vector of the C channel values (channels as variables).
// Sums merge exactly, so statistics of shards add up to those of the whole.
type Stats struct {
	Dim   int
	Count int64
	Sum   []float64 // Dim: Σ x
	Outer []float64 // Dim x Dim, row-major, upper triangle: Σ x xᵀ

	buf []float64 // scratch: Dim x (batch·spatial) copy of the last batch
}

// NewStats returns empty statistics of vectors of dimension dim.
func NewStats(dim int) *Stats {
	return &Stats{Dim: dim, Sum: make([]float64, dim), Outer: make([]float64, dim*dim)}
}

// AddNCHW adds the n·spatial vectors of an activation x laid out as n x c x spatial
// (row-major, c == s.Dim): each position of each sample is one vector of c values.
func (s *Stats) AddNCHW(x []float32, n, c, spatial int) {
	if c != s.Dim || len(x) != n*c*spatial {
		panic(fmt.Sprintf("calib: AddNCHW of %d values as %dx%dx%d into stats of dimension %d", len(x), n, c, spatial, s.Dim))
	}
	cols := n * spatial
	if cap(s.buf) < c*cols {
		s.buf = make([]float64, c*cols)
	}
	a := s.buf[:c*cols]
	// Gather into a c x (n·spatial) matrix whose columns are the vectors.
	for i := 0; i < n; i++ {
		for ch := 0; ch < c; ch++ {
			src := x[(i*c+ch)*spatial : (i*c+ch+1)*spatial]
			dst := a[ch*cols+i*spatial : ch*cols+(i+1)*spatial]
			sum := 0.0
			for p, v := range src {
				f := float64(v)
				dst[p] = f
				sum += f
			}
			s.Sum[ch] += sum
		}
	}
	// Outer += A Aᵀ (upper triangle).
	blas64.Implementation().Dsyrk(blas.Upper, blas.NoTrans, c, cols, 1, a, cols, 1, s.Outer, c)
	s.Count += int64(cols)
}

// AddShifted adds n vectors x given by their sums about a shift vector c (each of length Dim):
// d = Σ (x − c) and g = Σ (x − c)(x − c)ᵀ (Dim x Dim, row-major; only the upper triangle is
// read). In float64: Sum += n·c + d and Outer += g + c dᵀ + d cᵀ + n·c cᵀ, the raw sums that
// AddNCHW accumulates. A shift near the mean keeps g, when computed in low precision, of the
// order of the covariance rather than of the squared mean.
func (s *Stats) AddShifted(n int64, c, d, g []float64) {
	k := s.Dim
	if len(c) != k || len(d) != k || len(g) != k*k {
		panic(fmt.Sprintf("calib: AddShifted of %d, %d and %d values into stats of dimension %d", len(c), len(d), len(g), k))
	}
	fn := float64(n)
	for i := 0; i < k; i++ {
		s.Sum[i] += fn*c[i] + d[i]
		ci, di := c[i], d[i]
		row, out := g[i*k:(i+1)*k], s.Outer[i*k:(i+1)*k]
		for j := i; j < k; j++ {
			out[j] += row[j] + ci*d[j] + di*c[j] + fn*ci*c[j]
		}
	}
	s.Count += n
}

// Merge adds the statistics o into s. Both must have the same dimension.
func (s *Stats) Merge(o *Stats) error {
	if o.Dim != s.Dim {
		return fmt.Errorf("merge statistics of dimension %d into %d", o.Dim, s.Dim)
	}
	s.Count += o.Count
	for i, v := range o.Sum {
		s.Sum[i] += v
	}
	for i, v := range o.Outer {
		s.Outer[i] += v
	}
	return nil
}

// Finite reports whether every accumulated value is finite.
func (s *Stats) Finite() bool {
	for _, v := range s.Sum {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
	}
	for _, v := range s.Outer {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
	}
	return true
}

// Mean returns the mean vector μ = Σx / n (length Dim).
func (s *Stats) Mean() []float64 {
	mu := make([]float64, s.Dim)
	if s.Count == 0 {
		return mu
	}
	for i, v := range s.Sum {
		mu[i] = v / float64(s.Count)
	}
	return mu
}

// Covariance returns the Dim x Dim population covariance Σ(x-μ)(x-μ)ᵀ / n.
func (s *Stats) Covariance() *mat.SymDense {
	return s.moment(true)
}

// SecondMoment returns the Dim x Dim uncentred second moment Σ x xᵀ / n.
func (s *Stats) SecondMoment() *mat.SymDense {
	return s.moment(false)
}

func (s *Stats) moment(centred bool) *mat.SymDense {
	d := s.Dim
	c := mat.NewSymDense(d, nil)
	if s.Count == 0 {
		return c
	}
	n := float64(s.Count)
	mu := s.Mean()
	for i := 0; i < d; i++ {
		for j := i; j < d; j++ {
			v := s.Outer[i*d+j] / n
			if centred {
				v -= mu[i] * mu[j]
			}
			c.SetSym(i, j, v)
		}
	}
	return c
}

// PCA is the eigendecomposition of a symmetric positive semi-definite matrix, such as a
// covariance: Values in descending order (negative rounding noise clamped to 0) and Vectors,
// a Dim x Dim matrix whose column j is the unit eigenvector of Values[j]. Each eigenvector's
// largest-magnitude component is positive, so the result is deterministic.
type PCA struct {
	Values  []float64
	Vectors *mat.Dense
}

// ErrNonFinite is returned (wrapped) for statistics holding NaN or Inf.
var ErrNonFinite = errors.New("statistics are not finite (NaN or Inf)")

// Eigen computes the PCA of the symmetric matrix c.
func Eigen(c *mat.SymDense) (PCA, error) {
	d := c.SymmetricDim()
	for i := 0; i < d; i++ {
		for j := i; j < d; j++ {
			if v := c.At(i, j); math.IsNaN(v) || math.IsInf(v, 0) {
				return PCA{}, ErrNonFinite
			}
		}
	}
	var es mat.EigenSym
	if ok := es.Factorize(c, true); !ok {
		return PCA{}, errors.New("eigendecomposition did not converge")
	}
	vals := es.Values(nil)
	var vecs mat.Dense
	es.VectorsTo(&vecs)
	order := make([]int, d)
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return vals[order[a]] > vals[order[b]] })
	p := PCA{Values: make([]float64, d), Vectors: mat.NewDense(d, d, nil)}
	for j, src := range order {
		p.Values[j] = math.Max(vals[src], 0)
		p.Vectors.SetCol(j, mat.Col(nil, src, &vecs))
	}
	SignFix(p.Vectors)
	return p, nil
}

// SignFix flips the columns of v (eigenvectors or singular vectors, defined up to sign) so
// that the entry of largest magnitude of each is positive: the same data gives the same
// vectors, and so the same compressed model, on every run.
func SignFix(v *mat.Dense) {
	rows, cols := v.Dims()
	for j := 0; j < cols; j++ {
		big := 0
		for i := 0; i < rows; i++ {
			if math.Abs(v.At(i, j)) > math.Abs(v.At(big, j)) {
				big = i
			}
		}
		if v.At(big, j) < 0 {
			for i := 0; i < rows; i++ {
				v.Set(i, j, -v.At(i, j))
			}
		}
	}
}
