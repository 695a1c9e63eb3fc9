package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/convpca/convpca/calib"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/rewrite"
)

// searchOptions bound the quality of an accuracy- or error-guarded compression.
type searchOptions struct {
	MaxDrop    float64 // top-1 accuracy points; 0: no bound
	MaxError   float64 // relative L2 error of the outputs; 0: no bound
	Data       string
	Labels     string
	Steps      int
	LowestMACs float64 // the smallest target tried
}

func (s searchOptions) active() bool { return s.MaxDrop > 0 || s.MaxError > 0 }

func parseSearch(c *cli.Context, o compressOptions) (searchOptions, error) {
	s := searchOptions{
		MaxDrop: c.Float64("max-drop"), MaxError: c.Float64("max-error"),
		Data: c.String("eval-data"), Labels: c.String("eval-labels"), Steps: c.Int("search-steps"),
		LowestMACs: 0.02,
	}
	switch {
	case !s.active():
		if s.Data != "" || s.Labels != "" {
			return s, usagef("--eval-data and --eval-labels go with --max-drop or --max-error")
		}
		return s, nil
	case c.IsSet("max-drop") && c.IsSet("max-error"):
		return s, usagef("give --max-drop or --max-error, not both")
	case s.MaxDrop < 0 || s.MaxError < 0:
		return s, usagef("--max-drop and --max-error must be > 0")
	case s.Data == "":
		return s, usagef("--max-drop and --max-error need --eval-data")
	case s.MaxDrop > 0 && s.Labels == "":
		return s, usagef("--max-drop needs --eval-labels")
	case c.IsSet("target-macs") || c.IsSet("threshold") || c.IsSet("energy"):
		return s, usagef("--max-drop and --max-error choose --target-macs themselves; drop the rank rule")
	case o.Rewrite.Full:
		return s, usagef("--rank full cannot be searched")
	case s.Steps < 1:
		return s, usagef("--search-steps must be >= 1")
	}
	return s, nil
}

// search finds the smallest MACs target whose compression stays within the bound on the
// evaluation data, printing each probe to stdout; it returns the best model found.
func search(m *onnxio.Model, compress func(float64) (*onnxio.Model, *rewrite.Report, error), o compressOptions, stdout, stderr io.Writer) (*onnxio.Model, *rewrite.Report, []rewrite.Probe, error) {
	if same(o.Search.Data, o.Calib) && o.Calibration.Runtime.Warn != nil {
		o.Calibration.Runtime.Warn("--eval-data is the calibration data: the bound will look better than it is on new data")
	}
	evalOpts := o.Calibration
	evalOpts.MaxSamples = 0
	open := func() (calib.Reader, error) { return calib.Open(o.Search.Data) }
	var labels []int
	base := 0.0
	if o.Search.MaxDrop > 0 {
		var err error
		if labels, err = calib.OpenLabels(o.Search.Labels); err != nil {
			return nil, nil, nil, err
		}
		if base, err = accuracyOf(m, open, labels, evalOpts); err != nil {
			return nil, nil, nil, fmt.Errorf("evaluate the original model: %w", err)
		}
		fmt.Fprintf(stdout, "original model: top-1 accuracy %.4f\n", base)
	}
	var (
		bestModel *onnxio.Model
		bestRep   *rewrite.Report
	)
	fmt.Fprintf(stdout, "%8s %11s %8s %10s  %s\n", "target", "MACs", "ratio", "score", "within bound")
	probes, best, err := rewrite.Search(o.Search.LowestMACs, o.Search.Steps, func(target float64) (rewrite.Probe, error) {
		cm, rep, err := compress(target)
		if errors.Is(err, rewrite.ErrUnreachable) {
			fmt.Fprintf(stdout, "%8.4f %11s %8s %10s  %v (no ranks reach it)\n", target, "-", "-", "-", false)
			return rewrite.Probe{Note: "no ranks reach this target"}, nil
		}
		if err != nil {
			return rewrite.Probe{}, err
		}
		p := rewrite.Probe{MACs: rep.After.MACs, MACRatio: rep.MACRatio()}
		if o.Search.MaxDrop > 0 {
			if p.Accuracy, err = accuracyOf(cm, open, labels, evalOpts); err != nil {
				return p, err
			}
			p.Score = 100 * (base - p.Accuracy)
			p.OK = p.Score <= o.Search.MaxDrop+1e-9
		} else {
			if p.Score, err = relativeError(m, cm, open, evalOpts); err != nil {
				return p, err
			}
			p.OK = p.Score <= o.Search.MaxError*(1+1e-9)
		}
		fmt.Fprintf(stdout, "%8.4f %11d %7.2fx %10.4g  %v\n", target, p.MACs, p.MACRatio, p.Score, p.OK)
		if p.OK && (bestRep == nil || p.MACs <= bestRep.After.MACs) {
			bestModel, bestRep = cm, rep
		}
		return p, nil
	})
	if err != nil {
		return nil, nil, probes, err
	}
	if best < 0 || bestModel == nil {
		fmt.Fprintln(stdout, "no probe stayed within the bound: the output is the model as it was")
		bestModel, bestRep, err = compress(1) // keeps every MAC: the model as it was
		if err != nil {
			return nil, nil, probes, err
		}
	}
	return bestModel, bestRep, probes, nil
}

func accuracyOf(m *onnxio.Model, open func() (calib.Reader, error), labels []int, opts calib.Options) (float64, error) {
	r, err := open()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	acc, _, err := calib.Accuracy(m, r, labels, opts)
	return acc, err
}

// relativeError is the largest relative L2 error ‖a − b‖/‖a‖ over the graph outputs of the
// original model a and the compressed one b on the data.
func relativeError(a, b *onnxio.Model, open func() (calib.Reader, error), opts calib.Options) (float64, error) {
	ra, err := open()
	if err != nil {
		return 0, err
	}
	defer ra.Close()
	rb, err := open()
	if err != nil {
		return 0, err
	}
	defer rb.Close()
	_, diffs, err := rewrite.CompareOutputs(a, b, ra, rb, opts)
	if err != nil {
		return 0, err
	}
	worst := 0.0
	for _, d := range diffs {
		if d.RelL2 != nil {
			worst = max(worst, *d.RelL2)
		}
	}
	return worst, nil
}
