package ocr

import (
	"image"
	"math"
	"math/rand/v2"
)

// gaussTable holds the quantiles of the standard normal distribution at (i + 0.5)/4096,
// i = 0..4095: a uniform 12-bit index into it is a standard normal sample quantised to 4096
// levels (tails cut at ±3.7), plenty for pixel noise and five times cheaper than NormFloat64
// (five samples per 64 random bits).
var gaussTable = func() (t [4096]float32) {
	for i := range t {
		p := (float64(i) + 0.5) / float64(len(t))
		t[i] = float32(math.Sqrt2 * math.Erfinv(2*p-1))
	}
	return t
}()

// addNoise adds independent Gaussian noise of standard deviation sigma (8-bit levels) to
// every colour channel, rounding and clamping to [0, 255].
func addNoise(img *image.RGBA, sigma float64, rng *rand.Rand) {
	s := float32(sigma)
	var bits uint64
	left := 0
	b := img.Bounds()
	for y := 0; y < b.Dy(); y++ {
		row := img.Pix[y*img.Stride : y*img.Stride+4*b.Dx()]
		for i := 0; i < len(row); i += 4 {
			for c := range 3 {
				if left == 0 {
					bits, left = rng.Uint64(), 5
				}
				g := gaussTable[bits&4095]
				bits >>= 12
				left--
				v := float32(row[i+c]) + s*g + 0.5
				switch {
				case v < 0:
					row[i+c] = 0
				case v >= 255:
					row[i+c] = 255
				default:
					row[i+c] = uint8(v)
				}
			}
		}
	}
}
