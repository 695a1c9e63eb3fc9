package rewrite

import (
	"fmt"

	"gonum.org/v1/gonum/mat"

	"github.com/convpca/convpca/calib"
	"github.com/convpca/convpca/onnxio"
)

// This file holds what a pass over data needs to rewrite one layer at a time (sequential
// statistics and the refit, driven by package compress): the layer a plan stands for, its
// analysis again from new statistics, its replacement, and the refit's normal equations.

// Node returns the layer's node in the graph it was analysed in; nil for a plan that is not
// Factorizable.
func (p *Plan) Node() *onnxio.Node {
	if p.conv == nil {
		return nil
	}
	return p.conv.Node
}

// Tensors returns the tensors whose statistics a re-analysis of the plan's layer needs: its
// input and output, or only the input of a dense layer (see Targets).
func (p *Plan) Tensors() []string {
	n := p.conv.Node
	if p.conv.Spatial() == 0 {
		return []string{n.Inputs[0]}
	}
	return []string{n.Inputs[0], n.Outputs[0]}
}

// Reanalyze analyses p's layer again in g, from the statistics res of its input and output as
// g now computes them, keeping p's ranks, and returns the new plan.
func Reanalyze(g *onnxio.Graph, p *Plan, res *calib.Result, opts Options) (*Plan, error) {
	np, err := analyzeOne(g, p.conv.Node, res, opts.side(), opts.Full)
	if err != nil {
		return nil, fmt.Errorf("conv %q: %w", p.Name, err)
	}
	if np.conv == nil {
		return nil, fmt.Errorf("conv %q: %s", p.Name, np.Reason)
	}
	np.InRank, np.Rank = p.InRank, p.Rank
	np.settle(opts)
	return np, nil
}

// Rewrite replaces the plan's layer in g by its factors at the plan's ranks and marks the
// plan applied.
func (p *Plan) Rewrite(g *onnxio.Graph) (Factors, Replacement) {
	f := p.factors()
	rep := Replace(g, p.conv, f)
	p.Applied = true
	return f, rep
}

// Refit accumulates, over batches, the least-squares system that refits the core of a layer
// just replaced (see refit.go) and then writes the refitted weights into the graph.
type Refit struct {
	p        *Plan
	f        Factors
	rep      Replacement
	geo      Geometry
	in, out  []int // spatial shapes of the core's input and of the layer's output
	zIn, zc  int   // core input and output channels
	cols     int   // patch length + 1 (the bias)
	eq       *NormalEq
	pbuf     []float64
	tbuf     []float64
	position int
}

// NewRefit prepares the refit of plan p, replaced by f and rep, whose layer input and output
// have the per-sample shapes inShape and outShape (C x spatial...).
func NewRefit(p *Plan, f Factors, rep Replacement, inShape, outShape []int64) (*Refit, error) {
	n := p.conv.Node
	kernel := toInts(p.conv.Dims[2:])
	var in, out []int // spatial shapes; none for a dense layer, whose every row is a sample
	if p.conv.Spatial() > 0 {
		in, out = toInts(inShape[1:]), toInts(outShape[1:])
	}
	geo, err := ConvGeometry(n, kernel, in, out)
	if err != nil {
		return nil, err
	}
	zc, _ := f.Core.Dims() // core output channels: k, or out without up
	zIn := f.Core.RawMatrix().Cols / p.kk
	cols := zIn*p.kk + 1
	positions := 1
	for _, d := range out {
		positions *= d
	}
	return &Refit{p: p, f: f, rep: rep, geo: geo, in: in, out: out, zIn: zIn, zc: zc, cols: cols,
		eq: NewNormalEq(cols, zc), pbuf: make([]float64, positions*cols), tbuf: make([]float64, positions*zc), position: positions}, nil
}

// Input returns the name of the tensor the core reads (z) in the compressed graph.
func (r *Refit) Input() string { return r.rep.CoreIn }

// Add accumulates n samples: z the core's input in the compressed model, y the layer's output
// in the original model, both batch-first in NCHW order (channels last for a dense layer).
func (r *Refit) Add(z, y []float32, n int) {
	if r.p.conv.Spatial() == 0 { // every row of channels is a sample
		n = len(z) / r.zIn
	}
	zSize, ySize := len(z)/n, len(y)/n
	out, positions := r.p.OutChannels, r.position
	for i := 0; i < n; i++ {
		r.geo.Patches(r.pbuf, z[i*zSize:(i+1)*zSize], r.zIn, r.in, r.out)
		yi := y[i*ySize : (i+1)*ySize]
		for pos := 0; pos < positions; pos++ {
			for j := 0; j < r.zc; j++ {
				if r.f.Up == nil {
					r.tbuf[pos*r.zc+j] = float64(yi[j*positions+pos])
					continue
				}
				t := 0.0
				for o := 0; o < out; o++ {
					t += r.f.Up.At(o, j) * float64(yi[o*positions+pos])
				}
				r.tbuf[pos*r.zc+j] = t
			}
		}
		r.eq.Add(r.pbuf, r.tbuf, positions)
	}
}

// Finish solves the system with the given relative ridge (0: DefaultRidge) and, when the refit lowers the
// reconstruction error on the data seen, writes the refitted core into g. The plan records
// both errors, relative to Σ‖t‖².
func (r *Refit) Finish(g *onnxio.Graph, ridge float64) error {
	p, f, rep, zc, cols, eq := r.p, r.f, r.rep, r.zc, r.cols, r.eq
	out := p.OutChannels
	if ridge <= 0 {
		ridge = DefaultRidge
	}
	fit, err := eq.Solve(ridge)
	if err != nil {
		return err
	}
	// The projection as a solution of the same system: core weights, and the core's bias
	// (Vᵀ b with an up-projection, b without).
	proj := mat.NewDense(cols, zc, nil)
	var bias []float64
	if p.conv.Bias != nil {
		bias = p.conv.Bias
		if f.Up != nil {
			var vb mat.VecDense
			vb.MulVec(f.Up.T(), mat.NewVecDense(out, p.conv.Bias))
			bias = vb.RawVector().Data
		}
	}
	for j := 0; j < zc; j++ {
		for q := 0; q < cols-1; q++ {
			proj.Set(q, j, f.Core.At(j, q))
		}
		if bias != nil {
			proj.Set(cols-1, j, bias[j])
		}
	}
	scale := eq.TT
	if scale == 0 {
		scale = 1
	}
	// Rounding can make an exact fit's error slightly negative.
	p.ProjError, p.RefitError = max(0, eq.Error(proj)/scale), max(0, eq.Error(fit)/scale)
	if p.RefitError >= p.ProjError {
		p.RefitNote = "refit kept the projection: it did not lower the reconstruction error"
		return nil
	}
	p.Refitted = true
	// Write the refitted core: weights, and its bias folded into the up-projection's bias
	// (μ − V Vᵀ μ + V c) or, without one, a bias of its own.
	core := mat.DenseCopyOf(fit.Slice(0, cols-1, 0, zc).T())
	c := mat.Col(nil, 0, fit.Slice(cols-1, cols, 0, zc).T())
	rep.SetCore(g, core)
	if f.Up == nil {
		rep.SetCoreBias(g, c)
		return nil
	}
	var vc mat.VecDense
	vc.MulVec(f.Up, mat.NewVecDense(zc, c))
	upBias := make([]float64, out)
	for o := range upBias {
		upBias[o] = f.UpBias[o] + vc.AtVec(o)
		if bias != nil { // f.UpBias already holds V Vᵀ b
			var vvb float64
			for j := 0; j < zc; j++ {
				vvb += f.Up.At(o, j) * bias[j]
			}
			upBias[o] -= vvb
		}
	}
	rep.SetUpBias(g, upBias)
	return nil
}
