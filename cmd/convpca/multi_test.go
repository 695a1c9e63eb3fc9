package main

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/testmodels"
)

// npzArray is one array of an .npz file: its name, numpy dtype, shape and little-endian bytes.
type npzArray struct {
	name, descr string
	shape       []int
	data        []byte
}

// writeNpz writes arrays as an .npz file (a zip of .npy files, as numpy.savez writes).
func writeNpz(t *testing.T, path string, arrays ...npzArray) string {
	t.Helper()
	var b bytes.Buffer
	z := zip.NewWriter(&b)
	for _, a := range arrays {
		dims := make([]string, len(a.shape))
		for i, d := range a.shape {
			dims[i] = fmt.Sprint(d)
		}
		h := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s,), }", a.descr, strings.Join(dims, ", "))
		for (10+len(h)+1)%64 != 0 {
			h += " "
		}
		h += "\n"
		w, err := z.Create(a.name + ".npy")
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("\x93NUMPY\x01\x00"))
		binary.Write(w, binary.LittleEndian, uint16(len(h)))
		w.Write([]byte(h))
		w.Write(a.data)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// wave returns n float32 values of a smooth pseudo-random signal, little-endian.
func wave(n int, seed float64) []byte {
	b := make([]byte, 4*n)
	for i := range n {
		v := math.Sin(float64(i)*0.37+seed) + 0.5*math.Cos(float64(i)*0.011*seed)
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(v)))
	}
	return b
}

// halfs returns the float32 values of wave(n) as IEEE half-precision numbers.
func halfs(n int, seed float64) []byte {
	w := wave(n, seed)
	b := make([]byte, 2*n)
	for i := range n {
		f := math.Float32frombits(binary.LittleEndian.Uint32(w[4*i:]))
		// Values are within (-2, 2): normal halves, exponent 15 + e, 10 fraction bits (rounded).
		bits := math.Float32bits(f)
		sign := uint16(bits>>16) & 0x8000
		exp := int(bits>>23&0xff) - 127 + 15
		frac := (bits & 0x7fffff) + 0x1000 // round half up
		if frac&0x800000 != 0 {
			frac, exp = 0, exp+1
		}
		h := sign
		if exp > 0 {
			h |= uint16(exp)<<10 | uint16(frac>>13)
		}
		binary.LittleEndian.PutUint16(b[2*i:], h)
	}
	return b
}

func ints64(n int, f func(i int) int64) []byte {
	b := make([]byte, 8*n)
	for i := range n {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(f(i)))
	}
	return b
}

func ints32(n int, f func(i int) int32) []byte {
	b := make([]byte, 4*n)
	for i := range n {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(f(i)))
	}
	return b
}

// multiData writes .npz data for the models of testmodels/multi (n samples).
func multiData(t *testing.T, dir string, n int) (imageClass, dtypes string) {
	t.Helper()
	imageClass = writeNpz(t, filepath.Join(dir, "image_class.npz"),
		npzArray{"x", "<f4", []int{n, 3, 16, 16}, wave(n*3*16*16, 1)},
		npzArray{"cls", "<i8", []int{n}, ints64(n, func(i int) int64 { return int64(i*7) % 5 })},
	)
	mask := make([]byte, n*64)
	for i := range mask {
		if (i*13)%5 != 0 {
			mask[i] = 1
		}
	}
	dtypes = writeNpz(t, filepath.Join(dir, "dtypes.npz"),
		npzArray{"x", "<f2", []int{n, 3, 8, 8}, halfs(n*3*64, 2)},
		npzArray{"mask", "|b1", []int{n, 1, 8, 8}, mask},
		npzArray{"k", "<i4", []int{n, 1}, ints32(n, func(i int) int32 { return int32(i%7) - 3 })},
		npzArray{"ids", "<i8", []int{n}, ints64(n, func(i int) int64 { return int64(i % 5) })},
	)
	return imageClass, dtypes
}

// TestMultiInput: models of several inputs (an image and a class id; float16, bool, int32
// and int64 inputs) calibrate, compress exactly at --rank full, evaluate (--eval-cmd) and
// diff, fed from .npz files.
func TestMultiInput(t *testing.T) {
	needRuntime(t)
	dir := t.TempDir()
	imageClass, dtypes := multiData(t, dir, 40)
	for _, c := range []struct{ model, data string }{
		{testmodels.Path("multi/image_class.onnx"), imageClass},
		{testmodels.Path("multi/dtypes.onnx"), dtypes},
	} {
		name := strings.TrimSuffix(filepath.Base(c.model), ".onnx")
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(dir, name+"_full.onnx")
			code, stdout, stderr := cliRun("compress", c.model, "--calib", c.data, "--rank", "full", "--batch", "16", "--out", out, "--provider", "cpu")
			if code != 0 {
				t.Fatalf("compress: exit %d\n%s%s", code, stdout, stderr)
			}
			if !strings.Contains(stdout, " applied, 0 skipped") || !strings.Contains(stdout, "(40 calibration samples)") {
				t.Errorf("compress report:\n%s", stdout)
			}
			onnxCheck(t, out)
			want := outputs(t, c.model, c.data, cpu)
			got := outputs(t, out, c.data, cpu)
			e := maxRelErr(got, want)
			t.Logf("%s at full rank: max |Δ| / max |y| = %.3g over %d values", name, e, len(want))
			if e > 1e-5 {
				t.Errorf("full rank changed the outputs by %.3g relative", e)
			}
			// A real compression, its outputs compared as diff --data does, and calibrate.
			small := filepath.Join(dir, name+"_small.onnx")
			if code, stdout, stderr := cliRun("compress", c.model, "--calib", c.data, "--target-macs", "0.5", "--out", small, "--provider", "cpu", "-q"); code != 0 {
				t.Fatalf("compress --target-macs: exit %d\n%s%s", code, stdout, stderr)
			}
			before, _ := onnxio.Load(c.model)
			after, err := onnxio.Load(small)
			if err != nil {
				t.Fatal(err)
			}
			cmp, err := compareOn(before, after, c.data, dataOptions{}, cpu)
			if err != nil || cmp.Samples != 40 || len(cmp.Outputs) != 1 || cmp.Outputs[0].RelL2 == nil {
				t.Errorf("compare outputs: %+v, %v", cmp, err)
			} else {
				t.Logf("%s at --target-macs 0.5: rel. L2 error %.3g", name, *cmp.Outputs[0].RelL2)
			}
			code, stdout, stderr = cliRun("calibrate", c.model, "--calib", c.data, "--shard", "1/3", "--out", filepath.Join(dir, name+".cps"), "--provider", "cpu")
			if code != 0 || !strings.Contains(stdout, "13 samples") {
				t.Errorf("calibrate: exit %d\n%s%s", code, stdout, stderr)
			}
			if name == "image_class" {
				// Top-1 accuracy against the original's own classes is 1 for the original.
				labels := filepath.Join(dir, "labels.npy")
				classes := make([]byte, 0, 8*40)
				for i := range 40 {
					row := want[4*i : 4*i+4]
					best := 0
					for j, v := range row {
						if v > row[best] {
							best = j
						}
					}
					classes = binary.LittleEndian.AppendUint64(classes, uint64(best))
				}
				writeRaw(t, labels, npyHeader("<i8", "False", "40,"), classes)
				code, stdout, stderr = cliRun("eval", c.model, "--data", c.data, "--labels", labels, "--provider", "cpu")
				if code != 0 || stdout != "top-1 accuracy 1.0000 (40 samples)\n" {
					t.Errorf("eval: exit %d\n%s%s", code, stdout, stderr)
				}
			}
		})
	}
}

// TestMultiInputErrors: .npz data that does not fit a model of several inputs.
func TestMultiInputErrors(t *testing.T) {
	needRuntime(t)
	dir := t.TempDir()
	model := testmodels.Path("multi/image_class.onnx")
	x := npzArray{"x", "<f4", []int{4, 3, 16, 16}, wave(4*3*16*16, 1)}
	cls := npzArray{"cls", "<i8", []int{4}, ints64(4, func(i int) int64 { return int64(i) })}
	npy := filepath.Join(dir, "x.npy")
	writeNpy(t, npy, []int{4, 3, 16, 16}, make([]float32, 4*3*16*16))
	cases := []struct {
		name string
		data string
		want string
	}{
		{"missing input", writeNpz(t, filepath.Join(dir, "missing.npz"), x), `the data has no array for model input "cls" (int64 ?); it holds x (float32 [3x16x16])`},
		{"extra array", writeNpz(t, filepath.Join(dir, "extra.npz"), x, cls, npzArray{"y", "<f4", []int{4}, wave(4, 0)}), `the data's array "y" is no input of the model (its inputs: x (float32 ?x3x16x16), cls (int64 ?))`},
		{"wrong dtype", writeNpz(t, filepath.Join(dir, "dtype.npz"), x, npzArray{"cls", "<i4", []int{4}, ints32(4, func(i int) int32 { return 1 })}), `model input "cls" is int64 but the data's array "cls" is int32`},
		{"wrong shape", writeNpz(t, filepath.Join(dir, "shape.npz"), npzArray{"x", "<f4", []int{4, 3, 15, 16}, wave(4*3*15*16, 1)}, cls), `data samples have shape [3x15x16] but model input "x" expects ?x3x16x16 (batch first)`},
		{"sample counts", writeNpz(t, filepath.Join(dir, "counts.npz"), x, npzArray{"cls", "<i8", []int{3}, ints64(3, func(int) int64 { return 0 })}), `arrays hold different sample counts (first axes): "x" 4, "cls" 3`},
		{"npy for two inputs", npy, `model has 2 run-time inputs; convpca feeds exactly one from .npy, .pb, IDX or image data: give an .npz of one array per input (x (float32 ?x3x16x16), cls (int64 ?))`},
		{"class out of range", writeNpz(t, filepath.Join(dir, "range.npz"), x, npzArray{"cls", "<i8", []int{4}, ints64(4, func(int) int64 { return 9 })}), "onnxruntime: "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, "out.onnx")
			code, stderr := subprocess(t, nil, "compress", model, "--calib", c.data, "--out", out, "--provider", "cpu")
			if code != 1 || !strings.Contains(stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want 1 and %q", code, stderr, c.want)
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("stderr has several lines:\n%s", stderr)
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("a failed run left its output")
			}
		})
	}
}
