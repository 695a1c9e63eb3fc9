package compress

import (
	"fmt"

	"github.com/convpca/convpca/calib"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/onnxio/onnxpb"
	"github.com/convpca/convpca/ort"
	"github.com/convpca/convpca/rewrite"
)

// Sequential compresses m in place layer by layer, in graph order, taking each layer's
// statistics from the model with the earlier layers already compressed, so that each layer is
// fitted to the activations it will really get. Ranks are chosen once, from the one-shot
// statistics first (of the original model), by opts as in rewrite.Compress; each later pass
// over the data captures only the next layer's input and output. With opts.Refit, a second
// pass per layer refits its core (rewrite.Refit) against the original model's outputs.
func Sequential(m *onnxio.Model, first *calib.Result, data Data, copts ort.Options, opts rewrite.Options) (*rewrite.Report, error) {
	plans, err := plan(m, first, data, copts, opts)
	if err != nil {
		return nil, err
	}
	orig := m
	if opts.Refit {
		orig = m.Clone()
	}
	for i, p := range plans {
		if !p.Factorizable() || p.Reason != "" {
			continue
		}
		res, err := collect(m, data, p.Tensors(), copts)
		if err != nil {
			return nil, fmt.Errorf("conv %q: sequential statistics: %w", p.Name, err)
		}
		np, err := rewrite.Reanalyze(m.Graph, p, res, opts)
		if err != nil {
			return nil, err
		}
		if np.Reason == "" {
			f, rep := np.Rewrite(m.Graph)
			if opts.Refit {
				if err := refitLayer(orig, m, np, f, rep, res, data, copts, opts.Ridge); err != nil {
					return nil, fmt.Errorf("conv %q: refit: %w", p.Name, err)
				}
			}
		}
		plans[i] = np
	}
	return rewrite.Apply(m, plans, first.Samples, opts)
}

// refitLayer refits the core of a layer just replaced in m: its input z as m computes it, its
// target from the original model orig on the same samples. The refit is kept only when it
// lowers the reconstruction error on the calibration data.
func refitLayer(orig, m *onnxio.Model, p *rewrite.Plan, f rewrite.Factors, rep rewrite.Replacement, res *calib.Result, data Data, copts ort.Options, ridge float64) error {
	n := p.Node()
	yName := n.Outputs[0]
	fit, err := rewrite.NewRefit(p, f, rep, res.Shapes[n.Inputs[0]], res.Shapes[yName])
	if err != nil {
		return err
	}
	target := orig.Clone()
	target.Graph.SetOutputs([]string{yName}, onnxpb.TensorProto_FLOAT)
	model, err := target.Marshal()
	if err != nil {
		return err
	}
	var sess *ort.Session // made for the order in which the data feeds the inputs
	defer func() {
		if sess != nil {
			sess.Close()
		}
	}()

	r, err := data()
	if err != nil {
		return err
	}
	defer r.Close()
	zName := fit.Input()
	var capture []string
	if !m.Graph.IsGraphInput(zName) {
		capture = []string{zName}
	}
	_, err = ort.Infer(m, r, capture, copts, func(b ort.Batch) error {
		var z []float32
		if capture != nil {
			z = b.Outputs[0].Data
		}
		order := make([]string, len(b.Inputs))
		for i, in := range b.Inputs {
			order[i] = in.Name
			if in.Name == zName {
				z = in.Floats()
			}
		}
		if sess == nil {
			if sess, err = ort.NewSessionInputs(model, order, []string{yName}, copts.Runtime); err != nil {
				return err
			}
		}
		return sess.RunFeeds(b.Inputs, func(outs []ort.Output) error {
			fit.Add(z, outs[0].Data, b.N)
			return nil
		})
	})
	if err != nil {
		return err
	}
	return fit.Finish(m.Graph, ridge)
}

// collect runs the data through m once, accumulating the statistics of tensors.
func collect(m *onnxio.Model, data Data, tensors []string, copts ort.Options) (*calib.Result, error) {
	r, err := data()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return ort.Collect(m, r, tensors, copts)
}
