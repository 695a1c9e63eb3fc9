package rewrite

import (
	"errors"
	"fmt"

	"gonum.org/v1/gonum/mat"

	"github.com/convpca/convpca/calib"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/onnxio/onnxpb"
)

// Sequential compresses m in place layer by layer, in graph order, taking each layer's
// statistics from the model with the earlier layers already compressed, so that each layer is
// fitted to the activations it will really get. Ranks are chosen once, from the one-shot
// statistics first (of the original model), by opts as in Compress; each later pass over the
// data (opts.Open returns it anew, run with opts.Calib) captures only the next layer's input
// and output.
func Sequential(m *onnxio.Model, first *calib.Result, opts Options) (*Report, error) {
	if opts.Open == nil {
		return nil, errors.New("sequential compression needs the calibration data (Options.Open)")
	}
	open, copts := opts.Open, opts.Calib
	plans, err := Analyze(m, first, opts)
	if err != nil {
		return nil, err
	}
	if err := choose(m, plans, opts); err != nil {
		return nil, err
	}
	orig := m
	if opts.Refit {
		orig = m.Clone()
	}
	for i, p := range plans {
		if p.conv == nil || p.Reason != "" {
			continue
		}
		n := p.conv.Node
		res, err := collect(m, open, []string{n.Inputs[0], n.Outputs[0]}, copts)
		if err != nil {
			return nil, fmt.Errorf("conv %q: sequential statistics: %w", p.Name, err)
		}
		np, err := analyzeOne(m.Graph, n, res, opts.side())
		if err != nil {
			return nil, fmt.Errorf("conv %q: %w", p.Name, err)
		}
		if np.conv == nil {
			return nil, fmt.Errorf("conv %q: %s", p.Name, np.Reason)
		}
		np.InRank, np.Rank = p.InRank, p.Rank
		np.settle(opts)
		if np.Reason == "" {
			f := np.factors()
			rep := Replace(m.Graph, np.conv, f)
			np.Applied = true
			if opts.Refit {
				if err := refitLayer(orig, m, np, f, rep, res, open, copts, opts.ridge()); err != nil {
					return nil, fmt.Errorf("conv %q: refit: %w", p.Name, err)
				}
			}
		}
		plans[i] = np
	}
	return Apply(m, plans, first.Samples, opts)
}

// refitLayer refits the core of a layer just replaced in m (see refit.go): its input z as m
// computes it, its target from the original model orig on the same samples. The refit is kept
// only when it lowers the reconstruction error on the calibration data; the plan records both
// errors, relative to Σ‖t‖².
func refitLayer(orig, m *onnxio.Model, p *Plan, f Factors, rep Replacement, res *calib.Result, open func() (calib.Reader, error), copts calib.Options, ridge float64) error {
	n := p.conv.Node
	zName, yName := rep.Core.Inputs[0], n.Outputs[0]
	inShape, outShape := res.Shapes[n.Inputs[0]], res.Shapes[yName]
	kernel := toInts(p.conv.Dims[2:])
	geo, err := ConvGeometry(n, kernel, toInts(inShape[1:]), toInts(outShape[1:]))
	if err != nil {
		return err
	}
	zc, _ := f.Core.Dims()                     // core output channels: k, or out without up
	zIn := int(f.Core.RawMatrix().Cols) / p.kk // core input channels: r, or in without down
	cols := zIn*p.kk + 1
	positions := 1
	for _, d := range outShape[1:] {
		positions *= int(d)
	}
	eq := NewNormalEq(cols, zc)

	origIn, err := calib.ModelInput(orig)
	if err != nil {
		return err
	}
	target := orig.Clone()
	target.Graph.SetOutputs([]string{yName}, onnxpb.TensorProto_FLOAT)
	data, err := target.Marshal()
	if err != nil {
		return err
	}
	sess, err := calib.NewSession(data, origIn.Name, []string{yName}, copts.Runtime)
	if err != nil {
		return err
	}
	defer sess.Close()

	r, err := open()
	if err != nil {
		return err
	}
	defer r.Close()
	var capture []string
	if !m.Graph.IsGraphInput(zName) {
		capture = []string{zName}
	}
	out := p.OutChannels
	pbuf := make([]float64, positions*cols)
	tbuf := make([]float64, positions*zc)
	dims := make([]int64, 0, 1+len(r.Shape()))
	_, err = calib.Infer(m, r, capture, copts, func(b calib.Batch) error {
		z := b.Input
		if capture != nil {
			z = b.Outputs[0].Data
		}
		dims = append(dims[:0], int64(b.N))
		for _, d := range r.Shape() {
			dims = append(dims, int64(d))
		}
		return sess.Run(b.Input, dims, func(outs []calib.Output) error {
			y := outs[0].Data
			zSize, ySize := len(z)/b.N, len(y)/b.N
			for i := 0; i < b.N; i++ {
				geo.Patches(pbuf, z[i*zSize:(i+1)*zSize], zIn, toInts(inShape[1:]), toInts(outShape[1:]))
				yi := y[i*ySize : (i+1)*ySize]
				for pos := 0; pos < positions; pos++ {
					for j := 0; j < zc; j++ {
						if f.Up == nil {
							tbuf[pos*zc+j] = float64(yi[j*positions+pos])
							continue
						}
						t := 0.0
						for o := 0; o < out; o++ {
							t += f.Up.At(o, j) * float64(yi[o*positions+pos])
						}
						tbuf[pos*zc+j] = t
					}
				}
				eq.Add(pbuf, tbuf, positions)
			}
			return nil
		})
	})
	if err != nil {
		return err
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
	// (μ − V Vᵀ μ + V c) or, without one, a new bias of its own.
	g := m.Graph
	core := mat.DenseCopyOf(fit.Slice(0, cols-1, 0, zc).T())
	c := mat.Col(nil, 0, fit.Slice(cols-1, cols, 0, zc).T())
	wt := g.Initializer(rep.Core.Inputs[1])
	g.SetInitializer(onnxio.FloatTensor(wt.GetName(), wt.Dims, toFloat32(core)))
	if f.Up != nil {
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
		bt := g.Initializer(rep.Up.Inputs[2])
		g.SetInitializer(onnxio.FloatTensor(bt.GetName(), bt.Dims, toFloat32Vec(upBias)))
	} else {
		name := g.UniqueName(p.Name + "_pca_core_B")
		g.SetInitializer(onnxio.FloatTensor(name, []int64{int64(zc)}, toFloat32Vec(c)))
		if len(rep.Core.Inputs) > 2 {
			rep.Core.Inputs[2] = name
		} else {
			rep.Core.Inputs = append(rep.Core.Inputs, name)
		}
	}
	return nil
}

func collect(m *onnxio.Model, open func() (calib.Reader, error), tensors []string, copts calib.Options) (*calib.Result, error) {
	r, err := open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return calib.Collect(m, r, tensors, copts)
}
