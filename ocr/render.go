package ocr

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"math"
	"math/rand/v2"

	"golang.org/x/image/font"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
)

// Style is how one text line is drawn.
type Style struct {
	Font   int        // index into the Renderer's fonts
	Size   float64    // font size in pixels per em (points at 72 dpi)
	FG, BG color.RGBA // text and background colours, opaque
	Angle  float64    // rotation in degrees, counter-clockwise, about the line's centre
	Noise  float64    // standard deviation of Gaussian noise added to each channel, 8-bit levels
	PadX   float64    // margin left and right of the ink, in ems
	PadY   float64    // margin above the font's ascent and below its descent, in ems
}

// LineOptions bound the random lines of RandomLine.
type LineOptions struct {
	MinChars, MaxChars int     // text length in characters, inclusive
	MinSize, MaxSize   float64 // font size in pixels per em
	MaxAngle           float64 // largest rotation in degrees, either way
	MaxNoise           float64 // largest noise standard deviation, 8-bit levels
}

// DefaultLineOptions are the recogniser's and classifier's lines: 3 to 24 characters, 18 to
// 44 pixel fonts, up to 2 degrees of rotation and noise of standard deviation up to 8 levels.
// Longer lines do not fit the fixed 48 x 320 input: squeezed into 320 columns (the
// recogniser emits one step per 8, 40 in all) the original PP-OCRv4 recogniser read 99% of
// the characters of 25-29 character lines, 83% at 30-34, 52% at 35-39 and 18% at 40.
var DefaultLineOptions = LineOptions{MinChars: 3, MaxChars: 24, MinSize: 18, MaxSize: 44, MaxAngle: 2, MaxNoise: 8}

// Renderer draws text lines and pages with a fixed list of fonts. It is safe for concurrent use.
type Renderer struct {
	fonts []*Font
}

// NewRenderer returns a renderer drawing with the fonts, in that order (style indices refer
// to it).
func NewRenderer(fonts []*Font) (*Renderer, error) {
	if len(fonts) == 0 {
		return nil, errors.New("renderer needs at least one font")
	}
	return &Renderer{fonts: fonts}, nil
}

// Fonts returns the renderer's fonts.
func (r *Renderer) Fonts() []*Font { return r.fonts }

// Line is a rendered text line.
type Line struct {
	Text  string
	Style Style
	Image *image.RGBA // opaque; its size follows from the text, style and rotation
}

// RandomLine draws random text with a random style, both from seed alone: the same seed,
// options and fonts give the same pixels.
func (r *Renderer) RandomLine(seed uint64, opt LineOptions) (Line, error) {
	rng := rand.New(rand.NewPCG(seed, 0x6c696e65))
	text := RandomText(rng, opt.MinChars, opt.MaxChars)
	st := r.randomStyle(rng, opt)
	st.Font = r.coveringFont(text, st.Font)
	img, err := r.RenderLine(text, st, rng)
	if err != nil {
		return Line{}, err
	}
	return Line{Text: text, Style: st, Image: img}, nil
}

// coveringFont is the first font from i on (cyclically) that has every glyph of text, or i.
func (r *Renderer) coveringFont(text string, i int) int {
	for k := range r.fonts {
		if j := (i + k) % len(r.fonts); r.fonts[j].Covers(text) {
			return j
		}
	}
	return i
}

// randomStyle picks a font, size, colours (dark on light four times in five, else light on
// dark, each tinted), rotation, noise and margins.
func (r *Renderer) randomStyle(rng *rand.Rand, opt LineOptions) Style {
	fg, bg := randomColours(rng)
	return Style{
		Font:  rng.IntN(len(r.fonts)),
		Size:  opt.MinSize + rng.Float64()*(opt.MaxSize-opt.MinSize),
		FG:    fg,
		BG:    bg,
		Angle: (2*rng.Float64() - 1) * opt.MaxAngle,
		Noise: rng.Float64() * opt.MaxNoise,
		PadX:  0.05 + 0.3*rng.Float64(),
		PadY:  0.03 + 0.2*rng.Float64(),
	}
}

// randomColours returns text and background colours at least about 100 levels apart.
func randomColours(rng *rand.Rand) (fg, bg color.RGBA) {
	light := 185 + rng.IntN(71) // 185..255
	dark := rng.IntN(81)        // 0..80
	if rng.IntN(5) == 0 {
		return tint(rng, light, 15), tint(rng, dark, 15)
	}
	return tint(rng, dark, 25), tint(rng, light, 25)
}

func tint(rng *rand.Rand, level, spread int) color.RGBA {
	ch := func() uint8 { return clamp8(float64(level + rng.IntN(2*spread+1) - spread)) }
	return color.RGBA{R: ch(), G: ch(), B: ch(), A: 255}
}

// RenderLine draws text in the style: the ink, spanning horizontally, and the font's ascent to
// descent vertically, rotated by st.Angle on a canvas grown to hold it, with st.PadX and
// st.PadY ems of margin, then noise drawn from rng (nil: none).
func (r *Renderer) RenderLine(text string, st Style, rng *rand.Rand) (*image.RGBA, error) {
	if st.Font < 0 || st.Font >= len(r.fonts) {
		return nil, fmt.Errorf("font index %d out of range (have %d fonts)", st.Font, len(r.fonts))
	}
	if !(st.Size >= 4 && st.Size <= 512) {
		return nil, fmt.Errorf("font size %g pixels out of range [4, 512]", st.Size)
	}
	if !(math.Abs(st.Angle) <= 45) || !(st.PadX >= 0 && st.PadY >= 0 && st.PadX <= 10 && st.PadY <= 10) || !(st.Noise >= 0) {
		return nil, fmt.Errorf("bad style: angle %g, margins %g x %g ems, noise %g", st.Angle, st.PadX, st.PadY, st.Noise)
	}
	tm, err := r.textMask(text, st.Font, st.Size)
	if err != nil {
		return nil, err
	}
	if tm.ink.Empty() {
		return nil, fmt.Errorf("text %q draws no ink", text)
	}
	content := image.Rect(tm.ink.Min.X, min(tm.ink.Min.Y, tm.layout.Min.Y), tm.ink.Max.X, max(tm.ink.Max.Y, tm.layout.Max.Y))
	a := st.Angle * math.Pi / 180
	sin, cos := math.Sin(a), math.Cos(a)
	cw, ch := float64(content.Dx()), float64(content.Dy())
	rw := cw*cos + ch*math.Abs(sin)
	rh := cw*math.Abs(sin) + ch*cos
	px, py := math.Round(st.PadX*st.Size), math.Round(st.PadY*st.Size)
	w, h := int(math.Ceil(rw+2*px)), int(math.Ceil(rh+2*py))
	// Inverse rotation of each output pixel centre into the mask, about both centres.
	ocx, ocy := float64(w)/2, float64(h)/2
	mcx, mcy := float64(content.Min.X)+cw/2, float64(content.Min.Y)+ch/2
	cov := make([]float64, w*h)
	for y := range h {
		for x := range w {
			u, v := float64(x)+0.5-ocx, float64(y)+0.5-ocy
			// Image y points down: a counter-clockwise turn on screen maps (u, v) back by
			// (u cos - v sin, u sin + v cos).
			sx := u*cos - v*sin + mcx
			sy := u*sin + v*cos + mcy
			cov[y*w+x] = sampleAlpha(tm.mask, sx, sy)
		}
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i, c := range cov {
		blend(img.Pix[4*i:4*i+4], st.BG, st.FG, c)
	}
	if rng != nil && st.Noise > 0 {
		addNoise(img, st.Noise, rng)
	}
	return img, nil
}

// textMask is text drawn as coverage: the mask, the layout box (pen start to advance,
// ascent to descent) and the ink's bounds, all in mask coordinates.
type textMask struct {
	mask        *image.Alpha
	layout, ink image.Rectangle
}

func (r *Renderer) textMask(text string, fontIndex int, size float64) (textMask, error) {
	face, err := opentype.NewFace(r.fonts[fontIndex].font, &opentype.FaceOptions{Size: size, DPI: 72, Hinting: font.HintingNone})
	if err != nil {
		return textMask{}, fmt.Errorf("font %s at %g pixels: %w", r.fonts[fontIndex].Path, size, err)
	}
	defer face.Close()
	m := face.Metrics()
	ascent, descent := m.Ascent.Ceil(), m.Descent.Ceil()
	adv := font.MeasureString(face, text).Ceil()
	ext := int(size/2) + 2 // room for glyphs that overhang the layout box (italics, accents)
	mask := image.NewAlpha(image.Rect(0, 0, adv+2*ext, ascent+descent+2*ext))
	d := font.Drawer{Dst: mask, Src: image.Opaque, Face: face, Dot: fixed.P(ext, ext+ascent)}
	d.DrawString(text)
	return textMask{mask: mask, layout: image.Rect(ext, ext, ext+adv, ext+ascent+descent), ink: inkBounds(mask)}, nil
}

// inkThreshold is the coverage (of 255) from which a pixel counts as ink in boxes.
const inkThreshold = 64

// inkBounds is the smallest rectangle holding every pixel of coverage >= inkThreshold.
func inkBounds(m *image.Alpha) image.Rectangle {
	b := m.Bounds()
	x0, y0, x1, y1 := b.Max.X, b.Max.Y, b.Min.X, b.Min.Y
	for y := b.Min.Y; y < b.Max.Y; y++ {
		row := m.Pix[(y-b.Min.Y)*m.Stride:]
		for x := b.Min.X; x < b.Max.X; x++ {
			if row[x-b.Min.X] >= inkThreshold {
				x0, x1 = min(x0, x), max(x1, x+1)
				y0, y1 = min(y0, y), max(y1, y+1)
			}
		}
	}
	if x0 >= x1 {
		return image.Rectangle{}
	}
	return image.Rect(x0, y0, x1, y1)
}

// sampleAlpha is the bilinear coverage in [0, 1] at (x, y), pixel centres at half-integers,
// zero outside the mask.
func sampleAlpha(m *image.Alpha, x, y float64) float64 {
	x, y = x-0.5, y-0.5
	x0, y0 := math.Floor(x), math.Floor(y)
	tx, ty := x-x0, y-y0
	ix, iy := int(x0), int(y0)
	at := func(i, j int) float64 {
		if i < 0 || j < 0 || i >= m.Rect.Dx() || j >= m.Rect.Dy() {
			return 0
		}
		return float64(m.Pix[j*m.Stride+i]) / 255
	}
	return (at(ix, iy)*(1-tx)+at(ix+1, iy)*tx)*(1-ty) + (at(ix, iy+1)*(1-tx)+at(ix+1, iy+1)*tx)*ty
}

// blend writes bg + (fg - bg)·c into an RGBA pixel, opaque.
func blend(px []uint8, bg, fg color.RGBA, c float64) {
	px[0] = clamp8(float64(bg.R) + (float64(fg.R)-float64(bg.R))*c)
	px[1] = clamp8(float64(bg.G) + (float64(fg.G)-float64(bg.G))*c)
	px[2] = clamp8(float64(bg.B) + (float64(fg.B)-float64(bg.B))*c)
	px[3] = 255
}

func clamp8(v float64) uint8 {
	v = math.Round(v)
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}
