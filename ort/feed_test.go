package ort

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/convpca/convpca/dataset"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/testmodels"
)

// imageClassData returns n samples of testmodels/multi/image_class.onnx's inputs: x
// [3,16,16] float32 and cls int64 in 0..4.
func imageClassData(t *testing.T, n int) dataset.FieldReader {
	t.Helper()
	x := make([]float32, n*3*16*16)
	for i := range x {
		x[i] = float32(math.Sin(float64(i) * 0.37))
	}
	cls := make([]byte, 8*n)
	for i := range n {
		binary.NativeEndian.PutUint64(cls[8*i:], uint64(i%5))
	}
	r, err := dataset.FieldsFromMemory([]dataset.Field{
		{Name: "cls", Type: dataset.Int64},
		{Name: "x", Type: dataset.Float32, Shape: []int{3, 16, 16}},
	}, [][]byte{cls, dataset.BytesOf(x)}, n)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestInferFields: named data of several types feeds a model of two inputs by name, in any
// order, in batches, and its statistics are the same computed in the graph and on the host
// (a graph input among the captured tensors).
func TestInferFields(t *testing.T) {
	needORT(t)
	m, err := onnxio.Load(testmodels.Path("multi/image_class.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Batch: 7, Runtime: RuntimeOptions{Provider: CPU}}
	var firsts []int
	n, err := Infer(m, imageClassData(t, 20), nil, opts, func(b Batch) error {
		firsts = append(firsts, b.First)
		if len(b.Inputs) != 2 || b.Inputs[0].Name != "cls" || b.Inputs[1].Floats() == nil || b.Input != nil {
			t.Errorf("batch inputs %+v", b.Inputs)
		}
		if len(b.Outputs) != 1 || len(b.Outputs[0].Data) != 4*b.N {
			t.Errorf("outputs %+v", b.Outputs)
		}
		return nil
	})
	if err != nil || n != 20 || len(firsts) != 3 || firsts[2] != 14 {
		t.Fatalf("Infer: %d samples in batches from %v, %v", n, firsts, err)
	}
	tensors := convTensors(m) // x, the conv outputs
	if tensors[0] != "x" {
		t.Fatalf("tensors %v", tensors)
	}
	host, err := Collect(m, imageClassData(t, 20), tensors, Options{Batch: 7, HostStats: true, Runtime: opts.Runtime})
	if err != nil {
		t.Fatal(err)
	}
	gram, err := Collect(m, imageClassData(t, 20), tensors, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range tensors {
		top, down := eigenError(t, gram.Stats[name], host.Stats[name], false)
		if host.Stats[name].Count != gram.Stats[name].Count || top > 1e-5 || down > 1e-4 {
			t.Errorf("%s: counts %d and %d, eigenvalues differ by %.3g (top), %.3g", name, host.Stats[name].Count, gram.Stats[name].Count, top, down)
		}
	}
	// Unnamed data cannot feed two inputs; a float32 .npy-like reader names no input.
	_, err = Infer(m, dataset.Normal([]int{3, 16, 16}, 4, 0, 1, 1), nil, opts, func(Batch) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "model has 2 run-time inputs") {
		t.Errorf("unnamed data for two inputs: %v", err)
	}
}
