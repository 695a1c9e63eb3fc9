package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convpca/convpca/calib"
	"github.com/convpca/convpca/testmodels"
)

// TestBenchLatency: bench latency prints one Markdown row per model and batch, the first
// model's speed-up being 1.00x.
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
	for i, want := range []string{"| " + a + " | 1 |", "| " + a + " | 8 |", "| " + b + " | 1 |", "| " + b + " | 8 |"} {
		if !strings.HasPrefix(lines[2+i], want) {
			t.Errorf("row %d is %q, want it to start with %q", i, lines[2+i], want)
		}
	}
	if !strings.HasSuffix(lines[2], "| 1.00x |") {
		t.Errorf("first row %q: the first model's speed-up must be 1.00x", lines[2])
	}
}

// TestBenchErrors: bad bench invocations are usage errors (exit 2).
func TestBenchErrors(t *testing.T) {
	for _, args := range [][]string{
		{"bench"},
		{"bench", "nosuch"},
		{"bench", "latency"},
		{"bench", "overhead", "extra"},
		{"bench", "overhead", "--models", "vgg"},
		{"bench", "memory", "--batch", "0"},
		{"bench", "overhead", "--batch", "16,64"},
		{"bench", "latency", "m.onnx", "--provider", "tpu"},
		{"bench", "latency", "m.onnx", "--threads", "-1"},
	} {
		if code, _, stderr := cliRun(args...); code != 2 {
			t.Errorf("%v: exit %d (%s), want 2", args, code, strings.TrimSpace(stderr))
		}
	}
}

// TestBenchSmall: overhead, memory and process on a few hundred MNIST images print their
// tables; the ResNet is left out (it needs python3-torch and minutes).
func TestBenchSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("runs calibrations in child processes")
	}
	needRuntime(t)
	dir := mnistDir(t)
	o := benchOptions{Models: []string{"mnist"}, Samples: []int{256}, Batches: []int{64}, Provider: calib.CPU, Repeat: 1, Runs: 1, MNIST: dir,
		exe: func(args ...string) *exec.Cmd { return subprocessCmd(args...) }}
	var out, errb strings.Builder

	o.Kind = "overhead"
	if err := runBench(o, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "| mnist | 256 | 64 | default | cpu |") {
		t.Errorf("bench overhead printed:\n%s", out.String())
	}

	out.Reset()
	o.Kind, o.Samples, o.Batches = "memory", []int{100, 300}, []int{32, 64}
	if err := runBench(o, &out, &errb); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| mnist | 100 | 64 |", "| mnist | 300 | 64 |", "| mnist | 300 | 32 |"} {
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

// TestBenchResNetSkip: without torch the ResNet is skipped with a message, not an error.
func TestBenchResNetSkip(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "python")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var errb strings.Builder
	models, err := benchModels(benchOptions{Models: []string{"resnet18"}, Python: fake, Work: t.TempDir()}, &errb)
	if err != nil || len(models) != 0 {
		t.Fatalf("benchModels: %v, %d models", err, len(models))
	}
	if !strings.Contains(errb.String(), "resnet18 skipped: "+fake+" has no torch") {
		t.Errorf("stderr %q", errb.String())
	}
}
