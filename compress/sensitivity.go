package compress

import (
	"fmt"

	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/ort"
	"github.com/convpca/convpca/rewrite"
)

// SensitivitySamples is how many calibration samples Sensitivity runs per probe.
const SensitivitySamples = 256

// Sensitivity measures, for each factorizable plan and each side opts.Side allows, the squared
// relative L2 error of the model's outputs (against the original's, over SensitivitySamples
// calibration samples) when only that side of that layer is truncated, at ranks n/2, n/4, ...,
// 1, and records it in the plan (rewrite.Plan.SetSensitivity) for AllocSensitivity.
func Sensitivity(m *onnxio.Model, plans []*rewrite.Plan, data Data, copts ort.Options, opts rewrite.Options) error {
	copts.MaxSamples = SensitivitySamples
	ref, err := outputsOf(m, data, copts)
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
	side := opts.Side
	for _, p := range plans {
		if !p.Factorizable() {
			continue
		}
		for _, input := range []bool{true, false} {
			if (input && side == rewrite.SideOutput) || (!input && side == rewrite.SideInput) {
				continue
			}
			var ranks []int
			var loss []float64
			for r := p.Channels(input) / 2; r >= 1; r /= 2 {
				in, out := 0, r
				if input {
					in, out = r, 0
				}
				mm, err := p.Truncated(m, in, out)
				if err != nil {
					return err
				}
				got, err := outputsOf(mm, data, copts)
				if err != nil {
					return fmt.Errorf("conv %q: sensitivity at rank %d: %w", p.Name, r, err)
				}
				e := 0.0
				for i, v := range got {
					d := float64(v) - float64(ref[i])
					e += d * d
				}
				ranks = append([]int{r}, ranks...)
				loss = append([]float64{e / norm}, loss...)
			}
			p.SetSensitivity(input, ranks, loss)
		}
	}
	return nil
}

// outputsOf runs the model on the data and returns its graph outputs, concatenated.
func outputsOf(m *onnxio.Model, data Data, copts ort.Options) ([]float32, error) {
	r, err := data()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []float32
	_, err = ort.Infer(m, r, nil, copts, func(b ort.Batch) error {
		for _, o := range b.Outputs {
			out = append(out, o.Data...)
		}
		return nil
	})
	return out, err
}
