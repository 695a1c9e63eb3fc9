package rewrite

import (
	"fmt"
	"math"
)

// Probe is one trial of Search: a MACs target, what the compressed model reached, and its
// measured quality.
type Probe struct {
	Target   float64 `json:"target"`
	MACs     int64   `json:"macs"`
	MACRatio float64 `json:"mac_ratio"`
	// Score is the measure the bound applies to: the top-1 accuracy drop in points, or the
	// relative L2 error of the outputs.
	Score    float64 `json:"score"`
	Accuracy float64 `json:"accuracy,omitempty"`
	OK       bool    `json:"ok"`
	Note     string  `json:"note,omitempty"` // why a probe has no score
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
