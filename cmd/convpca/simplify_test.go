package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/ort"
	"github.com/convpca/convpca/testmodels"
)

// TestSimplifyCompress: compress folds PaddleOCR's affine Mul/Add and hard-swish idioms into
// the Convs before compressing (a model of 16 nodes keeps 7), the compressed model at full
// rank reproduces the model as given (checked here and by compress's own verification), the
// report counts the rewrites, --no-simplify leaves them, and statistics from calibrate fit
// compress only when both simplify alike.
func TestSimplifyCompress(t *testing.T) {
	needRuntime(t)
	dir := t.TempDir()
	model := testmodels.Path("tiny/affine_hardswish.onnx")
	data := filepath.Join(dir, "x.npy")
	x := ramp(24 * 4 * 8 * 8)
	for i := range x {
		x[i] = 6*x[i] - 3 // across hard-swish's bends at -3 and 3
	}
	writeNpy(t, data, []int{24, 4, 8, 8}, x)
	ops := func(path string) map[string]int {
		m, err := onnxio.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for _, node := range m.Graph.Nodes {
			n[node.Op]++
		}
		return n
	}
	opts := ort.Options{Batch: 8, Runtime: ort.RuntimeOptions{Provider: ort.CPU}}
	want := outputs(t, model, data, opts)

	out, rep := filepath.Join(dir, "s.onnx"), filepath.Join(dir, "s.json")
	code, stdout, stderr := cliRun("compress", model, "--calib", data, "--out", out, "--report", rep, "--rank", "full", "--provider", "cpu", "-q")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "simplified: 7 elementwise ops folded into Convs, 1 hard-swish") {
		t.Errorf("stdout does not report the simplification:\n%s", stdout)
	}
	if n := ops(out); n["Clip"]+n["Div"] != 0 || n["HardSigmoid"] != 1 || n["Add"] != 1 {
		t.Errorf("compressed model's ops %v: want no Clip or Div, one HardSigmoid, one Add (the shift before the padded depthwise Conv)", n)
	}
	if e := maxRelErr(outputs(t, out, data, opts), want); e > 1e-5 {
		t.Errorf("full rank after simplifying: relative error %.3g against the model as given", e)
	}
	var r struct {
		Simplified struct {
			Folded    int `json:"folded"`
			HardSwish int `json:"hard_swish"`
		} `json:"simplified"`
	}
	raw, err := os.ReadFile(rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &r); err != nil || r.Simplified.Folded != 7 || r.Simplified.HardSwish != 1 {
		t.Errorf("report simplified %+v (%v), want 7 folded and 1 hard-swish", r.Simplified, err)
	}

	plain := filepath.Join(dir, "plain.onnx")
	code, stdout, stderr = cliRun("compress", model, "--calib", data, "--out", plain, "--rank", "full", "--no-simplify", "--provider", "cpu", "-q")
	if code != 0 || strings.Contains(stdout, "simplified") || ops(plain)["Clip"] != 1 {
		t.Errorf("--no-simplify: exit %d, ops %v, stdout:\n%s%s", code, ops(plain), stdout, stderr)
	}

	stats := filepath.Join(dir, "s.cps")
	if code, _, stderr := cliRun("calibrate", model, "--calib", data, "--out", stats, "--provider", "cpu", "-q"); code != 0 {
		t.Fatalf("calibrate: exit %d: %s", code, stderr)
	}
	if code, _, stderr := cliRun("compress", model, "--stats", stats, "--out", filepath.Join(dir, "st.onnx"), "--provider", "cpu", "-q"); code != 0 {
		t.Errorf("compress --stats of a simplified calibration: exit %d: %s", code, stderr)
	}
	code, _, stderr = cliRun("compress", model, "--stats", stats, "--out", filepath.Join(dir, "st2.onnx"), "--no-simplify", "--provider", "cpu", "-q")
	if code != 1 || !strings.Contains(stderr, "--no-simplify on both commands or on neither") {
		t.Errorf("compress --no-simplify --stats of a simplified calibration: exit %d, %q", code, stderr)
	}
}
