package ocr

import (
	"image"
	"math"
	"strings"
)

// NormalizeSpaces drops leading and trailing spaces and turns each run of spaces into one.
func NormalizeSpaces(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// EditDistance is the Levenshtein distance between a and b over runes (insertions, deletions
// and substitutions each cost 1).
func EditDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			sub := prev[j-1]
			if ra[i-1] != rb[j-1] {
				sub++
			}
			cur[j] = min(sub, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// CharsRight is 1 - EditDistance(pred, truth)/len(truth) in runes, clamped at 0 (a prediction
// much longer than the truth scores 0, not less). An empty truth scores 1 for an empty
// prediction and 0 otherwise.
func CharsRight(pred, truth string) float64 {
	n := len([]rune(truth))
	if n == 0 {
		if pred == "" {
			return 1
		}
		return 0
	}
	return math.Max(0, 1-float64(EditDistance(pred, truth))/float64(n))
}

// DetThreshold is the detector's binarisation threshold (PaddleOCR's det_db_thresh): a pixel
// is text when its probability is above it.
const DetThreshold = 0.3

// Threshold returns prob > t for each pixel of a probability map.
func Threshold(prob []float32, t float32) []bool {
	out := make([]bool, len(prob))
	for i, p := range prob {
		out[i] = p > t
	}
	return out
}

// Confusion counts pixels of a map against a reference map: TP in both, FP only in the map,
// FN only in the reference.
type Confusion struct {
	TP, FP, FN int64
}

// Add counts the pixels of got against ref (same length; extra pixels of the longer are
// ignored).
func (c *Confusion) Add(ref, got []bool) {
	for i := range min(len(ref), len(got)) {
		switch {
		case ref[i] && got[i]:
			c.TP++
		case got[i]:
			c.FP++
		case ref[i]:
			c.FN++
		}
	}
}

// F1 is 2·TP / (2·TP + FP + FN), and 1 when both maps are empty.
func (c Confusion) F1() float64 {
	d := 2*c.TP + c.FP + c.FN
	if d == 0 {
		return 1
	}
	return float64(2*c.TP) / float64(d)
}

// BoxMinCover is the fraction of a box's central band that must be text for BoxFound.
const BoxMinCover = 0.5

// BandCover is the fraction of the central band of box whose probability in the width x
// height map prob (row-major) is above t. The band is the middle quarter of the box's rows
// (those whose centres lie within h/8 of the box's centre line, at least the centre row) and
// its columns inset by min(h/2, w/4) from each end (at least the centre column), for a box of
// w x h pixels: DB detectors mark a shrunk core of each text line (PaddleOCR shrinks by
// area·(1 - 0.4²)/perimeter, about 0.38·h at each side of a long line), so the band is where
// a line that was found is marked whatever the model's exact extent. A box outside the map
// covers 0.
func BandCover(prob []float32, width, height int, box image.Rectangle, t float32) float64 {
	box = box.Intersect(image.Rect(0, 0, width, height))
	if box.Empty() || len(prob) < width*height {
		return 0
	}
	h, w := float64(box.Dy()), float64(box.Dx())
	cy := float64(box.Min.Y) + h/2
	cx := float64(box.Min.X) + w/2
	inset := math.Min(h/2, w/4)
	y0, y1 := span(box.Min.Y, box.Max.Y, cy-h/8, cy+h/8, cy)
	x0, x1 := span(box.Min.X, box.Max.X, float64(box.Min.X)+inset, float64(box.Max.X)-inset, cx)
	on, all := 0, 0
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			all++
			if prob[y*width+x] > t {
				on++
			}
		}
	}
	return float64(on) / float64(all)
}

// span is the half-open range of pixels in [lo, hi) whose centres lie in [a, b], or the pixel
// holding c when there are none.
func span(lo, hi int, a, b, c float64) (int, int) {
	first := max(lo, int(math.Ceil(a-0.5)))
	last := min(hi-1, int(math.Floor(b-0.5)))
	if first > last {
		p := min(max(int(math.Floor(c)), lo), hi-1)
		return p, p + 1
	}
	return first, last + 1
}

// BoxFound reports whether box counts as detected in the map: BandCover >= BoxMinCover at
// threshold t.
func BoxFound(prob []float32, width, height int, box image.Rectangle, t float32) bool {
	return BandCover(prob, width, height, box, t) >= BoxMinCover
}
