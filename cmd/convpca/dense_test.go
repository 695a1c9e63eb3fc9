package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/onnxio/onnxpb"
	"github.com/convpca/convpca/rewrite"
)

// mlp writes x[N,6] -> Gemm(transB=1, C[8]) -> Relu -> Gemm(alpha .5, beta 2, C[1,5]) -> Relu
// -> MatMul(B[5,4]) -> y[N,4].
func mlp(t *testing.T, path string) {
	t.Helper()
	w := func(name string, dims []int64) *onnxpb.TensorProto {
		n, _ := onnxio.NumElements(dims)
		return onnxio.FloatTensor(name, dims, ramp(n + len(name))[len(name):])
	}
	f := func(name string, v float32) *onnxpb.AttributeProto {
		return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(v)}
	}
	node := func(name, op string, in, out []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
		return &onnxpb.NodeProto{Name: proto.String(name), OpType: proto.String(op), Input: in, Output: out, Attribute: attrs}
	}
	mp := &onnxpb.ModelProto{
		IrVersion:   proto.Int64(8),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: proto.Int64(13)}},
		Graph: &onnxpb.GraphProto{
			Name:   proto.String("mlp"),
			Input:  []*onnxpb.ValueInfoProto{onnxio.TensorInfo("x", onnxpb.TensorProto_FLOAT, []int64{-1, 6})},
			Output: []*onnxpb.ValueInfoProto{onnxio.TensorInfo("y", onnxpb.TensorProto_FLOAT, []int64{-1, 4})},
			Initializer: []*onnxpb.TensorProto{
				w("w1", []int64{8, 6}), w("c1", []int64{8}), w("w2", []int64{8, 5}), w("c2", []int64{1, 5}), w("w3", []int64{5, 4}),
			},
			Node: []*onnxpb.NodeProto{
				node("fc1", "Gemm", []string{"x", "w1", "c1"}, []string{"h1"}, onnxio.IntAttr("transB", 1)),
				node("relu1", "Relu", []string{"h1"}, []string{"r1"}),
				node("fc2", "Gemm", []string{"r1", "w2", "c2"}, []string{"h2"}, f("alpha", 0.5), f("beta", 2)),
				node("relu2", "Relu", []string{"h2"}, []string{"r2"}),
				node("fc3", "MatMul", []string{"r2", "w3"}, []string{"y"}),
			},
		},
	}
	b, err := proto.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// mlpData writes the mlp model and n samples of data for it into dir, and returns their paths
// and the model's outputs on the data.
func mlpData(t *testing.T, dir string, n int) (model, data string, want []float32) {
	t.Helper()
	model, data = filepath.Join(dir, "mlp.onnx"), filepath.Join(dir, "x.npy")
	mlp(t, model)
	x := ramp(n * 6)
	for i := range x {
		x[i] = x[i]*2 + float32(math.Cos(float64(i*i)))
	}
	writeNpy(t, data, []int{n, 6}, x)
	return model, data, outputs(t, model, data, cpu)
}

// TestDense: Gemm and MatMul layers at full rank on every side reproduce the outputs; at
// reduced ranks they are replaced by smaller Gemms, and the models pass the ONNX checker.
func TestDense(t *testing.T) {
	needRuntime(t)
	dir := t.TempDir()
	model, data, want := mlpData(t, dir, 200)
	for _, side := range []rewrite.Side{rewrite.SideOutput, rewrite.SideInput, rewrite.SideBoth} {
		out := filepath.Join(dir, string(side)+".onnx")
		rep, err := runCompress(compressOptions{Model: model, Calib: data, Out: out, Calibration: cpu,
			Rewrite: rewrite.Options{Side: side, Full: true}}, &strings.Builder{}, &strings.Builder{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Applied != 3 || len(rep.Layers) != 3 {
			t.Errorf("%s: %d of %d layers applied, want 3 of 3", side, rep.Applied, len(rep.Layers))
		}
		// fc1 6->8: 48 MACs; fc2 8->5: 40; fc3 5->4: 20.
		if rep.Before.MACs != 48+40+20 {
			t.Errorf("%s: MACs before %d, want 108", side, rep.Before.MACs)
		}
		if e := maxRelErr(outputs(t, out, data, cpu), want); e > 1e-5 {
			t.Errorf("%s: full rank changed outputs by %.3g relative", side, e)
		}
		onnxCheck(t, out)
	}
	out := filepath.Join(dir, "reduced.onnx")
	rep, err := runCompress(compressOptions{Model: model, Calib: data, Out: out, Calibration: cpu,
		Rewrite: rewrite.Options{Side: rewrite.SideOutput, Ranks: map[string]rewrite.Ranks{"fc1": {Out: 2}, "fc2": {Out: 1}}, Rule: rewrite.DefaultRule}}, &strings.Builder{}, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnxio.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	ops := map[string]int{}
	for _, n := range m.Graph.Nodes {
		ops[n.Op]++
	}
	// Each applied layer becomes two MatMuls (core and up) and an Add (the up projection's
	// bias); others stay as they were.
	wantGemms, wantMatMuls := 0, 2*rep.Applied
	for _, l := range rep.Layers {
		if !l.Applied && l.Op == "Gemm" {
			wantGemms++
		}
	}
	if rep.Layers[0].After.MACs != 2*6+8*2 || rep.Layers[1].After.MACs != 8+5 || ops["Gemm"] != wantGemms || ops["MatMul"] != wantMatMuls || ops["Add"] != rep.Applied {
		t.Errorf("fc1 after %d MACs (want 28), fc2 %d (want 13), ops %v (want %d Gemm, %d MatMul, %d Add)", rep.Layers[0].After.MACs, rep.Layers[1].After.MACs, ops, wantGemms, wantMatMuls, rep.Applied)
	}
	onnxCheck(t, out)
}

// TestDenseRefit: on Gemm and MatMul layers, --sequential --refit reconstructs the original
// outputs at least as well as the projection alone, and refits some layer.
func TestDenseRefit(t *testing.T) {
	needRuntime(t)
	dir := t.TempDir()
	model, data, want := mlpData(t, dir, 300)
	relErr := func(got []float32) float64 {
		var d, n float64
		for i, w := range want {
			d += (float64(got[i]) - float64(w)) * (float64(got[i]) - float64(w))
			n += float64(w) * float64(w)
		}
		return math.Sqrt(d / n)
	}
	ranks := map[string]rewrite.Ranks{"fc1": {In: 2, Out: 2}, "fc2": {In: 2, Out: 1}}
	errs := map[bool]float64{}
	for _, refit := range []bool{false, true} {
		out := filepath.Join(dir, fmt.Sprintf("refit-%v.onnx", refit))
		rep, err := runCompress(compressOptions{Model: model, Calib: data, Out: out, Calibration: cpu, Sequential: true,
			Rewrite: rewrite.Options{Side: rewrite.SideBoth, Ranks: ranks, Rule: rewrite.DefaultRule, Refit: refit}}, &strings.Builder{}, &strings.Builder{})
		if err != nil {
			t.Fatal(err)
		}
		refitted := 0
		for _, l := range rep.Layers {
			if l.Refitted {
				refitted++
			}
		}
		if refit && refitted == 0 {
			t.Error("no Gemm layer was refitted")
		}
		errs[refit] = relErr(outputs(t, out, data, cpu))
		onnxCheck(t, out)
	}
	t.Logf("relative output error: projection %.4g, refit %.4g", errs[false], errs[true])
	if errs[true] > errs[false] {
		t.Errorf("refit made the outputs worse: %.4g > %.4g", errs[true], errs[false])
	}
}

// TestDenseSensitivity: --alloc sensitivity measures Gemm and MatMul layers too (it failed
// with `not a Conv` before), meets the budget and writes a model that runs.
func TestDenseSensitivity(t *testing.T) {
	needRuntime(t)
	dir := t.TempDir()
	model, data, _ := mlpData(t, dir, 300)
	out := filepath.Join(dir, "sensitivity.onnx")
	rep, err := runCompress(compressOptions{Model: model, Calib: data, Out: out, Calibration: cpu,
		Rewrite: rewrite.Options{Side: rewrite.SideBoth, TargetMACs: 0.6, Alloc: rewrite.AllocSensitivity, Rule: rewrite.DefaultRule}}, &strings.Builder{}, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Applied == 0 || float64(rep.After.MACs) > 0.6*float64(rep.Before.MACs) {
		t.Errorf("%d applied, MACs %d -> %d; want the 0.6 budget met", rep.Applied, rep.Before.MACs, rep.After.MACs)
	}
	onnxCheck(t, out)
}
