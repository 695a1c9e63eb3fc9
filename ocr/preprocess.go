package ocr

import (
	"fmt"
	"image"
	"image/color"
	"math"
)

// Input sizes of PaddleOCR's inference code (tools/infer/predict_rec.py, predict_cls.py,
// predict_det.py, PP-OCRv4 defaults).
const (
	RecHeight    = 48  // recogniser input height, pixels
	RecWidth     = 320 // recogniser input width the lines are padded to, pixels
	ClsHeight    = 48  // direction classifier input height
	ClsWidth     = 192 // direction classifier input width
	DetMultiple  = 32  // detector input sides are multiples of this
	DetLimitSide = 960 // detector inputs are shrunk so that the longer side is at most this
)

// detMean and detStd are the detector's ImageNet normalisation, applied as PaddleOCR does to
// the channels in BGR order (mean[0] to blue): NormalizeImage does not reorder channels.
var (
	detMean = [3]float32{0.485, 0.456, 0.406}
	detStd  = [3]float32{0.229, 0.224, 0.225}
)

// LineInput writes the recogniser's or classifier's input for one text line into dst, a
// 3 x height x width CHW float32 slice, as PaddleOCR's resize_norm_img does: the image is
// resized (bilinear, as cv2.resize INTER_LINEAR with half-pixel centres, rounded to 8 bits)
// to height rows and min(ceil(height·w/h), width) columns, so keeping its aspect ratio unless
// it is wider than width; values become (v/255 - 0.5)/0.5 in [-1, 1]; the columns right of
// the image are 0. Channels are in BGR order, PaddleOCR's (cv2.imread) order, not RGB.
// It returns the number of columns the image fills.
func LineInput(dst []float32, img image.Image, height, width int) (int, error) {
	if height <= 0 || width <= 0 {
		return 0, fmt.Errorf("line input size %dx%d must be positive", height, width)
	}
	if len(dst) != 3*height*width {
		return 0, fmt.Errorf("line input buffer holds %d values, want 3x%dx%d = %d", len(dst), height, width, 3*height*width)
	}
	src, w, h, err := rgbPixels(img)
	if err != nil {
		return 0, err
	}
	ratio := float64(w) / float64(h)
	rw := width
	if c := math.Ceil(float64(height) * ratio); c <= float64(width) {
		rw = max(1, int(c))
	}
	res := resizeBilinear(src, w, h, rw, height)
	plane := height * width
	for c := range 3 {
		ch := dst[c*plane : (c+1)*plane]
		srcC := 2 - c // BGR from RGB
		for y := range height {
			row := ch[y*width : (y+1)*width]
			for x := range rw {
				row[x] = (float32(res[(y*rw+x)*3+srcC])/255 - 0.5) / 0.5
			}
			clear(row[rw:])
		}
	}
	return rw, nil
}

// DetSize is the detector input size PaddleOCR's DetResizeForTest (limit_type "max") gives an
// h x w image: scaled down so that its longer side is at most limitSide, then each side
// rounded (half to even, as Python's round) to a multiple of 32, at least 32.
func DetSize(h, w, limitSide int) (rh, rw int) {
	ratio := 1.0
	if m := max(h, w); m > limitSide {
		ratio = float64(limitSide) / float64(m)
	}
	round32 := func(n int) int {
		n = int(float64(n) * ratio)
		return max(int(math.RoundToEven(float64(n)/DetMultiple))*DetMultiple, DetMultiple)
	}
	return round32(h), round32(w)
}

// PageInput writes the detector's input for one page into dst, a 3 x height x width CHW
// float32 slice: the image resized (bilinear, as LineInput) to height x width (both
// multiples of 32, from DetSize), then ((v/255) - mean)/std with ImageNet's mean (0.485,
// 0.456, 0.406) and std (0.229, 0.224, 0.225), channels in BGR order as in PaddleOCR.
func PageInput(dst []float32, img image.Image, height, width int) error {
	if height <= 0 || width <= 0 || height%DetMultiple != 0 || width%DetMultiple != 0 {
		return fmt.Errorf("detector input size %dx%d must be positive multiples of %d", height, width, DetMultiple)
	}
	if len(dst) != 3*height*width {
		return fmt.Errorf("page input buffer holds %d values, want 3x%dx%d = %d", len(dst), height, width, 3*height*width)
	}
	plane := height * width
	if rgba, ok := img.(*image.RGBA); ok && rgba.Rect == image.Rect(0, 0, width, height) && rgba.Opaque() {
		// The pages of this package: no resize, no conversion.
		for y := range height {
			row := rgba.Pix[y*rgba.Stride : y*rgba.Stride+4*width]
			for c := range 3 {
				out := dst[c*plane+y*width : c*plane+(y+1)*width]
				for x := range out {
					out[x] = (float32(row[4*x+2-c])*float32(1.0/255) - detMean[c]) / detStd[c]
				}
			}
		}
		return nil
	}
	src, w, h, err := rgbPixels(img)
	if err != nil {
		return err
	}
	res := src
	if w != width || h != height {
		res = resizeBilinear(src, w, h, width, height)
	}
	for c := range 3 {
		ch := dst[c*plane : (c+1)*plane]
		srcC := 2 - c
		for i := range ch {
			ch[i] = (float32(res[i*3+srcC])*float32(1.0/255) - detMean[c]) / detStd[c]
		}
	}
	return nil
}

// Rotate180 returns img turned upside down (cv2.rotate ROTATE_180), as an opaque RGBA image
// with its origin at (0, 0).
func Rotate180(img image.Image) *image.RGBA {
	b := img.Bounds()
	out := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := range b.Dy() {
		for x := range b.Dx() {
			c := color.NRGBAModel.Convert(img.At(b.Max.X-1-x, b.Max.Y-1-y)).(color.NRGBA)
			out.Pix[y*out.Stride+4*x+0] = c.R
			out.Pix[y*out.Stride+4*x+1] = c.G
			out.Pix[y*out.Stride+4*x+2] = c.B
			out.Pix[y*out.Stride+4*x+3] = 255
		}
	}
	return out
}

// rgbPixels returns the image's colour channels (not premultiplied, alpha dropped, as
// cv2.imread does) packed as h x w x 3 bytes in R, G, B order.
func rgbPixels(img image.Image) ([]uint8, int, int, error) {
	if img == nil {
		return nil, 0, 0, fmt.Errorf("no image")
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= 0 || h <= 0 {
		return nil, 0, 0, fmt.Errorf("empty image (%dx%d)", w, h)
	}
	if w > 1<<15 || h > 1<<15 || w*h > 1<<26 {
		return nil, 0, 0, fmt.Errorf("image %dx%d too large (at most 32768 pixels a side, 64 Mpixels)", w, h)
	}
	pix := make([]uint8, 3*w*h)
	if rgba, ok := img.(*image.RGBA); ok {
		for y := range h {
			row := rgba.Pix[(y)*rgba.Stride:]
			for x := range w {
				p := row[4*x : 4*x+4]
				if p[3] != 255 {
					c := color.NRGBAModel.Convert(color.RGBA{p[0], p[1], p[2], p[3]}).(color.NRGBA)
					p = []uint8{c.R, c.G, c.B}
				}
				copy(pix[3*(y*w+x):], p[:3])
			}
		}
		return pix, w, h, nil
	}
	for y := range h {
		for x := range w {
			c := color.NRGBAModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
			pix[3*(y*w+x)], pix[3*(y*w+x)+1], pix[3*(y*w+x)+2] = c.R, c.G, c.B
		}
	}
	return pix, w, h, nil
}

// resizeBilinear resizes packed h x w x 3 bytes to dh x dw x 3 as cv2.resize with
// INTER_LINEAR: source coordinate (d + 0.5)·(s/ds) - 0.5, clamped to the edge pixels, results
// rounded to the nearest byte (cv2's 11-bit fixed-point weights can differ by one level).
func resizeBilinear(src []uint8, w, h, dw, dh int) []uint8 {
	type tap struct {
		i0, i1 int
		t      float64
	}
	taps := func(d, s int) []tap {
		scale := float64(s) / float64(d)
		out := make([]tap, d)
		for i := range out {
			f := (float64(i)+0.5)*scale - 0.5
			i0 := int(math.Floor(f))
			t := f - float64(i0)
			if i0 < 0 {
				i0, t = 0, 0
			}
			if i0 >= s-1 {
				i0, t = s-1, 0
			}
			out[i] = tap{i0, min(i0+1, s-1), t}
		}
		return out
	}
	xs, ys := taps(dw, w), taps(dh, h)
	dst := make([]uint8, 3*dw*dh)
	for y, ty := range ys {
		r0, r1 := src[ty.i0*w*3:], src[ty.i1*w*3:]
		for x, tx := range xs {
			for c := range 3 {
				a := float64(r0[tx.i0*3+c])*(1-tx.t) + float64(r0[tx.i1*3+c])*tx.t
				b := float64(r1[tx.i0*3+c])*(1-tx.t) + float64(r1[tx.i1*3+c])*tx.t
				dst[(y*dw+x)*3+c] = clamp8(a*(1-ty.t) + b*ty.t)
			}
		}
	}
	return dst
}
