package latency

import (
	"reflect"
	"testing"

	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/testmodels"
)

// TestFromNode: nodes of the tiny models become layers with their attributes, or the reason
// they cannot be factorized.
func TestFromNode(t *testing.T) {
	for _, tc := range []struct {
		model, node string
		sample      []int
		want        Layer
		reason      string
	}{
		{"tiny/conv_pad_stride.onnx", "conv1", []int{3, 9, 9},
			Layer{Name: "conv1", Op: "Conv", In: 3, Out: 8, Kernel: []int{3, 3}, Strides: []int{2, 2}, Pads: []int{1, 1, 1, 1}, Bias: true, Input: []int{3, 9, 9}, Batch: 4, BlockedOut: true}, ""},
		{"tiny/conv_pad_stride.onnx", "conv2", []int{8, 5, 5},
			Layer{Name: "conv2", Op: "Conv", In: 8, Out: 6, Kernel: []int{3, 3}, Dilations: []int{2, 2}, Input: []int{8, 5, 5}, Batch: 4, BlockedIn: true}, ""},
		{"tiny/conv1d.onnx", "conv1d", []int{4, 20}, Layer{}, ""},
		{"tiny/grouped.onnx", "conv_grouped", []int{4, 8, 8}, Layer{}, "grouped conv (group=2)"},
		{"tiny/conv_pad_stride.onnx", "conv1", []int{4, 9, 9}, Layer{}, "layer conv1: Conv with kernel [3 3] on input [4 9 9] (want C x spatial with C = 3)"},
	} {
		g, n := testNode(t, tc.model, tc.node)
		l, reason := FromNode(g, n, tc.sample, 4)
		if reason != tc.reason {
			t.Errorf("%s %s: reason %q, want %q", tc.model, tc.node, reason, tc.reason)
			continue
		}
		if tc.want.Op != "" && !reflect.DeepEqual(l, tc.want) {
			t.Errorf("%s %s:\n got %+v\nwant %+v", tc.model, tc.node, l, tc.want)
		}
		if reason == "" {
			if err := l.Check(); err != nil {
				t.Errorf("%s %s: %v", tc.model, tc.node, err)
			}
		}
	}
}

// TestLayout: which neighbours of a layer keep onnxruntime's blocked layout, on graphs whose
// nodes were read against nchwc_transformer.cc: a graph input or output, Flatten and an Add
// with a constant break it; a Conv, a pool, and an activation fused into the Conv before it
// keep it.
func TestLayout(t *testing.T) {
	for _, tc := range []struct {
		model, node     string
		wantIn, wantOut bool
	}{
		{"mnist_cnn.onnx", "/0/Conv", false, true},              // graph input; LeakyRelu fused, then a Conv
		{"mnist_cnn.onnx", "/2/Conv", true, true},               // LeakyRelu after a Conv; LeakyRelu, MaxPool
		{"mnist_cnn.onnx", "/5/Conv", true, true},               // MaxPool
		{"mnist_cnn.onnx", "/14/Conv", true, false},             // Flatten
		{"tiny/affine_hardswish.onnx", "conv_a", false, false},  // Mul by a constant first
		{"tiny/affine_hardswish.onnx", "conv_pw", false, false}, // Add of a constant before; graph output
	} {
		g, n := testNode(t, tc.model, tc.node)
		if got := producedBlocked(g, n.Inputs[0], 0); got != tc.wantIn {
			t.Errorf("%s %s: input blocked %v, want %v", tc.model, tc.node, got, tc.wantIn)
		}
		if got := takenBlocked(g, n, n.Outputs[0], 0); got != tc.wantOut {
			t.Errorf("%s %s: output taken blocked %v, want %v", tc.model, tc.node, got, tc.wantOut)
		}
	}
}

// testNode loads a test model and returns its graph and the node labelled label.
func testNode(t *testing.T, model, label string) (*onnxio.Graph, *onnxio.Node) {
	t.Helper()
	m, err := onnxio.Load(testmodels.Path(model))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range m.Graph.Nodes {
		if n.Label() == label {
			return m.Graph, n
		}
	}
	t.Fatalf("%s: no node %q", model, label)
	return nil, nil
}
