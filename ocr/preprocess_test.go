package ocr

import (
	"image"
	"image/color"
	"math"
	"testing"
)

func near(a, b float32) bool { return math.Abs(float64(a-b)) < 1e-6 }

// norm is the recogniser's normalisation of an 8-bit value.
func norm(v float64) float32 { return float32((v/255 - 0.5) / 0.5) }

func TestLineInputNoResize(t *testing.T) {
	// A 2 x 4 image at height 2: ratio 2, width ceil(2·2) = 4, so no resampling; the input
	// is 6 wide, so columns 4 and 5 are padding.
	img := image.NewRGBA(image.Rect(0, 0, 4, 2))
	for y := range 2 {
		for x := range 4 {
			img.Set(x, y, color.RGBA{uint8(10 * x), uint8(100 + y), uint8(200 + x + y), 255})
		}
	}
	dst := make([]float32, 3*2*6)
	for i := range dst {
		dst[i] = 99 // padding must be overwritten with zeros
	}
	rw, err := LineInput(dst, img, 2, 6)
	if err != nil || rw != 4 {
		t.Fatalf("LineInput = %d, %v; want 4 columns", rw, err)
	}
	for y := range 2 {
		for x := range 6 {
			want := [3]float32{} // B, G, R
			if x < 4 {
				want = [3]float32{norm(float64(200 + x + y)), norm(float64(100 + y)), norm(float64(10 * x))}
			}
			for c := range 3 {
				if got := dst[c*12+y*6+x]; !near(got, want[c]) {
					t.Errorf("channel %d at (%d, %d) = %g, want %g", c, x, y, got, want[c])
				}
			}
		}
	}
}

func TestLineInputResize(t *testing.T) {
	// A 1 x 2 image (values 0 and 200) to height 2: width ceil(2·2) = 4. cv2's half-pixel
	// mapping gives source x = (x + 0.5)/2 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped at the
	// ends: 0, 0.75·0 + 0.25·200, 0.25·0 + 0.75·200, 200; both rows copy the one source row.
	img := image.NewGray(image.Rect(0, 0, 2, 1))
	img.Pix[1] = 200
	dst := make([]float32, 3*2*8)
	rw, err := LineInput(dst, img, 2, 8)
	if err != nil || rw != 4 {
		t.Fatalf("LineInput = %d, %v; want 4 columns", rw, err)
	}
	want := []float64{0, 50, 150, 200}
	for c := range 3 {
		for y := range 2 {
			for x := range 8 {
				w := float32(0)
				if x < 4 {
					w = norm(want[x])
				}
				if got := dst[c*16+y*8+x]; !near(got, w) {
					t.Errorf("channel %d at (%d, %d) = %g, want %g", c, x, y, got, w)
				}
			}
		}
	}
}

func TestLineInputAspect(t *testing.T) {
	for _, c := range []struct{ h, w, want int }{
		{3, 7, 112},    // ceil(48·7/3)
		{30, 100, 160}, // exactly 160
		{48, 48, 48},
		{10, 1000, 320}, // wider than 320: squeezed to it
		{1000, 1, 1},    // at least one column
	} {
		img := image.NewRGBA(image.Rect(0, 0, c.w, c.h))
		got, err := LineInput(make([]float32, 3*RecHeight*RecWidth), img, RecHeight, RecWidth)
		if err != nil || got != c.want {
			t.Errorf("%dx%d image: %d columns, %v; want %d", c.w, c.h, got, err, c.want)
		}
	}
	if _, err := LineInput(make([]float32, 5), image.NewRGBA(image.Rect(0, 0, 4, 4)), 48, 320); err == nil {
		t.Error("short buffer accepted")
	}
	if _, err := LineInput(make([]float32, 3*48*320), image.NewRGBA(image.Rect(0, 0, 0, 4)), 48, 320); err == nil {
		t.Error("empty image accepted")
	}
	if _, err := LineInput(nil, nil, 48, 320); err == nil {
		t.Error("nil image accepted")
	}
}

func TestPageInput(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 64, 32))
	for i := 0; i < len(img.Pix); i += 4 {
		copy(img.Pix[i:], []uint8{10, 20, 30, 255})
	}
	dst := make([]float32, 3*32*64)
	if err := PageInput(dst, img, 32, 64); err != nil {
		t.Fatal(err)
	}
	// BGR: channel 0 is blue (30) with the first mean and std, as in PaddleOCR.
	want := []float64{(30/255.0 - 0.485) / 0.229, (20/255.0 - 0.456) / 0.224, (10/255.0 - 0.406) / 0.225}
	for c := range 3 {
		for _, i := range []int{0, 1000, 2047} {
			if got := dst[c*2048+i]; math.Abs(float64(got)-want[c]) > 1e-5 {
				t.Errorf("channel %d value %d = %g, want %g", c, i, got, want[c])
			}
		}
	}
	if err := PageInput(dst, img, 30, 64); err == nil {
		t.Error("height 30 (not a multiple of 32) accepted")
	}
}

func TestDetSize(t *testing.T) {
	for _, c := range []struct{ h, w, rh, rw int }{
		{640, 640, 640, 640},
		{1000, 500, 960, 480}, // ratio 0.96
		{50, 700, 64, 704},    // 50/32 = 1.56 -> 2; 700/32 = 21.9 -> 22
		{80, 48, 64, 64},      // 2.5 and 1.5 round half to even (Python's round): 2 and 2
		{10, 10, 32, 32},      // at least 32
	} {
		if rh, rw := DetSize(c.h, c.w, DetLimitSide); rh != c.rh || rw != c.rw {
			t.Errorf("DetSize(%d, %d) = %d, %d; want %d, %d", c.h, c.w, rh, rw, c.rh, c.rw)
		}
	}
}

func TestRotate180(t *testing.T) {
	img := image.NewRGBA(image.Rect(5, 5, 8, 6)) // 3 x 1, offset origin
	img.Set(5, 5, color.RGBA{1, 2, 3, 255})
	img.Set(7, 5, color.RGBA{7, 8, 9, 255})
	r := Rotate180(img)
	if r.Bounds() != image.Rect(0, 0, 3, 1) {
		t.Fatalf("bounds %v", r.Bounds())
	}
	if got := r.RGBAAt(0, 0); got != (color.RGBA{7, 8, 9, 255}) {
		t.Errorf("first pixel %v, want the last one", got)
	}
	if got := r.RGBAAt(2, 0); got != (color.RGBA{1, 2, 3, 255}) {
		t.Errorf("last pixel %v, want the first one", got)
	}
}

func TestPageInputPaths(t *testing.T) {
	// The direct path for opaque RGBA pages and the general one (here through NRGBA) agree.
	rgba := image.NewRGBA(image.Rect(0, 0, 64, 32))
	nrgba := image.NewNRGBA(rgba.Rect)
	for i := range rgba.Pix {
		v := uint8(i * 37 % 251)
		if i%4 == 3 {
			v = 255
		}
		rgba.Pix[i], nrgba.Pix[i] = v, v
	}
	a, b := make([]float32, 3*32*64), make([]float32, 3*32*64)
	if err := PageInput(a, rgba, 32, 64); err != nil {
		t.Fatal(err)
	}
	if err := PageInput(b, nrgba, 32, 64); err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("value %d: %g direct, %g general", i, a[i], b[i])
		}
	}
}
