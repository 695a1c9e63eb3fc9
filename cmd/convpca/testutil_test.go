package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convpca/convpca/dataset"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/ort"
	"github.com/convpca/convpca/rewrite"
	"github.com/convpca/convpca/testmodels"
)

const testdata = "/usr/share/libonnx-testdata/data"

// needRuntime skips a test when the onnxruntime library is missing, except under CI, where
// its absence is a failure.
func needRuntime(t *testing.T) {
	t.Helper()
	if err := ort.InitRuntime(""); err != nil {
		testmodels.RequireOrSkip(t, fmt.Errorf("onnxruntime unavailable: %w", err))
	}
}

// needDir skips when a folder of test material is missing (fails under CI).
func needDir(t *testing.T, dir string) {
	t.Helper()
	_, err := os.Stat(dir)
	testmodels.RequireOrSkip(t, err)
}

// cliRun runs the command line and returns its exit code, stdout and stderr.
func cliRun(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(append([]string{"convpca"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

var cpu = ort.Options{Runtime: ort.RuntimeOptions{Provider: ort.CPU}}

// outputs runs the model on the data and returns its first output.
func outputs(t *testing.T, model, data string, opts ort.Options) []float32 {
	t.Helper()
	m, err := onnxio.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	r, err := dataset.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []float32
	_, err = ort.Infer(m, r, nil, opts, func(b ort.Batch) error {
		out = append(out, b.Outputs[0].Data...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// maxRelErr returns max|got-want| / max|want|.
func maxRelErr(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var d, m float64
	for i := range want {
		d = math.Max(d, math.Abs(float64(got[i])-float64(want[i])))
		m = math.Max(m, math.Abs(float64(want[i])))
	}
	return d / m
}

// onnxCheck runs python3-onnx's full checker on a model; it skips (fails under CI) when
// python3-onnx is absent.
func onnxCheck(t *testing.T, path string) {
	t.Helper()
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import onnx").Run(); err != nil {
		testmodels.RequireOrSkip(t, fmt.Errorf("python3-onnx is not installed: %w", err))
	}
	// check_model(path, full_check=True) writes inferred shapes back into the file it checks:
	// check a copy, so the model under test stays as convpca wrote it.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "check.onnx")
	if err := os.WriteFile(cp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "-c", "import onnx,sys; onnx.checker.check_model(sys.argv[1], full_check=True)", cp).CombinedOutput()
	if err != nil {
		t.Errorf("ONNX checker refused %s: %v\n%s", filepath.Base(path), err, strings.TrimSpace(string(out)))
	}
}

func fullRank() rewrite.Options { return rewrite.Options{Rule: rewrite.DefaultRule, Full: true} }
