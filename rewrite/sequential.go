package rewrite

import (
	"fmt"

	"github.com/convpca/convpca/calib"
	"github.com/convpca/convpca/onnxio"
)

// Sequential compresses m in place layer by layer, in graph order, taking each layer's
// statistics from the model with the earlier layers already compressed, so that each layer is
// fitted to the activations it will really get. Ranks are chosen once, from the one-shot
// statistics first (of the original model), by opts as in Compress; each later pass over the
// data (open returns it anew) captures only the next layer's input and output.
func Sequential(m *onnxio.Model, first *calib.Result, open func() (calib.Reader, error), copts calib.Options, opts Options) (*Report, error) {
	plans, err := Analyze(m, first, opts)
	if err != nil {
		return nil, err
	}
	if opts.TargetMACs > 0 {
		err = Allocate(plans, opts)
	} else {
		err = chooseRanks(plans, opts)
	}
	if err != nil {
		return nil, err
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
			Replace(m.Graph, np.conv, np.factors())
			np.Applied = true
		}
		plans[i] = np
	}
	return Apply(m, plans, first.Samples, opts)
}

func collect(m *onnxio.Model, open func() (calib.Reader, error), tensors []string, copts calib.Options) (*calib.Result, error) {
	r, err := open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return calib.Collect(m, r, tensors, copts)
}
