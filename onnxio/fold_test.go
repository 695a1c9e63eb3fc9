package onnxio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/convpca/convpca/onnxio/onnxpb"
	"github.com/convpca/convpca/testmodels"
)

// spec describes a model to build for a test: nodes over graph inputs and initializers.
type spec struct {
	ir, opset int64
	inputs    []*onnxpb.ValueInfoProto
	outputs   []*onnxpb.ValueInfoProto
	inits     []*onnxpb.TensorProto
	nodes     []*onnxpb.NodeProto
	valueInfo []*onnxpb.ValueInfoProto
	initInput bool // list every initializer as a graph input too
}

// build returns the model as Parse reads it.
func (s spec) build(t *testing.T) *Model {
	t.Helper()
	if s.ir == 0 {
		s.ir = 8
	}
	if s.opset == 0 {
		s.opset = 13
	}
	gp := &onnxpb.GraphProto{
		Name: proto.String("g"), Input: s.inputs, Output: s.outputs,
		Initializer: s.inits, Node: s.nodes, ValueInfo: s.valueInfo,
	}
	if s.initInput {
		for _, w := range s.inits {
			gp.Input = append(gp.Input, TensorInfo(w.GetName(), onnxpb.TensorProto_DataType(w.GetDataType()), w.Dims))
		}
	}
	mp := &onnxpb.ModelProto{
		IrVersion:   proto.Int64(s.ir),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: proto.Int64(s.opset)}},
		Graph:       gp,
	}
	b, err := proto.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func pnode(op string, in []string, out string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	return &onnxpb.NodeProto{Name: proto.String("n_" + out), OpType: proto.String(op), Input: in, Output: []string{out}, Attribute: attrs}
}

func constNode(out string, t *onnxpb.TensorProto) *onnxpb.NodeProto {
	return pnode("Constant", nil, out, &onnxpb.AttributeProto{Name: proto.String("value"), Type: onnxpb.AttributeProto_TENSOR.Enum(), T: t})
}

// float32s is a FLOAT tensor in float_data, as many exporters write it.
func float32s(name string, dims []int64, v ...float32) *onnxpb.TensorProto {
	return &onnxpb.TensorProto{Name: proto.String(name), DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), Dims: dims, FloatData: v}
}

func doubles(name string, dims []int64, v []float64) *onnxpb.TensorProto {
	return &onnxpb.TensorProto{Name: proto.String(name), DataType: proto.Int32(int32(onnxpb.TensorProto_DOUBLE)), Dims: dims, DoubleData: v}
}

func int64s(name string, v ...int64) *onnxpb.TensorProto {
	return &onnxpb.TensorProto{Name: proto.String(name), DataType: proto.Int32(int32(onnxpb.TensorProto_INT64)), Dims: []int64{int64(len(v))}, Int64Data: v}
}

func int32s(name string, v ...int32) *onnxpb.TensorProto {
	return &onnxpb.TensorProto{Name: proto.String(name), DataType: proto.Int32(int32(onnxpb.TensorProto_INT32)), Dims: []int64{int64(len(v))}, Int32Data: v}
}

func fvi(name string, dims ...int64) *onnxpb.ValueInfoProto {
	return TensorInfo(name, onnxpb.TensorProto_FLOAT, dims)
}

// ramp returns n float32 values that float32 does not round to a pattern: i/7 - 1.
func ramp(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i)/7 - 1
	}
	return v
}

// naiveTranspose permutes a row-major tensor of dims by perm, one index at a time.
func naiveTranspose(v []float64, dims, perm []int64) []float64 {
	r := len(dims)
	out := make([]float64, len(v))
	outDims := make([]int64, r)
	for i, p := range perm {
		outDims[i] = dims[p]
	}
	idx := make([]int64, r)
	for o := range out {
		rem := int64(o)
		for a := r - 1; a >= 0; a-- { // output index of element o
			idx[a] = rem % outDims[a]
			rem /= outDims[a]
		}
		src := int64(0)
		for a := 0; a < r; a++ { // input index: axis perm[i] at idx[i]
			var i int
			for i = range perm {
				if perm[i] == int64(a) {
					break
				}
			}
			src = src*dims[a] + idx[i]
		}
		out[o] = v[src]
	}
	return out
}

// values decodes a FLOAT, DOUBLE, INT32 or INT64 tensor into float64s, independently of fold.go.
func values(t *testing.T, w *onnxpb.TensorProto) []float64 {
	t.Helper()
	switch onnxpb.TensorProto_DataType(w.GetDataType()) {
	case onnxpb.TensorProto_INT64:
		var out []float64
		if w.RawData == nil {
			for _, v := range w.Int64Data {
				out = append(out, float64(v))
			}
			return out
		}
		for i := 0; i+8 <= len(w.RawData); i += 8 {
			out = append(out, float64(int64(binary.LittleEndian.Uint64(w.RawData[i:]))))
		}
		return out
	case onnxpb.TensorProto_INT32:
		var out []float64
		for i := 0; i+4 <= len(w.RawData); i += 4 {
			out = append(out, float64(int32(binary.LittleEndian.Uint32(w.RawData[i:]))))
		}
		return out
	}
	v, err := Float64s(w)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func f64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// want is an initializer expected after folding.
type want struct {
	dt   onnxpb.TensorProto_DataType
	dims []int64
	vals []float64 // compared exactly (NaN equal to NaN)
}

func TestFoldConstants(t *testing.T) {
	chainD := make([]float64, 24)
	for i := range chainD {
		chainD[i] = float64(i)*0.1 + 1.0/3 // not representable in float32: Cast must round
	}
	chainF := make([]float64, 24)
	for i, v := range chainD {
		chainF[i] = float64(float32(v))
	}
	w3212 := ramp(12)
	tests := []struct {
		name   string
		spec   spec
		folded int
		ops    []string        // op types left, in order
		inits  map[string]want // initializers expected
		absent []string        // names that must be neither initializers nor in value_info
		inputs []string        // graph input list expected (initializers included), when set
		bad    bool            // the model is invalid: skip the ONNX checker
	}{
		{
			name: "constant weight",
			spec: spec{
				inputs:  []*onnxpb.ValueInfoProto{fvi("x", 1, 2, 3, 3)},
				outputs: []*onnxpb.ValueInfoProto{fvi("y", 1, 3, 3, 3)},
				nodes: []*onnxpb.NodeProto{
					constNode("W", float32s("W_value", []int64{3, 2, 1, 1}, 1, 2, 3, 4, 5, 6)),
					pnode("Conv", []string{"x", "W"}, "y"),
				},
			},
			folded: 1, ops: []string{"Conv"},
			inits: map[string]want{"W": {onnxpb.TensorProto_FLOAT, []int64{3, 2, 1, 1}, []float64{1, 2, 3, 4, 5, 6}}},
		},
		{
			name: "constant attributes",
			spec: spec{
				inputs:  []*onnxpb.ValueInfoProto{fvi("x", 2, 3)},
				outputs: []*onnxpb.ValueInfoProto{fvi("y", 2, 3), fvi("z", 3, 2), fvi("u", 2)},
				nodes: []*onnxpb.NodeProto{
					pnode("Constant", nil, "a", &onnxpb.AttributeProto{Name: proto.String("value_float"), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(2.5)}),
					pnode("Constant", nil, "b", &onnxpb.AttributeProto{Name: proto.String("value_floats"), Type: onnxpb.AttributeProto_FLOATS.Enum(), Floats: []float32{1, -1, 0.5}}),
					pnode("Constant", nil, "s", IntsAttr("value_ints", []int64{3, -1})),
					pnode("Constant", nil, "i", IntAttr("value_int", 1)),
					pnode("Mul", []string{"x", "a"}, "xa"),
					pnode("Add", []string{"xa", "b"}, "y"),
					pnode("Reshape", []string{"x", "s"}, "z"),
					pnode("Gather", []string{"x", "i"}, "u", IntAttr("axis", 1)),
				},
			},
			folded: 4, ops: []string{"Mul", "Add", "Reshape", "Gather"},
			inits: map[string]want{
				"a": {onnxpb.TensorProto_FLOAT, nil, []float64{2.5}},
				"b": {onnxpb.TensorProto_FLOAT, []int64{3}, []float64{1, -1, 0.5}},
				"s": {onnxpb.TensorProto_INT64, []int64{2}, []float64{3, -1}},
				"i": {onnxpb.TensorProto_INT64, nil, []float64{1}},
			},
		},
		{
			name: "constant cast reshape transpose chain",
			spec: spec{
				inputs:  []*onnxpb.ValueInfoProto{fvi("x", 1, 3, 4, 4)},
				outputs: []*onnxpb.ValueInfoProto{fvi("y", 1, 2, 3, 3)},
				nodes: []*onnxpb.NodeProto{
					constNode("wd", doubles("", []int64{24}, chainD)),
					pnode("Cast", []string{"wd"}, "wf", IntAttr("to", int64(onnxpb.TensorProto_FLOAT))),
					constNode("shape", int64s("", 3, -1, 2, 2)),
					pnode("Reshape", []string{"wf", "shape"}, "wr"),
					pnode("Transpose", []string{"wr"}, "W", IntsAttr("perm", []int64{1, 0, 2, 3})),
					pnode("Conv", []string{"x", "W"}, "y"),
				},
				valueInfo: []*onnxpb.ValueInfoProto{fvi("wf", 24), fvi("wr", 3, 2, 2, 2), fvi("W", 2, 3, 2, 2)},
			},
			folded: 5, ops: []string{"Conv"},
			inits: map[string]want{"W": {onnxpb.TensorProto_FLOAT, []int64{2, 3, 2, 2},
				naiveTranspose(chainF, []int64{3, 2, 2, 2}, []int64{1, 0, 2, 3})}},
			absent: []string{"wd", "wf", "shape", "wr"},
		},
		{
			name: "transpose default perm and out of order",
			spec: spec{
				inputs:  []*onnxpb.ValueInfoProto{fvi("x", 5, 2)},
				outputs: []*onnxpb.ValueInfoProto{fvi("y", 5, 3)},
				nodes: []*onnxpb.NodeProto{ // the Transpose comes before the Constant it reads
					pnode("MatMul", []string{"x", "Wt"}, "y"),
					pnode("Transpose", []string{"W"}, "Wt"),
					constNode("W", FloatTensor("", []int64{3, 2}, []float32{1, 2, 3, 4, 5, 6})),
				},
			},
			folded: 2, ops: []string{"MatMul"},
			inits: map[string]want{"Wt": {onnxpb.TensorProto_FLOAT, []int64{2, 3}, []float64{1, 3, 5, 2, 4, 6}}},
		},
		{
			name: "squeeze unsqueeze opset 11 attributes",
			spec: spec{
				opset:   11,
				inputs:  []*onnxpb.ValueInfoProto{fvi("x", 1, 4, 3)},
				outputs: []*onnxpb.ValueInfoProto{fvi("y", 1, 4, 2)},
				inits:   []*onnxpb.TensorProto{FloatTensor("w0", []int64{1, 3, 2, 1}, ramp(6))},
				nodes: []*onnxpb.NodeProto{
					pnode("Squeeze", []string{"w0"}, "w1", IntsAttr("axes", []int64{0, -1})),
					pnode("Unsqueeze", []string{"w1"}, "W", IntsAttr("axes", []int64{0})),
					pnode("MatMul", []string{"x", "W"}, "y"),
				},
			},
			folded: 2, ops: []string{"MatMul"},
			inits:  map[string]want{"W": {onnxpb.TensorProto_FLOAT, []int64{1, 3, 2}, f64(ramp(6))}},
			absent: []string{"w0", "w1"},
		},
		{
			name: "squeeze unsqueeze opset 13 inputs",
			spec: spec{
				inputs:  []*onnxpb.ValueInfoProto{fvi("x", 1, 4, 3)},
				outputs: []*onnxpb.ValueInfoProto{fvi("y", 1, 4, 2)},
				inits:   []*onnxpb.TensorProto{FloatTensor("w0", []int64{1, 3, 2, 1}, ramp(6))},
				nodes: []*onnxpb.NodeProto{
					constNode("ax0", int64s("", 0, -1)),
					constNode("ax1", int64s("", -3)),
					pnode("Squeeze", []string{"w0", "ax0"}, "w1"),
					pnode("Unsqueeze", []string{"w1", "ax1"}, "W"),
					pnode("MatMul", []string{"x", "W"}, "y"),
				},
			},
			folded: 4, ops: []string{"MatMul"},
			inits:  map[string]want{"W": {onnxpb.TensorProto_FLOAT, []int64{1, 3, 2}, f64(ramp(6))}},
			absent: []string{"w0", "w1", "ax0", "ax1"},
		},
		{
			name: "squeeze without axes",
			spec: spec{
				inputs:  []*onnxpb.ValueInfoProto{fvi("x", 4, 3)},
				outputs: []*onnxpb.ValueInfoProto{fvi("y", 4, 2)},
				inits:   []*onnxpb.TensorProto{FloatTensor("w0", []int64{1, 3, 1, 2, 1}, ramp(6))},
				nodes: []*onnxpb.NodeProto{
					pnode("Squeeze", []string{"w0"}, "W"),
					pnode("MatMul", []string{"x", "W"}, "y"),
				},
			},
			folded: 1, ops: []string{"MatMul"},
			inits: map[string]want{"W": {onnxpb.TensorProto_FLOAT, []int64{3, 2}, f64(ramp(6))}},
		},
		{
			name: "flatten",
			spec: spec{
				inputs:  []*onnxpb.ValueInfoProto{fvi("x", 1, 2), fvi("x2", 3, 1, 2)},
				outputs: []*onnxpb.ValueInfoProto{fvi("y", 1, 6), fvi("y2", 3, 1, 2)},
				inits:   []*onnxpb.TensorProto{FloatTensor("w0", []int64{2, 3, 2}, w3212)},
				nodes: []*onnxpb.NodeProto{
					pnode("Flatten", []string{"w0"}, "W", IntAttr("axis", 1)),
					pnode("MatMul", []string{"x", "W"}, "y"),
					pnode("Flatten", []string{"w0"}, "W2", IntAttr("axis", -1)),
					pnode("Reshape", []string{"W2", "s"}, "W3"),
					constNode("s", int64s("", 3, 0, -1)), // 0 copies W2's dimension 1 (2)
					pnode("MatMul", []string{"x2", "W3"}, "y2"),
				},
			},
			folded: 4, ops: []string{"MatMul", "MatMul"},
			inits: map[string]want{
				"W":  {onnxpb.TensorProto_FLOAT, []int64{2, 6}, f64(w3212)},
				"W3": {onnxpb.TensorProto_FLOAT, []int64{3, 2, 2}, f64(w3212)},
			},
			absent: []string{"w0", "W2", "s"},
		},
		{
			name: "identity",
			spec: spec{
				inputs:  []*onnxpb.ValueInfoProto{fvi("x", 1, 3)},
				outputs: []*onnxpb.ValueInfoProto{fvi("y", 1, 2)},
				inits:   []*onnxpb.TensorProto{float32s("w0", []int64{3, 2}, ramp(6)...)},
				nodes: []*onnxpb.NodeProto{
					pnode("Identity", []string{"w0"}, "w1"),
					pnode("Identity", []string{"w1"}, "W"),
					pnode("MatMul", []string{"x", "W"}, "y"),
				},
			},
			folded: 2, ops: []string{"MatMul"},
			inits:  map[string]want{"W": {onnxpb.TensorProto_FLOAT, []int64{3, 2}, f64(ramp(6))}},
			absent: []string{"w0", "w1"},
		},
		{
			name: "cast int32 shape and float16",
			spec: spec{
				inputs:  []*onnxpb.ValueInfoProto{fvi("x", 1, 3), fvi("x2", 1, 5)},
				outputs: []*onnxpb.ValueInfoProto{fvi("y", 1, 2), fvi("y2", 1, 5)},
				inits:   []*onnxpb.TensorProto{FloatTensor("w0", []int64{6}, ramp(6))},
				nodes: []*onnxpb.NodeProto{
					constNode("s32", int32s("", 3, 2)),
					pnode("Cast", []string{"s32"}, "s", IntAttr("to", int64(onnxpb.TensorProto_INT64))),
					pnode("Reshape", []string{"w0", "s"}, "W"),
					pnode("MatMul", []string{"x", "W"}, "y"),
					// 1, -2, 0.333251953125, 2^-24 (subnormal), +Inf as half floats in int32_data.
					constNode("h", &onnxpb.TensorProto{DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT16)), Dims: []int64{5},
						Int32Data: []int32{0x3c00, 0xc000, 0x3555, 0x0001, 0x7c00}}),
					pnode("Cast", []string{"h"}, "hf", IntAttr("to", int64(onnxpb.TensorProto_FLOAT))),
					pnode("Add", []string{"x2", "hf"}, "y2"),
				},
			},
			folded: 5, ops: []string{"MatMul", "Add"},
			inits: map[string]want{
				"W":  {onnxpb.TensorProto_FLOAT, []int64{3, 2}, f64(ramp(6))},
				"hf": {onnxpb.TensorProto_FLOAT, []int64{5}, []float64{1, -2, 0.333251953125, math.Ldexp(1, -24), math.Inf(1)}},
			},
			absent: []string{"s32", "s", "w0", "h"},
		},
		{
			name: "non-constant input left alone",
			spec: spec{
				inputs:  []*onnxpb.ValueInfoProto{fvi("x", 2, 6)},
				outputs: []*onnxpb.ValueInfoProto{fvi("y", 4, 3)},
				nodes: []*onnxpb.NodeProto{
					constNode("s", int64s("", 3, 4)),
					pnode("Reshape", []string{"x", "s"}, "r"),
					pnode("Transpose", []string{"r"}, "t"),
					pnode("Identity", []string{"t"}, "y"),
				},
			},
			folded: 1, ops: []string{"Reshape", "Transpose", "Identity"},
			inits: map[string]want{"s": {onnxpb.TensorProto_INT64, []int64{2}, []float64{3, 4}}},
		},
		{
			name: "graph outputs stay node outputs",
			spec: spec{
				inputs:  []*onnxpb.ValueInfoProto{fvi("x", 2)},
				outputs: []*onnxpb.ValueInfoProto{fvi("c", 2), fvi("e", 2), fvi("y", 2)},
				nodes: []*onnxpb.NodeProto{
					constNode("c", FloatTensor("", []int64{2}, []float32{1, 2})),
					constNode("d", FloatTensor("", []int64{2}, []float32{3, 4})),
					pnode("Identity", []string{"d"}, "e"),
					pnode("Add", []string{"x", "c"}, "y"),
				},
			},
			folded: 1, ops: []string{"Constant", "Identity", "Add"},
			inits:  map[string]want{"d": {onnxpb.TensorProto_FLOAT, []int64{2}, []float64{3, 4}}},
			absent: []string{"c", "e"},
		},
		{
			name: "IR 3 initializers listed as inputs",
			spec: spec{
				ir: 3, opset: 7, initInput: true,
				inputs:  []*onnxpb.ValueInfoProto{fvi("x", 1, 3)},
				outputs: []*onnxpb.ValueInfoProto{fvi("y", 1, 2)},
				inits:   []*onnxpb.TensorProto{FloatTensor("W", []int64{2, 3}, []float32{1, 2, 3, 4, 5, 6})},
				nodes: []*onnxpb.NodeProto{
					pnode("Transpose", []string{"W"}, "Wt"),
					pnode("MatMul", []string{"x", "Wt"}, "y"),
				},
			},
			folded: 1, ops: []string{"MatMul"},
			inits: map[string]want{
				"Wt": {onnxpb.TensorProto_FLOAT, []int64{3, 2}, []float64{1, 4, 2, 5, 3, 6}},
				"W":  {onnxpb.TensorProto_FLOAT, []int64{2, 3}, []float64{1, 2, 3, 4, 5, 6}}, // a graph input: kept
			},
			inputs: []string{"x", "W", "Wt"},
		},
		{
			name: "opset 4 reshape attribute and string cast",
			spec: spec{
				ir: 3, opset: 4, initInput: true,
				inputs:  []*onnxpb.ValueInfoProto{fvi("x", 1, 3)},
				outputs: []*onnxpb.ValueInfoProto{fvi("y", 1, 2)},
				inits:   []*onnxpb.TensorProto{FloatTensor("w", []int64{6}, ramp(6))},
				nodes: []*onnxpb.NodeProto{
					pnode("Reshape", []string{"w"}, "W", IntsAttr("shape", []int64{0, -1})),
					pnode("Reshape", []string{"W"}, "W2", IntsAttr("shape", []int64{3, -1})),
					// Cast-1 names the type as a string: left as it is.
					pnode("Cast", []string{"W2"}, "W3", &onnxpb.AttributeProto{Name: proto.String("to"), Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte("FLOAT")}),
					pnode("MatMul", []string{"x", "W3"}, "y"),
				},
			},
			folded: 2, ops: []string{"Cast", "MatMul"},
			inits: map[string]want{
				"W2": {onnxpb.TensorProto_FLOAT, []int64{3, 2}, f64(ramp(6))},
				"w":  {onnxpb.TensorProto_FLOAT, []int64{6}, f64(ramp(6))}, // a graph input: kept
			},
			absent: []string{"W"},
			inputs: []string{"x", "w", "W2"},
		},
		{
			name: "dead constant and unused value_info",
			spec: spec{
				inputs:    []*onnxpb.ValueInfoProto{fvi("x", 2)},
				outputs:   []*onnxpb.ValueInfoProto{fvi("y", 2)},
				inits:     []*onnxpb.TensorProto{FloatTensor("w", []int64{2}, []float32{1, 2})},
				valueInfo: []*onnxpb.ValueInfoProto{fvi("dead", 2), fvi("dead2", 2)},
				nodes: []*onnxpb.NodeProto{
					constNode("dead", FloatTensor("", []int64{2}, []float32{5, 6})),
					pnode("Identity", []string{"w"}, "dead2"),
					pnode("Relu", []string{"x"}, "y"),
				},
			},
			folded: 2, ops: []string{"Relu"},
			absent: []string{"dead", "dead2", "w"},
		},
		{
			// A Reshape to a shape of another element count (6 values to 4x2) is an invalid
			// model: it is left for the runtime to refuse, the Constant before it still folds.
			name: "reshape count mismatch left unfolded",
			spec: spec{
				inputs:  []*onnxpb.ValueInfoProto{fvi("x", 1, 4)},
				outputs: []*onnxpb.ValueInfoProto{fvi("y", 1, 2)},
				nodes: []*onnxpb.NodeProto{
					constNode("w", FloatTensor("", []int64{6}, ramp(6))),
					constNode("s", int64s("", 4, 2)),
					pnode("Reshape", []string{"w", "s"}, "W"),
					pnode("MatMul", []string{"x", "W"}, "y"),
				},
			},
			folded: 2, ops: []string{"Reshape", "MatMul"},
			inits: map[string]want{"w": {onnxpb.TensorProto_FLOAT, []int64{6}, f64(ramp(6))}},
			bad:   true,
		},
		{
			name: "unsupported cast and foreign domain left",
			spec: spec{
				inputs:  []*onnxpb.ValueInfoProto{fvi("x", 2)},
				outputs: []*onnxpb.ValueInfoProto{TensorInfo("y", onnxpb.TensorProto_INT64, []int64{2}), fvi("z", 2)},
				nodes: []*onnxpb.NodeProto{
					constNode("w", FloatTensor("", []int64{2}, []float32{1.5, -2.5})),
					pnode("Cast", []string{"w"}, "wi", IntAttr("to", int64(onnxpb.TensorProto_INT64))), // float -> int: left
					pnode("Add", []string{"wi", "wi"}, "y"),
					{Name: proto.String("n_v"), OpType: proto.String("Identity"), Domain: proto.String("com.example"), Input: []string{"w"}, Output: []string{"v"}},
					pnode("Add", []string{"x", "w"}, "z"),
				},
			},
			folded: 1, ops: []string{"Cast", "Add", "Identity", "Add"},
			inits: map[string]want{"w": {onnxpb.TensorProto_FLOAT, []int64{2}, []float64{1.5, -2.5}}},
			bad:   true, // the foreign domain is not imported
		},
	}
	dir := t.TempDir()
	var check []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.spec.build(t)
			g := m.Graph
			n, err := g.FoldConstants()
			if err != nil {
				t.Fatal(err)
			}
			if n != tt.folded {
				t.Errorf("FoldConstants folded %d nodes, want %d", n, tt.folded)
			}
			var ops []string
			for _, nd := range g.Nodes {
				ops = append(ops, nd.Op)
			}
			if !slices.Equal(ops, tt.ops) {
				t.Errorf("nodes left: %v, want %v", ops, tt.ops)
			}
			for name, w := range tt.inits {
				init := g.Initializer(name)
				if init == nil {
					t.Errorf("no initializer %q", name)
					continue
				}
				if !g.IsConstant(name) || g.IsGraphInput(name) || g.Producer(name) != nil {
					t.Errorf("%q: IsConstant %v, IsGraphInput %v, has producer %v", name, g.IsConstant(name), g.IsGraphInput(name), g.Producer(name) != nil)
				}
				if dt := onnxpb.TensorProto_DataType(init.GetDataType()); dt != w.dt || !slices.Equal(init.Dims, w.dims) {
					t.Errorf("%q is %v %v, want %v %v", name, dt, init.Dims, w.dt, w.dims)
				}
				got := values(t, init)
				if len(got) != len(w.vals) {
					t.Errorf("%q holds %d values, want %d", name, len(got), len(w.vals))
					continue
				}
				for i := range got {
					if got[i] != w.vals[i] && !(math.IsNaN(got[i]) && math.IsNaN(w.vals[i])) {
						t.Errorf("%q[%d] = %v, want %v", name, i, got[i], w.vals[i])
					}
				}
			}
			for _, name := range tt.absent {
				if g.Initializer(name) != nil || inValueInfo(g, name) {
					t.Errorf("%q is still an initializer or in value_info", name)
				}
			}
			if tt.inputs != nil {
				var got []string
				for _, vi := range g.rest.Input {
					got = append(got, vi.GetName())
				}
				if !slices.Equal(got, tt.inputs) {
					t.Errorf("graph inputs %v, want %v", got, tt.inputs)
				}
			}
			out, err := m.Marshal()
			if err != nil {
				t.Fatalf("folded model does not marshal: %v", err)
			}
			// Deterministic and idempotent: a second fold of the same model gives the same
			// bytes, and folding the folded model changes nothing.
			m2 := tt.spec.build(t)
			if _, err := m2.Graph.FoldConstants(); err != nil {
				t.Fatal(err)
			}
			if out2, _ := m2.Marshal(); !bytes.Equal(out, out2) {
				t.Error("folding the same model twice gave different bytes")
			}
			if n, err := m.Graph.FoldConstants(); n != 0 || err != nil {
				t.Errorf("second FoldConstants folded %d nodes (%v), want 0", n, err)
			}
			if again, _ := m.Marshal(); !bytes.Equal(out, again) {
				t.Error("second FoldConstants changed the model")
			}
			if !tt.bad {
				path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".onnx")
				if err := os.WriteFile(path, out, 0o644); err != nil {
					t.Fatal(err)
				}
				check = append(check, path)
			}
		})
	}
	onnxCheckAll(t, check)
}

func inValueInfo(g *Graph, name string) bool {
	for _, vi := range g.rest.ValueInfo {
		if vi.GetName() == name {
			return true
		}
	}
	return false
}

// TestFoldNothing: a graph with nothing to fold (no Constant node, no foldable op over
// initializers) is left exactly as it was, dead nodes and initializers listed as inputs included.
func TestFoldNothing(t *testing.T) {
	s := spec{
		initInput: true,
		inputs:    []*onnxpb.ValueInfoProto{fvi("x", 2)},
		outputs:   []*onnxpb.ValueInfoProto{fvi("y", 2)},
		inits:     []*onnxpb.TensorProto{FloatTensor("w", []int64{2}, []float32{1, 2}), FloatTensor("unused", []int64{1}, []float32{3})},
		nodes: []*onnxpb.NodeProto{
			pnode("Add", []string{"x", "w"}, "y"),
			pnode("Relu", []string{"x"}, "dead"),
		},
	}
	m := s.build(t)
	before, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if n, err := m.Graph.FoldConstants(); n != 0 || err != nil {
		t.Fatalf("FoldConstants = %d, %v; want 0, nil", n, err)
	}
	if after, _ := m.Marshal(); !bytes.Equal(before, after) {
		t.Error("FoldConstants changed a model with nothing to fold")
	}
}

// TestFoldMalformed: a constant whose data does not match its shape is an error naming the node
// and what is wrong, and the graph is left unchanged.
func TestFoldMalformed(t *testing.T) {
	short := FloatTensor("v", []int64{2}, []float32{1, 2})
	short.RawData = short.RawData[:3]
	tests := []struct {
		name  string
		nodes []*onnxpb.NodeProto
		inits []*onnxpb.TensorProto
		want  string
	}{
		{"constant raw_data", []*onnxpb.NodeProto{constNode("c", short), pnode("Add", []string{"x", "c"}, "y")}, nil,
			`node "n_c" (Constant): attribute value: malformed constant: tensor "v": raw_data has 3 bytes, shape [2] needs 8`},
		{"constant float_data", []*onnxpb.NodeProto{constNode("c", float32s("", []int64{3}, 1, 2)), pnode("Add", []string{"x", "c"}, "y")}, nil,
			`float_data has 2 values, shape [3] needs 3`},
		{"constant without tensor", []*onnxpb.NodeProto{constNode("c", nil), pnode("Add", []string{"x", "c"}, "y")}, nil,
			"attribute value holds no tensor"},
		{"initializer read by transpose", []*onnxpb.NodeProto{pnode("Transpose", []string{"v"}, "t"), pnode("Add", []string{"x", "t"}, "y")},
			[]*onnxpb.TensorProto{short}, `node "n_t" (Transpose): malformed constant: tensor "v": raw_data has 3 bytes`},
		{"reshape shape int64_data", []*onnxpb.NodeProto{
			constNode("w", FloatTensor("", []int64{2}, []float32{1, 2})),
			constNode("s", &onnxpb.TensorProto{DataType: proto.Int32(int32(onnxpb.TensorProto_INT64)), Dims: []int64{2}, Int64Data: []int64{2}}),
			pnode("Reshape", []string{"w", "s"}, "r"), pnode("Add", []string{"x", "r"}, "y")}, nil,
			`int64_data has 1 values, shape [2] needs 2`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := spec{
				inputs:  []*onnxpb.ValueInfoProto{fvi("x", 2)},
				outputs: []*onnxpb.ValueInfoProto{fvi("y", 2)},
				inits:   tt.inits, nodes: tt.nodes,
			}.build(t)
			before, _ := m.Marshal()
			n, err := m.Graph.FoldConstants()
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, errMalformed) {
				t.Fatalf("FoldConstants = %d, %v; want an error containing %q", n, err, tt.want)
			}
			if after, _ := m.Marshal(); !bytes.Equal(before, after) {
				t.Error("a failed FoldConstants changed the graph")
			}
		})
	}
}

// TestReshapeRules checks Reshape's 0, -1 and allowzero rules, and the shapes it refuses.
func TestReshapeRules(t *testing.T) {
	x := &dense{dt: onnxpb.TensorProto_FLOAT, dims: []int64{2, 3, 4}, raw: make([]byte, 4*24)}
	empty := &dense{dt: onnxpb.TensorProto_FLOAT, dims: []int64{0, 3}, raw: nil}
	tests := []struct {
		x         *dense
		shape     []int64
		allowZero bool
		want      []int64 // nil: refused
	}{
		{x, []int64{6, 4}, false, []int64{6, 4}},
		{x, []int64{0, -1}, false, []int64{2, 12}},
		{x, []int64{-1, 0, 0}, false, []int64{2, 3, 4}},
		{x, []int64{24}, false, []int64{24}},
		{x, []int64{-1}, false, []int64{24}},
		{x, []int64{5, -1}, false, nil},      // 24 is not a multiple of 5
		{x, []int64{-1, -1}, false, nil},     // two -1
		{x, []int64{4, 2}, false, nil},       // 8 elements, not 24
		{x, []int64{0, 0, 0, 0}, false, nil}, // 0 past the input's rank
		{x, []int64{2, -2, 4}, false, nil},
		{x, []int64{0, 12}, true, nil}, // allowzero: 0 is a dimension of 0
		{x, []int64{1 << 40, 1 << 40, 0}, true, nil},
		{empty, []int64{3, 0}, true, []int64{3, 0}},
		{empty, []int64{0, -1}, true, nil},  // 0 beside -1 under allowzero
		{empty, []int64{0, -1}, false, nil}, // copies 0: -1 undetermined
		{empty, []int64{5, 0, 7}, true, []int64{5, 0, 7}},
	}
	for _, tt := range tests {
		y := tt.x.reshape(tt.shape, tt.allowZero)
		var got []int64
		if y != nil {
			got = y.dims
		}
		if !slices.Equal(got, tt.want) || (y == nil) != (tt.want == nil) {
			t.Errorf("reshape %v to %v (allowzero %v) = %v, want %v", tt.x.dims, tt.shape, tt.allowZero, got, tt.want)
		}
	}
}

// TestTransposeNaive compares transpose with the naive one on a 4-D tensor, all 24 perms.
func TestTransposeNaive(t *testing.T) {
	dims := []int64{2, 3, 1, 4}
	v := f64(ramp(24))
	x := &dense{dt: onnxpb.TensorProto_DOUBLE, dims: dims}
	for _, f := range v {
		x.raw = binary.LittleEndian.AppendUint64(x.raw, math.Float64bits(f))
	}
	var perms [][]int64
	var gen func(p []int64, used int)
	gen = func(p []int64, used int) {
		if len(p) == 4 {
			perms = append(perms, slices.Clone(p))
			return
		}
		for a := int64(0); a < 4; a++ {
			if used&(1<<a) == 0 {
				gen(append(p, a), used|1<<a)
			}
		}
	}
	gen(nil, 0)
	for _, perm := range perms {
		y := x.transpose(perm)
		got := values(t, y.tensor())
		if want := naiveTranspose(v, dims, perm); !slices.Equal(got, want) {
			t.Errorf("transpose %v = %v, want %v", perm, got, want)
		}
	}
	for _, bad := range [][]int64{{0, 1, 2}, {0, 1, 2, 2}, {0, 1, 2, 4}, {-1, 0, 1, 2}} {
		if x.transpose(bad) != nil {
			t.Errorf("transpose by %v was not refused", bad)
		}
	}
}

// TestCastRules checks the conversions Cast folds and those it leaves.
func TestCastRules(t *testing.T) {
	le := binary.LittleEndian
	u64 := &dense{dt: onnxpb.TensorProto_UINT64, dims: []int64{2}, raw: le.AppendUint64(le.AppendUint64(nil, 7), math.MaxUint64)}
	i64 := &dense{dt: onnxpb.TensorProto_INT64, dims: []int64{3}}
	for _, v := range []int64{-3, 1 << 40, 1<<53 + 1} {
		i64.raw = le.AppendUint64(i64.raw, uint64(v))
	}
	boolT := &dense{dt: onnxpb.TensorProto_BOOL, dims: []int64{3}, raw: []byte{0, 1, 7}}
	bf := &dense{dt: onnxpb.TensorProto_BFLOAT16, dims: []int64{2}, raw: le.AppendUint16(le.AppendUint16(nil, 0x3f80), 0xc0a0)}
	tests := []struct {
		name string
		x    *dense
		to   onnxpb.TensorProto_DataType
		want []float64 // nil: left
	}{
		{"uint64 above int64", u64, onnxpb.TensorProto_FLOAT, nil},
		{"int64 to float rounds", i64, onnxpb.TensorProto_FLOAT, []float64{-3, 1 << 40, float64(float32(1 << 53))}},
		{"int64 to double", i64, onnxpb.TensorProto_DOUBLE, []float64{-3, 1 << 40, 1<<53 + 0}}, // 2^53+1 rounds to 2^53
		{"int64 to int32 out of range", i64, onnxpb.TensorProto_INT32, nil},
		{"bool to float", boolT, onnxpb.TensorProto_FLOAT, []float64{0, 1, 1}},
		{"bool to int32", boolT, onnxpb.TensorProto_INT32, []float64{0, 1, 1}},
		{"bfloat16 to float", bf, onnxpb.TensorProto_FLOAT, []float64{1, -5}},
		{"bfloat16 to int64", bf, onnxpb.TensorProto_INT64, nil},
		{"int64 to float16", i64, onnxpb.TensorProto_FLOAT16, nil},
		{"int64 to string", i64, onnxpb.TensorProto_STRING, nil},
	}
	for _, tt := range tests {
		y := tt.x.cast(tt.to)
		if (y == nil) != (tt.want == nil) {
			t.Errorf("%s: cast gave %v, want %v", tt.name, y, tt.want)
			continue
		}
		if y == nil {
			continue
		}
		if got := values(t, y.tensor()); !slices.Equal(got, tt.want) {
			t.Errorf("%s: cast gave %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestConstantStrings: value_string and value_strings become STRING initializers.
func TestConstantStrings(t *testing.T) {
	for _, tt := range []struct {
		attr *onnxpb.AttributeProto
		dims []int64
		want []string
	}{
		{&onnxpb.AttributeProto{Name: proto.String("value_string"), Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte("a")}, nil, []string{"a"}},
		{&onnxpb.AttributeProto{Name: proto.String("value_strings"), Type: onnxpb.AttributeProto_STRINGS.Enum(), Strings: [][]byte{[]byte("b"), []byte("cd")}}, []int64{2}, []string{"b", "cd"}},
	} {
		v, err := constantValue(&Node{Op: "Constant", Outputs: []string{"s"}, Attrs: []*onnxpb.AttributeProto{tt.attr}})
		if err != nil || v == nil {
			t.Fatalf("%s: %v, %v", tt.attr.GetName(), v, err)
		}
		var got []string
		for _, s := range v.StringData {
			got = append(got, string(s))
		}
		if onnxpb.TensorProto_DataType(v.GetDataType()) != onnxpb.TensorProto_STRING || !slices.Equal(v.Dims, tt.dims) || !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v %v %q", tt.attr.GetName(), v.GetDataType(), v.Dims, got)
		}
	}
	// A sparse constant is left as it is.
	sparse := &Node{Op: "Constant", Outputs: []string{"s"}, Attrs: []*onnxpb.AttributeProto{{Name: proto.String("sparse_value"), SparseTensor: &onnxpb.SparseTensorProto{}}}}
	if v, err := constantValue(sparse); v != nil || err != nil {
		t.Errorf("sparse constant: %v, %v; want nil, nil", v, err)
	}
}

// TestDropInitializerInputs: at IR >= 4 initializers listed as graph inputs can be dropped from
// the list (then nothing can override them); below IR 4 the list must stay.
func TestDropInitializerInputs(t *testing.T) {
	s := spec{
		initInput: true,
		inputs:    []*onnxpb.ValueInfoProto{fvi("x", 1, 3)},
		outputs:   []*onnxpb.ValueInfoProto{fvi("y", 1, 2)},
		inits:     []*onnxpb.TensorProto{FloatTensor("W", []int64{2, 3}, ramp(6))},
		nodes: []*onnxpb.NodeProto{
			pnode("Transpose", []string{"W"}, "Wt"),
			pnode("MatMul", []string{"x", "Wt"}, "y"),
		},
	}
	m := s.build(t)
	g := m.Graph
	if !g.IsConstant("W") || g.IsGraphInput("W") || g.IsConstant("x") {
		t.Fatalf("IsConstant(W)=%v IsGraphInput(W)=%v IsConstant(x)=%v", g.IsConstant("W"), g.IsGraphInput("W"), g.IsConstant("x"))
	}
	if n, err := g.FoldConstants(); n != 1 || err != nil {
		t.Fatalf("FoldConstants = %d, %v", n, err)
	}
	if g.Initializer("W") == nil || !containsInput(g, "W") {
		t.Fatal("FoldConstants removed an initializer listed as a graph input")
	}
	if n := g.DropInitializerInputs(); n != 1 || containsInput(g, "W") || !containsInput(g, "x") {
		t.Fatalf("DropInitializerInputs removed %d; W listed %v, x listed %v", n, containsInput(g, "W"), containsInput(g, "x"))
	}
	g.Cleanup() // now W is an ordinary unused initializer
	if g.Initializer("W") != nil || g.Initializer("Wt") == nil {
		t.Error("Cleanup after DropInitializerInputs did not remove W")
	}

	s.ir, s.opset = 3, 7
	old := s.build(t).Graph
	if n := old.DropInitializerInputs(); n != 0 || !containsInput(old, "W") {
		t.Errorf("IR 3: DropInitializerInputs removed %d entries", n)
	}
}

// TestCloneDeep: editing a clone in place (node inputs, attributes, value_info, initializer
// bytes) leaves the original as it was, and the reverse.
func TestCloneDeep(t *testing.T) {
	m := spec{
		inputs:    []*onnxpb.ValueInfoProto{fvi("x", 1, 2)},
		outputs:   []*onnxpb.ValueInfoProto{fvi("y", 1, 2)},
		inits:     []*onnxpb.TensorProto{FloatTensor("w", []int64{1, 2}, []float32{1, 2}), float32s("v", []int64{2}, 3, 4)},
		valueInfo: []*onnxpb.ValueInfoProto{fvi("a", 1, 2)},
		nodes: []*onnxpb.NodeProto{
			pnode("Add", []string{"x", "w"}, "a"),
			pnode("Mul", []string{"a", "v"}, "b"),
			pnode("Transpose", []string{"b"}, "y", IntsAttr("perm", []int64{0, 1})),
		},
	}.build(t)
	before, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	edit := func(c *Model) {
		g := c.Graph
		g.Nodes[0].Inputs[1] = "v"
		g.Nodes[1].Outputs[0] = "b2"
		g.Nodes[2].Inputs[0] = "b2"
		g.Nodes[2].Attrs[0].Ints[0], g.Nodes[2].Attrs[0].Ints[1] = 1, 0
		g.Nodes[2].Name = "renamed"
		g.Initializer("w").RawData[0] ^= 0xff
		g.Initializer("v").FloatData[0] = 9
		g.Initializer("v").Dims[0] = 2
		g.ValueInfo("a").Name = proto.String("a2")
		g.rest.Input[0].Name = proto.String("x2")
		c.Proto.ProducerName = proto.String("edited")
		g.SetInitializer(FloatTensor("u", []int64{1}, []float32{5}))
	}
	c := m.Clone()
	edit(c)
	if after, _ := m.Marshal(); !bytes.Equal(before, after) {
		t.Error("editing the clone in place changed the original")
	}
	// And the other way round: the clone does not see edits of the original.
	c = m.Clone()
	edit(m)
	if b, _ := c.Marshal(); !bytes.Equal(b, before) {
		t.Error("editing the original changed the clone")
	}
}

// TestFoldLibonnx folds every model of Debian's libonnx-testdata: folding must never fail, the
// folded model must pass Check and re-parse, folding again must change nothing, and a model with
// nothing to fold must come out byte-identical. The ONNX checker checks every folded model.
func TestFoldLibonnx(t *testing.T) {
	var models []string
	for _, dir := range []string{"node", "pytorch-converted", "pytorch-operator", "simple"} {
		m, _ := filepath.Glob(filepath.Join(testdata, dir, "*", "model.onnx"))
		models = append(models, m...)
	}
	if len(models) == 0 {
		testmodels.RequireOrSkip(t, errors.New("libonnx-testdata is not installed (apt-get install libonnx-testdata)"))
	}
	out := t.TempDir()
	var check []string
	changed, nodes := 0, 0
	for _, path := range models {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Parse(data)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		before, err := m.Marshal()
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		n, err := m.Graph.FoldConstants()
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		folded, err := m.Marshal()
		if err != nil {
			t.Errorf("%s: folded model: %v", path, err)
			continue
		}
		if n == 0 {
			if !bytes.Equal(before, folded) {
				t.Errorf("%s: nothing folded but the model changed", path)
			}
			continue
		}
		changed++
		nodes += n
		back, err := Parse(folded)
		if err != nil {
			t.Errorf("%s: folded model does not parse: %v", path, err)
			continue
		}
		if n2, err := back.Graph.FoldConstants(); n2 != 0 || err != nil {
			t.Errorf("%s: second fold folded %d (%v)", path, n2, err)
		}
		if again, _ := back.Marshal(); !bytes.Equal(again, folded) {
			t.Errorf("%s: second fold changed the model", path)
		}
		name := filepath.Base(filepath.Dir(filepath.Dir(path))) + "_" + filepath.Base(filepath.Dir(path)) + ".onnx"
		p := filepath.Join(out, name)
		if err := os.WriteFile(p, folded, 0o644); err != nil {
			t.Fatal(err)
		}
		check = append(check, p)
	}
	t.Logf("%d of %d models folded, %d nodes in all", changed, len(models), nodes)
	onnxCheckAll(t, check)
}

// onnxCheckAll runs python3-onnx's full checker on the models at paths, in one process, and
// fails the test for each it refuses. It skips (fails under CI) when python3-onnx is absent.
func onnxCheckAll(t *testing.T, paths []string) {
	t.Helper()
	if len(paths) == 0 {
		return
	}
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import onnx").Run(); err != nil {
		testmodels.RequireOrSkip(t, fmt.Errorf("python3-onnx is not installed: %w", err))
	}
	// check_model(path, full_check=True) would write inferred shapes back into the file: load
	// and check in memory instead.
	const script = `
import onnx, sys
bad = 0
for p in sys.argv[1:]:
    try:
        onnx.checker.check_model(onnx.load(p), full_check=True)
    except Exception as e:
        bad += 1
        print("%s: %s" % (p, str(e).splitlines()[0] if str(e) else type(e).__name__))
sys.exit(1 if bad else 0)
`
	out, err := exec.Command(py, append([]string{"-c", script}, paths...)...).CombinedOutput()
	if err != nil {
		t.Errorf("ONNX checker refused folded models: %v\n%s", err, strings.TrimSpace(string(out)))
	}
}

// ExampleGraph_FoldConstants folds a weight written as Constant -> Transpose into an initializer.
func ExampleGraph_FoldConstants() {
	mp := &onnxpb.ModelProto{
		IrVersion:   proto.Int64(8),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: proto.Int64(13)}},
		Graph: &onnxpb.GraphProto{
			Input:  []*onnxpb.ValueInfoProto{TensorInfo("x", onnxpb.TensorProto_FLOAT, []int64{1, 2})},
			Output: []*onnxpb.ValueInfoProto{TensorInfo("y", onnxpb.TensorProto_FLOAT, []int64{1, 3})},
			Node: []*onnxpb.NodeProto{
				constNode("w", FloatTensor("", []int64{3, 2}, []float32{1, 2, 3, 4, 5, 6})),
				pnode("Transpose", []string{"w"}, "wt"),
				pnode("MatMul", []string{"x", "wt"}, "y"),
			},
		},
	}
	b, _ := proto.Marshal(mp)
	m, _ := Parse(b)
	n, err := m.Graph.FoldConstants()
	wt, _ := Float32s(m.Graph.Initializer("wt"))
	fmt.Println(n, err, len(m.Graph.Nodes), m.Graph.Initializer("wt").Dims, wt)
	// Output: 2 <nil> 1 [2 3] [1 3 5 2 4 6]
}
