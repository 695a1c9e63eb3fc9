package ocr

import (
	"image"
	"math"
	"testing"
)

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"kitten", "sitting", 3},
		{"", "", 0},
		{"", "abc", 3},
		{"abc", "", 3},
		{"flaw", "lawn", 2},
		{"same", "same", 0},
		{"日本語", "日本", 1},
		{"café", "cafe", 1},
		{"ab", "ba", 2},
	} {
		if got := EditDistance(c.a, c.b); got != c.want {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if got := EditDistance(c.b, c.a); got != c.want {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", c.b, c.a, got, c.want)
		}
	}
}

func TestCharsRight(t *testing.T) {
	for _, c := range []struct {
		pred, truth string
		want        float64
	}{
		{"sitting", "kitten", 0.5},       // 3 edits over 6 characters
		{"kitten", "sitting", 1 - 3.0/7}, // over the truth's length
		{"abcdefgh", "ab", 0},            // 6 edits over 2: clamped, not -2
		{"", "", 1},
		{"x", "", 0},
		{"", "abcd", 0},
		{"日本", "日本語", 1 - 1.0/3},
	} {
		if got := CharsRight(c.pred, c.truth); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("CharsRight(%q, %q) = %g, want %g", c.pred, c.truth, got, c.want)
		}
	}
	if got := NormalizeSpaces("  a  b c "); got != "a b c" {
		t.Errorf("NormalizeSpaces = %q", got)
	}
}

func TestF1(t *testing.T) {
	var c Confusion
	c.Add([]bool{true, true, false, false}, []bool{true, false, true, false})
	if c != (Confusion{TP: 1, FP: 1, FN: 1}) || c.F1() != 0.5 {
		t.Errorf("confusion %+v F1 %g, want 1/1/1 and 0.5", c, c.F1())
	}
	var empty Confusion
	empty.Add([]bool{false, false}, []bool{false, false})
	if empty.F1() != 1 {
		t.Errorf("two empty maps: F1 %g, want 1", empty.F1())
	}
	same := Threshold([]float32{0.1, 0.31, 0.3, 0.9}, DetThreshold)
	if want := []bool{false, true, false, true}; !equalBools(same, want) {
		t.Errorf("Threshold = %v, want %v (strictly above 0.3)", same, want)
	}
	var c2 Confusion
	c2.Add(same, same)
	if c2.F1() != 1 {
		t.Errorf("a map against itself: F1 %g", c2.F1())
	}
	var c3 Confusion
	c3.Add([]bool{true, false}, []bool{false, true})
	if c3.F1() != 0 {
		t.Errorf("disjoint maps: F1 %g", c3.F1())
	}
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestBoxFound(t *testing.T) {
	const w, h = 20, 12
	// Box columns 2..17, rows 2..9: 16 x 8. Band: rows whose centres lie within 1 of the
	// centre line y = 6, so rows 5 and 6; columns inset by min(8/2, 16/4) = 4: 6..13. 16 pixels.
	box := image.Rect(2, 2, 18, 10)
	paint := func(x0, x1 int) []float32 {
		m := make([]float32, w*h)
		for y := 5; y <= 6; y++ {
			for x := x0; x < x1; x++ {
				m[y*w+x] = 0.9
			}
		}
		return m
	}
	if got := BandCover(paint(6, 14), w, h, box, DetThreshold); got != 1 {
		t.Errorf("full band: cover %g, want 1", got)
	}
	if got := BandCover(paint(6, 10), w, h, box, DetThreshold); got != 0.5 || !BoxFound(paint(6, 10), w, h, box, DetThreshold) {
		t.Errorf("half band: cover %g, want 0.5 and found", got)
	}
	if got := BandCover(paint(6, 9), w, h, box, DetThreshold); got != 6.0/16 || BoxFound(paint(6, 9), w, h, box, DetThreshold) {
		t.Errorf("3/8 band: cover %g, want 0.375 and not found", got)
	}
	// Text only outside the band (rows 5-6 but columns 2..5 and 14..17) does not count.
	m := paint(2, 6)
	copy(m[5*w+14:5*w+18], []float32{1, 1, 1, 1})
	if BandCover(m, w, h, box, DetThreshold) != 0 {
		t.Error("pixels outside the band counted")
	}
	// A one-pixel box is its own band; a box outside the map is never found.
	one := make([]float32, w*h)
	one[3*w+4] = 1
	if !BoxFound(one, w, h, image.Rect(4, 3, 5, 4), DetThreshold) {
		t.Error("one-pixel box not found")
	}
	if BoxFound(one, w, h, image.Rect(30, 30, 40, 40), DetThreshold) || BoxFound(one, w, h, image.Rectangle{}, DetThreshold) {
		t.Error("box outside the map found")
	}
	if BandCover(one[:5], w, h, box, DetThreshold) != 0 {
		t.Error("short map not refused")
	}
}
