package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/convpca/convpca/ort"
	"github.com/convpca/convpca/testmodels"
)

// TestBenchLatency: bench latency prints one Markdown row per batch and model, the first
// model's speed-up being 1.00x at each batch.
func TestBenchLatency(t *testing.T) {
	needRuntime(t)
	a, b := testmodels.Path("tiny/conv_pad_stride.onnx"), testmodels.Path("tiny/conv1d.onnx")
	code, stdout, stderr := cliRun("bench", "latency", a, b, "--batch", "1,8", "--runs", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) < 6 || !strings.HasPrefix(lines[0], "| model | batch | median ms |") {
		t.Fatalf("bench latency printed:\n%s", stdout)
	}
	for i, want := range []string{"| " + a + " | 1 |", "| " + b + " | 1 |", "| " + a + " | 8 |", "| " + b + " | 8 |"} {
		if !strings.HasPrefix(lines[2+i], want) {
			t.Errorf("row %d is %q, want it to start with %q", i, lines[2+i], want)
		}
	}
	for _, i := range []int{2, 4} {
		if !strings.HasSuffix(lines[i], "| 1.00x |") {
			t.Errorf("row %q: the first model's speed-up must be 1.00x at each batch", lines[i])
		}
	}
}

// TestBenchErrors: bad bench invocations are usage errors (exit 2).
func TestBenchErrors(t *testing.T) {
	for _, args := range [][]string{
		{"bench"},
		{"bench", "nosuch"},
		{"bench", "latency"},
		{"bench", "overhead"},
		{"bench", "process", "a.onnx", "b.onnx"},
		{"bench", "overhead", "m.onnx", "--input-shape", "3,x"},
		{"bench", "memory", "m.onnx", "--batch", "0"},
		{"bench", "overhead", "m.onnx", "--batch", "16,64"},
		{"bench", "latency", "m.onnx", "--provider", "tpu"},
		{"bench", "latency", "m.onnx", "--threads", "-1"},
		{"bench", "layers"},
		{"bench", "layers", "a.onnx", "b.onnx"},
		{"bench", "layers", "m.onnx", "--batch", "1,2"},
		{"bench", "layers", "m.onnx", "--budget", "0"},
		{"bench", "layers", "m.onnx", "--rank-multiple", "-1"},
	} {
		if code, _, stderr := cliRun(args...); code != 2 {
			t.Errorf("%v: exit %d (%s), want 2", args, code, strings.TrimSpace(stderr))
		}
	}
}

// TestBenchSmall: overhead, memory and process on a few hundred MNIST images print their
// tables.
func TestBenchSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("runs calibrations in child processes")
	}
	needRuntime(t)
	dir := mnistDir(t)
	mnist := testmodels.Path("mnist_cnn.onnx")
	o := benchOptions{Models: []string{mnist}, Samples: []int{256}, Batches: []int{64}, Provider: ort.CPU, Repeat: 1, Runs: 1,
		Data: filepath.Join(dir, "train-images-idx3-ubyte.gz"),
		exe:  func(args ...string) *exec.Cmd { return subprocessCmd(args...) }}
	var out, errb strings.Builder

	o.Kind = "overhead"
	if err := runBench(o, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "| mnist_cnn.onnx | 256 | 64 | default | cpu |") {
		t.Errorf("bench overhead printed:\n%s", out.String())
	}

	out.Reset()
	o.Kind, o.Samples, o.Batches = "memory", []int{100, 300}, []int{32, 64}
	if err := runBench(o, &out, &errb); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| mnist_cnn.onnx | 100 | 64 |", "| mnist_cnn.onnx | 300 | 64 |", "| mnist_cnn.onnx | 300 | 32 |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("bench memory printed no row %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	o.Kind, o.Samples, o.Batches = "process", []int{200}, []int{64}
	if err := runBench(o, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "| convpca compress (calibration, rewrite, save) |") {
		t.Errorf("bench process printed:\n%s", out.String())
	}
	t.Logf("\n%s", out.String())
}

// TestBenchRandomShape: random data follows the model input, --input-shape fills its dynamic
// dimensions and must agree with its fixed ones.
func TestBenchRandomShape(t *testing.T) {
	in := ort.Input{Name: "x", Dims: []int64{-1, 3, -1, -1}}
	if got, err := sampleShape(in, []int{3, 48, 320}); err != nil || !slices.Equal(got, []int{3, 48, 320}) {
		t.Errorf("dynamic input with --input-shape: %v, %v", got, err)
	}
	for _, tc := range []struct {
		given []int
		want  string
	}{
		{nil, `model input "x" has shape ?x3x?x?; pass --input-shape for its dynamic dimensions`},
		{[]int{4, 48, 320}, `--input-shape 4,48,320 does not fit model input "x" of shape ?x3x?x? (batch first)`},
		{[]int{3, 48}, `--input-shape 3,48 has 2 dimensions; model input "x" has ?x3x?x? (batch first)`},
	} {
		if _, err := sampleShape(in, tc.given); err == nil || err.Error() != tc.want {
			t.Errorf("sampleShape(%v): %v, want %q", tc.given, err, tc.want)
		}
	}
	if got, err := sampleShape(ort.Input{Name: "x"}, []int{2, 5}); err != nil || !slices.Equal(got, []int{2, 5}) {
		t.Errorf("undeclared input with --input-shape: %v, %v", got, err)
	}
}

// TestBenchLayers: bench layers prints a row per Conv, Gemm and MatMul (skipped ones with the
// reason), the checks and the whole model; a second run reads every layer from the cache, and
// layers of the same shape are measured once.
func TestBenchLayers(t *testing.T) {
	needRuntime(t)
	dir := t.TempDir()
	mlpModel := filepath.Join(dir, "mlp.onnx")
	mlp(t, mlpModel)
	cache := filepath.Join(dir, "cache")
	for _, tc := range []struct {
		model    string
		rows     []string
		measured int
	}{
		{testmodels.Path("tiny/conv_pad_stride.onnx"), []string{"| conv1 | Conv 3->8 k3x3 s2x2 in 3x9x9 b4 |", "| conv2 | Conv 8->6 k3x3 d2x2 in 8x5x5 b4 |"}, 2},
		{testmodels.Path("tiny/grouped.onnx"), []string{"| conv_grouped | Conv | skipped: grouped conv (group=2) |"}, 0},
		{testmodels.Path("tiny/shared_weight.onnx"), []string{"| conv_a | Conv 4->4 k3x3 in 4x8x8 b4 |", "| conv_b | Conv 4->4 k3x3 in 4x8x8 b4 |"}, 2}, // one shape, two layouts: after the input, after a Conv
		{mlpModel, []string{"| fc1 | Gemm 6->8 in 6 b4 |", "| fc2 | Gemm 8->5 in 8 b4 |", "| fc3 | MatMul 5->4 in 5 b4 |"}, 3},
	} {
		args := []string{"bench", "layers", tc.model, "--batch", "4", "--budget", "0.1", "--cache", cache, "--rank-multiple", "4"}
		code, stdout, stderr := cliRun(args...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", tc.model, code, stderr)
		}
		for _, row := range tc.rows {
			if !strings.Contains(stdout, row) {
				t.Errorf("%s: no row starting %q in:\n%s", tc.model, row, stdout)
			}
		}
		for _, want := range []string{
			fmt.Sprintf("%d layers measured, 0 from the cache (%s)", tc.measured, cache),
			"| sum of the ", "| predicted / measured |", "ranks are multiples of 4",
		} {
			if !strings.Contains(stdout, want) {
				t.Errorf("%s: output lacks %q:\n%s", tc.model, want, stdout)
			}
		}
		if tc.measured > 0 && !strings.Contains(stdout, "| layer | r | k | chain ms |") {
			t.Errorf("%s: no checks table:\n%s", tc.model, stdout)
		}
		code, stdout, stderr = cliRun(args...)
		if code != 0 {
			t.Fatalf("%s, again: exit %d: %s", tc.model, code, stderr)
		}
		if want := fmt.Sprintf("0 layers measured, %d from the cache", tc.measured); !strings.Contains(stdout, want) {
			t.Errorf("%s, again: output lacks %q:\n%s", tc.model, want, stdout)
		}
	}
}
