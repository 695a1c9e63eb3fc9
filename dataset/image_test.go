package dataset

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convpca/convpca/testmodels"
)

// python is Debian's interpreter, with python3-numpy and python3-pil.
const python = "/usr/bin/python3"

// needPillow skips (fails under CI) when python3 with numpy and Pillow is missing.
func needPillow(t *testing.T) {
	t.Helper()
	if out, err := exec.Command(python, "-c", "import numpy, PIL").CombinedOutput(); err != nil {
		testmodels.RequireOrSkip(t, fmt.Errorf("python3-numpy and python3-pil are needed: %v %s", err, out))
	}
}

// texture returns a deterministic test pattern: gradients, a disc and noise, per channel.
func texture(w, h int, seed uint32) func(x, y, c int) uint8 {
	return func(x, y, c int) uint8 {
		s := seed*2654435761 + uint32(x)*40503 + uint32(y)*69069 + uint32(c)*1013904223
		s ^= s >> 13
		s *= 0x5bd1e995
		s ^= s >> 15
		v := 255*float64(x)/float64(w)*float64(c+1)/3 + 128*float64(y)/float64(h)
		dx, dy := float64(x)-float64(w)/2, float64(y)-float64(h)/3
		if dx*dx+dy*dy < float64(w*h)/10 {
			v = 255 - v/2
		}
		v += float64(s%41) - 20
		return uint8(math.Max(0, math.Min(255, v)))
	}
}

func writeImage(t *testing.T, path string, img image.Image) {
	t.Helper()
	var b bytes.Buffer
	var err error
	if strings.HasSuffix(path, ".jpg") {
		err = jpeg.Encode(&b, img, &jpeg.Options{Quality: 90})
	} else {
		err = png.Encode(&b, img)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeTestImages writes PNG images of every kind the PNG decoder yields, of odd sizes, larger
// and smaller than the samples, into dir, and one JPEG into jpegDir.
func writeTestImages(t *testing.T, dir, jpegDir string) {
	t.Helper()
	rgb := func(w, h int, seed uint32) *image.RGBA {
		f := texture(w, h, seed)
		m := image.NewRGBA(image.Rect(0, 0, w, h))
		for y := range h {
			for x := range w {
				m.Set(x, y, color.RGBA{f(x, y, 0), f(x, y, 1), f(x, y, 2), 255})
			}
		}
		return m
	}
	writeImage(t, filepath.Join(dir, "a_rgb.png"), rgb(53, 37, 1))
	writeImage(t, filepath.Join(dir, "b_big.png"), rgb(301, 203, 2))
	writeImage(t, filepath.Join(dir, "c_tiny.png"), rgb(5, 3, 3))
	writeImage(t, filepath.Join(dir, "d_tall.png"), rgb(19, 88, 4))
	f := texture(64, 40, 5)
	gray := image.NewGray(image.Rect(0, 0, 64, 40))
	for y := range 40 {
		for x := range 64 {
			gray.SetGray(x, y, color.Gray{f(x, y, 0)})
		}
	}
	writeImage(t, filepath.Join(dir, "e_gray.png"), gray)
	g16 := image.NewGray16(image.Rect(0, 0, 31, 30))
	for y := range 30 {
		for x := range 31 {
			g16.SetGray16(x, y, color.Gray16{uint16(f(x, y, 1))<<8 | uint16(f(x, y, 2))})
		}
	}
	writeImage(t, filepath.Join(dir, "f_gray16.png"), g16)
	na := image.NewNRGBA(image.Rect(0, 0, 45, 45))
	for y := range 45 {
		for x := range 45 {
			na.SetNRGBA(x, y, color.NRGBA{f(x, y, 0), f(x, y, 1), f(x, y, 2), uint8(x * 5)})
		}
	}
	writeImage(t, filepath.Join(dir, "g_alpha.png"), na)
	pal := color.Palette{}
	for i := range 16 {
		pal = append(pal, color.NRGBA{uint8(i * 16), uint8(255 - i*13), uint8(i * i), uint8(255 - i)})
	}
	pm := image.NewPaletted(image.Rect(0, 0, 40, 23), pal)
	for y := range 23 {
		for x := range 40 {
			pm.SetColorIndex(x, y, f(x, y, 0)%16)
		}
	}
	writeImage(t, filepath.Join(dir, "h_palette.png"), pm)
	if jpegDir != "" {
		writeImage(t, filepath.Join(jpegDir, "photo.jpg"), rgb(96, 72, 9))
	}
}

// readNpyF4 reads a float32 .npy file written by numpy: its shape and values.
func readNpyF4(t *testing.T, path string) ([]int, []float32) {
	t.Helper()
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	return append([]int{r.Len()}, r.Shape()...), samplesOf(t, r)
}

// samplesOf reads every sample of r.
func samplesOf(t *testing.T, r Reader) []float32 {
	t.Helper()
	out, err := readAll(r, 3)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// imageCase is one set of preprocessing options and the same as reference arguments.
type imageCase struct {
	name string
	o    ImageOptions
}

func (c imageCase) args() []string {
	o, _ := c.o.Resolve()
	join := func(v []float64) string {
		s := make([]string, len(v))
		for i, x := range v {
			s[i] = fmt.Sprintf("%.17g", x)
		}
		return strings.Join(s, ",")
	}
	return []string{
		"--size", fmt.Sprintf("%dx%d", o.Height, o.Width), "--mode", o.Mode,
		"--crop-ratio", fmt.Sprintf("%.17g", o.CropRatio), "--pad-value", fmt.Sprintf("%.17g", o.PadValue),
		"--scale", fmt.Sprintf("%.17g", o.Scale), "--mean", join(o.Mean), "--std", join(o.Std),
		"--channels", o.Channels, "--layout", o.Layout,
	}
}

var imageCases = []imageCase{
	{"stretch", ImageOptions{Height: 24, Width: 32}},
	{"imagenet crop", ImageOptions{Height: 28, Width: 28, Mode: ResizeCrop, Mean: []float64{0.485, 0.456, 0.406}, Std: []float64{0.229, 0.224, 0.225}}},
	{"crop 0.9 bgr nhwc", ImageOptions{Height: 20, Width: 30, Mode: ResizeCrop, CropRatio: 0.9, Channels: "bgr", Layout: "nhwc", Scale: 1, Mean: []float64{103.94, 116.78, 123.68}}},
	{"paddleocr pad", ImageOptions{Height: 12, Width: 40, Mode: ResizePad, Scale: 0.00392156862745098, Mean: []float64{0.5}, Std: []float64{0.5}}},
	{"pad gray", ImageOptions{Height: 16, Width: 16, Mode: ResizePad, Channels: "gray", PadValue: -1, Mean: []float64{0.5}, Std: []float64{0.25}}},
	{"stretch gray nhwc upscale", ImageOptions{Height: 70, Width: 90, Channels: "gray", Layout: "nhwc"}},
}

// TestImageReference: every PNG kind, through each preprocessing, agrees with the independent
// Pillow + numpy reference (testdata/image_reference.py) to 1e-5.
func TestImageReference(t *testing.T) {
	needPillow(t)
	dir := t.TempDir()
	imgs := filepath.Join(dir, "imgs")
	os.Mkdir(imgs, 0o755)
	writeTestImages(t, imgs, "")
	files, _ := filepath.Glob(filepath.Join(imgs, "*.png"))
	for _, c := range imageCases {
		t.Run(c.name, func(t *testing.T) {
			ref := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".npy")
			args := append(append([]string{"testdata/image_reference.py"}, c.args()...), "--out", ref)
			if out, err := exec.Command(python, append(args, files...)...).CombinedOutput(); err != nil {
				t.Fatalf("reference: %v\n%s", err, out)
			}
			shape, want := readNpyF4(t, ref)
			r, err := OpenWith(imgs, Options{Image: c.o})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if got := append([]int{r.Len()}, r.Shape()...); fmt.Sprint(got) != fmt.Sprint(shape) {
				t.Fatalf("shape %v, reference %v", got, shape)
			}
			got := samplesOf(t, r)
			worst, at := 0.0, 0
			for i := range want {
				if d := math.Abs(float64(got[i]) - float64(want[i])); d > worst || d != d {
					worst, at = d, i
				}
			}
			t.Logf("%d images %v: max |convpca - reference| = %.3g", r.Len(), r.Shape(), worst)
			if !(worst <= 1e-5) {
				per := numel(r.Shape())
				t.Errorf("max difference %.3g at value %d of %s: %v, reference %v", worst, at%per, filepath.Base(files[at/per]), got[at], want[at])
			}
		})
	}
}

// TestJPEGDecoding measures how far convpca's JPEG pixels (Go's decoder, libjpeg's chroma
// upsampling and colour conversion) are from Pillow's (libjpeg) on the same files, before any
// preprocessing, for JPEGs of 4:4:4, 4:2:2 and 4:2:0 chroma written by Pillow and a 4:2:0 one
// written by Go: only the decoders' inverse DCTs differ, by a few levels at most.
func TestJPEGDecoding(t *testing.T) {
	needPillow(t)
	dir := t.TempDir()
	writeTestImages(t, dir, dir)
	src := filepath.Join(dir, "b_big.png")
	files := []string{filepath.Join(dir, "photo.jpg")}
	for _, sub := range []string{"0", "1", "2"} {
		jp := filepath.Join(dir, "pil"+sub+".jpg")
		script := "from PIL import Image; import sys; Image.open(sys.argv[1]).convert('RGB').save(sys.argv[2], quality=90, subsampling=int(sys.argv[3]))"
		if out, err := exec.Command(python, "-c", script, src, jp, sub).CombinedOutput(); err != nil {
			t.Fatalf("Pillow: %v\n%s", err, out)
		}
		files = append(files, jp)
	}
	for _, path := range files {
		ref := filepath.Join(dir, "pixels.npy")
		if out, err := exec.Command(python, "testdata/image_reference.py", "--pixels", "--out", ref, path).CombinedOutput(); err != nil {
			t.Fatalf("reference: %v\n%s", err, out)
		}
		data, _ := os.ReadFile(ref)
		// A float64 .npy: header, then h x w x 3 values.
		vals := data[10+int(binary.LittleEndian.Uint16(data[8:])):]
		img, err := decodeImage(path)
		if err != nil {
			t.Fatal(err)
		}
		b := img.Bounds()
		read := pixelRows(img, false)
		row := make([]float64, 3*b.Dx())
		var worst, sum float64
		n, differ := 0, 0
		for y := range b.Dy() {
			read(y, row)
			for i, v := range row {
				d := math.Abs(v - math.Float64frombits(binary.LittleEndian.Uint64(vals[8*(y*len(row)+i):])))
				if d > 0 {
					differ++
				}
				worst, sum, n = math.Max(worst, d), sum+d, n+1
			}
		}
		ratio := "?"
		if m, ok := img.(*image.YCbCr); ok {
			ratio = m.SubsampleRatio.String()
		}
		t.Logf("%s (%dx%d, %s): max |convpca - Pillow| %.0f levels, mean %.3f, %.1f%% of values differ",
			filepath.Base(path), b.Dx(), b.Dy(), ratio, worst, sum/float64(n), 100*float64(differ)/float64(n))
		if worst > 4 || sum/float64(n) > 0.2 {
			t.Errorf("%s: the decoders differ more than their inverse DCTs should: max %.0f, mean %.3f levels", filepath.Base(path), worst, sum/float64(n))
		}
	}
}

// TestImageGeometry checks the sizes each mode resizes to against worked cases.
func TestImageGeometry(t *testing.T) {
	cases := []struct {
		o    ImageOptions
		h, w int
		want geometry
	}{
		// torchvision Resize(256) + CenterCrop(224) of a 375 x 500 image: 256 x 341, offsets 16, 58.
		{ImageOptions{Height: 224, Width: 224, Mode: ResizeCrop, CropRatio: 0.875}, 375, 500, geometry{256, 341, 16, 58, 224, 224}},
		{ImageOptions{Height: 224, Width: 224, Mode: ResizeCrop, CropRatio: 0.875}, 500, 375, geometry{341, 256, 58, 16, 224, 224}},
		// (341 - 224) / 2 = 58.5 rounds to 58; (257 - 224) / 2 = 16.5 to 16, half to even.
		{ImageOptions{Height: 224, Width: 224, Mode: ResizeCrop, CropRatio: 0.875}, 256, 257, geometry{256, 257, 16, 16, 224, 224}},
		// PaddleOCR: 48 x ceil(48 * 100 / 32) = 48 x 150 of 48 x 320.
		{ImageOptions{Height: 48, Width: 320, Mode: ResizePad}, 32, 100, geometry{48, 150, 0, 0, 48, 150}},
		// Wider than 320/48: the width binds, 320 x ceil(320 * 10 / 200) = 16 rows.
		{ImageOptions{Height: 48, Width: 320, Mode: ResizePad}, 10, 200, geometry{16, 320, 0, 0, 16, 320}},
		{ImageOptions{Height: 48, Width: 320}, 10, 200, geometry{48, 320, 0, 0, 48, 320}},
	}
	for _, c := range cases {
		o, err := c.o.Resolve()
		if err != nil {
			t.Fatal(err)
		}
		if g := o.place(c.h, c.w); g != c.want {
			t.Errorf("%s %dx%d of %dx%d: %+v, want %+v", o.Mode, o.Height, o.Width, c.h, c.w, g, c.want)
		}
	}
}

// TestImageResampling checks the filter: same size copies, upscaling by 2 is bilinear with
// half-pixel centres, and weights sum to 1.
func TestImageResampling(t *testing.T) {
	same := resampling(7, 7, 0, 7)
	for i := range 7 {
		for j, w := range same.weight[i] {
			want := 0.0
			if same.start[i]+j == i {
				want = 1
			}
			if w != want {
				t.Fatalf("same size: pixel %d reads %d with weight %v", i, same.start[i]+j, w)
			}
		}
	}
	up := resampling(2, 4, 0, 4) // centres 0.25, 0.75, 1.25, 1.75 of source pixels 0.5, 1.5
	want := [][]float64{{1}, {0.75, 0.25}, {0.25, 0.75}, {1}}
	for i, ws := range up.weight {
		var nz []float64
		for _, w := range ws {
			if w != 0 {
				nz = append(nz, w)
			}
		}
		if fmt.Sprint(nz) != fmt.Sprint(want[i]) {
			t.Errorf("upscale pixel %d: weights %v, want %v", i, nz, want[i])
		}
	}
	down := resampling(1000, 7, 0, 7)
	for i, ws := range down.weight {
		sum := 0.0
		for _, w := range ws {
			sum += w
		}
		if math.Abs(sum-1) > 1e-12 || len(ws) < 200 {
			t.Errorf("downscale pixel %d: %d taps summing to %v", i, len(ws), sum)
		}
	}
}

// TestImageFolder: files are found recursively in name order, others counted in a warning.
func TestImageFolder(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "b", "c"), 0o755)
	one := image.NewGray(image.Rect(0, 0, 4, 4))
	for i, p := range []string{"b/c/2.png", "a.PNG", "b/1.jpeg", "z.jpg"} {
		for j := range one.Pix {
			one.Pix[j] = uint8(50 * i)
		}
		writeImage(t, filepath.Join(dir, p), one)
	}
	// writeImage picks the encoder from the suffix: the .jpeg one was written as a PNG, which
	// is decoded by its content all the same.
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "b", "labels.csv"), []byte("x"), 0o644)
	var warnings []string
	r, err := OpenWith(dir, Options{Image: ImageOptions{Height: 4, Width: 4, Channels: "gray", Scale: 1}, Warn: func(m string) { warnings = append(warnings, m) }})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := samplesOf(t, r)
	// Sorted paths: a.PNG, b/1.jpeg, b/c/2.png, z.jpg.
	var first []float32
	for i := range 4 {
		first = append(first, got[16*i])
	}
	if fmt.Sprint(first) != "[50 100 0 150]" {
		t.Errorf("first pixels %v, want [50 100 0 150] (a.PNG, b/1.jpeg, b/c/2.png, z.jpg)", first)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "2 files are not .png, .jpg or .jpeg and ignored") {
		t.Errorf("warnings %q", warnings)
	}
}

// TestImageHostile: broken and absurd images give their message, and the header check refuses
// them before anything is decoded.
func TestImageHostile(t *testing.T) {
	dir := t.TempDir()
	p := func(name string, data []byte) string {
		sub := filepath.Join(dir, strings.TrimSuffix(name, filepath.Ext(name)))
		os.Mkdir(sub, 0o755)
		path := filepath.Join(sub, name)
		os.WriteFile(path, data, 0o644)
		return sub
	}
	var good bytes.Buffer
	png.Encode(&good, image.NewGray(image.Rect(0, 0, 8, 8)))
	corrupt := append([]byte(nil), good.Bytes()...)
	corrupt[len(corrupt)-20] ^= 0xff // inside the IDAT chunk: its checksum fails
	cases := []struct{ name, dir, want string }{
		{"zero-byte JPEG", p("empty.jpg", nil), "empty.jpg: the file is empty"},
		{"corrupt PNG", p("corrupt.png", corrupt), "corrupt.png: corrupt image: png: invalid format"},
		{"huge PNG header", p("huge.png", pngHeader(100000, 100000)), "huge.png: png of 100000x100000 pixels is too large"},
		{"PNG header beyond the file", p("big.png", pngHeader(8000, 8000)), "big.png: png of 8000x8000 pixels cannot fit in"},
		{"text named .png", p("text.png", []byte("hello")), "text.png: not a PNG or JPEG image"},
		{"truncated JPEG", p("trunc.jpg", []byte{0xff, 0xd8, 0xff}), "trunc.jpg: not a valid image"},
		{"no images", p("notes.txt", []byte("x")), "holds no .png, .jpg or .jpeg file (1 other file)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := OpenWith(c.dir, Options{Image: ImageOptions{Height: 8, Width: 8}})
			if err == nil {
				_, err = r.Read(make([]float32, 3*64))
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
}

// pngHeader returns a PNG signature and IHDR chunk of an 8-bit RGB image of w x h pixels, and
// nothing else.
func pngHeader(w, h uint32) []byte {
	b := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR")
	b = binary.BigEndian.AppendUint32(b, w)
	b = binary.BigEndian.AppendUint32(b, h)
	b = append(b, 8, 2, 0, 0, 0)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[12:]))
}

// BenchmarkImageJPEG decodes and preprocesses 500 x 375 JPEGs as ImageNet evaluation does
// (crop to 224 x 224, mean and std), 16 per Read.
func BenchmarkImageJPEG(b *testing.B) {
	dir := b.TempDir()
	f := texture(500, 375, 1)
	m := image.NewRGBA(image.Rect(0, 0, 500, 375))
	for y := range 375 {
		for x := range 500 {
			m.Set(x, y, color.RGBA{f(x, y, 0), f(x, y, 1), f(x, y, 2), 255})
		}
	}
	var buf bytes.Buffer
	jpeg.Encode(&buf, m, &jpeg.Options{Quality: 90})
	for i := range 16 {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("%02d.jpg", i)), buf.Bytes(), 0o644)
	}
	o := ImageOptions{Height: 224, Width: 224, Mode: ResizeCrop, Mean: []float64{0.485, 0.456, 0.406}, Std: []float64{0.229, 0.224, 0.225}}
	dst := make([]float32, 16*3*224*224)
	b.ResetTimer()
	for range b.N {
		r, err := OpenWith(dir, Options{Image: o})
		if err != nil {
			b.Fatal(err)
		}
		if n, err := r.Read(dst); n != 16 || err != nil {
			b.Fatal(n, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Seconds())/float64(16*b.N)*1e3, "ms/image")
}
