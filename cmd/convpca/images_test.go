package main

import (
	"bytes"
	"fmt"
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

	"google.golang.org/protobuf/proto"

	"github.com/convpca/convpca/calib"
	"github.com/convpca/convpca/dataset"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/onnxio/onnxpb"
	"github.com/convpca/convpca/ort"
	"github.com/convpca/convpca/testmodels"
)

// imageReference is the Pillow + numpy reference of the image preprocessing.
var imageReference = filepath.Join("..", "..", "dataset", "testdata", "image_reference.py")

// needPillow skips (fails under CI) when python3 with numpy and Pillow is missing.
func needPillow(t *testing.T) {
	t.Helper()
	if out, err := exec.Command("/usr/bin/python3", "-c", "import numpy, PIL").CombinedOutput(); err != nil {
		testmodels.RequireOrSkip(t, fmt.Errorf("python3-numpy and python3-pil are needed: %v %s", err, out))
	}
}

// reference preprocesses the images with the reference script into out (.npy).
func reference(t *testing.T, out string, args []string, files []string) {
	t.Helper()
	cmd := append(append(append([]string{imageReference}, args...), "--out", out), files...)
	if b, err := exec.Command("/usr/bin/python3", cmd...).CombinedOutput(); err != nil {
		t.Fatalf("reference: %v\n%s", err, b)
	}
}

// pattern is a deterministic picture: gradients, a disc, stripes like text, and noise.
func pattern(w, h int, seed uint32) func(x, y, c int) uint8 {
	return func(x, y, c int) uint8 {
		s := seed*2654435761 + uint32(x)*40503 + uint32(y)*69069 + uint32(c)*1013904223
		s ^= s >> 13
		s *= 0x5bd1e995
		s ^= s >> 15
		v := 200*float64(x)/float64(w)*float64(c+1)/3 + 90*float64(y)/float64(h)
		dx, dy := float64(x)-float64(w)/2, float64(y)-float64(h)/3
		if dx*dx+dy*dy < float64(w*h)/12 {
			v = 255 - v/2
		}
		if (x/7+y/11)%5 == int(seed%5) {
			v /= 3
		}
		v += float64(s%31) - 15
		return uint8(math.Max(0, math.Min(255, v)))
	}
}

// writePicture writes a w x h picture of the given kind (rgb, gray, alpha, palette) as PNG, or
// as JPEG when path ends in .jpg.
func writePicture(t *testing.T, path, kind string, w, h int, seed uint32) {
	t.Helper()
	f := pattern(w, h, seed)
	r := image.Rect(0, 0, w, h)
	var img image.Image
	switch kind {
	case "gray":
		m := image.NewGray(r)
		for y := range h {
			for x := range w {
				m.SetGray(x, y, color.Gray{f(x, y, 1)})
			}
		}
		img = m
	case "alpha":
		m := image.NewNRGBA(r)
		for y := range h {
			for x := range w {
				m.SetNRGBA(x, y, color.NRGBA{f(x, y, 0), f(x, y, 1), f(x, y, 2), uint8(128 + x%128)})
			}
		}
		img = m
	case "palette":
		var pal color.Palette
		for i := range 32 {
			pal = append(pal, color.RGBA{uint8(i * 8), uint8(255 - i*7), uint8(i * i / 4), 255})
		}
		m := image.NewPaletted(r, pal)
		for y := range h {
			for x := range w {
				m.SetColorIndex(x, y, f(x, y, 0)%32)
			}
		}
		img = m
	default:
		m := image.NewRGBA(r)
		for y := range h {
			for x := range w {
				m.SetRGBA(x, y, color.RGBA{f(x, y, 0), f(x, y, 1), f(x, y, 2), 255})
			}
		}
		img = m
	}
	var b bytes.Buffer
	var err error
	if strings.HasSuffix(path, ".jpg") {
		err = jpeg.Encode(&b, img, &jpeg.Options{Quality: 92})
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

// imageModel writes a small torchvision-like network on x [N,3,H,W]: Conv 3->8 k3 s2 p1, Relu,
// Conv 8->16 k3 s2 p1, Relu, Conv 16->16 k1.
func imageModel(t *testing.T, path string, h, w int64) {
	t.Helper()
	wts := func(name string, dims ...int64) *onnxpb.TensorProto {
		n, _ := onnxio.NumElements(dims)
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(0.3 * math.Sin(float64(i)*1.7+float64(len(name))))
		}
		return onnxio.FloatTensor(name, dims, v)
	}
	s2 := []*onnxpb.AttributeProto{onnxio.IntsAttr("pads", []int64{1, 1, 1, 1}), onnxio.IntsAttr("strides", []int64{2, 2})}
	mp := &onnxpb.ModelProto{
		IrVersion:   proto.Int64(8),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: proto.Int64(13)}},
		Graph: &onnxpb.GraphProto{
			Name:        proto.String("g"),
			Input:       []*onnxpb.ValueInfoProto{onnxio.TensorInfo("x", onnxpb.TensorProto_FLOAT, []int64{-1, 3, h, w})},
			Output:      []*onnxpb.ValueInfoProto{onnxio.TensorInfo("y", onnxpb.TensorProto_FLOAT, nil)},
			Initializer: []*onnxpb.TensorProto{wts("w1", 8, 3, 3, 3), wts("b1", 8), wts("w2", 16, 8, 3, 3), wts("b2", 16), wts("w3", 16, 16, 1, 1)},
			Node: []*onnxpb.NodeProto{
				pnode("conv1", "Conv", []string{"x", "w1", "b1"}, []string{"c1"}, s2...),
				pnode("relu1", "Relu", []string{"c1"}, []string{"r1"}),
				pnode("conv2", "Conv", []string{"r1", "w2", "b2"}, []string{"c2"}, s2...),
				pnode("relu2", "Relu", []string{"c2"}, []string{"r2"}),
				pnode("conv3", "Conv", []string{"r2", "w3"}, []string{"y"}),
			},
		},
	}
	b, err := proto.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// statsDiff returns the largest difference between the statistics of a and b, relative to the
// largest value of each (count, sums and second moments of every tensor).
func statsDiff(t *testing.T, a, b *calib.Result) float64 {
	t.Helper()
	if a.Samples != b.Samples || len(a.Stats) != len(b.Stats) {
		t.Fatalf("%d samples and %d tensors against %d and %d", a.Samples, len(a.Stats), b.Samples, len(b.Stats))
	}
	worst := 0.0
	for name, sa := range a.Stats {
		sb := b.Stats[name]
		if sb == nil || sa.Count != sb.Count || sa.Dim != sb.Dim {
			t.Fatalf("tensor %q: %+v against %+v", name, sa, sb)
		}
		for _, pair := range [][2][]float64{{sa.Sum, sb.Sum}, {sa.Outer, sb.Outer}} {
			d, m := 0.0, 0.0
			for i := range pair[1] {
				d = math.Max(d, math.Abs(pair[0][i]-pair[1][i]))
				m = math.Max(m, math.Abs(pair[1][i]))
			}
			if m > 0 {
				worst = math.Max(worst, d/m)
			}
		}
	}
	return worst
}

// imagenetFlags are an ImageNet evaluation's preprocessing.
var imagenetFlags = []string{"--resize", "224x224", "--resize-mode", "crop", "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"}

// TestImageFolderCalibration: a folder of PNG images, preprocessed as ImageNet evaluation
// does, gives the statistics that the same images preprocessed by the Pillow + numpy
// reference and given as .npy give; JPEG images agree as closely as Go's and libjpeg's
// decoders do. The folder also compresses.
func TestImageFolderCalibration(t *testing.T) {
	needRuntime(t)
	needPillow(t)
	dir := t.TempDir()
	model := filepath.Join(dir, "m224.onnx")
	imageModel(t, model, 224, 224)
	pngs, jpgs := filepath.Join(dir, "png"), filepath.Join(dir, "jpg")
	os.MkdirAll(filepath.Join(pngs, "class_b"), 0o755)
	os.MkdirAll(jpgs, 0o755)
	for i, p := range []struct {
		name, kind string
		w, h       int
	}{
		{"class_a_1.png", "rgb", 500, 375}, {"class_a_2.png", "rgb", 333, 500}, {"class_a_3.png", "gray", 224, 224},
		{"class_b/1.png", "alpha", 300, 300}, {"class_b/2.png", "palette", 257, 256}, {"class_b/3.png", "rgb", 120, 90},
	} {
		writePicture(t, filepath.Join(pngs, p.name), p.kind, p.w, p.h, uint32(i))
		if i < 4 {
			writePicture(t, filepath.Join(jpgs, fmt.Sprintf("%d.jpg", i)), p.kind, p.w, p.h, uint32(i))
		}
	}
	os.WriteFile(filepath.Join(pngs, "LICENSE.txt"), []byte("x"), 0o644)
	refArgs := []string{"--size", "224x224", "--mode", "crop", "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"}
	for _, c := range []struct {
		name, dir string
		bound     float64
	}{{"png", pngs, 1e-6}, {"jpeg", jpgs, 1e-3}} {
		t.Run(c.name, func(t *testing.T) {
			var files []string
			filepath.WalkDir(c.dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && dataset.IsImage(p) {
					files = append(files, p)
				}
				return nil
			})
			ref := filepath.Join(dir, c.name+".npy")
			reference(t, ref, refArgs, files)
			fromDir, fromNpy := filepath.Join(dir, c.name+"_dir.cps"), filepath.Join(dir, c.name+"_npy.cps")
			code, stdout, stderr := cliRun(append([]string{"calibrate", model, "--calib", c.dir, "--out", fromDir, "--provider", "cpu", "--batch", "4"}, imagenetFlags...)...)
			if code != 0 {
				t.Fatalf("calibrate on the folder: exit %d\n%s%s", code, stdout, stderr)
			}
			if c.name == "png" && !strings.Contains(stderr, "1 file is not .png, .jpg or .jpeg and ignored") {
				t.Errorf("no warning of the ignored file: %q", stderr)
			}
			if code, stdout, stderr := cliRun("calibrate", model, "--calib", ref, "--out", fromNpy, "--provider", "cpu", "--batch", "4"); code != 0 {
				t.Fatalf("calibrate on the reference: exit %d\n%s%s", code, stdout, stderr)
			}
			a, err := calib.ReadStats(fromDir)
			if err != nil {
				t.Fatal(err)
			}
			b, err := calib.ReadStats(fromNpy)
			if err != nil {
				t.Fatal(err)
			}
			d := statsDiff(t, a.Result, b.Result)
			t.Logf("%s: %d images, statistics of %d tensors: max relative difference %.3g", c.name, a.Result.Samples, len(a.Result.Stats), d)
			if d > c.bound {
				t.Errorf("statistics differ by %.3g relative, more than %g", d, c.bound)
			}
		})
	}
	out := filepath.Join(dir, "m224_small.onnx")
	code, stdout, stderr := cliRun(append([]string{"compress", model, "--calib", pngs, "--out", out, "--provider", "cpu", "-q", "--threshold", "1e-3"}, imagenetFlags...)...)
	if code != 0 || !strings.Contains(stdout, "(6 calibration samples)") || stderr != "" {
		t.Errorf("compress on the folder: exit %d\n%s%s", code, stdout, stderr)
	}
}

// TestPaddleOCRFolder: text-line images preprocessed as PaddleOCR's recogniser does (height
// 48, aspect kept, padded right to 320) give the statistics of the model input and of its
// first Conv's output that the reference's .npy gives.
func TestPaddleOCRFolder(t *testing.T) {
	needRuntime(t)
	needPillow(t)
	models, err := testmodels.OCRModels()
	testmodels.RequireOrSkip(t, err)
	m, err := onnxio.Load(filepath.Join(models, testmodels.OCRRec))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	lines := filepath.Join(dir, "lines")
	os.Mkdir(lines, 0o755)
	var files []string
	for i, s := range [][2]int{{32, 100}, {48, 200}, {40, 400}, {24, 60}, {64, 64}, {30, 250}, {52, 301}} {
		p := filepath.Join(lines, fmt.Sprintf("line%d.png", i))
		writePicture(t, p, []string{"rgb", "gray", "alpha"}[i%3], s[1], s[0], uint32(10+i))
		files = append(files, p)
	}
	ref := filepath.Join(dir, "ref.npy")
	reference(t, ref, []string{"--size", "48x320", "--mode", "pad", "--mean", "0.5", "--std", "0.5", "--scale", "0.00392156862745098", "--channels", "bgr"}, files)

	// The recogniser's width is dynamic: the size must be given.
	if _, err := (dataOptions{}).open(lines, m); err == nil || !strings.Contains(err.Error(), `model input "x" has no fixed spatial size (?x3x48x?): give --resize HxW`) {
		t.Errorf("no --resize: %v", err)
	}
	d := dataOptions{Image: dataset.ImageOptions{Height: 48, Width: 320, Mode: dataset.ResizePad, Mean: []float64{0.5}, Std: []float64{0.5}, Scale: 0.00392156862745098, Channels: "bgr"}}
	tensors := []string{"x", "conv2d_185.tmp_0"}
	collect := func(r dataset.Reader, err error) *calib.Result {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		res, err := ort.Collect(m, r, tensors, ort.Options{Batch: 4, Runtime: ort.RuntimeOptions{Provider: ort.CPU}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	a := collect(d.open(lines, m))
	b := collect(dataset.Open(ref))
	diff := statsDiff(t, a, b)
	t.Logf("%d text lines, statistics of %v: max relative difference %.3g", a.Samples, tensors, diff)
	if diff > 1e-6 {
		t.Errorf("statistics differ by %.3g relative", diff)
	}
}
