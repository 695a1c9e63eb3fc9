package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/convpca/convpca/testmodels"
)

// inspectJSON is what the tests read of inspect --json.
type inspectJSON struct {
	IRVersion int64 `json:"ir_version"`
	Opset     int64 `json:"opset"`
	Producer  struct {
		Name string `json:"name"`
	} `json:"producer"`
	Inputs []struct {
		Name string `json:"name"`
		Dims []any  `json:"dims"`
	} `json:"inputs"`
	InputShape map[string][]int64 `json:"input_shape"`
	Dynamic    map[string]int64   `json:"dynamic_dims"`
	ShapesFrom string             `json:"shapes_from"`
	Layers     []struct {
		Name   string  `json:"name"`
		Op     string  `json:"op"`
		Input  []int64 `json:"input"`
		Output []int64 `json:"output"`
		Group  int     `json:"group"`
		Params int64   `json:"params"`
		MACs   int64   `json:"macs"`
	} `json:"layers"`
	Total struct {
		Layers int   `json:"layers"`
		Params int64 `json:"params"`
		MACs   int64 `json:"macs"`
	} `json:"total"`
}

// TestInspectCLI checks inspect's JSON and table on the tiny models against hand-computed
// costs, with and without --input-shape.
func TestInspectCLI(t *testing.T) {
	needRuntime(t)
	type layer struct {
		name          string
		input, output []int64
		group         int
		params, macs  int64
	}
	tests := []struct {
		name    string
		args    []string
		from    string
		dynamic map[string]int64
		layers  []layer
	}{
		{"pad-stride", []string{"tiny/conv_pad_stride.onnx"}, "onnxruntime", map[string]int64{"N": 1}, []layer{
			{"conv1", []int64{1, 3, 9, 9}, []int64{1, 8, 5, 5}, 1, 8*27 + 8, 25 * 8 * 27},
			{"conv2", []int64{1, 8, 5, 5}, []int64{1, 6, 1, 1}, 1, 6 * 72, 6 * 72},
		}},
		{"pad-stride batch 2", []string{"tiny/conv_pad_stride.onnx", "--input-shape", "x=2,3,9,9"}, "onnxruntime", map[string]int64{"N": 2}, []layer{
			{"conv1", []int64{2, 3, 9, 9}, []int64{2, 8, 5, 5}, 1, 8*27 + 8, 25 * 8 * 27},
			{"conv2", []int64{2, 8, 5, 5}, []int64{2, 6, 1, 1}, 1, 6 * 72, 6 * 72},
		}},
		{"grouped", []string{"tiny/grouped.onnx"}, "value_info", map[string]int64{"N": 1}, []layer{
			{"conv_grouped", []int64{1, 4, 8, 8}, []int64{1, 8, 6, 6}, 2, 8*2*9 + 8, 36 * 8 * 2 * 9},
		}},
		{"conv3d", []string{"tiny/conv3d.onnx", "--input-shape", "3x2x5x6x7"}, "value_info", map[string]int64{"N": 3}, []layer{
			{"conv3d", []int64{3, 2, 5, 6, 7}, []int64{3, 5, 3, 4, 5}, 1, 5*2*27 + 5, 60 * 5 * 2 * 27},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"inspect", testmodels.Path(tt.args[0]), "--json"}, tt.args[1:]...)
			code, stdout, stderr := cliRun(args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var doc inspectJSON
			if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
				t.Fatalf("%v\n%s", err, stdout)
			}
			if doc.IRVersion != 8 || doc.Opset != 13 || doc.Producer.Name != "convpca-make_tiny" || len(doc.Inputs) != 1 || doc.Inputs[0].Dims[0] != "N" {
				t.Errorf("header: IR %d opset %d producer %q inputs %+v", doc.IRVersion, doc.Opset, doc.Producer.Name, doc.Inputs)
			}
			if doc.ShapesFrom != tt.from || !mapsEqual(doc.Dynamic, tt.dynamic) {
				t.Errorf("shapes from %q, dynamic %v; want %q, %v", doc.ShapesFrom, doc.Dynamic, tt.from, tt.dynamic)
			}
			if len(doc.Layers) != len(tt.layers) {
				t.Fatalf("%d layers, want %d", len(doc.Layers), len(tt.layers))
			}
			var params, macs int64
			for i, w := range tt.layers {
				l := doc.Layers[i]
				if l.Name != w.name || l.Op != "Conv" || !slices.Equal(l.Input, w.input) || !slices.Equal(l.Output, w.output) ||
					l.Group != w.group || l.Params != w.params || l.MACs != w.macs {
					t.Errorf("layer %d: %+v, want %+v", i, l, w)
				}
				params += w.params
				macs += w.macs
			}
			if doc.Total.Layers != len(tt.layers) || doc.Total.Params != params || doc.Total.MACs != macs {
				t.Errorf("total %+v, want %d layers, %d params, %d MACs", doc.Total, len(tt.layers), params, macs)
			}

			// The table says the same.
			code, table, stderr := cliRun(append([]string{"inspect", testmodels.Path(tt.args[0])}, tt.args[1:]...)...)
			if code != 0 {
				t.Fatalf("table: exit %d: %s", code, stderr)
			}
			for _, want := range []string{"IR version 8, opset 13, producer convpca-make_tiny", tt.layers[0].name, thousands(macs), "total"} {
				if !strings.Contains(table, want) {
					t.Errorf("table lacks %q:\n%s", want, table)
				}
			}
			for p, v := range tt.dynamic {
				if want := p + " = " + thousands(v); !strings.Contains(table, want) {
					t.Errorf("table lacks %q:\n%s", want, table)
				}
			}
		})
	}
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestInspectErrors: bad --input-shape values get the documented exit codes.
func TestInspectErrors(t *testing.T) {
	needRuntime(t)
	model := testmodels.Path("tiny/conv_pad_stride.onnx")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"syntax", []string{"--input-shape", "x=1,a"}, 2, "--input-shape"},
		{"zero", []string{"--input-shape", "x=0,3,9,9"}, 2, "dimensions >= 1"},
		{"wrong name", []string{"--input-shape", "image=1,3,9,9"}, 2, `names "image", but the model's inputs are x`},
		{"wrong dims", []string{"--input-shape", "1,3,8,8"}, 1, "does not fit model input"},
		{"two models", []string{model}, 2, "inspect takes one model"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := cliRun(append([]string{"inspect", model, "--provider", "cpu"}, tt.args...)...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d with %q", code, stderr, tt.code, tt.want)
			}
		})
	}
}

// TestInspectMNIST checks the bundled MNIST network against
// hand-computed costs: 28 -> 26 -> 24 -> pool 12 -> 10 -> 8 -> pool 4 -> 2 -> 1 -> 1.
func TestInspectMNIST(t *testing.T) {
	model := testmodels.Path("mnist_cnn.onnx")
	needRuntime(t)
	code, stdout, stderr := cliRun("inspect", model, "--json", "--provider", "cpu")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var doc inspectJSON
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatal(err)
	}
	// out, in, kernel, output positions
	want := [][4]int64{{32, 1, 9, 26 * 26}, {32, 32, 9, 24 * 24}, {64, 32, 9, 10 * 10}, {64, 64, 9, 8 * 8}, {128, 64, 9, 2 * 2}, {128, 128, 4, 1}, {10, 128, 1, 1}}
	if len(doc.Layers) != len(want) {
		t.Fatalf("%d layers, want %d", len(doc.Layers), len(want))
	}
	var macs int64
	for i, w := range want {
		l := doc.Layers[i]
		if l.MACs != w[0]*w[1]*w[2]*w[3] || l.Params != w[0]*w[1]*w[2]+w[0] {
			t.Errorf("layer %s: %d MACs %d params, want %d and %d", l.Name, l.MACs, l.Params, w[0]*w[1]*w[2]*w[3], w[0]*w[1]*w[2]+w[0])
		}
		macs += w[0] * w[1] * w[2] * w[3]
	}
	if doc.Total.MACs != macs {
		t.Errorf("total %d MACs, want %d", doc.Total.MACs, macs)
	}
}
