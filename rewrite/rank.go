package rewrite

import "fmt"

// Rule chooses a rank from eigenvalues in descending order.
type Rule struct {
	// Threshold keeps the eigenvalues ≥ Threshold · the largest (used when Energy is 0).
	Threshold float64
	// Energy, when > 0, keeps the smallest number of eigenvalues whose sum is ≥ Energy · the
	// sum of all.
	Energy float64
}

// DefaultRule keeps eigenvalues ≥ 1e-3 of the largest.
var DefaultRule = Rule{Threshold: 1e-3}

// Check reports a rule whose numbers make no sense.
func (r Rule) Check() error {
	if r.Energy < 0 || r.Energy > 1 {
		return fmt.Errorf("energy %v is not in (0, 1]", r.Energy)
	}
	if r.Energy == 0 && (r.Threshold < 0 || r.Threshold > 1) {
		return fmt.Errorf("threshold %v is not in [0, 1]", r.Threshold)
	}
	return nil
}

func (r Rule) String() string {
	if r.Energy > 0 {
		return fmt.Sprintf("energy %g", r.Energy)
	}
	return fmt.Sprintf("threshold %g", r.Threshold)
}

// Rank returns the number of eigenvalues the rule keeps, at least 1 (and at most len(values)).
// values must be in descending order.
func (r Rule) Rank(values []float64) int {
	if len(values) == 0 {
		return 0
	}
	if values[0] <= 0 { // a constant output: one channel carries it
		return 1
	}
	k := 0
	if r.Energy > 0 {
		total := 0.0
		for _, v := range values {
			total += v
		}
		sum := 0.0
		for k < len(values) && (k == 0 || sum < r.Energy*total) {
			sum += values[k]
			k++
		}
	} else {
		for k < len(values) && values[k] >= r.Threshold*values[0] {
			k++
		}
	}
	return max(k, 1)
}

// Retained returns the fraction of the eigenvalue sum held by the first k values (1 when all
// are zero).
func Retained(values []float64, k int) float64 {
	total, kept := 0.0, 0.0
	for i, v := range values {
		total += v
		if i < k {
			kept += v
		}
	}
	if total == 0 {
		return 1
	}
	return kept / total
}
