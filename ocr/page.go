package ocr

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"math/rand/v2"
)

// Page is a rendered page for the detector with its ground truth.
type Page struct {
	Image *image.RGBA       // opaque, the size asked for
	Boxes []image.Rectangle // each line's ink bounds (coverage >= 64/255), in page pixels
	Texts []string          // each line's text, parallel to Boxes
}

// RandomPage draws a page of width x height pixels from seed alone: a flat background (light
// six times in seven), then rows of unrotated lines of 3 to 40 characters (fewer where a line
// was shortened to fit its row) from top to bottom, each row at its own font, size (height/45
// to height/16 pixels per em, at least 10) and colour, at a random indent, sometimes followed
// by a second line in the same row, with gaps of 0.2 to 1.4 ems between rows, and Gaussian
// noise of standard deviation up to 6 levels. Lines never overlap and stay inside a margin.
func (r *Renderer) RandomPage(seed uint64, width, height int) (Page, error) {
	if width < 64 || height < 64 || width > 8192 || height > 8192 {
		return Page{}, fmt.Errorf("page size %dx%d out of range [64, 8192]", width, height)
	}
	rng := rand.New(rand.NewPCG(seed, 0x70616765))
	pageFG, pageBG := randomColours(rng)
	if light := rng.IntN(7) != 0; (pageBG.R >= 128) != light {
		pageBG = pageFG
	}
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	for i := 0; i < len(img.Pix); i += 4 {
		copy(img.Pix[i:i+4], []uint8{pageBG.R, pageBG.G, pageBG.B, 255})
	}
	var page Page
	page.Image = img
	minSize := max(10, float64(height)/45)
	maxSize := max(minSize, float64(height)/16)
	margin := 4 + rng.IntN(max(1, width/30))
	y := margin + rng.IntN(max(1, height/20))
	for {
		size := minSize + rng.Float64()*(maxSize-minSize)
		fontIndex := rng.IntN(len(r.fonts))
		fg := contrasting(rng, pageBG)
		avail := width - 2*margin
		tm, text, err := r.fittingLine(rng, fontIndex, size, avail)
		if err != nil {
			return Page{}, err
		}
		top := min(tm.ink.Min.Y, tm.layout.Min.Y)
		bottom := max(tm.ink.Max.Y, tm.layout.Max.Y)
		if y+(bottom-top) > height-margin {
			break
		}
		x := margin + rng.IntN(avail-tm.ink.Dx()+1)
		page.add(tm, text, x, y-top, fg)
		// A second line in the same row when at least 2 ems plus 4 characters are left.
		gap := int(2 * size)
		if rest := width - margin - (x + tm.ink.Dx()) - gap; rest > int(2.5*size) && rng.IntN(5) < 2 {
			tm2, text2, err := r.fittingLine(rng, fontIndex, size, rest)
			if err != nil {
				return Page{}, err
			}
			x2 := x + tm.ink.Dx() + gap + rng.IntN(rest-tm2.ink.Dx()+1)
			page.add(tm2, text2, x2, y-top, fg)
		}
		y += bottom - top + int(math.Round(size*(0.2+1.2*rng.Float64())))
	}
	if len(page.Boxes) == 0 {
		return Page{}, fmt.Errorf("page %dx%d too small for a line", width, height)
	}
	sigma := 6 * rng.Float64()
	addNoise(img, sigma, rng)
	return page, nil
}

// fittingLine draws random text of 3 to 40 characters whose ink is at most avail pixels wide,
// shortening it word by word, then character by character.
func (r *Renderer) fittingLine(rng *rand.Rand, fontIndex int, size float64, avail int) (textMask, string, error) {
	maxChars := max(3, min(40, int(float64(avail)/(0.45*size))))
	text := RandomText(rng, 3, maxChars)
	fi := r.coveringFont(text, fontIndex)
	for {
		tm, err := r.textMask(text, fi, size)
		if err != nil {
			return textMask{}, "", err
		}
		if !tm.ink.Empty() && tm.ink.Dx() <= avail {
			return tm, text, nil
		}
		if len(text) <= 1 {
			return textMask{}, "", fmt.Errorf("no text fits in %d pixels at %g pixels per em", avail, size)
		}
		// Drop a word when the text is more than 1.3 times too wide, else one character.
		cut := len(text) - 1
		if float64(tm.ink.Dx()) > 1.3*float64(avail) {
			for cut > 0 && text[cut] != ' ' {
				cut--
			}
			if cut == 0 {
				cut = len(text) - 1
			}
		}
		text = trimSpaces(text[:cut])
	}
}

func trimSpaces(s string) string {
	for len(s) > 0 && s[len(s)-1] == ' ' {
		s = s[:len(s)-1]
	}
	return s
}

// add blends the mask's content (ink columns, ascent to descent rows) in fg with its ink's
// left edge at page column x and mask row 0 at page row y0, and records the ink box.
func (p *Page) add(tm textMask, text string, x, y0 int, fg color.RGBA) {
	dx := x - tm.ink.Min.X
	b := p.Image.Bounds()
	mb := tm.mask.Bounds()
	for my := mb.Min.Y; my < mb.Max.Y; my++ {
		py := my + y0
		if py < 0 || py >= b.Dy() {
			continue
		}
		for mx := tm.ink.Min.X; mx < tm.ink.Max.X; mx++ {
			px := mx + dx
			c := tm.mask.Pix[my*tm.mask.Stride+mx]
			if c == 0 || px < 0 || px >= b.Dx() {
				continue
			}
			pix := p.Image.Pix[py*p.Image.Stride+4*px:]
			bg := color.RGBA{R: pix[0], G: pix[1], B: pix[2], A: 255}
			blend(pix, bg, fg, float64(c)/255)
		}
	}
	p.Boxes = append(p.Boxes, tm.ink.Add(image.Pt(dx, y0)).Intersect(b))
	p.Texts = append(p.Texts, text)
}

// contrasting is a tinted colour at least about 110 levels from bg's red channel.
func contrasting(rng *rand.Rand, bg color.RGBA) color.RGBA {
	if bg.R >= 128 {
		return tint(rng, rng.IntN(max(1, int(bg.R)-134)), 20)
	}
	return tint(rng, min(255, int(bg.R)+110+rng.IntN(max(1, 255-int(bg.R)-110+1))), 15)
}
