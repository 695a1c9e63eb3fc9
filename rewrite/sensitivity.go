package rewrite

import (
	"fmt"
	"math"
	"sort"

	"github.com/convpca/convpca/calib"
	"github.com/convpca/convpca/onnxio"
)

// Allocation rules for --target-macs.
const (
	AllocEnergy      = "energy"      // discarded normalised eigenvalue mass
	AllocSensitivity = "sensitivity" // measured change of the model's outputs
)

// SensitivitySamples is how many calibration samples Sensitivity runs per probe.
const SensitivitySamples = 256

// curve is a measured loss against rank for one side of one layer: loss[i] at rank[i], ranks
// ascending, the last one full rank with loss 0. Loss at other ranks is interpolated linearly.
type curve struct {
	rank []int
	loss []float64
}

func (c curve) at(r int) float64 {
	i := sort.SearchInts(c.rank, r)
	switch {
	case i == len(c.rank):
		return 0
	case c.rank[i] == r || i == 0:
		return c.loss[i]
	}
	f := float64(r-c.rank[i-1]) / float64(c.rank[i]-c.rank[i-1])
	return c.loss[i-1] + f*(c.loss[i]-c.loss[i-1])
}

// Sensitivity measures, for each factorizable plan and each side opts.Side allows, the squared
// relative L2 error of the model's outputs (against the original's, over SensitivitySamples
// calibration samples) when only that side of that layer is truncated, at ranks n/2, n/4, ...,
// 1. Allocate then ranks cuts by these measured losses instead of eigenvalue mass
// (opts.Alloc = AllocSensitivity).
func Sensitivity(m *onnxio.Model, plans []*Plan, open func() (calib.Reader, error), copts calib.Options, opts Options) error {
	copts.MaxSamples = SensitivitySamples
	ref, err := outputsOf(m, open, copts)
	if err != nil {
		return err
	}
	norm := 0.0
	for _, v := range ref {
		norm += float64(v) * float64(v)
	}
	if norm == 0 {
		norm = 1
	}
	side := opts.side()
	for _, p := range plans {
		if p.conv == nil {
			continue
		}
		for _, input := range []bool{true, false} {
			if (input && side == SideOutput) || (!input && side == SideInput) {
				continue
			}
			n := p.OutChannels
			if input {
				n = p.in
			}
			var c curve
			for r := n / 2; r >= 1; r /= 2 {
				trial := *p
				trial.InRank, trial.Rank = 0, r
				if input {
					trial.InRank, trial.Rank = r, 0
				}
				mm := m.Clone()
				conv, reason := MatchConv(mm.Graph, findNode(mm.Graph, p.conv.Node))
				if conv == nil {
					return fmt.Errorf("conv %q: %s", p.Name, reason)
				}
				trial.conv = conv
				Replace(mm.Graph, conv, trial.factors())
				got, err := outputsOf(mm, open, copts)
				if err != nil {
					return fmt.Errorf("conv %q: sensitivity at rank %d: %w", p.Name, r, err)
				}
				e := 0.0
				for i, v := range got {
					d := float64(v) - float64(ref[i])
					e += d * d
				}
				c.rank = append([]int{r}, c.rank...)
				c.loss = append([]float64{e / norm}, c.loss...)
			}
			c.rank, c.loss = append(c.rank, n), append(c.loss, 0)
			// Losses must not grow with rank: take the running maximum from the top.
			for i := len(c.loss) - 2; i >= 0; i-- {
				c.loss[i] = math.Max(c.loss[i], c.loss[i+1])
			}
			if input {
				p.inCurve = &c
			} else {
				p.outCurve = &c
			}
		}
	}
	return nil
}

// findNode returns the node of g at the same place as n in the graph it was cloned from (same
// name and outputs).
func findNode(g *onnxio.Graph, n *onnxio.Node) *onnxio.Node {
	for _, x := range g.Nodes {
		if x.Name == n.Name && len(x.Outputs) == len(n.Outputs) && x.Outputs[0] == n.Outputs[0] {
			return x
		}
	}
	return nil
}

// outputsOf runs the model on the data and returns its graph outputs, concatenated.
func outputsOf(m *onnxio.Model, open func() (calib.Reader, error), copts calib.Options) ([]float32, error) {
	r, err := open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []float32
	_, err = calib.Infer(m, r, nil, copts, func(b calib.Batch) error {
		for _, o := range b.Outputs {
			out = append(out, o.Data...)
		}
		return nil
	})
	return out, err
}
