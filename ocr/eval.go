package ocr

import (
	"fmt"
)

// Run runs the model (a name or path the caller understands) on one float32 input x of shape
// dims (batch first) and returns its first output and that output's shape. Callers plug in
// their runtime (onnxruntime); this package never imports one.
type Run func(model string, x []float32, dims []int64) (out []float32, outDims []int64, err error)

// RecScore is a recogniser's reading of a RecSet. Readings and truths are compared after
// NormalizeSpaces: the recogniser often reads a line's margins as spaces, and PaddleOCR's own
// metric (RecMetric, ignore_space) drops every space.
type RecScore struct {
	Lines         int
	CharsRight    float64 // mean over lines of CharsRight(prediction, truth)
	ExactLines    float64 // fraction of lines read exactly
	CharErrorRate float64 // total edit distance / total truth characters
	Predictions   []Decoded
}

// ClsScore is a direction classifier's reading of a ClsSet.
type ClsScore struct {
	Samples     int
	Accuracy    float64 // fraction whose most probable class is the label
	Predictions []int
}

// DetScore compares a compressed detector with the original on a DetSet.
type DetScore struct {
	Pages, Boxes   int
	OriginalRecall float64   // fraction of ground-truth boxes BoxFound in the original's maps
	Recall         float64   // the same in the compressed model's maps
	F1             float64   // pixel F1 of the compressed model's text pixels (> DetThreshold) against the original's, pooled over all pages
	Pixels         Confusion // the counts behind F1
}

// batches calls f(lo, hi) for [0, n) in slices of at most batch.
func batches(n, batch int, f func(lo, hi int) error) error {
	if batch <= 0 {
		return fmt.Errorf("batch size %d must be positive", batch)
	}
	for lo := 0; lo < n; lo += batch {
		if err := f(lo, min(n, lo+batch)); err != nil {
			return err
		}
	}
	return nil
}

// runBatch runs samples lo..hi-1 of x (c x h x w values each) as one batch and checks that
// the output's shape is batch-first and matches its length.
func runBatch(run Run, model string, x []float32, lo, hi, c, h, w int) ([]float32, []int64, error) {
	per := c * h * w
	if len(x) < hi*per {
		return nil, nil, fmt.Errorf("inputs hold %d values, %d samples of %dx%dx%d need %d", len(x), hi, c, h, w, hi*per)
	}
	dims := []int64{int64(hi - lo), int64(c), int64(h), int64(w)}
	out, od, err := run(model, x[lo*per:hi*per], dims)
	if err != nil {
		return nil, nil, fmt.Errorf("run %s on samples %d..%d: %w", model, lo, hi-1, err)
	}
	size := int64(1)
	for _, d := range od {
		if d < 0 {
			return nil, nil, fmt.Errorf("%s returned shape %v", model, od)
		}
		size *= d
	}
	if len(od) == 0 || od[0] != int64(hi-lo) || size != int64(len(out)) {
		return nil, nil, fmt.Errorf("%s returned %d values of shape %v for a batch of %d", model, len(out), od, hi-lo)
	}
	return out, od, nil
}

// EvalRec runs the recogniser on the set in batches and scores its CTC greedy readings
// (decoded with keys) against the texts. Texts with characters the keys lack are an error.
func EvalRec(run Run, model string, keys *Keys, set *RecSet, batch int) (RecScore, error) {
	for i, t := range set.Texts {
		if m := keys.Missing(t); len(m) > 0 {
			return RecScore{}, fmt.Errorf("line %d %q has characters the keys lack: %q", i, t, string(m))
		}
	}
	sc := RecScore{Lines: set.Len(), Predictions: make([]Decoded, 0, set.Len())}
	err := batches(set.Len(), batch, func(lo, hi int) error {
		out, od, err := runBatch(run, model, set.X, lo, hi, 3, set.Height, set.Width)
		if err != nil {
			return err
		}
		dec, err := CTCGreedy(out, od, keys)
		if err != nil {
			return fmt.Errorf("%s: %w", model, err)
		}
		sc.Predictions = append(sc.Predictions, dec...)
		return nil
	})
	if err != nil {
		return RecScore{}, err
	}
	var right float64
	var exact, dist, chars int
	for i, d := range sc.Predictions {
		p, t := NormalizeSpaces(d.Text), NormalizeSpaces(set.Texts[i])
		right += CharsRight(p, t)
		if p == t {
			exact++
		}
		dist += EditDistance(p, t)
		chars += len([]rune(t))
	}
	if n := sc.Lines; n > 0 {
		sc.CharsRight = right / float64(n)
		sc.ExactLines = float64(exact) / float64(n)
	}
	if chars > 0 {
		sc.CharErrorRate = float64(dist) / float64(chars)
	}
	return sc, nil
}

// EvalCls runs the direction classifier (output N x 2: upright, upside down) on the set in
// batches and scores its most probable class against the labels.
func EvalCls(run Run, model string, set *ClsSet, batch int) (ClsScore, error) {
	sc := ClsScore{Samples: set.Len(), Predictions: make([]int, 0, set.Len())}
	err := batches(set.Len(), batch, func(lo, hi int) error {
		out, od, err := runBatch(run, model, set.X, lo, hi, 3, set.Height, set.Width)
		if err != nil {
			return err
		}
		if len(od) != 2 || od[1] < 2 {
			return fmt.Errorf("%s returned shape %v, want N x 2", model, od)
		}
		k := int(od[1])
		for i := range hi - lo {
			row := out[i*k : (i+1)*k]
			best := 0
			for j, p := range row {
				if p > row[best] {
					best = j
				}
			}
			sc.Predictions = append(sc.Predictions, best)
		}
		return nil
	})
	if err != nil {
		return ClsScore{}, err
	}
	right := 0
	for i, p := range sc.Predictions {
		if p == set.Labels[i] {
			right++
		}
	}
	if sc.Samples > 0 {
		sc.Accuracy = float64(right) / float64(sc.Samples)
	}
	return sc, nil
}

// EvalDet runs the original and the compressed detector (outputs N x 1 x H x W text
// probabilities) on the set in batches: the recall of the ground-truth boxes for each
// (BoxFound at DetThreshold) and the pixel agreement of their thresholded maps. An empty
// compressed runs the original alone and scores it against itself (Recall = OriginalRecall,
// F1 = 1).
func EvalDet(run Run, original, compressed string, set *DetSet, batch int) (DetScore, error) {
	sc := DetScore{Pages: set.Len()}
	var foundO, foundC int
	err := batches(set.Len(), batch, func(lo, hi int) error {
		po, err := detMaps(run, original, set, lo, hi)
		if err != nil {
			return err
		}
		pc := po
		if compressed != "" {
			if pc, err = detMaps(run, compressed, set, lo, hi); err != nil {
				return err
			}
		}
		hw := set.Height * set.Width
		for i := range hi - lo {
			mo, mc := po[i*hw:(i+1)*hw], pc[i*hw:(i+1)*hw]
			for _, b := range set.Boxes[lo+i] {
				if BoxFound(mo, set.Width, set.Height, b, DetThreshold) {
					foundO++
				}
				if BoxFound(mc, set.Width, set.Height, b, DetThreshold) {
					foundC++
				}
			}
			sc.Pixels.Add(Threshold(mo, DetThreshold), Threshold(mc, DetThreshold))
		}
		return nil
	})
	if err != nil {
		return DetScore{}, err
	}
	for _, bs := range set.Boxes {
		sc.Boxes += len(bs)
	}
	if sc.Boxes > 0 {
		sc.OriginalRecall = float64(foundO) / float64(sc.Boxes)
		sc.Recall = float64(foundC) / float64(sc.Boxes)
	}
	sc.F1 = sc.Pixels.F1()
	return sc, nil
}

// detMaps runs a detector on pages lo..hi-1 and checks that it returns one map the size of
// each input.
func detMaps(run Run, model string, set *DetSet, lo, hi int) ([]float32, error) {
	out, od, err := runBatch(run, model, set.X, lo, hi, 3, set.Height, set.Width)
	if err != nil {
		return nil, err
	}
	if len(od) != 4 || od[1] != 1 || od[2] != int64(set.Height) || od[3] != int64(set.Width) {
		return nil, fmt.Errorf("%s returned shape %v, want %d x 1 x %d x %d", model, od, hi-lo, set.Height, set.Width)
	}
	return out, nil
}
