package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/convpca/convpca/dataset"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/ort"
)

// dataOptions say how the data files and folders of a command are read: the preprocessing of
// image folders as the flags give it (defaults that depend on the model are filled in by open).
type dataOptions struct {
	Image dataset.ImageOptions // Height, Width 0: the model input's; Channels, Layout "": from the model
	Warn  func(msg string)     // nil: no warnings (-q)
	// warned holds the paths already warned about, so that data reopened for each pass warns
	// once; nil warns every time.
	warned *sync.Map
}

// dataFlags are the flags of the image preprocessing, for every command that reads data.
func dataFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "resize", Usage: "image folders: the sample size `HxW` (default: the model input's fixed spatial size)"},
		&cli.StringFlag{Name: "resize-mode", Value: dataset.ResizeStretch, Usage: "image folders: stretch to HxW; crop: scale to cover H/r x W/r and cut the centre HxW (torchvision Resize+CenterCrop, r = --crop-ratio); pad: keep the aspect ratio, fit inside and pad right and bottom (PaddleOCR's recogniser, letterboxing)"},
		&cli.Float64Flag{Name: "crop-ratio", Value: dataset.DefaultCropRatio, Usage: "--resize-mode crop: the fraction `r` of the resized image kept"},
		&cli.Float64Flag{Name: "pad-value", Usage: "--resize-mode pad: the value of the padded area in the sample (after --mean and --std)"},
		&cli.Float64Flag{Name: "scale", Value: 1.0 / 255, Usage: "image folders: pixel values 0-255 are multiplied by `S`"},
		&cli.StringFlag{Name: "mean", Usage: "image folders: subtracted after --scale; one value or one per channel, comma-separated (default 0)"},
		&cli.StringFlag{Name: "std", Usage: "image folders: divides after --mean; one value or one per channel (default 1)"},
		&cli.StringFlag{Name: "channels", Usage: "image folders: rgb, bgr or gray (default: gray for a model input of 1 channel, else rgb)"},
		&cli.StringFlag{Name: "layout", Usage: "image folders: nchw or nhwc (default: from the model input's shape, nchw when it does not tell)"},
	}
}

// parseData reads the flags of dataFlags; quiet discards warnings.
func parseData(c *cli.Context, warn func(string)) (dataOptions, error) {
	d := dataOptions{Warn: warn, warned: &sync.Map{}}
	o := &d.Image
	if s := c.String("resize"); s != "" {
		h, w, ok := parseSize(s)
		if !ok {
			return d, usagef("--resize %q: want HxW, e.g. 224x224", s)
		}
		o.Height, o.Width = h, w
	}
	o.Mode = c.String("resize-mode")
	switch o.Mode {
	case dataset.ResizeStretch, dataset.ResizeCrop, dataset.ResizePad:
	default:
		return d, usagef("--resize-mode %q: want stretch, crop or pad", o.Mode)
	}
	o.CropRatio, o.PadValue, o.Scale = c.Float64("crop-ratio"), c.Float64("pad-value"), c.Float64("scale")
	if !(o.CropRatio >= 0.01 && o.CropRatio <= 1) {
		return d, usagef("--crop-ratio %v is not in [0.01, 1]", o.CropRatio)
	}
	if o.Scale == 0 {
		return d, usagef("--scale must not be 0")
	}
	var err error
	if o.Mean, err = parseFloats("mean", c.String("mean")); err != nil {
		return d, err
	}
	if o.Std, err = parseFloats("std", c.String("std")); err != nil {
		return d, err
	}
	for _, v := range o.Std {
		if v == 0 {
			return d, usagef("--std must not be 0")
		}
	}
	switch o.Channels = strings.ToLower(c.String("channels")); o.Channels {
	case "", "rgb", "bgr", "gray":
	default:
		return d, usagef("--channels %q: want rgb, bgr or gray", o.Channels)
	}
	switch o.Layout = strings.ToLower(c.String("layout")); o.Layout {
	case "", "nchw", "nhwc":
	default:
		return d, usagef("--layout %q: want nchw or nhwc", o.Layout)
	}
	return d, nil
}

// parseSize reads HxW (or one number N for NxN).
func parseSize(s string) (h, w int, ok bool) {
	hs, ws, pair := strings.Cut(strings.ToLower(s), "x")
	if !pair {
		ws = hs
	}
	h, err1 := strconv.Atoi(strings.TrimSpace(hs))
	w, err2 := strconv.Atoi(strings.TrimSpace(ws))
	return h, w, err1 == nil && err2 == nil && h >= 1 && w >= 1 && h <= 1<<14 && w <= 1<<14
}

// parseFloats reads a comma-separated list of finite numbers ("" gives none).
func parseFloats(flag, s string) ([]float64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []float64
	for _, part := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(part), 64)
		if err != nil || v != v || v > 1e300 || v < -1e300 {
			return nil, usagef("--%s %q: want one number or one per channel, comma-separated", flag, s)
		}
		out = append(out, v)
	}
	return out, nil
}

// isImages reports whether path is read as images: a folder, or a .png or .jpg file.
func isImages(path string) bool {
	st, err := os.Stat(path)
	return (err == nil && st.IsDir()) || dataset.IsImage(path)
}

// open opens data to feed to model m; an error that the data cannot be read also says what m's
// inputs expect, so that a file of the wrong kind is easy to put right.
func (d dataOptions) open(path string, m *onnxio.Model) (dataset.Reader, error) {
	o := dataset.Options{Warn: d.warnOnce(path)}
	if isImages(path) {
		img, err := d.imageOptions(m)
		if err != nil {
			return nil, err
		}
		o.Image = img
	}
	r, err := dataset.OpenWith(path, o)
	if err != nil {
		if in, ierr := ort.ModelInput(m); ierr == nil {
			return nil, fmt.Errorf("%w (model input %q expects float32 %s, batch first)", err, in.Name, in)
		}
		if ins := ort.ModelInputs(m); len(ins) > 1 {
			return nil, fmt.Errorf("%w (model inputs: %s, batch first)", err, inputsText(ins))
		}
		return nil, err
	}
	return r, nil
}

// warnOnce returns the warning function for the data at path: d.Warn the first time, nil later.
func (d dataOptions) warnOnce(path string) func(string) {
	if d.Warn == nil || d.warned == nil {
		return d.Warn
	}
	if _, seen := d.warned.LoadOrStore(path, true); seen {
		return nil
	}
	return d.Warn
}

// imageOptions fills in the preprocessing defaults that come from m's input: the layout (NCHW
// or NHWC, where the shape tells), the channels (gray for one channel) and the size (the
// input's fixed spatial size).
func (d dataOptions) imageOptions(m *onnxio.Model) (dataset.ImageOptions, error) {
	o := d.Image
	in, err := ort.ModelInput(m)
	if err != nil {
		return o, fmt.Errorf("image data feeds a model's one float32 input: %w", err)
	}
	dims := in.Dims
	if dims != nil && len(dims) != 4 {
		return o, fmt.Errorf("image data feeds an input of 4 dimensions (N,C,H,W or N,H,W,C); model input %q is %s", in.Name, in)
	}
	if dims == nil {
		dims = []int64{-1, -1, -1, -1}
	}
	isCh := func(d int64) bool { return d == 1 || d == 3 }
	if o.Layout == "" {
		o.Layout = "nchw"
		if isCh(dims[3]) && !isCh(dims[1]) {
			o.Layout = "nhwc"
		}
	}
	ch, h, w := dims[1], dims[2], dims[3]
	if o.Layout == "nhwc" {
		ch, h, w = dims[3], dims[1], dims[2]
	}
	if o.Channels == "" {
		o.Channels = "rgb"
		if ch == 1 {
			o.Channels = "gray"
		}
	}
	want := int64(3)
	if o.Channels == "gray" {
		want = 1
	}
	if ch > 0 && ch != want {
		return o, usagef("--channels %s gives %d channels but model input %q has %d (%s, %s)", o.Channels, want, in.Name, ch, in, strings.ToUpper(o.Layout))
	}
	if o.Height == 0 {
		if h <= 0 || w <= 0 {
			return o, usagef("model input %q has no fixed spatial size (%s): give --resize HxW", in.Name, in)
		}
		o.Height, o.Width = int(h), int(w)
	}
	if _, err := o.Resolve(); err != nil {
		return o, usageError{err.Error()}
	}
	return o, nil
}

// inputsText lists a model's inputs as `x (float32 ?x3x8x8), ids (int64 ?)`.
func inputsText(ins []ort.Input) string {
	parts := make([]string, len(ins))
	for i, in := range ins {
		t := strings.ToLower(in.Elem.String())
		if in.Type != 0 {
			t = in.Type.String()
		}
		parts[i] = fmt.Sprintf("%s (%s %s)", in.Name, t, in)
	}
	return strings.Join(parts, ", ")
}
