package latency

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/onnxio/onnxpb"
	"github.com/convpca/convpca/ort"
	"github.com/convpca/convpca/testmodels"
	"google.golang.org/protobuf/proto"
)

func TestParseProfile(t *testing.T) {
	const profile = `[
	{"cat":"Session","name":"model_loading_array","dur":900},
	{"cat":"Node","name":"a_kernel_time","dur":9000,"args":{"op_name":"Conv"}},
	{"cat":"Node","name":"a_fence_before","dur":0},
	{"cat":"Node","name":"b_nchwc_kernel_time","dur":50},
	{"cat":"Session","name":"model_run","dur":9100},
	{"cat":"Node","name":"a_kernel_time","dur":100},
	{"cat":"Node","name":"b_nchwc_kernel_time","dur":70},
	{"cat":"Session","name":"c_kernel_time","dur":5},
	{"cat":"Node","name":"a_kernel_time","dur":300},
	{"cat":"Node","name":"a_kernel_time","dur":200}
	]`
	got, err := parseProfile([]byte(profile), 1)
	if err != nil {
		t.Fatal(err)
	}
	// a: 9000 left out, median of 100, 300, 200; b: 50 left out; c is no node.
	want := NodeTimes{"a": 0.2, "b_nchwc": 0.07}
	if len(got) != len(want) {
		t.Errorf("parseProfile = %v, want %v", got, want)
	}
	for k, v := range want {
		if math.Abs(got[k]-v) > 1e-12 {
			t.Errorf("parseProfile[%q] = %g, want %g", k, got[k], v)
		}
	}
	for _, bad := range []string{`{"cat":`, `[]`, `[{"cat":"Session","name":"model_run","dur":3}]`} {
		if _, err := parseProfile([]byte(bad), 0); err == nil {
			t.Errorf("parseProfile(%q) succeeded", bad)
		} else if !strings.Contains(err.Error(), "profile") {
			t.Errorf("parseProfile(%q): %v does not say it is the profile", bad, err)
		}
	}
}

// TestProfileModel profiles the bundled MNIST model in onnxruntime: every one of its layers is
// found under the name onnxruntime gives it (blocked, with its LeakyRelu fused, or as is).
func TestProfileModel(t *testing.T) {
	needRuntime(t)
	m, err := onnxio.Load(testmodels.Path("mnist_cnn.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := ort.ModelInput(m)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ModelProgram("mnist", m, in.Name, []int64{4, 1, 28, 28})
	if err != nil {
		t.Fatal(err)
	}
	nt, err := Profile(p, ort.RuntimeOptions{Provider: ort.CPU, Threads: 1}, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	layers := 0
	for _, n := range m.Graph.Nodes {
		if n.Op != "Conv" && n.Op != "Gemm" && n.Op != "MatMul" {
			continue
		}
		layers++
		ms, ok := nt.Of(m.Graph, n)
		if !ok || ms <= 0 {
			t.Errorf("%s: not in the profile (%v, %g ms); profiled nodes %v", n.Label(), ok, ms, nt)
		}
	}
	if layers != 7 {
		t.Errorf("MNIST model has %d layers, want 7", layers)
	}
}

// TestNodeTimesOf finds a layer under each name onnxruntime gives it: its own, blocked, with
// the nodes after it fused, or with a fusion's suffix.
func TestNodeTimesOf(t *testing.T) {
	node := func(op, name string, in []string, out string) *onnxpb.NodeProto {
		return &onnxpb.NodeProto{Name: proto.String(name), OpType: proto.String(op), Input: in, Output: []string{out}}
	}
	vi := func(name string) *onnxpb.ValueInfoProto {
		return onnxio.TensorInfo(name, onnxpb.TensorProto_FLOAT, []int64{1, 4, 3, 3})
	}
	init := func(name string, dims ...int64) *onnxpb.TensorProto {
		n := int64(1)
		for _, d := range dims {
			n *= d
		}
		return &onnxpb.TensorProto{Name: proto.String(name), DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), Dims: dims, FloatData: make([]float32, n)}
	}
	m, err := onnxio.FromProto(&onnxpb.ModelProto{IrVersion: proto.Int64(8),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: proto.Int64(13)}},
		Graph: &onnxpb.GraphProto{Name: proto.String("g"),
			Input:       []*onnxpb.ValueInfoProto{vi("x")},
			Output:      []*onnxpb.ValueInfoProto{vi("y"), vi("c2")},
			Initializer: []*onnxpb.TensorProto{init("w", 4, 4, 1, 1), init("s", 4), init("b", 4), init("m", 4), init("v", 4)},
			Node: []*onnxpb.NodeProto{
				node("Conv", "conv", []string{"x", "w"}, "c"),
				node("BatchNormalization", "bn", []string{"c", "s", "b", "m", "v"}, "b1"),
				node("Relu", "relu", []string{"b1"}, "r"),
				node("Conv", "conv2", []string{"r", "w"}, "c2"), // a graph output and read by Add
				node("Add", "add", []string{"c2", "r"}, "y"),
			}}})
	if err != nil {
		t.Fatal(err)
	}
	var conv, conv2 *onnxio.Node
	for _, n := range m.Graph.Nodes {
		switch n.Name {
		case "conv":
			conv = n
		case "conv2":
			conv2 = n
		}
	}
	for _, tc := range []struct {
		n     *onnxio.Node
		times NodeTimes
		want  float64 // 0: not found
	}{
		{conv, NodeTimes{"conv": 1, "r_nchwc": 9}, 1},
		{conv, NodeTimes{"c_nchwc": 2, "b1_nchwc": 9}, 2}, // not fused: the Conv's own first
		{conv, NodeTimes{"b1_nchwc": 3}, 3},
		{conv, NodeTimes{"r_nchwc": 4}, 4},
		{conv, NodeTimes{"relu": 5}, 5},
		{conv, NodeTimes{"conv/MatmulTransposeFusion/": 6, "conv2/X/": 9}, 6},
		{conv, NodeTimes{"conv/A/": 6, "conv/B/": 7}, 0}, // which one is not known
		{conv, NodeTimes{"c2_nchwc": 9, "y_nchwc": 9}, 0},
		{conv2, NodeTimes{"y_nchwc": 9}, 0}, // its output is a graph output: no fusion
		{conv2, NodeTimes{"c2_nchwc": 8}, 8},
	} {
		got, ok := tc.times.Of(m.Graph, tc.n)
		if ok != (tc.want > 0) || got != tc.want {
			t.Errorf("%s in %v: %g, %v; want %g", tc.n.Name, tc.times, got, ok, tc.want)
		}
	}
}
