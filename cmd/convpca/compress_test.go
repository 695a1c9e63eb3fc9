package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convpca/convpca/compress"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/testmodels"
)

// TestCompressCLI runs compress on a tiny padded, strided, dilated two-Conv model through the
// command line and checks the outputs, the table, the JSON report and the rank flags.
func TestCompressCLI(t *testing.T) {
	needRuntime(t)
	dir := t.TempDir()
	model := testmodels.Path("tiny/conv_pad_stride.onnx") // conv1 3->8 k3 p1 s2, relu, conv2 8->6 k3 d2
	data := filepath.Join(dir, "x.npy")
	writeNpy(t, data, []int{40, 3, 9, 9}, ramp(40*3*9*9))
	want := outputs(t, model, data, cpu)

	tests := []struct {
		name    string
		args    []string
		ranks   map[string]int // expected rank of applied layers
		applied int
		maxErr  float64
		skipped string // a layer that must be skipped because it would not get cheaper
	}{
		{"full", []string{"--rank", "full"}, map[string]int{"conv1": 8, "conv2": 6}, 2, 1e-5, ""},
		{"fixed", []string{"--rank", "conv1=2", "--rank", "conv2=1"}, map[string]int{"conv1": 2, "conv2": 1}, 2, -1, ""},
		{"fixed-no-gain", []string{"--rank", "conv1=7"}, nil, -1, -1, "conv1"},
		{"energy", []string{"--energy", "0.5", "--batch", "7"}, nil, -1, -1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, tt.name+".onnx")
			report := filepath.Join(dir, tt.name+".json")
			args := append([]string{"compress", model, "--calib", data, "--out", out, "--report", report, "--provider", "cpu", "--side", "output"}, tt.args...)
			code, stdout, stderr := cliRun(args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if !strings.Contains(stdout, "total") || !strings.Contains(stdout, "conv1") {
				t.Errorf("table lacks rows:\n%s", stdout)
			}
			var rep struct {
				Model   string `json:"model"`
				Applied int    `json:"applied"`
				Samples int    `json:"calibration_samples"`
				Layers  []struct {
					Name    string  `json:"name"`
					Rank    int     `json:"rank"`
					Applied bool    `json:"applied"`
					Reason  string  `json:"reason"`
					Energy  float64 `json:"retained_energy"`
					Before  struct{ MACs int64 }
					After   struct{ MACs int64 }
				} `json:"layers"`
				TotalBefore struct {
					MACs int64 `json:"macs"`
				} `json:"total_before"`
			}
			b, err := os.ReadFile(report)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Model != model || rep.Samples != 40 || len(rep.Layers) != 2 {
				t.Errorf("report: model %q samples %d layers %d", rep.Model, rep.Samples, len(rep.Layers))
			}
			// conv1: 5x5 output, 8·3·9 per position = 1,080 MACs x 25; conv2: 1x1 output of 6·8·9.
			if rep.Layers[0].Before.MACs != 25*8*27 || rep.Layers[1].Before.MACs != 6*72 || rep.TotalBefore.MACs != 25*8*27+6*72 {
				t.Errorf("MACs before: %d, %d, total %d", rep.Layers[0].Before.MACs, rep.Layers[1].Before.MACs, rep.TotalBefore.MACs)
			}
			if tt.applied >= 0 && rep.Applied != tt.applied {
				t.Errorf("applied %d layers, want %d", rep.Applied, tt.applied)
			}
			for _, l := range rep.Layers {
				if k, ok := tt.ranks[l.Name]; ok && (l.Rank != k || !l.Applied) {
					t.Errorf("layer %s: rank %d applied %v, want rank %d applied", l.Name, l.Rank, l.Applied, k)
				}
				if l.Name == tt.skipped && (l.Applied || !strings.Contains(l.Reason, "would not lower MACs")) {
					t.Errorf("layer %s: applied %v, reason %q; want skipped as no cheaper", l.Name, l.Applied, l.Reason)
				}
				if !l.Applied && l.Reason == "" {
					t.Errorf("layer %s skipped without a reason", l.Name)
				}
				if !l.Applied && l.After.MACs != l.Before.MACs {
					t.Errorf("skipped layer %s changes MACs", l.Name)
				}
			}
			m, err := onnxio.Load(out)
			if err != nil {
				t.Fatal(err)
			}
			convs := 0
			for _, n := range m.Graph.Nodes {
				if n.Op == "Conv" {
					convs++
				}
			}
			if convs != 2+rep.Applied {
				t.Errorf("compressed model has %d Convs, want %d", convs, 2+rep.Applied)
			}
			if tt.maxErr > 0 {
				if e := maxRelErr(outputs(t, out, data, cpu), want); e > tt.maxErr {
					t.Errorf("full rank changed outputs by %.3g relative", e)
				}
			}
			onnxCheck(t, out)
		})
	}
}

// TestMaxErrorHeldOut: --max-error without --eval-data calibrates on all but the held-out
// samples (16 of 40) and checks each probe on those, as the default does.
func TestMaxErrorHeldOut(t *testing.T) {
	needRuntime(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "x.npy")
	writeNpy(t, data, []int{40, 3, 9, 9}, ramp(40*3*9*9))
	code, _, stderr := cliRun("compress", testmodels.Path("tiny/conv_pad_stride.onnx"), "--calib", data, "--out", filepath.Join(dir, "out.onnx"),
		"--provider", "cpu", "--max-error", "0.05", "--search-steps", "3", "--report", filepath.Join(dir, "r.json"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep struct {
		Samples int              `json:"calibration_samples"`
		Probes  []compress.Probe `json:"probes"`
	}
	if b, err := os.ReadFile(filepath.Join(dir, "r.json")); err != nil || json.Unmarshal(b, &rep) != nil {
		t.Fatalf("report: %v", err)
	}
	if rep.Samples != 24 || len(rep.Probes) == 0 {
		t.Errorf("calibrated on %d samples with %d probes, want 24 and some", rep.Samples, len(rep.Probes))
	}
	for _, p := range rep.Probes {
		if p.Note == "" && p.OK != (p.Score <= 0.05) {
			t.Errorf("probe %+v: within bound %v", p, p.OK)
		}
	}
}

// TestSearchNoneWithin: when no probe of a --max-error search stays within the bound, the
// output is the model as it was, and the run says so.
func TestSearchNoneWithin(t *testing.T) {
	needRuntime(t)
	dir := t.TempDir()
	model := testmodels.Path("tiny/conv_pad_stride.onnx")
	data := filepath.Join(dir, "x.npy")
	writeNpy(t, data, []int{40, 3, 9, 9}, ramp(40*3*9*9))
	out := filepath.Join(dir, "out.onnx")
	code, stdout, stderr := cliRun("compress", model, "--calib", data, "--out", out, "--provider", "cpu",
		"--max-error", "1e-12", "--eval-data", data, "--search-steps", "3", "--report", filepath.Join(dir, "r.json"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "no probe stayed within the bound") || strings.Count(stdout, "false") != 3 {
		t.Errorf("stdout:\n%s", stdout)
	}
	if !strings.Contains(stderr, "--eval-data is the calibration data") {
		t.Errorf("no warning that evaluation data is the calibration data: %q", stderr)
	}
	var rep struct {
		Probes []compress.Probe `json:"probes"`
	}
	if b, err := os.ReadFile(filepath.Join(dir, "r.json")); err != nil || json.Unmarshal(b, &rep) != nil || len(rep.Probes) != 3 {
		t.Errorf("report probes: %+v (%v)", rep.Probes, err)
	}
	m, err := onnxio.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Graph.Nodes) != 3 {
		t.Errorf("output has %d nodes, want the original 3", len(m.Graph.Nodes))
	}
	if e := maxRelErr(outputs(t, out, data, cpu), outputs(t, model, data, cpu)); e != 0 {
		t.Errorf("output model differs from the original by %g", e)
	}
}
