// Package compress drives every pass of data through a model that compressing it takes:
// one-shot calibration, sequential statistics layer by layer, the least-squares refit, the
// sensitivity measurements of --alloc sensitivity, and the accuracy- or error-guarded search
// over MACs targets. It runs models through package ort and leaves the maths and the graph
// edits to package rewrite, handing it statistics and measured losses. It writes no files and
// parses no flags (cmd/convpca does).
package compress

import (
	"errors"
	"fmt"
	"io"

	"github.com/convpca/convpca/calib"
	"github.com/convpca/convpca/dataset"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/ort"
	"github.com/convpca/convpca/rewrite"
)

// Data opens a fresh pass over a data set; each call starts from the first sample.
type Data func() (dataset.Reader, error)

// Options say how to compress.
type Options struct {
	Rewrite rewrite.Options
	// Runtime says how calibration data is run (batch, samples, provider); passes after the
	// first use as many samples as the first pass read.
	Runtime ort.Options
	// Sequential takes each layer's statistics from the model with the earlier layers already
	// compressed (and, with Rewrite.Refit, refits each layer).
	Sequential bool
	// Bound, when active, searches the smallest MACs target within it.
	Bound Bound
}

// Bound limits the quality lost by a searched compression, measured on evaluation data.
type Bound struct {
	MaxDrop    float64 // top-1 accuracy points, or Metric's own units; 0: no bound
	MaxError   float64 // relative L2 error of the outputs; 0: no bound
	Data       Data    // evaluation data
	Labels     []int   // for MaxDrop
	Steps      int     // at most this many probes
	LowestMACs float64 // the smallest target tried
	// Metric, when not nil, is the quality MaxDrop bounds instead of top-1 accuracy on Data:
	// the user's own score of a model, higher is better unless LowerBetter.
	Metric      func(m *onnxio.Model) (float64, error)
	LowerBetter bool
}

// Active reports whether the bound asks for a search.
func (b Bound) Active() bool { return b.MaxDrop > 0 || b.MaxError > 0 }

// Result is a compressed model with its report and, after a search, every probe in order.
type Result struct {
	Model  *onnxio.Model
	Report *rewrite.Report
	Probes []Probe
}

// Calibrate runs the data of r through m once and returns the statistics of every tensor the
// rewrite of side needs (rewrite.Targets).
func Calibrate(m *onnxio.Model, r dataset.Reader, side rewrite.Side, copts ort.Options) (*calib.Result, error) {
	tensors, last := rewrite.Targets(m, side)
	copts.ChannelsLast = last
	res, err := ort.Collect(m, r, tensors, copts)
	if err != nil {
		return nil, fmt.Errorf("calibration: %w", err)
	}
	return res, nil
}

// Run compresses a copy of m from the statistics first (of the original model, see
// Calibrate): once, or searching the MACs target within opts.Bound, in which case each probe
// is printed to log. data reopens the calibration data for the passes that need it
// (Sequential, AllocSensitivity); it may be nil when neither is asked for.
func Run(m *onnxio.Model, first *calib.Result, data Data, opts Options, log io.Writer) (*Result, error) {
	if (opts.Sequential || opts.Rewrite.Alloc == rewrite.AllocSensitivity) && data == nil {
		return nil, errors.New("sequential statistics and sensitivity allocation need the calibration data, not only statistics")
	}
	copts := opts.Runtime
	if copts.MaxSamples == 0 {
		copts.MaxSamples = first.Samples
	}
	copts.Progress = nil
	_, copts.ChannelsLast = rewrite.Targets(m, rewrite.SideBoth)
	// One analysis (eigenproblems, sensitivities) serves every probe of a search.
	var base []*rewrite.Plan
	analyse := func() error {
		if base != nil || opts.Sequential {
			return nil
		}
		var err error
		base, err = analysis(m, first, data, copts, opts.Rewrite, opts.Rewrite.TargetMACs > 0 || opts.Rewrite.TargetTime > 0 || opts.Bound.Active())
		return err
	}
	once := func(target float64) (*onnxio.Model, *rewrite.Report, error) {
		out, ropts := m.Clone(), opts.Rewrite
		if target > 0 {
			ropts.TargetMACs = target
		}
		if opts.Sequential {
			rep, err := Sequential(out, first, data, copts, ropts)
			return out, rep, err
		}
		if err := analyse(); err != nil {
			return nil, nil, err
		}
		plans, err := rewrite.Rebind(base, out)
		if err != nil {
			return nil, nil, err
		}
		if err := rewrite.Choose(plans, ropts); err != nil {
			return nil, nil, err
		}
		rep, err := rewrite.Apply(out, plans, first.Samples, ropts)
		return out, rep, err
	}
	if !opts.Bound.Active() {
		out, rep, err := once(0)
		if err != nil {
			return nil, err
		}
		return &Result{Model: out, Report: rep}, nil
	}
	return search(m, once, opts, log)
}

// analysis analyses every layer of m, measuring sensitivities when the allocation asks for
// them.
func analysis(m *onnxio.Model, first *calib.Result, data Data, copts ort.Options, opts rewrite.Options, sensitivity bool) ([]*rewrite.Plan, error) {
	plans, err := rewrite.Analyze(m, first, opts)
	if err != nil {
		return nil, err
	}
	if sensitivity && opts.Alloc == rewrite.AllocSensitivity {
		if err := Sensitivity(m, plans, data, copts, opts); err != nil {
			return nil, err
		}
	}
	return plans, nil
}

// plan analyses every layer of m and chooses its ranks.
func plan(m *onnxio.Model, first *calib.Result, data Data, copts ort.Options, opts rewrite.Options) ([]*rewrite.Plan, error) {
	plans, err := analysis(m, first, data, copts, opts, opts.TargetMACs > 0 || opts.TargetTime > 0)
	if err != nil {
		return nil, err
	}
	if err := rewrite.Choose(plans, opts); err != nil {
		return nil, err
	}
	return plans, nil
}
