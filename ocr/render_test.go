package ocr

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/convpca/convpca/testmodels"
)

var (
	testRendererOnce sync.Once
	testRendererVal  *Renderer
	testRendererErr  error
)

// testRenderer draws with the system's fonts; tests that need it skip without them (and fail
// under CI).
func testRenderer(t *testing.T) *Renderer {
	t.Helper()
	testRendererOnce.Do(func() {
		paths, err := FindFonts()
		if err != nil {
			testRendererErr = err
			return
		}
		fonts, err := LoadFonts(paths)
		if err != nil {
			testRendererErr = err
			return
		}
		testRendererVal, testRendererErr = NewRenderer(fonts)
	})
	testmodels.RequireOrSkip(t, testRendererErr)
	return testRendererVal
}

func TestRandomText(t *testing.T) {
	for seed := range uint64(2000) {
		rng := rand.New(rand.NewPCG(seed, 1))
		lo := 1 + int(seed%10)
		hi := lo + int(seed%37)
		s := RandomText(rng, lo, hi)
		if len(s) < lo || len(s) > hi {
			t.Fatalf("seed %d: %q has %d characters, want %d..%d", seed, s, len(s), lo, hi)
		}
		if strings.TrimSpace(s) != s || strings.Contains(s, "  ") {
			t.Fatalf("seed %d: %q has outer or double spaces", seed, s)
		}
		for _, r := range s {
			if r < ' ' || r > '~' {
				t.Fatalf("seed %d: %q has %q, not printable ASCII", seed, s, r)
			}
		}
	}
}

func TestRandomLineDeterministic(t *testing.T) {
	r := testRenderer(t)
	a, err := r.RandomLine(42, DefaultLineOptions)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := r.RandomLine(42, DefaultLineOptions)
	c, _ := r.RandomLine(43, DefaultLineOptions)
	if a.Text != b.Text || a.Image.Bounds() != b.Image.Bounds() || !bytes.Equal(a.Image.Pix, b.Image.Pix) {
		t.Error("the same seed gave different lines")
	}
	if a.Text == c.Text && bytes.Equal(a.Image.Pix, c.Image.Pix) {
		t.Error("seeds 42 and 43 gave the same line")
	}
	for i := 3; i < len(a.Image.Pix); i += 4 {
		if a.Image.Pix[i] != 255 {
			t.Fatal("line image not opaque")
		}
	}
}

func TestRenderLineRefuses(t *testing.T) {
	r := testRenderer(t)
	ok := Style{Size: 20, PadX: 0.2, PadY: 0.1}
	for name, st := range map[string]Style{
		"font index": {Font: len(r.Fonts()), Size: 20},
		"size 0":     {Size: 0},
		"size NaN":   {Size: math.NaN()},
		"angle":      {Size: 20, Angle: 90},
		"margin":     {Size: 20, PadX: -1},
	} {
		if _, err := r.RenderLine("abc", st, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := r.RenderLine("   ", ok, nil); err == nil {
		t.Error("text without ink accepted")
	}
	if img, err := r.RenderLine("Hello", ok, nil); err != nil || img.Bounds().Dx() < 20 {
		t.Errorf("RenderLine: %v", err)
	}
}

func TestRandomPage(t *testing.T) {
	r := testRenderer(t)
	p, err := r.RandomPage(7, 320, 256)
	if err != nil {
		t.Fatal(err)
	}
	q, _ := r.RandomPage(7, 320, 256)
	if !bytes.Equal(p.Image.Pix, q.Image.Pix) || len(p.Boxes) != len(q.Boxes) {
		t.Fatal("the same seed gave different pages")
	}
	if p.Image.Bounds().Dx() != 320 || p.Image.Bounds().Dy() != 256 || len(p.Boxes) < 2 || len(p.Boxes) != len(p.Texts) {
		t.Fatalf("page %v with %d boxes and %d texts", p.Image.Bounds(), len(p.Boxes), len(p.Texts))
	}
	for i, b := range p.Boxes {
		if b.Empty() || !b.In(p.Image.Bounds()) {
			t.Errorf("box %d %v empty or outside the page", i, b)
		}
		if n := len(p.Texts[i]); n < 1 || n > 40 {
			t.Errorf("box %d text %q", i, p.Texts[i])
		}
		for j := range i {
			if b.Overlaps(p.Boxes[j]) {
				t.Errorf("boxes %d %v and %d %v overlap", i, b, j, p.Boxes[j])
			}
		}
	}
	if _, err := r.RandomPage(1, 10, 10); err == nil {
		t.Error("10x10 page accepted")
	}
}
