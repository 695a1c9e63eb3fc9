package compress

import (
	"io"
	"strings"
	"testing"

	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/rewrite"
)

// TestSearchMetric: the user's metric bounds the search, higher or lower being better; every
// probe carries its metric, and a failing metric stops the search.
func TestSearchMetric(t *testing.T) {
	for _, lower := range []bool{false, true} {
		orig := &onnxio.Model{}
		targets := map[*onnxio.Model]float64{orig: 1}
		once := func(target float64) (*onnxio.Model, *rewrite.Report, error) {
			m := &onnxio.Model{}
			targets[m] = target
			return m, &rewrite.Report{Before: rewrite.Cost{MACs: 1000}, After: rewrite.Cost{MACs: int64(1000 * target)}}, nil
		}
		// An error rate of 0.01/target (0.01 for the original), or 1 minus it: within a drop
		// of 0.04 for targets >= 0.2.
		metric := func(m *onnxio.Model) (float64, error) {
			e := 0.01 / targets[m]
			if lower {
				return e, nil
			}
			return 1 - e, nil
		}
		var log strings.Builder
		opts := Options{Bound: Bound{MaxDrop: 0.04, Metric: metric, LowerBetter: lower, Steps: 12, LowestMACs: 0.02}}
		res, err := search(orig, once, opts, &log)
		if err != nil {
			t.Fatal(err)
		}
		best := targets[res.Model]
		if best < 0.2 || best > 0.21 {
			t.Errorf("lower %v: best target %v, want just above 0.2\n%s", lower, best, log.String())
		}
		for _, p := range res.Probes {
			if p.Metric == nil || p.OK != (p.Target >= 0.2-1e-9) {
				t.Errorf("lower %v: probe %+v (metric %v)", lower, p, p.Metric)
			}
		}
		if !strings.Contains(log.String(), "original model: metric") || !strings.Contains(log.String(), "drop") {
			t.Errorf("log:\n%s", log.String())
		}
	}
	// A metric that fails on a candidate ends the search with its error.
	calls := 0
	failing := func(*onnxio.Model) (float64, error) {
		if calls++; calls > 1 {
			return 0, io.ErrUnexpectedEOF
		}
		return 1, nil
	}
	once := func(target float64) (*onnxio.Model, *rewrite.Report, error) {
		return &onnxio.Model{}, &rewrite.Report{Before: rewrite.Cost{MACs: 10}, After: rewrite.Cost{MACs: 5}}, nil
	}
	_, err := search(&onnxio.Model{}, once, Options{Bound: Bound{MaxDrop: 1, Metric: failing, Steps: 3, LowestMACs: 0.1}}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "probe at target 0.1: unexpected EOF") {
		t.Errorf("failing metric: %v", err)
	}
}
