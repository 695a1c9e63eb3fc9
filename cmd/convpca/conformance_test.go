package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convpca/convpca/dataset"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/rewrite"
)

// TestFullRankConformance: --rank full on every PyTorch-exported Conv1d/2d/3d model of
// libonnx-testdata, calibrated on its own input, reproduces the expected output to 1e-4
// relative; grouped Convs are reported skipped and the model is left unchanged.
func TestFullRankConformance(t *testing.T) {
	needRuntime(t)
	dir := filepath.Join(testdata, "pytorch-converted")
	needDir(t, dir)
	var cases []string
	for _, pat := range []string{"test_Conv1d*", "test_Conv2d*", "test_Conv3d*"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		cases = append(cases, m...)
	}
	if len(cases) < 20 {
		t.Fatalf("found %d Conv cases, want the 24 of libonnx-testdata", len(cases))
	}
	for _, side := range []rewrite.Side{rewrite.SideOutput, rewrite.SideInput, rewrite.SideBoth} {
		for _, c := range cases {
			name := filepath.Base(c)
			t.Run(string(side)+"/"+name, func(t *testing.T) {
				in := filepath.Join(c, "test_data_set_0", "input_0.pb")
				want := filepath.Join(c, "test_data_set_0", "output_0.pb")
				out := filepath.Join(t.TempDir(), "out.onnx")
				rep, err := runCompress(compressOptions{
					Model: filepath.Join(c, "model.onnx"), Calib: in, Out: out,
					Calibration: cpu, Rewrite: rewrite.Options{Side: side, Full: true},
				}, &strings.Builder{}, &strings.Builder{})
				if err != nil {
					t.Fatal(err)
				}
				grouped := strings.Contains(name, "group") || strings.Contains(name, "depthwise")
				for _, l := range rep.Layers {
					if grouped != !l.Applied {
						t.Errorf("layer %s applied=%v reason=%q; grouped=%v", l.Name, l.Applied, l.Reason, grouped)
					}
					if grouped && !strings.Contains(l.Reason, "grouped conv") {
						t.Errorf("layer %s skipped for %q, want the grouped-conv reason", l.Name, l.Reason)
					}
				}
				if grouped {
					orig, _ := onnxio.Load(filepath.Join(c, "model.onnx"))
					a, _ := orig.Marshal()
					b, err := os.ReadFile(out)
					if err != nil || string(a) != string(b) {
						t.Errorf("grouped model changed by a run that applied nothing")
					}
				}
				wt := readTensor(t, want)
				got := outputs(t, out, in, cpu)
				if e := maxRelErr(got, wt); e > 1e-4 {
					t.Errorf("max relative error %.3g > 1e-4", e)
				}
				onnxCheck(t, out)
			})
		}
	}
}

func readTensor(t *testing.T, path string) []float32 {
	t.Helper()
	r, err := dataset.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	size := 1
	for _, d := range r.Shape() {
		size *= d
	}
	buf := make([]float32, r.Len()*size)
	if n, err := r.Read(buf); err != nil || n != r.Len() {
		t.Fatalf("read %s: %d of %d samples, %v", path, n, r.Len(), err)
	}
	return buf
}
