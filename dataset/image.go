package dataset

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // registers the JPEG decoder
	_ "image/png"  // registers the PNG decoder
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/convpca/convpca/onnxio"
)

// Image preprocessing. An image becomes one sample in four steps, all in float64 until the
// final float32:
//
//  1. Pixels: the decoded image's red, green and blue values on a 0-255 scale (16-bit images
//     divided by 257; alpha dropped without compositing, as Pillow's convert("RGB") does), or
//     its gray value (gray images as they are; colour images as the ITU-R 601-2 luma
//     0.299 R + 0.587 G + 0.114 B, unrounded). Colour JPEGs are decoded by Go's image/jpeg
//     and converted to RGB as libjpeg (hence Pillow, hence torchvision) does by default
//     (libjpegRows); the two decoders' inverse DCTs still differ by a level or two.
//  2. Geometry (ImageOptions.Mode), from the image's h x w to the sample's H x W:
//     stretch resizes to H x W; crop resizes so that the image covers floor(H/r) x floor(W/r)
//     (r the crop ratio; the side that binds gets exactly that size, the other
//     int(size·long/short), as torchvision's Resize(int) does) and cuts the centred H x W,
//     offsets round((size − H)/2) half to even as torchvision's CenterCrop; pad resizes to
//     H x min(W, ceil(H·w/h)) as PaddleOCR's recogniser does (or, when the width binds, to
//     min(H, ceil(W·h/w)) x W), places it top-left and fills the rest with PadValue.
//  3. Resampling: a separable triangle (bilinear) filter whose support widens with the
//     downscaling factor, Pillow's BILINEAR convention (antialiased): output pixel i of a
//     resize of n pixels to m has centre c = (i + 0.5)·n/m, support s = max(n/m, 1), source
//     pixels j in [int(c − s + 0.5), int(c + s + 0.5)) clipped to [0, n), weights
//     max(0, 1 − |(j − c + 0.5)/max(n/m, 1)|) normalised to sum 1; rows first, then columns.
//     Unlike Pillow, nothing is rounded to 8 bits between or after the passes.
//  4. Values: (v·Scale − Mean[c]) / Std[c] per output channel c (after Channels ordered them),
//     written in Layout.
//
// dataset/testdata/image_reference.py implements the same steps with Pillow (decoding only)
// and numpy; the tests compare both.

// Resize modes.
const (
	ResizeStretch = "stretch"
	ResizeCrop    = "crop"
	ResizePad     = "pad"
)

// Image limits: the most pixels an image may declare, and the most output pixels of a sample.
const (
	maxImagePixels = 1 << 27
	maxImageSide   = 1 << 17
	maxSampleSide  = 1 << 14
)

// ImageOptions say how images become samples (see the steps above). The zero value of a field
// means its default, except Height and Width, which must be given.
type ImageOptions struct {
	Height, Width int     // the sample's spatial size
	Mode          string  // stretch (default), crop or pad
	CropRatio     float64 // crop: the fraction of the resized image kept; default 0.875
	PadValue      float64 // pad: the value of the padded area in the sample (after normalisation)
	Scale         float64 // pixel values 0-255 are multiplied by Scale; default 1/255
	Mean, Std     []float64
	Channels      string // rgb (default), bgr or gray
	Layout        string // nchw (default) or nhwc
}

// DefaultCropRatio is the crop ratio of ImageNet evaluation (224 of 256).
const DefaultCropRatio = 0.875

// Resolve checks o and returns it with its defaults filled in.
func (o ImageOptions) Resolve() (ImageOptions, error) {
	if o.Height == 0 || o.Width == 0 {
		return o, errors.New("no image size given")
	}
	if o.Height < 0 || o.Width < 0 || o.Height > maxSampleSide || o.Width > maxSampleSide {
		return o, fmt.Errorf("image size %dx%d is not in 1..%d", o.Height, o.Width, maxSampleSide)
	}
	switch o.Mode {
	case "":
		o.Mode = ResizeStretch
	case ResizeStretch, ResizeCrop, ResizePad:
	default:
		return o, fmt.Errorf("resize mode %q: want stretch, crop or pad", o.Mode)
	}
	if o.CropRatio == 0 {
		o.CropRatio = DefaultCropRatio
	}
	if !(o.CropRatio >= 0.01 && o.CropRatio <= 1) {
		return o, fmt.Errorf("crop ratio %v is not in [0.01, 1]", o.CropRatio)
	}
	if o.Scale == 0 {
		o.Scale = 1.0 / 255
	}
	switch o.Channels {
	case "":
		o.Channels = "rgb"
	case "rgb", "bgr", "gray":
	default:
		return o, fmt.Errorf("channels %q: want rgb, bgr or gray", o.Channels)
	}
	switch o.Layout {
	case "":
		o.Layout = "nchw"
	case "nchw", "nhwc":
	default:
		return o, fmt.Errorf("layout %q: want nchw or nhwc", o.Layout)
	}
	c := o.channels()
	if int64(o.Height)*int64(o.Width)*int64(c) > onnxio.MaxElements {
		return o, fmt.Errorf("samples of %dx%d pixels are too large", o.Height, o.Width)
	}
	var err error
	if o.Mean, err = perChannel("mean", o.Mean, 0, c); err != nil {
		return o, err
	}
	if o.Std, err = perChannel("std", o.Std, 1, c); err != nil {
		return o, err
	}
	for _, v := range append(append([]float64{o.Scale, o.PadValue, o.CropRatio}, o.Mean...), o.Std...) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return o, errors.New("image preprocessing values must be finite")
		}
	}
	for _, s := range o.Std {
		if s == 0 {
			return o, errors.New("std must not be 0")
		}
	}
	return o, nil
}

func (o ImageOptions) channels() int {
	if o.Channels == "gray" {
		return 1
	}
	return 3
}

// perChannel expands one value or one per channel to c values; none gives def.
func perChannel(what string, v []float64, def float64, c int) ([]float64, error) {
	switch len(v) {
	case 0:
		v = []float64{def}
		fallthrough
	case 1:
		out := make([]float64, c)
		for i := range out {
			out[i] = v[0]
		}
		return out, nil
	case c:
		return append([]float64(nil), v...), nil
	}
	return nil, fmt.Errorf("%s has %d values for %d channels; give one or %d", what, len(v), c, c)
}

// SampleShape is the shape of one sample: C x H x W (nchw) or H x W x C (nhwc).
func (o ImageOptions) SampleShape() []int {
	c := o.channels()
	if o.Layout == "nhwc" {
		return []int{o.Height, o.Width, c}
	}
	return []int{c, o.Height, o.Width}
}

// IsImage reports whether path names an image convpca reads (.png, .jpg, .jpeg).
func IsImage(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".png", ".jpg", ".jpeg":
		return true
	}
	return false
}

// imageReader is a Reader of images preprocessed into float32 samples.
type imageReader struct {
	files []string
	o     ImageOptions
	shape []int
	size  int
	next  int
	err   error
}

// openImages lists the images under path (a folder, read recursively, files sorted by their
// path; or one image file), checks each one's header, and returns a reader of their samples
// and the number of other files it ignored.
func openImages(path string, o ImageOptions) (*imageReader, int, error) {
	ro, err := o.Resolve()
	if err != nil {
		return nil, 0, fmt.Errorf("images %s: %w", path, err)
	}
	var files []string
	ignored := 0
	st, err := os.Stat(path)
	if err != nil {
		return nil, 0, fmt.Errorf("images %s: %w", path, err)
	}
	if st.IsDir() {
		err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return nil
			}
			if IsImage(p) {
				files = append(files, p)
			} else {
				ignored++
			}
			return nil
		})
		if err != nil {
			return nil, 0, fmt.Errorf("images %s: %w", path, err)
		}
		sort.Strings(files)
	} else {
		files = []string{path}
	}
	if len(files) == 0 {
		return nil, ignored, fmt.Errorf("images %s: the folder holds no .png, .jpg or .jpeg file (%d other %s)", path, ignored, plural(int64(ignored), "file"))
	}
	for _, f := range files {
		if err := checkImageFile(f); err != nil {
			return nil, ignored, err
		}
	}
	shape := ro.SampleShape()
	return &imageReader{files: files, o: ro, shape: shape, size: numel(shape)}, ignored, nil
}

// checkImageFile reads the header of an image file and refuses what decodeImage would refuse.
func checkImageFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("image %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("image %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("image %s: not a regular file", path)
	}
	if err := checkImageConfig(f, st.Size()); err != nil {
		return fmt.Errorf("image %s: %w", path, err)
	}
	return nil
}

// checkImageConfig reads the header of an image of size bytes from r and refuses formats other
// than PNG and JPEG, absurd sizes and sizes that data of size bytes cannot hold: deflate
// compresses at most 1032:1, and JPEG spends at least one bit per 8x8 block.
func checkImageConfig(r io.Reader, size int64) error {
	if size == 0 {
		return errors.New("the file is empty")
	}
	cfg, format, err := image.DecodeConfig(r)
	if err != nil {
		if errors.Is(err, image.ErrFormat) {
			return errors.New("not a PNG or JPEG image")
		}
		return fmt.Errorf("not a valid image: %v", err)
	}
	w, h := int64(cfg.Width), int64(cfg.Height)
	if w <= 0 || h <= 0 {
		return fmt.Errorf("%s of %dx%d pixels holds no pixels", format, w, h)
	}
	if w > maxImageSide || h > maxImageSide || w*h > maxImagePixels {
		return fmt.Errorf("%s of %dx%d pixels is too large (convpca decodes at most %d pixels, %d a side)", format, w, h, maxImagePixels, maxImageSide)
	}
	var least int64 // bytes the pixels need at the least, compressed
	switch format {
	case "png":
		least = h * (1 + (w+7)/8) / 1100
	case "jpeg":
		least = w * h / 1024
	default:
		return errors.New("not a PNG or JPEG image")
	}
	if least > size {
		return fmt.Errorf("%s of %dx%d pixels cannot fit in %d bytes (corrupt or truncated file?)", format, w, h, size)
	}
	return nil
}

// decodeImage reads and decodes one image, checking its header first.
func decodeImage(path string) (image.Image, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if err := checkImageConfig(bytes.NewReader(data), int64(len(data))); err != nil {
		return nil, err
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("corrupt image: %v", err)
	}
	return img, nil
}

func (r *imageReader) Shape() []int { return append([]int{}, r.shape...) }
func (r *imageReader) Len() int     { return len(r.files) }
func (r *imageReader) Close() error { return nil }

// Read decodes and preprocesses the next images into dst, several at a time in parallel.
func (r *imageReader) Read(dst []float32) (int, error) {
	if err := checkDst(len(dst), r.size); err != nil {
		return 0, err
	}
	if r.err != nil {
		return 0, r.err
	}
	if r.next == len(r.files) {
		return 0, io.EOF
	}
	k := min(len(dst)/r.size, len(r.files)-r.next)
	errs := make([]error, k)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(k, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				path := r.files[r.next+i]
				img, err := decodeImage(path)
				if err == nil {
					r.o.sample(img, dst[i*r.size:(i+1)*r.size])
				} else {
					errs[i] = fmt.Errorf("image %s: %w", path, err)
				}
			}
		}()
	}
	for i := range k {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			r.err = err
			return 0, err
		}
	}
	r.next += k
	return k, nil
}

// geometry is where an image goes in a sample: it is resized to rh x rw, of which the rows
// [top, top+oh) and columns [left, left+ow) fill the sample's top-left oh x ow; the rest is
// padding.
type geometry struct {
	rh, rw, top, left, oh, ow int
}

// place computes the geometry of an h x w image.
func (o ImageOptions) place(h, w int) geometry {
	H, W := o.Height, o.Width
	switch o.Mode {
	case ResizeCrop:
		Rh, Rw := int(math.Floor(float64(H)/o.CropRatio)), int(math.Floor(float64(W)/o.CropRatio))
		var rh, rw int
		if int64(Rh)*int64(w) >= int64(Rw)*int64(h) { // the height binds
			rh, rw = Rh, int(float64(Rh*w)/float64(h))
		} else {
			rh, rw = int(float64(Rw*h)/float64(w)), Rw
		}
		rh, rw = max(rh, H), max(rw, W)
		top := int(math.RoundToEven(float64(rh-H) / 2))
		left := int(math.RoundToEven(float64(rw-W) / 2))
		return geometry{rh: rh, rw: rw, top: top, left: left, oh: H, ow: W}
	case ResizePad:
		c := math.Ceil(float64(H) * (float64(w) / float64(h)))
		if c > float64(W) {
			rh := min(H, max(1, int(math.Ceil(float64(W)*(float64(h)/float64(w))))))
			return geometry{rh: rh, rw: W, oh: rh, ow: W}
		}
		return geometry{rh: H, rw: int(c), oh: H, ow: int(c)}
	}
	return geometry{rh: H, rw: W, oh: H, ow: W}
}

// taps are the source pixels and weights of output pixels: pixel i reads start[i] onwards.
type taps struct {
	start  []int
	weight [][]float64
}

// resampling returns the taps of output pixels first..first+count-1 of a resize of n pixels to
// m (see step 3 above).
func resampling(n, m, first, count int) taps {
	scale := float64(n) / float64(m)
	fs := max(scale, 1)
	support := fs // the triangle's support is 1
	t := taps{start: make([]int, count), weight: make([][]float64, count)}
	for k := range count {
		center := (float64(first+k) + 0.5) * scale
		lo := max(int(center-support+0.5), 0)
		hi := min(int(center+support+0.5), n)
		w := make([]float64, max(hi-lo, 0))
		sum := 0.0
		for j := range w {
			x := math.Abs((float64(j+lo) - center + 0.5) / fs)
			if x < 1 {
				w[j] = 1 - x
			}
			sum += w[j]
		}
		if sum != 0 {
			for j := range w {
				w[j] /= sum
			}
		}
		t.start[k], t.weight[k] = lo, w
	}
	return t
}

// sample preprocesses img into dst (one sample of o.SampleShape()).
func (o ImageOptions) sample(img image.Image, dst []float32) {
	b := img.Bounds()
	h, w := b.Dy(), b.Dx()
	g := o.place(h, w)
	rows := resampling(h, g.rh, g.top, g.oh)
	cols := resampling(w, g.rw, g.left, g.ow)
	c := o.channels()
	// Rows of the source that some output row reads.
	y0, y1 := h, 0
	for i, s := range rows.start {
		y0, y1 = min(y0, s), max(y1, s+len(rows.weight[i]))
	}
	// Horizontal pass: tmp[(y-y0)][x][ch] for the source rows y0..y1-1.
	read := pixelRows(img, c == 1)
	src := make([]float64, w*c)
	tmp := make([]float64, max(y1-y0, 0)*g.ow*c)
	for y := y0; y < y1; y++ {
		read(y, src)
		out := tmp[(y-y0)*g.ow*c : (y-y0+1)*g.ow*c]
		for x := range g.ow {
			s, ws := cols.start[x], cols.weight[x]
			for ch := range c {
				v := 0.0
				for j, wt := range ws {
					v += wt * src[(s+j)*c+ch]
				}
				out[x*c+ch] = v
			}
		}
	}
	// Vertical pass, values and layout.
	H, W := o.Height, o.Width
	index := func(y, x, oc int) int {
		if o.Layout == "nhwc" {
			return (y*W+x)*c + oc
		}
		return (oc*H+y)*W + x
	}
	pad := float32(o.PadValue)
	for i := range dst {
		dst[i] = pad
	}
	for y := range g.oh {
		s, ws := rows.start[y], rows.weight[y]
		for x := range g.ow {
			for oc := range c {
				ch := oc
				if o.Channels == "bgr" {
					ch = 2 - oc
				}
				v := 0.0
				for j, wt := range ws {
					v += wt * tmp[((s+j-y0)*g.ow+x)*c+ch]
				}
				dst[index(y, x, oc)] = float32((v*o.Scale - o.Mean[oc]) / o.Std[oc])
			}
		}
	}
}

// pixelRows returns a function that writes row y of img (relative to its bounds) into row as
// 0-255 values: gray (one per pixel) or red, green, blue (three per pixel). See step 1 above.
func pixelRows(img image.Image, gray bool) func(y int, row []float64) {
	b := img.Bounds()
	w := b.Dx()
	put := func(row []float64, x int, r, g, bl float64) {
		if gray {
			row[x] = 0.299*r + 0.587*g + 0.114*bl
		} else {
			row[3*x], row[3*x+1], row[3*x+2] = r, g, bl
		}
	}
	putGray := func(row []float64, x int, v float64) {
		if gray {
			row[x] = v
		} else {
			row[3*x], row[3*x+1], row[3*x+2] = v, v, v
		}
	}
	switch m := img.(type) {
	case *image.Gray:
		return func(y int, row []float64) {
			p := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := range w {
				putGray(row, x, float64(p[x]))
			}
		}
	case *image.Gray16:
		return func(y int, row []float64) {
			p := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := range w {
				putGray(row, x, float64(uint16(p[2*x])<<8|uint16(p[2*x+1]))/257)
			}
		}
	case *image.NRGBA:
		return func(y int, row []float64) {
			p := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := range w {
				put(row, x, float64(p[4*x]), float64(p[4*x+1]), float64(p[4*x+2]))
			}
		}
	case *image.NRGBA64:
		return func(y int, row []float64) {
			p := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := range w {
				q := p[8*x:]
				put(row, x, float64(uint16(q[0])<<8|uint16(q[1]))/257, float64(uint16(q[2])<<8|uint16(q[3]))/257, float64(uint16(q[4])<<8|uint16(q[5]))/257)
			}
		}
	case *image.YCbCr:
		if f := libjpegRows(m, put); f != nil {
			return f
		}
		return func(y int, row []float64) {
			for x := range w {
				yi, ci := m.YOffset(b.Min.X+x, b.Min.Y+y), m.COffset(b.Min.X+x, b.Min.Y+y)
				r, g, bl := color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
				put(row, x, float64(r), float64(g), float64(bl))
			}
		}
	case *image.Paletted:
		pal := make([]color.NRGBA, len(m.Palette))
		for i, c := range m.Palette {
			pal[i] = color.NRGBAModel.Convert(c).(color.NRGBA)
		}
		return func(y int, row []float64) {
			p := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := range w {
				c := color.NRGBA{}
				if int(p[x]) < len(pal) {
					c = pal[p[x]]
				}
				put(row, x, float64(c.R), float64(c.G), float64(c.B))
			}
		}
	}
	// Any other image (RGBA, RGBA64, CMYK...): non-premultiplied 16-bit values.
	return func(y int, row []float64) {
		for x := range w {
			c := color.NRGBA64Model.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA64)
			put(row, x, float64(c.R)/257, float64(c.G)/257, float64(c.B)/257)
		}
	}
}

// libjpegRows returns the rows of a decoded colour JPEG converted to RGB as libjpeg 6b and
// libjpeg-turbo do by default: chroma of 4:2:2 and 4:2:0 images upsampled by the "fancy"
// triangle filter (jdsample.c, h2v1_fancy_upsample and h2v2_fancy_upsample, edges replicated;
// plain replication when the chroma is 2 pixels wide or less), then YCbCr to RGB in 16-bit fixed
// point (jdcolor.c). Go's own conversion takes the nearest chroma sample and rounds
// differently, which puts edges of colour up to 40 levels away from what Pillow decodes. It
// returns nil for other subsampling ratios and for images not at the origin.
func libjpegRows(m *image.YCbCr, put func(row []float64, x int, r, g, b float64)) func(y int, row []float64) {
	b := m.Bounds()
	if b.Min != (image.Point{}) {
		return nil
	}
	w, h := b.Dx(), b.Dy()
	var hs, vs int // chroma subsampling, horizontal and vertical
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio444:
		hs, vs = 1, 1
	case image.YCbCrSubsampleRatio422:
		hs, vs = 2, 1
	case image.YCbCrSubsampleRatio420:
		hs, vs = 2, 2
	default:
		return nil
	}
	cw, ch := (w+hs-1)/hs, (h+vs-1)/vs
	fancy := hs == 2 && cw > 2
	sum := make([]int32, cw)                             // this row's chroma, times 4 with its vertical neighbour
	cb, cr := make([]int32, hs*cw), make([]int32, hs*cw) // upsampled chroma of the row
	upsample := func(plane []byte, y int, dst []int32) {
		cy := y / vs
		src := plane[cy*m.CStride : cy*m.CStride+cw]
		if !fancy {
			for x := range dst {
				dst[x] = int32(src[x/hs])
			}
			return
		}
		if vs == 1 { // h2v1: (3 near + far + 1 or 2) / 4
			dst[0] = int32(src[0])
			dst[1] = (3*int32(src[0]) + int32(src[1]) + 2) >> 2
			for i := 1; i < cw-1; i++ {
				v := 3 * int32(src[i])
				dst[2*i] = (v + int32(src[i-1]) + 1) >> 2
				dst[2*i+1] = (v + int32(src[i+1]) + 2) >> 2
			}
			l := cw - 1
			dst[2*l] = (3*int32(src[l]) + int32(src[l-1]) + 1) >> 2
			dst[2*l+1] = int32(src[l])
			return
		}
		// h2v2: 3 x this row + the nearer neighbouring row, then (3 near + far + 8 or 7) / 16.
		ny := cy - 1
		if y%2 == 1 {
			ny = cy + 1
		}
		ny = max(0, min(ny, ch-1))
		near := plane[ny*m.CStride : ny*m.CStride+cw]
		for i := range cw {
			sum[i] = 3*int32(src[i]) + int32(near[i])
		}
		dst[0] = (4*sum[0] + 8) >> 4
		dst[1] = (3*sum[0] + sum[1] + 7) >> 4
		for i := 1; i < cw-1; i++ {
			dst[2*i] = (3*sum[i] + sum[i-1] + 8) >> 4
			dst[2*i+1] = (3*sum[i] + sum[i+1] + 7) >> 4
		}
		l := cw - 1
		dst[2*l] = (3*sum[l] + sum[l-1] + 8) >> 4
		dst[2*l+1] = (4*sum[l] + 7) >> 4
	}
	clamp := func(v int32) float64 { return float64(max(0, min(255, v))) }
	return func(y int, row []float64) {
		upsample(m.Cb, y, cb)
		upsample(m.Cr, y, cr)
		lum := m.Y[y*m.YStride : y*m.YStride+w]
		for x := range w {
			yy, u, v := int32(lum[x]), cb[x]-128, cr[x]-128
			r := yy + (91881*v+32768)>>16
			g := yy + (-22554*u+32768-46802*v)>>16
			bl := yy + (116130*u+32768)>>16
			put(row, x, clamp(r), clamp(g), clamp(bl))
		}
	}
}
