package analyze

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/onnxio/onnxpb"
	"github.com/convpca/convpca/ort"
	"github.com/convpca/convpca/testmodels"
)

var cpuOptions = ort.Options{Runtime: ort.RuntimeOptions{Provider: ort.CPU}}

// needORT skips a test when the onnxruntime library is missing, except under CI.
func needORT(t *testing.T) {
	t.Helper()
	if err := ort.InitRuntime(""); err != nil {
		testmodels.RequireOrSkip(t, fmt.Errorf("onnxruntime unavailable: %w", err))
	}
}

// TestLayersTiny checks the cost model of the tiny Conv models against hand-computed values:
// MACs = out · in/group · kernel · output positions, params = weights + bias.
func TestLayersTiny(t *testing.T) {
	tests := []struct {
		file   string
		shape  []int64 // input shape; nil: declared, dynamic dims 1
		static bool    // shapes come from value_info alone
		want   []LayerInfo
	}{
		{"conv_pad_stride.onnx", nil, false, []LayerInfo{
			// conv1 3->8 k3 pad1 stride2: 9x9 -> 5x5; conv2 8->6 k3 dilation 2: 5x5 -> 1x1, no bias.
			{"conv1", "Conv", []int64{1, 3, 9, 9}, []int64{1, 8, 5, 5}, 1, 8*3*9 + 8, 25 * 8 * 27},
			{"conv2", "Conv", []int64{1, 8, 5, 5}, []int64{1, 6, 1, 1}, 1, 6 * 8 * 9, 6 * 72},
		}},
		{"conv_pad_stride.onnx", []int64{4, 3, 9, 9}, false, []LayerInfo{
			{"conv1", "Conv", []int64{4, 3, 9, 9}, []int64{4, 8, 5, 5}, 1, 8*3*9 + 8, 25 * 8 * 27},
			{"conv2", "Conv", []int64{4, 8, 5, 5}, []int64{4, 6, 1, 1}, 1, 6 * 8 * 9, 6 * 72},
		}},
		// conv1d 4->6 k5 pad 2: length 20 kept.
		{"conv1d.onnx", nil, true, []LayerInfo{{"conv1d", "Conv", []int64{1, 4, 20}, []int64{1, 6, 20}, 1, 6*4*5 + 6, 20 * 6 * 4 * 5}}},
		{"conv1d.onnx", []int64{3, 4, 20}, true, []LayerInfo{{"conv1d", "Conv", []int64{3, 4, 20}, []int64{3, 6, 20}, 1, 6*4*5 + 6, 20 * 6 * 4 * 5}}},
		// conv3d 2->5 k3x3x3: 5x6x7 -> 3x4x5.
		{"conv3d.onnx", nil, true, []LayerInfo{{"conv3d", "Conv", []int64{1, 2, 5, 6, 7}, []int64{1, 5, 3, 4, 5}, 1, 5*2*27 + 5, 60 * 5 * 2 * 27}}},
		// group 2, 4->8 k3: 8x8 -> 6x6; each output channel sees 2 input channels.
		{"grouped.onnx", nil, true, []LayerInfo{{"conv_grouped", "Conv", []int64{1, 4, 8, 8}, []int64{1, 8, 6, 6}, 2, 8*2*9 + 8, 36 * 8 * (4 / 2) * 9}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			m, err := onnxio.Load(testmodels.Path("tiny/" + tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := StaticShapes(m, tt.shape); ok != tt.static {
				t.Errorf("StaticShapes ok = %v, want %v", ok, tt.static)
			}
			if !tt.static {
				needORT(t)
			}
			shapes, err := Shapes(m, tt.shape, cpuOptions)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Layers(m, shapes)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, tt.want, equalLayer) {
				t.Errorf("Layers:\n got  %+v\n want %+v", got, tt.want)
			}
		})
	}
}

func equalLayer(a, b LayerInfo) bool {
	return a.Name == b.Name && a.Op == b.Op && slices.Equal(a.Input, b.Input) && slices.Equal(a.Output, b.Output) &&
		a.Group == b.Group && a.Params == b.Params && a.MACs == b.MACs
}

// graphBuilder builds small models with the onnxpb types.
type graphBuilder struct {
	gp *onnxpb.GraphProto
}

func newGraph(input string, dims ...int64) *graphBuilder {
	return &graphBuilder{gp: &onnxpb.GraphProto{
		Name:  proto.String("test"),
		Input: []*onnxpb.ValueInfoProto{declare(input, dims)},
	}}
}

// declare declares a float tensor; -1 is the symbolic batch "N".
func declare(name string, dims []int64) *onnxpb.ValueInfoProto {
	vi := onnxio.TensorInfo(name, onnxpb.TensorProto_FLOAT, dims)
	for i, d := range dims {
		if d < 0 {
			vi.Type.GetTensorType().Shape.Dim[i].Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "N"}
		}
	}
	return vi
}

func (b *graphBuilder) node(name, op string, in, out []string, attrs ...*onnxpb.AttributeProto) *graphBuilder {
	b.gp.Node = append(b.gp.Node, &onnxpb.NodeProto{Name: proto.String(name), OpType: proto.String(op), Input: in, Output: out, Attribute: attrs})
	return b
}

// init adds an initializer whose values are v, v+1, ...
func (b *graphBuilder) init(name string, v float32, dims ...int64) *graphBuilder {
	n, _ := onnxio.NumElements(dims)
	data := make([]float32, n)
	for i := range data {
		data[i] = v + float32(i%7)/10
	}
	b.gp.Initializer = append(b.gp.Initializer, onnxio.FloatTensor(name, dims, data))
	return b
}

func (b *graphBuilder) value(name string, dims ...int64) *graphBuilder {
	b.gp.ValueInfo = append(b.gp.ValueInfo, declare(name, dims))
	return b
}

func (b *graphBuilder) model(t *testing.T, output string, dims ...int64) *onnxio.Model {
	t.Helper()
	b.gp.Output = []*onnxpb.ValueInfoProto{declare(output, dims)}
	mp := &onnxpb.ModelProto{
		IrVersion:   proto.Int64(8),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(13)}},
		Graph:       b.gp,
	}
	m, err := onnxio.FromProto(mp)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// mlp is x [N,8] -> Gemm(W1 16x8, transB, C 16) -> h [N,16] -> Relu -> hr -> MatMul(B2 16x4) -> y.
// With declared, h and hr are declared in value_info.
func mlp(t *testing.T, declared bool) *onnxio.Model {
	b := newGraph("x", -1, 8).
		init("W1", 0.1, 16, 8).init("C1", 0.2, 16).init("B2", -0.3, 16, 4).
		node("g1", "Gemm", []string{"x", "W1", "C1"}, []string{"h"}, onnxio.IntAttr("transB", 1)).
		node("r", "Relu", []string{"h"}, []string{"hr"}).
		node("m2", "MatMul", []string{"hr", "B2"}, []string{"y"})
	if declared {
		b.value("h", -1, 16).value("hr", -1, 16)
	}
	return b.model(t, "y", -1, 4)
}

// TestLayersGemm checks Gemm (transA, transB, bias C) and MatMul costs, per sample.
func TestLayersGemm(t *testing.T) {
	// transA: x [2,6] -> Transpose -> t [6,2] -> Gemm(t, B 6x5, transA) -> y [2,5]: M=2, K=6, N=5.
	transA := newGraph("x", 2, 6).init("B", 1, 6, 5).
		node("tr", "Transpose", []string{"x"}, []string{"t"}).
		node("gemm_ta", "Gemm", []string{"t", "B"}, []string{"y"}, onnxio.IntAttr("transA", 1)).
		value("t", 6, 2).model(t, "y", 2, 5)
	// MatMul of a 3-D input: x [N,5,8] @ W [8,4]: 5 rows per sample.
	seq := newGraph("x", -1, 5, 8).init("W", 1, 8, 4).
		node("", "MatMul", []string{"x", "W"}, []string{"y"}).model(t, "y", -1, 5, 4)
	// A MatMul of two run-time tensors is no layer.
	dyn := newGraph("x", -1, 4, 4).
		node("mm", "MatMul", []string{"x", "x"}, []string{"y"}).model(t, "y", -1, 4, 4)

	tests := []struct {
		name  string
		m     *onnxio.Model
		shape []int64
		want  []LayerInfo
	}{
		{"mlp", mlp(t, true), nil, []LayerInfo{
			{"g1", "Gemm", []int64{1, 8}, []int64{1, 16}, 1, 16*8 + 16, 8 * 16},
			{"m2", "MatMul", []int64{1, 16}, []int64{1, 4}, 1, 16 * 4, 16 * 4},
		}},
		{"mlp batch 3", mlp(t, true), []int64{3, 8}, []LayerInfo{
			{"g1", "Gemm", []int64{3, 8}, []int64{3, 16}, 1, 16*8 + 16, 8 * 16},
			{"m2", "MatMul", []int64{3, 16}, []int64{3, 4}, 1, 16 * 4, 16 * 4},
		}},
		{"transA", transA, nil, []LayerInfo{{"gemm_ta", "Gemm", []int64{6, 2}, []int64{2, 5}, 1, 30, 6 * 5}}},
		{"3-D MatMul", seq, nil, []LayerInfo{{"y", "MatMul", []int64{1, 5, 8}, []int64{1, 5, 4}, 1, 32, 5 * 8 * 4}}},
		{"dynamic MatMul", dyn, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			shapes, ok := StaticShapes(tt.m, tt.shape)
			if !ok {
				t.Fatal("StaticShapes: not declared")
			}
			got, err := Layers(tt.m, shapes)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, tt.want, equalLayer) {
				t.Errorf("Layers:\n got  %+v\n want %+v", got, tt.want)
			}
		})
	}

	// Without value_info, the shapes come from onnxruntime, and agree.
	t.Run("inferred", func(t *testing.T) {
		needORT(t)
		m := mlp(t, false)
		if _, ok := StaticShapes(m, nil); ok {
			t.Fatal("StaticShapes succeeded without value_info for h")
		}
		shapes, err := Shapes(m, []int64{3, 8}, cpuOptions)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Layers(m, shapes)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := StaticShapes(mlp(t, true), []int64{3, 8})
		wantLayers, _ := Layers(mlp(t, true), want)
		if !slices.EqualFunc(got, wantLayers, equalLayer) {
			t.Errorf("inferred layers %+v, declared %+v", got, wantLayers)
		}
	})
}

func TestInputShape(t *testing.T) {
	m := mlp(t, true) // x [N, 8]
	tests := []struct {
		given, want []int64
		ok          bool
	}{
		{nil, []int64{1, 8}, true},
		{[]int64{5, 8}, []int64{5, 8}, true},
		{[]int64{5, 9}, nil, false}, // static dimension differs
		{[]int64{5, 8, 1}, nil, false},
		{[]int64{0, 8}, nil, false},
	}
	for _, tt := range tests {
		name, got, err := InputShape(m, tt.given)
		if (err == nil) != tt.ok || !slices.Equal(got, tt.want) || tt.ok && name != "x" {
			t.Errorf("InputShape(%v) = %q %v, %v; want %v (ok %v)", tt.given, name, got, err, tt.want, tt.ok)
		}
	}
}

// TestDiff matches variants of the mlp model against it.
func TestDiff(t *testing.T) {
	before := mlp(t, true)
	gemm := LayerInfo{Params: 16*8 + 16, MACs: 8 * 16}
	matmul := LayerInfo{Params: 16 * 4, MACs: 16 * 4}
	type row struct {
		name       string
		status     Status
		replacedBy []string
		params     int64 // after
		macs       int64 // after
	}
	tests := []struct {
		name  string
		after *onnxio.Model
		want  []row
	}{
		{"same", mlp(t, true), []row{{"g1", Unchanged, nil, gemm.Params, gemm.MACs}, {"m2", Unchanged, nil, matmul.Params, matmul.MACs}}},
		{"new weights", newGraph("x", -1, 8).
			init("W1", 0.5, 16, 8).init("C1", 0.2, 16).init("B2", -0.3, 16, 4).
			node("g1", "Gemm", []string{"x", "W1", "C1"}, []string{"h"}, onnxio.IntAttr("transB", 1)).
			node("r", "Relu", []string{"h"}, []string{"hr"}).
			node("m2", "MatMul", []string{"hr", "B2"}, []string{"y"}).
			value("h", -1, 16).value("hr", -1, 16).model(t, "y", -1, 4),
			[]row{{"g1", Replaced, []string{"g1"}, gemm.Params, gemm.MACs}, {"m2", Unchanged, nil, matmul.Params, matmul.MACs}}},
		// g1 factorized through 3 channels: x @ U [8,3] -> u, Gemm(u, V [3,16], C1) -> h.
		{"factorized", newGraph("x", -1, 8).
			init("U", 0.1, 8, 3).init("V", 0.1, 3, 16).init("C1", 0.2, 16).init("B2", -0.3, 16, 4).
			node("g1_down", "MatMul", []string{"x", "U"}, []string{"u"}).
			node("g1_up", "Gemm", []string{"u", "V", "C1"}, []string{"h"}).
			node("r", "Relu", []string{"h"}, []string{"hr"}).
			node("m2", "MatMul", []string{"hr", "B2"}, []string{"y"}).
			value("u", -1, 3).value("h", -1, 16).value("hr", -1, 16).model(t, "y", -1, 4),
			[]row{{"g1", Replaced, []string{"g1_down", "g1_up"}, 8*3 + 3*16 + 16, 8*3 + 3*16}, {"m2", Unchanged, nil, matmul.Params, matmul.MACs}}},
		// A MatMul by identity after m2: y is now made by the new node, from a tensor BEFORE lacks.
		{"appended", newGraph("x", -1, 8).
			init("W1", 0.1, 16, 8).init("C1", 0.2, 16).init("B2", -0.3, 16, 4).init("I", 1, 4, 4).
			node("g1", "Gemm", []string{"x", "W1", "C1"}, []string{"h"}, onnxio.IntAttr("transB", 1)).
			node("r", "Relu", []string{"h"}, []string{"hr"}).
			node("m2", "MatMul", []string{"hr", "B2"}, []string{"y0"}).
			node("id", "MatMul", []string{"y0", "I"}, []string{"y"}).
			value("h", -1, 16).value("hr", -1, 16).value("y0", -1, 4).model(t, "y", -1, 4),
			[]row{{"g1", Unchanged, nil, gemm.Params, gemm.MACs}, {"m2", Replaced, []string{"m2", "id"}, matmul.Params + 16, matmul.MACs + 16}}},
		// g1 writes h2 instead of h: BEFORE's g1 is gone, AFTER's g1 is new.
		{"renamed", newGraph("x", -1, 8).
			init("W1", 0.1, 16, 8).init("C1", 0.2, 16).init("B2", -0.3, 16, 4).
			node("g1", "Gemm", []string{"x", "W1", "C1"}, []string{"h2"}, onnxio.IntAttr("transB", 1)).
			node("r", "Relu", []string{"h2"}, []string{"hr"}).
			node("m2", "MatMul", []string{"hr", "B2"}, []string{"y"}).
			value("h2", -1, 16).value("hr", -1, 16).model(t, "y", -1, 4),
			[]row{{"g1", Removed, nil, 0, 0}, {"m2", Unchanged, nil, matmul.Params, matmul.MACs}, {"g1", Added, nil, gemm.Params, gemm.MACs}}},
	}
	sb, _ := StaticShapes(before, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sa, ok := StaticShapes(tt.after, nil)
			if !ok {
				t.Fatal("after: shapes not declared")
			}
			d, err := Diff(before, tt.after, sb, sa)
			if err != nil {
				t.Fatal(err)
			}
			if len(d.Layers) != len(tt.want) {
				t.Fatalf("%d rows, want %d: %+v", len(d.Layers), len(tt.want), d.Layers)
			}
			var params, macs int64
			for i, w := range tt.want {
				l := d.Layers[i]
				var by []string
				for _, r := range l.ReplacedBy {
					by = append(by, r.Name)
				}
				if l.Name != w.name || l.Status != w.status || !slices.Equal(by, w.replacedBy) || l.ParamsAfter != w.params || l.MACsAfter != w.macs {
					t.Errorf("row %d: %s %s by %v, after %d params %d MACs; want %s %s by %v, %d params %d MACs",
						i, l.Name, l.Status, by, l.ParamsAfter, l.MACsAfter, w.name, w.status, w.replacedBy, w.params, w.macs)
				}
				params += l.ParamsAfter
				macs += l.MACsAfter
			}
			if d.Total.ParamsAfter != params || d.Total.MACsAfter != macs {
				t.Errorf("total after %d params %d MACs, rows sum to %d and %d", d.Total.ParamsAfter, d.Total.MACsAfter, params, macs)
			}
			if d.Total.MACsBefore != gemm.MACs+matmul.MACs || d.Total.ParamsBefore != gemm.Params+matmul.Params {
				t.Errorf("total before %+v", d.Total)
			}
			if d.Changes.Opset != nil || len(d.Changes.Inputs) != 0 || len(d.Changes.Outputs) != 0 {
				t.Errorf("changes %+v, want none", d.Changes)
			}
		})
	}
}

// TestDiffChanges: a changed input shape, a new output and a new opset are reported.
func TestDiffChanges(t *testing.T) {
	before := mlp(t, true)
	after := newGraph("x", 2, 8).
		init("W1", 0.1, 16, 8).init("C1", 0.2, 16).init("B2", -0.3, 16, 4).
		node("g1", "Gemm", []string{"x", "W1", "C1"}, []string{"h"}, onnxio.IntAttr("transB", 1)).
		node("r", "Relu", []string{"h"}, []string{"hr"}).
		node("m2", "MatMul", []string{"hr", "B2"}, []string{"y"}).
		value("h", 2, 16).value("hr", 2, 16).model(t, "y", 2, 4)
	after.Graph.AddOutput("hr", onnxpb.TensorProto_FLOAT)
	after.Proto.OpsetImport[0].Version = proto.Int64(17)
	sb, _ := StaticShapes(before, []int64{2, 8})
	sa, _ := StaticShapes(after, []int64{2, 8})
	d, err := Diff(before, after, sb, sa)
	if err != nil {
		t.Fatal(err)
	}
	c := d.Changes
	if c.Opset == nil || c.Opset.Before != 13 || c.Opset.After != 17 || c.IRVersion != nil {
		t.Errorf("opset change %+v, IR version change %+v", c.Opset, c.IRVersion)
	}
	if len(c.Inputs) != 1 || c.Inputs[0].Change != "changed" || DimsString(c.Inputs[0].Before.Dims) != "Nx8" || DimsString(c.Inputs[0].After.Dims) != "2x8" {
		t.Errorf("input changes %+v", c.Inputs)
	}
	if len(c.Outputs) != 2 || c.Outputs[0].Name != "y" || c.Outputs[0].Change != "changed" || c.Outputs[1].Name != "hr" || c.Outputs[1].Change != "added" {
		t.Errorf("output changes %+v", c.Outputs)
	}
	for _, l := range d.Layers {
		if l.Status != Unchanged {
			t.Errorf("layer %s %s, want unchanged", l.Name, l.Status)
		}
	}
}

func TestLastAxis(t *testing.T) {
	for _, tt := range []struct {
		shape []int64
		want  int
	}{{[]int64{4, 10}, 10}, {[]int64{4, 6, 1, 1}, 6}, {[]int64{4, 1}, 1}, {[]int64{4, 3, 5}, 5}, {nil, 0}} {
		if got := lastAxis(tt.shape); got != tt.want {
			t.Errorf("lastAxis(%v) = %d, want %d", tt.shape, got, tt.want)
		}
	}
}
