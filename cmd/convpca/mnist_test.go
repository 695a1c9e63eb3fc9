package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/convpca/convpca/rewrite"
	"github.com/convpca/convpca/testmodels"
)

func mnistDir(t *testing.T) string {
	t.Helper()
	dir, err := testmodels.MNISTDir()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return dir
}

func accuracy(t *testing.T, model, images, labels string) float64 {
	t.Helper()
	var out strings.Builder
	acc, err := runEval(model, images, labels, cpu, &out)
	if err != nil {
		t.Fatal(err)
	}
	return acc
}

// TestMNIST: the default rule (threshold 1e-3, output side, every Conv) calibrated on 2,000
// training images at least halves the MACs of the bundled model and costs at most 0.2 points
// of top-1 accuracy on the 10,000 test images; the result passes the ONNX checker.
func TestMNIST(t *testing.T) {
	needRuntime(t)
	data := mnistDir(t)
	model := testmodels.Path("mnist_cnn.onnx")
	out := filepath.Join(t.TempDir(), "mnist_pca.onnx")
	opts := cpu
	opts.MaxSamples = 2000
	var table strings.Builder
	rep, err := runCompress(compressOptions{
		Model: model, Calib: filepath.Join(data, "train-images-idx3-ubyte.gz"), Out: out,
		Calibration: opts, Rewrite: defaultOptions(),
	}, &table, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
	if rep.Samples != 2000 {
		t.Errorf("calibrated on %d samples, want 2000", rep.Samples)
	}
	if r := rep.MACRatio(); r < 2 {
		t.Errorf("MACs fell %.2fx, want at least 2x", r)
	}
	images, labels := filepath.Join(data, "t10k-images-idx3-ubyte.gz"), filepath.Join(data, "t10k-labels-idx1-ubyte.gz")
	before, after := accuracy(t, model, images, labels), accuracy(t, out, images, labels)
	t.Logf("top-1 accuracy %.4f -> %.4f, MACs %d -> %d (%.2fx)", before, after, rep.Before.MACs, rep.After.MACs, rep.MACRatio())
	if before < 0.98 {
		t.Errorf("original accuracy %.4f; the bundled model should be trained", before)
	}
	if before-after > 0.002 {
		t.Errorf("accuracy dropped %.2f points, want at most 0.2", 100*(before-after))
	}
	onnxCheck(t, out)

	// Deterministic: the same run gives the same bytes.
	again := filepath.Join(t.TempDir(), "again.onnx")
	if _, err := runCompress(compressOptions{
		Model: model, Calib: filepath.Join(data, "train-images-idx3-ubyte.gz"), Out: again,
		Calibration: opts, Rewrite: defaultOptions(),
	}, &strings.Builder{}, &strings.Builder{}); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(out)
	b, _ := os.ReadFile(again)
	if !bytes.Equal(a, b) {
		t.Errorf("two identical runs wrote different models (%d and %d bytes)", len(a), len(b))
	}
}

// TestMNISTTarget: --target-macs 0.2 (both sides, one-shot statistics from 2,000 training
// images) gives at least 5x fewer MACs for at most 0.3 points of top-1 accuracy.
func TestMNISTTarget(t *testing.T) {
	needRuntime(t)
	data := mnistDir(t)
	model := testmodels.Path("mnist_cnn.onnx")
	out := filepath.Join(t.TempDir(), "mnist_02.onnx")
	opts := cpu
	opts.MaxSamples = 2000
	var table strings.Builder
	rep, err := runCompress(compressOptions{
		Model: model, Calib: filepath.Join(data, "train-images-idx3-ubyte.gz"), Out: out,
		Calibration: opts, Rewrite: rewrite.Options{Side: rewrite.SideBoth, TargetMACs: 0.2},
	}, &table, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", table.String())
	if r := rep.MACRatio(); r < 5 {
		t.Errorf("MACs fell %.2fx, want at least 5x", r)
	}
	images, labels := filepath.Join(data, "t10k-images-idx3-ubyte.gz"), filepath.Join(data, "t10k-labels-idx1-ubyte.gz")
	before, after := accuracy(t, model, images, labels), accuracy(t, out, images, labels)
	t.Logf("top-1 accuracy %.4f -> %.4f at %.2fx fewer MACs", before, after, rep.MACRatio())
	if before-after > 0.003 {
		t.Errorf("accuracy dropped %.2f points, want at most 0.3", 100*(before-after))
	}
	onnxCheck(t, out)
}

// TestCalibrationMemoryFlat: peak resident memory of a calibration over 1,000 and over 20,000
// MNIST images differs by less than 10% (statistics are streamed sums, data is streamed).
func TestCalibrationMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two calibrations")
	}
	needRuntime(t)
	data := mnistDir(t)
	peak := func(n string) int64 {
		cmd := subprocessCmd("compress", testmodels.Path("mnist_cnn.onnx"), "--calib", filepath.Join(data, "train-images-idx3-ubyte.gz"),
			"--max-samples", n, "--provider", "cpu", "--out", filepath.Join(t.TempDir(), "m.onnx"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB
	}
	small, large := peak("1000"), peak("20000")
	t.Logf("peak RSS: 1,000 samples %d KiB, 20,000 samples %d KiB", small, large)
	if d := float64(large-small) / float64(small); d > 0.10 || d < -0.10 {
		t.Errorf("peak memory differs by %.1f%% (%d vs %d KiB), want < 10%%", 100*d, small, large)
	}
}

func defaultOptions() rewrite.Options { return rewrite.Options{Rule: rewrite.DefaultRule} }
