package compress

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/convpca/convpca/analyze"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/ort"
	"github.com/convpca/convpca/rewrite"
)

// Probe is one trial of Search: a MACs target, what the compressed model reached, and its
// measured quality.
type Probe struct {
	Target   float64 `json:"target"`
	MACs     int64   `json:"macs"`
	MACRatio float64 `json:"mac_ratio"`
	// Score is the measure the bound applies to: the top-1 accuracy drop in points, the drop
	// of the user's metric (Bound.Metric), or the relative L2 error of the outputs.
	Score    float64 `json:"score"`
	Accuracy float64 `json:"accuracy,omitempty"`
	// Metric is the user's metric of the compressed model (Bound.Metric), when it is the bound.
	Metric *float64 `json:"metric,omitempty"`
	OK     bool     `json:"ok"`
	Note   string   `json:"note,omitempty"` // why a probe has no score
}

// Search looks for the smallest MACs target in [lo, 1] whose trial passes, assuming that
// larger targets pass more easily (target 1 keeps every MAC and passes). It first tries lo,
// then bisects geometrically between the largest failing and smallest passing targets, with
// at most steps trials in all. try compresses at a target and measures; it reports whether the
// result is within bound. Search returns every probe in order and the index of the best
// passing one (-1 when none passed).
func Search(lo float64, steps int, try func(target float64) (Probe, error)) ([]Probe, int, error) {
	if lo <= 0 || lo >= 1 || steps < 1 {
		return nil, -1, fmt.Errorf("search from %v in %d steps", lo, steps)
	}
	var probes []Probe
	best := -1
	fail, pass := 0.0, 1.0
	for i := 0; i < steps; i++ {
		target := lo
		if i > 0 {
			if fail == 0 { // lo passed
				break
			}
			target = math.Sqrt(fail * pass)
		}
		p, err := try(target)
		if err != nil {
			return probes, best, fmt.Errorf("probe at target %.4g: %w", target, err)
		}
		p.Target = target
		probes = append(probes, p)
		if p.OK {
			pass, best = target, len(probes)-1
		} else {
			fail = target
		}
		if pass/fail < 1.02 {
			break
		}
	}
	return probes, best, nil
}

// search finds the smallest MACs target whose compression stays within opts.Bound on the
// evaluation data, printing each probe to log; it returns the best model found, or the model
// as it was when no probe stays within the bound.
func search(m *onnxio.Model, once func(float64) (*onnxio.Model, *rewrite.Report, error), opts Options, log io.Writer) (*Result, error) {
	b := opts.Bound
	evalOpts := opts.Runtime
	evalOpts.MaxSamples, evalOpts.Progress = 0, nil
	base := 0.0
	switch {
	case b.Metric != nil:
		var err error
		if base, err = b.Metric(m); err != nil {
			return nil, fmt.Errorf("evaluate the original model: %w", err)
		}
		better := "higher"
		if b.LowerBetter {
			better = "lower"
		}
		fmt.Fprintf(log, "original model: metric %.6g (%s is better)\n", base, better)
	case b.MaxDrop > 0:
		var err error
		if base, err = accuracyOf(m, b.Data, b.Labels, evalOpts); err != nil {
			return nil, fmt.Errorf("evaluate the original model: %w", err)
		}
		fmt.Fprintf(log, "original model: top-1 accuracy %.4f\n", base)
	}
	var best Result
	if b.Metric != nil {
		fmt.Fprintf(log, "%8s %11s %8s %10s %10s  %s\n", "target", "MACs", "ratio", "metric", "drop", "within bound")
	} else {
		fmt.Fprintf(log, "%8s %11s %8s %10s  %s\n", "target", "MACs", "ratio", "score", "within bound")
	}
	probes, bi, err := Search(b.LowestMACs, b.Steps, func(target float64) (Probe, error) {
		cm, rep, err := once(target)
		if errors.Is(err, rewrite.ErrUnreachable) {
			if b.Metric != nil {
				fmt.Fprintf(log, "%8.4f %11s %8s %10s %10s  %v (no ranks reach it)\n", target, "-", "-", "-", "-", false)
			} else {
				fmt.Fprintf(log, "%8.4f %11s %8s %10s  %v (no ranks reach it)\n", target, "-", "-", "-", false)
			}
			return Probe{Note: "no ranks reach this target"}, nil
		}
		if err != nil {
			return Probe{}, err
		}
		p := Probe{MACs: rep.After.MACs, MACRatio: rep.MACRatio()}
		switch {
		case b.Metric != nil:
			v, err := b.Metric(cm)
			if err != nil {
				return p, err
			}
			p.Metric = &v
			p.Score = base - v
			if b.LowerBetter {
				p.Score = v - base
			}
			p.OK = p.Score <= b.MaxDrop+1e-9*math.Max(1, math.Abs(base))
			fmt.Fprintf(log, "%8.4f %11d %7.2fx %10.6g %10.4g  %v\n", target, p.MACs, p.MACRatio, v, p.Score, p.OK)
		case b.MaxDrop > 0:
			if p.Accuracy, err = accuracyOf(cm, b.Data, b.Labels, evalOpts); err != nil {
				return p, err
			}
			p.Score = 100 * (base - p.Accuracy)
			p.OK = p.Score <= b.MaxDrop+1e-9
		default:
			if p.Score, err = RelativeError(m, cm, b.Data, evalOpts); err != nil {
				return p, err
			}
			p.OK = p.Score <= b.MaxError*(1+1e-9)
		}
		if b.Metric == nil {
			fmt.Fprintf(log, "%8.4f %11d %7.2fx %10.4g  %v\n", target, p.MACs, p.MACRatio, p.Score, p.OK)
		}
		if p.OK && (best.Report == nil || p.MACs <= best.Report.After.MACs) {
			best.Model, best.Report = cm, rep
		}
		return p, nil
	})
	best.Probes = probes
	if err != nil {
		return nil, err
	}
	if bi < 0 || best.Model == nil {
		fmt.Fprintln(log, "no probe stayed within the bound: the output is the model as it was")
		best.Model, best.Report, err = once(1) // keeps every MAC: the model as it was
		if err != nil {
			return nil, err
		}
	}
	return &best, nil
}

// accuracyOf is the top-1 accuracy of classifier m on the data.
func accuracyOf(m *onnxio.Model, data Data, labels []int, opts ort.Options) (float64, error) {
	r, err := data()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	acc, _, err := ort.Accuracy(m, r, labels, opts)
	return acc, err
}

// RelativeError is the largest relative L2 error ‖a − b‖/‖a‖ over the graph outputs of the
// original model a and the compressed one b on the data, each measured before the Softmax,
// LogSoftmax or Sigmoid it ends with (see analyze.Logits): on the scores the model decides by,
// where every sample's error counts, not only that of the few near a decision boundary.
func RelativeError(a, b *onnxio.Model, data Data, opts ort.Options) (float64, error) {
	ra, err := data()
	if err != nil {
		return 0, err
	}
	defer ra.Close()
	rb, err := data()
	if err != nil {
		return 0, err
	}
	defer rb.Close()
	_, diffs, err := compareTensors(a, b, scored(a, b), ra, rb, opts)
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

// scored is the tensors RelativeError compares: a's analyze.Logits, each replaced by its graph
// output where b does not compute it under the same name.
func scored(a, b *onnxio.Model) []string {
	outs := a.Graph.Outputs()
	var names []string
	for i, t := range analyze.Logits(a.Graph) {
		if t != outs[i] && b.Graph.Producer(t) == nil {
			t = outs[i]
		}
		if !slices.Contains(names, t) {
			names = append(names, t)
		}
	}
	return names
}

// compareTensors is analyze.CompareTensors: the two models' tensors on the same data.
var compareTensors = analyze.CompareTensors
