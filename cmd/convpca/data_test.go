package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/convpca/convpca/dataset"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/onnxio/onnxpb"
	"github.com/convpca/convpca/testmodels"
)

// pngHeader returns a PNG signature and the IHDR chunk of an 8-bit RGB image of w x h pixels,
// and nothing else.
func pngHeader(w, h uint32) []byte {
	b := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR")
	b = binary.BigEndian.AppendUint32(b, w)
	b = binary.BigEndian.AppendUint32(b, h)
	b = append(b, 8, 2, 0, 0, 0)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[12:]))
}

// TestHostileData: broken image folders, .npz files that do not fit the model, and image
// preprocessing flags that do not fit it. Each fails with its one-line message and exit code
// and leaves no output; the good cases compress.
func TestHostileData(t *testing.T) {
	needRuntime(t)
	dir := t.TempDir()
	folder := func(name string, files map[string][]byte) string {
		d := filepath.Join(dir, name)
		os.MkdirAll(d, 0o755)
		for f, b := range files {
			os.WriteFile(filepath.Join(d, f), b, 0o644)
		}
		return d
	}
	var good bytes.Buffer
	m := image.NewRGBA(image.Rect(0, 0, 12, 10))
	for i := range m.Pix {
		m.Pix[i] = uint8(i * 7)
	}
	png.Encode(&good, m)
	corrupt := append([]byte(nil), good.Bytes()...)
	corrupt[len(corrupt)-20] ^= 0xff                     // in the IDAT chunk
	tiny := testmodels.Path("tiny/conv_pad_stride.onnx") // x: ?x3x9x9
	dynamic := filepath.Join(dir, "dynamic.onnx")
	imageModel(t, dynamic, -1, -1)
	twoInputs := testmodels.Path("multi/image_class.onnx")
	images := folder("good", map[string][]byte{"a.png": good.Bytes(), "b.png": good.Bytes(), "c.txt": []byte("x")})
	x := npzArray{"x", "<f4", []int{4, 3, 9, 9}, wave(4*3*9*9, 1)}
	out := filepath.Join(dir, "out.onnx")
	c := func(model, data string, extra ...string) []string {
		return append([]string{"compress", model, "--calib", data, "--out", out, "--provider", "cpu", "--threshold", "1e-3"}, extra...)
	}
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"corrupt PNG", c(tiny, folder("corrupt", map[string][]byte{"a.png": good.Bytes(), "corrupt.png": corrupt})), 1, "corrupt.png: corrupt image: png: invalid format"},
		{"zero-byte JPEG", c(tiny, folder("empty", map[string][]byte{"a.png": good.Bytes(), "empty.jpg": nil})), 1, "empty.jpg: the file is empty"},
		{"huge PNG header", c(tiny, folder("huge", map[string][]byte{"huge.png": pngHeader(100000, 100000)})), 1, "huge.png: png of 100000x100000 pixels is too large (convpca decodes at most 134217728 pixels, 131072 a side)"},
		{"PNG larger than its file", c(tiny, folder("big", map[string][]byte{"big.png": pngHeader(11000, 11000)})), 1, "big.png: png of 11000x11000 pixels cannot fit in 33 bytes (corrupt or truncated file?)"},
		{"not an image", c(tiny, folder("text", map[string][]byte{"a.jpg": []byte("hello")})), 1, "a.jpg: not a PNG or JPEG image"},
		{"no images", c(tiny, folder("none", map[string][]byte{"a.txt": nil, "b.csv": nil})), 1, "the folder holds no .png, .jpg or .jpeg file (2 other files)"},
		{"empty folder", c(tiny, folder("void", nil)), 1, "the folder holds no .png, .jpg or .jpeg file (0 other files)"},
		{"npz wrong dtype", c(tiny, writeNpz(t, filepath.Join(dir, "dtype.npz"), npzArray{"x", "<i8", []int{4, 3, 9, 9}, make([]byte, 8*4*243)})), 1, `model input "x" is float32 but the data's array "x" is int64`},
		{"npz wrong shape", c(tiny, writeNpz(t, filepath.Join(dir, "shape.npz"), npzArray{"x", "<f4", []int{4, 3, 8, 9}, wave(4*3*8*9, 1)})), 1, `data samples have shape [3x8x9] but model input "x" expects ?x3x9x9`},
		{"npz wrong name", c(tiny, writeNpz(t, filepath.Join(dir, "name.npz"), npzArray{"arr_0", "<f4", []int{4, 3, 9, 9}, wave(4*243, 1)})), 1, `the data's array "arr_0" is no input of the model (its inputs: x (float32 ?x3x9x9))`},
		{"npz truncated", c(tiny, writeNpz(t, filepath.Join(dir, "trunc.npz"), npzArray{"x", "<f4", []int{4, 3, 9, 9}, wave(100, 1)})), 1, `array "x": data is truncated`},
		{"npz NaN", c(tiny, writeNpz(t, filepath.Join(dir, "nan.npz"), npzArray{"x", "<f4", []int{1, 3, 9, 9}, append(wave(242, 1), 0, 0, 0xc0, 0x7f)})), 1, `data sample 0 of input "x" holds a NaN or infinite value`},
		{"no size for a dynamic input", c(dynamic, images), 2, `model input "x" has no fixed spatial size (?x3x?x?): give --resize HxW`},
		{"bad --resize", c(tiny, images, "--resize", "9by9"), 2, `--resize "9by9": want HxW, e.g. 224x224`},
		{"bad --resize-mode", c(tiny, images, "--resize-mode", "zoom"), 2, `--resize-mode "zoom": want stretch, crop or pad`},
		{"bad --mean", c(tiny, images, "--mean", "0.5,0.4"), 2, "mean has 2 values for 3 channels; give one or 3"},
		{"bad --std", c(tiny, images, "--std", "0.5,x"), 2, `--std "0.5,x": want one number or one per channel`},
		{"zero --std", c(tiny, images, "--std", "0"), 2, "--std must not be 0"},
		{"gray for three channels", c(tiny, images, "--channels", "gray"), 2, `--channels gray gives 1 channels but model input "x" has 3 (?x3x9x9, NCHW)`},
		{"nhwc for nchw", c(tiny, images, "--layout", "nhwc"), 2, `--channels rgb gives 3 channels but model input "x" has 9 (?x3x9x9, NHWC)`},
		{"images for two inputs", c(twoInputs, images), 1, "image data feeds a model's one float32 input: model has 2 run-time inputs"},
		{"images of the wrong size", c(tiny, images, "--resize", "8x8", "-q"), 1, `data samples have shape [3x8x8] but model input "x" expects ?x3x9x9`},
		{"crop ratio", c(tiny, images, "--crop-ratio", "2"), 2, "--crop-ratio 2 is not in [0.01, 1]"},
		{"images", c(tiny, images, "--resize-mode", "crop", "--mean", "0.5", "--std", "0.25"), 0, "(2 calibration samples)"},
		{"images, quiet", c(tiny, images, "-q"), 0, "(2 calibration samples)"},
		{"npz", c(tiny, writeNpz(t, filepath.Join(dir, "good.npz"), x)), 0, "(4 calibration samples)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(out)
			cmd := subprocessCmd(tc.args...)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			code := 0
			if err := cmd.Run(); err != nil {
				code = -1
				if ee, ok := err.(interface{ ExitCode() int }); ok {
					code = ee.ExitCode()
				}
			}
			where := stderr.String()
			if code == 0 {
				where = stdout.String()
			}
			if code != tc.code || !strings.Contains(where, tc.want) {
				t.Fatalf("exit %d, want %d and %q\nstdout:\n%s\nstderr:\n%s", code, tc.code, tc.want, stdout.String(), stderr.String())
			}
			if strings.Contains(stderr.String(), "panic") {
				t.Errorf("panic:\n%s", stderr.String())
			}
			switch {
			case code != 0:
				if lines := strings.Count(strings.TrimSpace(stderr.String()), "\n") + 1; lines > 1 {
					t.Errorf("stderr has %d lines:\n%s", lines, stderr.String())
				}
				if _, err := os.Stat(out); err == nil {
					t.Error("a failed run left its output")
				}
			case tc.name == "images":
				if !strings.Contains(stderr.String(), "convpca: warning: "+images+": 1 file is not .png, .jpg or .jpeg and ignored") {
					t.Errorf("no warning of the ignored file:\n%s", stderr.String())
				}
			case tc.name == "images, quiet":
				if stderr.String() != "" {
					t.Errorf("-q printed:\n%s", stderr.String())
				}
			}
		})
	}
}

// TestImageDefaults: the preprocessing defaults that come from the model input's shape.
func TestImageDefaults(t *testing.T) {
	model := func(dims ...int64) *onnxio.Model {
		mp := &onnxpb.ModelProto{
			IrVersion:   proto.Int64(8),
			OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: proto.Int64(13)}},
			Graph: &onnxpb.GraphProto{
				Name:   proto.String("g"),
				Input:  []*onnxpb.ValueInfoProto{onnxio.TensorInfo("x", onnxpb.TensorProto_FLOAT, dims)},
				Output: []*onnxpb.ValueInfoProto{onnxio.TensorInfo("y", onnxpb.TensorProto_FLOAT, nil)},
				Node:   []*onnxpb.NodeProto{pnode("id", "Identity", []string{"x"}, []string{"y"})},
			},
		}
		m, err := onnxio.FromProto(mp)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	cases := []struct {
		dims  []int64
		given dataset.ImageOptions
		want  string // layout channels HxW, or the error
	}{
		{[]int64{-1, 3, 224, 224}, dataset.ImageOptions{}, "nchw rgb 224x224"},
		{[]int64{-1, 224, 224, 3}, dataset.ImageOptions{}, "nhwc rgb 224x224"},
		{[]int64{-1, 1, 28, 28}, dataset.ImageOptions{}, "nchw gray 28x28"},
		{[]int64{-1, 48, 320, 1}, dataset.ImageOptions{}, "nhwc gray 48x320"},
		{[]int64{-1, 3, 48, -1}, dataset.ImageOptions{Height: 48, Width: 320}, "nchw rgb 48x320"},
		{[]int64{-1, 3, 3, 3}, dataset.ImageOptions{}, "nchw rgb 3x3"},
		{[]int64{-1, -1, -1, -1}, dataset.ImageOptions{Height: 8, Width: 9, Channels: "bgr"}, "nchw bgr 8x9"},
		{[]int64{-1, 224, 224, 3}, dataset.ImageOptions{Layout: "nchw"}, `--channels rgb gives 3 channels but model input "x" has 224`},
		{[]int64{-1, -1, -1, -1}, dataset.ImageOptions{}, `model input "x" has no fixed spatial size (?x?x?x?): give --resize HxW`},
		{[]int64{-1, 3, 224}, dataset.ImageOptions{}, `image data feeds an input of 4 dimensions (N,C,H,W or N,H,W,C); model input "x" is ?x3x224`},
	}
	for _, c := range cases {
		o, err := dataOptions{Image: c.given}.imageOptions(model(c.dims...))
		got := fmt.Sprintf("%s %s %dx%d", o.Layout, o.Channels, o.Height, o.Width)
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("input %v, given %+v: %q, want %q", c.dims, c.given, got, c.want)
		}
	}
}
