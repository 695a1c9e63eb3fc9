package rewrite

import (
	"errors"
	"fmt"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/mat"

	"github.com/convpca/convpca/onnxio"
)

// Refit: once the projections of a layer are chosen, the core Conv's weights Wc and bias c are
// refitted by least squares so that, on the inputs z the core really gets in the compressed
// model, the core reproduces the target t (Vᵀ y of the original model's output y when the
// output side is factorized, y itself otherwise):
//
//	[Wc c] = argmin Σ ‖t − Wc p − c‖² + λ‖[Wc c]‖²,
//
// with p the im2col patch of z at each output position. Since V has orthonormal columns, this
// also minimises the error of the layer's full output V(Wc p + c) + μ − V Vᵀ μ against y.
// The normal equations are accumulated as streaming sums, so memory does not grow with the
// number of samples.

// Geometry is the sliding-window geometry of a Conv: per spatial axis, kernel size, stride,
// dilation and the padding before the first input element.
type Geometry struct {
	Kernel, Strides, Dilations, PadBegin []int
}

// ConvGeometry reads the geometry of Conv node n whose weight has spatial kernel dims kernel,
// for an input of spatial shape in and an output of spatial shape out (auto_pad SAME_* pads
// are derived from them).
func ConvGeometry(n *onnxio.Node, kernel, in, out []int) (Geometry, error) {
	s := len(kernel)
	g := Geometry{Kernel: kernel, Strides: ones(s), Dilations: ones(s), PadBegin: make([]int, s)}
	if v := n.AttrInts("strides"); v != nil {
		if len(v) != s {
			return g, fmt.Errorf("strides %v for %d spatial axes", v, s)
		}
		g.Strides = toInts(v)
	}
	if v := n.AttrInts("dilations"); v != nil {
		if len(v) != s {
			return g, fmt.Errorf("dilations %v for %d spatial axes", v, s)
		}
		g.Dilations = toInts(v)
	}
	autoPad := ""
	if a := n.Attr("auto_pad"); a != nil {
		autoPad = string(a.GetS())
	}
	switch autoPad {
	case "", "NOTSET":
		if v := n.AttrInts("pads"); v != nil {
			if len(v) != 2*s {
				return g, fmt.Errorf("pads %v for %d spatial axes", v, s)
			}
			g.PadBegin = toInts(v[:s])
		}
	case "VALID":
	case "SAME_UPPER", "SAME_LOWER":
		for i := 0; i < s; i++ {
			total := max(0, (out[i]-1)*g.Strides[i]+(kernel[i]-1)*g.Dilations[i]+1-in[i])
			g.PadBegin[i] = total / 2
			if autoPad == "SAME_LOWER" {
				g.PadBegin[i] = total - total/2
			}
		}
	default:
		return g, fmt.Errorf("auto_pad %q", autoPad)
	}
	return g, nil
}

func ones(n int) []int {
	v := make([]int, n)
	for i := range v {
		v[i] = 1
	}
	return v
}

func toInts(v []int64) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}

// Patches writes into dst, one row per output position (row-major over the output's spatial
// shape out), the im2col patch of one sample x (c channels x spatial shape in, row-major): row
// entries ch·kk + kernel index, zero where the window reads padding, followed by a 1 (for the
// bias). dst must hold prod(out) x (c·kk + 1) values.
func (g Geometry) Patches(dst []float64, x []float32, c int, in, out []int) {
	s := len(in)
	kk := 1
	for _, k := range g.Kernel {
		kk *= k
	}
	cols := c*kk + 1
	inStride := make([]int, s) // element strides of the input's spatial axes
	size := 1
	for i := s - 1; i >= 0; i-- {
		inStride[i] = size
		size *= in[i]
	}
	positions := 1
	for _, o := range out {
		positions *= o
	}
	opos := make([]int, s)
	kpos := make([]int, s)
	for p := 0; p < positions; p++ {
		// Output coordinates of position p.
		rem := p
		for i := s - 1; i >= 0; i-- {
			opos[i] = rem % out[i]
			rem /= out[i]
		}
		row := dst[p*cols : (p+1)*cols]
		for k := 0; k < kk; k++ {
			rem := k
			for i := s - 1; i >= 0; i-- {
				kpos[i] = rem % g.Kernel[i]
				rem /= g.Kernel[i]
			}
			off, inside := 0, true
			for i := 0; i < s; i++ {
				at := opos[i]*g.Strides[i] - g.PadBegin[i] + kpos[i]*g.Dilations[i]
				if at < 0 || at >= in[i] {
					inside = false
					break
				}
				off += at * inStride[i]
			}
			for ch := 0; ch < c; ch++ {
				v := 0.0
				if inside {
					v = float64(x[ch*size+off])
				}
				row[ch*kk+k] = v
			}
		}
		row[cols-1] = 1
	}
}

// NormalEq accumulates the normal equations of a least-squares fit of targets t (length T) on
// regressors p (length P): A = Σ p pᵀ (upper triangle), B = Σ p tᵀ, and Σ ‖t‖².
type NormalEq struct {
	P, T int
	A    []float64 // P x P, row-major, upper triangle
	B    []float64 // P x T, row-major
	TT   float64
	N    int64
}

// NewNormalEq returns empty normal equations for P regressors and T targets.
func NewNormalEq(p, t int) *NormalEq {
	return &NormalEq{P: p, T: t, A: make([]float64, p*p), B: make([]float64, p*t)}
}

// Add adds n observations: rows of p (n x P) and of t (n x T), both row-major.
func (e *NormalEq) Add(p, t []float64, n int) {
	if len(p) != n*e.P || len(t) != n*e.T {
		panic(fmt.Sprintf("rewrite: NormalEq.Add %d and %d values for %d rows of %d and %d", len(p), len(t), n, e.P, e.T))
	}
	impl := blas64.Implementation()
	impl.Dsyrk(blas.Upper, blas.Trans, e.P, n, 1, p, e.P, 1, e.A, e.P)
	impl.Dgemm(blas.Trans, blas.NoTrans, e.P, e.T, n, 1, p, e.P, t, e.T, 1, e.B, e.T)
	for _, v := range t {
		e.TT += v * v
	}
	e.N += int64(n)
}

// Solve returns X (P x T) minimising Σ‖t − Xᵀp‖² + λ‖X‖² with λ = ridge · trace(A)/P: a ridge
// relative to the mean regressor energy, so that directions the data never excites (dead
// channels, patches always in padding) get zero weight instead of making A singular, while
// well-excited directions move by a relative ridge of that order only.
func (e *NormalEq) Solve(ridge float64) (*mat.Dense, error) {
	a := mat.NewSymDense(e.P, nil)
	trace := 0.0
	for i := 0; i < e.P; i++ {
		trace += e.A[i*e.P+i]
	}
	lambda := ridge * trace / float64(e.P)
	for i := 0; i < e.P; i++ {
		for j := i; j < e.P; j++ {
			v := e.A[i*e.P+j]
			if i == j {
				v += lambda
			}
			a.SetSym(i, j, v)
		}
	}
	var ch mat.Cholesky
	if ok := ch.Factorize(a); !ok {
		return nil, errors.New("normal equations are not positive definite")
	}
	var x mat.Dense
	if err := ch.SolveTo(&x, mat.NewDense(e.P, e.T, e.B)); err != nil {
		return nil, err
	}
	return &x, nil
}

// Error returns Σ‖t − Xᵀp‖² over the accumulated observations, for any X (P x T).
func (e *NormalEq) Error(x *mat.Dense) float64 {
	// Σ‖t‖² − 2 tr(Xᵀ B) + tr(Xᵀ A X)
	a := mat.NewSymDense(e.P, nil)
	for i := 0; i < e.P; i++ {
		for j := i; j < e.P; j++ {
			a.SetSym(i, j, e.A[i*e.P+j])
		}
	}
	var ax mat.Dense
	ax.Mul(a, x)
	b := mat.NewDense(e.P, e.T, e.B)
	quad, lin := 0.0, 0.0
	for i := 0; i < e.P; i++ {
		for j := 0; j < e.T; j++ {
			quad += x.At(i, j) * ax.At(i, j)
			lin += x.At(i, j) * b.At(i, j)
		}
	}
	return e.TT - 2*lin + quad
}
