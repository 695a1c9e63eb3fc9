package main

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/convpca/convpca/rewrite"
	"github.com/convpca/convpca/testmodels"
)

// diffJSON is what the tests read of diff --json (see DIFF_SCHEMA.md).
type diffJSON struct {
	Schema string `json:"schema"`
	Before struct {
		Model string `json:"model"`
		Opset int64  `json:"opset"`
	} `json:"before"`
	Changes struct {
		Opset   *struct{ Before, After int64 } `json:"opset"`
		Inputs  []json.RawMessage              `json:"inputs"`
		Outputs []json.RawMessage              `json:"outputs"`
	} `json:"changes"`
	Layers []struct {
		Name       string `json:"name"`
		Status     string `json:"status"`
		ReplacedBy []struct {
			Name, Op string
		} `json:"replaced_by"`
		MACsBefore   int64    `json:"macs_before"`
		MACsAfter    int64    `json:"macs_after"`
		ParamsBefore int64    `json:"params_before"`
		ParamsAfter  int64    `json:"params_after"`
		MACsRatio    *float64 `json:"macs_ratio"`
	} `json:"layers"`
	Total struct {
		Replaced     int   `json:"replaced"`
		MACsBefore   int64 `json:"macs_before"`
		MACsAfter    int64 `json:"macs_after"`
		ParamsBefore int64 `json:"params_before"`
		ParamsAfter  int64 `json:"params_after"`
	} `json:"total"`
	OutputComparison *struct {
		Samples int `json:"samples"`
		Outputs []struct {
			Name   string   `json:"name"`
			MaxAbs float64  `json:"max_abs_diff"`
			RelL2  *float64 `json:"rel_l2"`
			Top1   *float64 `json:"top1_agreement"`
		} `json:"outputs"`
	} `json:"output_comparison"`
}

func runDiffJSON(t *testing.T, args ...string) diffJSON {
	t.Helper()
	code, stdout, stderr := cliRun(append([]string{"diff", "--json", "--provider", "cpu"}, args...)...)
	if code != 0 {
		t.Fatalf("diff: exit %d: %s", code, stderr)
	}
	var d diffJSON
	if err := json.Unmarshal([]byte(stdout), &d); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	return d
}

// TestDiffCLI compresses the tiny two-Conv model and checks that diff finds what compress
// replaced, with the costs compress reported and a hand computation, and that a full-rank
// rewrite leaves the outputs as they were.
func TestDiffCLI(t *testing.T) {
	needRuntime(t)
	dir := t.TempDir()
	model := testmodels.Path("tiny/conv_pad_stride.onnx") // conv1 3->8 k3 p1 s2 (9x9 -> 5x5), relu, conv2 8->6 k3 d2 (-> 1x1)
	data := filepath.Join(dir, "x.npy")
	writeNpy(t, data, []int{40, 3, 9, 9}, ramp(40*3*9*9))

	tests := []struct {
		name    string
		rewrite rewrite.Options
		// hand-computed cost after, per layer, and the status
		status      map[string]string
		macs, param map[string]int64
		maxAbs      float64 // bound on the max abs output difference; 0: not checked
	}{
		{
			// conv1 at output rank 2: core 3->2 k3 on 5x5 (no bias) and 1x1 up 2->8 with bias.
			// conv2 at rank 6 of 6 would not get cheaper: left as it is.
			name:    "rank",
			rewrite: rewrite.Options{Side: rewrite.SideOutput, Rule: rewrite.DefaultRule, Ranks: map[string]rewrite.Ranks{"conv1": {Out: 2}, "conv2": {Out: 6}}},
			status:  map[string]string{"conv1": "replaced", "conv2": "unchanged"},
			macs:    map[string]int64{"conv1": 2*27*25 + 8*2*25, "conv2": 6 * 72},
			param:   map[string]int64{"conv1": 2*27 + 8*2 + 8, "conv2": 6 * 72},
		},
		{
			// Every channel kept: core 3->8 and up 8->8 for conv1, core 8->6 and up 6->6 for conv2.
			name:    "full",
			rewrite: rewrite.Options{Side: rewrite.SideOutput, Rule: rewrite.DefaultRule, Full: true},
			status:  map[string]string{"conv1": "replaced", "conv2": "replaced"},
			macs:    map[string]int64{"conv1": 8*27*25 + 8*8*25, "conv2": 6*72 + 6*6},
			param:   map[string]int64{"conv1": 8*27 + 8*8 + 8, "conv2": 6*72 + 6*6 + 6},
			maxAbs:  1e-4,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, tt.name+".onnx")
			rep, err := runCompress(compressOptions{Model: model, Calib: data, Out: out, Calibration: cpu, Rewrite: tt.rewrite}, &strings.Builder{}, &strings.Builder{})
			if err != nil {
				t.Fatal(err)
			}
			d := runDiffJSON(t, model, out, "--data", data)
			if d.Schema != "convpca-diff/1" || d.Before.Model != model || d.Before.Opset != 13 {
				t.Errorf("schema %q, before %+v", d.Schema, d.Before)
			}
			if d.Changes.Opset != nil || len(d.Changes.Inputs) != 0 || len(d.Changes.Outputs) != 0 {
				t.Errorf("changes %+v, want none", d.Changes)
			}
			if len(d.Layers) != len(rep.Layers) {
				t.Fatalf("diff lists %d layers, compress %d", len(d.Layers), len(rep.Layers))
			}
			replaced := 0
			for i, l := range d.Layers {
				r := rep.Layers[i]
				if l.Name != r.Name || l.Status != tt.status[l.Name] {
					t.Errorf("layer %d: %s %s, want %s %s", i, l.Name, l.Status, r.Name, tt.status[r.Name])
				}
				if l.MACsBefore != r.Before.MACs || l.MACsAfter != r.After.MACs || l.ParamsBefore != r.Before.Params || l.ParamsAfter != r.After.Params {
					t.Errorf("layer %s: diff %d -> %d MACs, %d -> %d params; compress %+v -> %+v", l.Name, l.MACsBefore, l.MACsAfter, l.ParamsBefore, l.ParamsAfter, r.Before, r.After)
				}
				if l.MACsAfter != tt.macs[l.Name] || l.ParamsAfter != tt.param[l.Name] {
					t.Errorf("layer %s: %d MACs %d params after, want %d and %d", l.Name, l.MACsAfter, l.ParamsAfter, tt.macs[l.Name], tt.param[l.Name])
				}
				var by []string
				for _, n := range l.ReplacedBy {
					by = append(by, n.Name)
				}
				if l.Status == "replaced" {
					replaced++
					if want := []string{l.Name + "_pca_core", l.Name + "_pca_up"}; !slices.Equal(by, want) {
						t.Errorf("layer %s replaced by %v, want %v", l.Name, by, want)
					}
				} else if len(by) != 0 {
					t.Errorf("layer %s (%s) replaced by %v", l.Name, l.Status, by)
				}
				if want := float64(l.MACsAfter) / float64(l.MACsBefore); l.MACsRatio == nil || *l.MACsRatio != want {
					t.Errorf("layer %s: MACs ratio %v, want %v", l.Name, l.MACsRatio, want)
				}
			}
			tot := d.Total
			if tot.Replaced != replaced || tot.MACsBefore != rep.Before.MACs || tot.MACsAfter != rep.After.MACs ||
				tot.ParamsBefore != rep.Before.Params || tot.ParamsAfter != rep.After.Params || tot.MACsBefore != 25*8*27+6*72 {
				t.Errorf("total %+v; compress %+v -> %+v", tot, rep.Before, rep.After)
			}
			oc := d.OutputComparison
			if oc == nil || oc.Samples != 40 || len(oc.Outputs) != 1 || oc.Outputs[0].Name != "y" || oc.Outputs[0].RelL2 == nil || oc.Outputs[0].Top1 == nil {
				t.Fatalf("output comparison %+v", oc)
			}
			if o := oc.Outputs[0]; tt.maxAbs > 0 && (o.MaxAbs > tt.maxAbs || *o.RelL2 > 1e-5 || *o.Top1 != 1) {
				t.Errorf("full rank: max abs diff %g, rel L2 %g, top-1 agreement %g", o.MaxAbs, *o.RelL2, *o.Top1)
			}

			// --markdown has a table; --max-samples limits the comparison.
			code, md, stderr := cliRun("diff", model, out, "--markdown", "--provider", "cpu", "--data", data, "--max-samples", "7")
			if code != 0 {
				t.Fatalf("markdown: exit %d: %s", code, stderr)
			}
			for _, want := range []string{"| layer | op | change | params before | params after | params ratio | MACs before | MACs after | MACs ratio |", "|:--|", "| `conv1` | Conv |", "| **total** |", "Outputs on 7 samples", "| `y` |"} {
				if !strings.Contains(md, want) {
					t.Errorf("markdown lacks %q:\n%s", want, md)
				}
			}
			code, text, stderr := cliRun("diff", model, out, "--provider", "cpu")
			if code != 0 || !strings.Contains(text, "conv1") || !strings.Contains(text, "replaced by conv1_pca_core, conv1_pca_up") || strings.Contains(text, "outputs on") {
				t.Errorf("text: exit %d, stderr %q:\n%s", code, stderr, text)
			}
		})
	}

	t.Run("itself", func(t *testing.T) {
		d := runDiffJSON(t, model, model, "--data", data)
		for _, l := range d.Layers {
			if l.Status != "unchanged" || l.MACsAfter != l.MACsBefore || l.ParamsAfter != l.ParamsBefore {
				t.Errorf("layer %s against itself: %+v", l.Name, l)
			}
		}
		if o := d.OutputComparison.Outputs[0]; o.MaxAbs != 0 || *o.RelL2 != 0 || *o.Top1 != 1 {
			t.Errorf("outputs against itself: %+v", o)
		}
	})
}

// TestDiffErrors: bad calls get the documented exit codes.
func TestDiffErrors(t *testing.T) {
	needRuntime(t)
	model := testmodels.Path("tiny/conv_pad_stride.onnx")
	other := testmodels.Path("tiny/conv1d.onnx")
	data := filepath.Join(t.TempDir(), "x.npy")
	writeNpy(t, data, []int{4, 3, 9, 9}, ramp(4*3*9*9))
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"one model", []string{model}, 2, "diff takes two models"},
		{"both formats", []string{model, model, "--json", "--markdown"}, 2, "not both"},
		{"missing", []string{model, filepath.Join(t.TempDir(), "none.onnx")}, 1, "no such file"},
		{"other input", []string{model, other, "--data", data}, 1, "data samples have shape"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := cliRun(append([]string{"diff", "--provider", "cpu"}, tt.args...)...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d with %q", code, stderr, tt.code, tt.want)
			}
		})
	}
}

// TestDiffMNIST compresses the bundled MNIST network (when trained) with the default rule on
// 500 training images, and checks diff against the compress report and the test images.
func TestDiffMNIST(t *testing.T) {
	model := testmodels.Path("mnist_cnn.onnx")
	needRuntime(t)
	mnist := mnistDir(t)
	out := filepath.Join(t.TempDir(), "mnist_pca.onnx")
	opts := cpu
	opts.MaxSamples = 500
	rep, err := runCompress(compressOptions{
		Model: model, Calib: filepath.Join(mnist, "train-images-idx3-ubyte.gz"), Out: out,
		Calibration: opts, Rewrite: rewrite.Options{Rule: rewrite.DefaultRule},
	}, &strings.Builder{}, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	d := runDiffJSON(t, model, out, "--data", filepath.Join(mnist, "t10k-images-idx3-ubyte.gz"), "--max-samples", "500")
	if len(d.Layers) != len(rep.Layers) {
		t.Fatalf("diff lists %d layers, compress %d", len(d.Layers), len(rep.Layers))
	}
	for i, l := range d.Layers {
		r := rep.Layers[i]
		wantStatus := "unchanged"
		if r.Applied {
			wantStatus = "replaced"
		}
		if l.Name != r.Name || l.Status != wantStatus || l.MACsBefore != r.Before.MACs || l.MACsAfter != r.After.MACs || l.ParamsAfter != r.After.Params {
			t.Errorf("layer %s %s %d -> %d MACs; compress: %s applied %v %+v -> %+v", l.Name, l.Status, l.MACsBefore, l.MACsAfter, r.Name, r.Applied, r.Before, r.After)
		}
	}
	if d.Total.MACsAfter != rep.After.MACs || d.Total.MACsBefore != rep.Before.MACs {
		t.Errorf("total %+v, compress %+v -> %+v", d.Total, rep.Before, rep.After)
	}
	oc := d.OutputComparison
	if oc == nil || oc.Samples != 500 || len(oc.Outputs) != 1 || oc.Outputs[0].Top1 == nil || *oc.Outputs[0].Top1 < 0.97 {
		t.Errorf("output comparison %+v", oc)
	} else {
		t.Logf("MNIST: MACs %d -> %d; logits max abs diff %.3g, rel L2 %.3g, top-1 agreement %.4f",
			d.Total.MACsBefore, d.Total.MACsAfter, oc.Outputs[0].MaxAbs, *oc.Outputs[0].RelL2, *oc.Outputs[0].Top1)
	}
}
