package compress

import (
	"errors"
	"fmt"
	"math"

	"github.com/convpca/convpca/analyze"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/ort"
)

// ErrUnverifiable says that Verify could not run the original model in onnxruntime (as with
// some models whose subgraphs hold initializers, which onnxruntime loads only from a file),
// so it has nothing to compare with.
var ErrUnverifiable = errors.New("onnxruntime cannot load the original model from memory, so the compressed one is not verified")

// FullRankTolerance bounds the relative L2 error of every output of a full-rank rewrite
// (--rank full) against the original's: float32 rounding only.
const FullRankTolerance = 1e-4

// Verify loads the compressed model out in onnxruntime and runs it, and the original m, on one
// batch of the calibration data: out must load, run and give finite outputs of the original's
// shapes, and with full (every rank kept) outputs equal to the original's to
// FullRankTolerance relative L2 error. It is the last check before a model is written, so that
// a model onnxruntime would refuse is never saved.
func Verify(m, out *onnxio.Model, data Data, copts ort.Options, full bool) error {
	if err := Loads(m, copts.Runtime); err != nil {
		return fmt.Errorf("%w: %v", ErrUnverifiable, err)
	}
	batch := copts.Batch
	if batch <= 0 {
		batch = ort.DefaultBatch
	}
	copts.MaxSamples, copts.Progress = batch, nil
	ra, err := data()
	if err != nil {
		return err
	}
	defer ra.Close()
	rb, err := data()
	if err != nil {
		return err
	}
	defer rb.Close()
	_, diffs, err := analyze.CompareOutputs(m, out, ra, rb, copts)
	if err != nil {
		return fmt.Errorf("verify the compressed model: %w", err)
	}
	for _, d := range diffs {
		if math.IsNaN(d.MaxAbs) || math.IsInf(d.MaxAbs, 0) || (d.RelL2 != nil && math.IsNaN(*d.RelL2)) {
			return fmt.Errorf("verify the compressed model: output %q is not finite", d.Name)
		}
		if full && d.RelL2 != nil && *d.RelL2 > FullRankTolerance {
			return fmt.Errorf("verify the compressed model: at full rank output %q differs from the original's by %.3g relative L2 (more than %g)", d.Name, *d.RelL2, FullRankTolerance)
		}
	}
	return nil
}

// Loads checks that onnxruntime accepts the model (without data to run it on, as when
// compressing from a statistics file).
func Loads(m *onnxio.Model, rt ort.RuntimeOptions) error {
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	in, err := ort.ModelInput(m)
	if err != nil {
		return nil // several inputs: the session would need them all named; the run checks it
	}
	s, err := ort.NewSession(b, in.Name, m.Graph.Outputs(), rt)
	if err != nil {
		return fmt.Errorf("verify the compressed model: onnxruntime refuses it: %w", err)
	}
	return s.Close()
}
