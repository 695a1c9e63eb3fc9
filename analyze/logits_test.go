package analyze

import (
	"math"
	"slices"
	"testing"

	"github.com/convpca/convpca/dataset"
	"github.com/convpca/convpca/onnxio"
)

// TestLogits: the tensor before a final Softmax, LogSoftmax or Sigmoid, looking through
// shape-only operators, and the output itself otherwise.
func TestLogits(t *testing.T) {
	tests := []struct {
		name  string
		build func() *graphBuilder
		want  string
	}{
		{"softmax", func() *graphBuilder {
			return newGraph("x", -1, 4).node("s", "Softmax", []string{"x"}, []string{"y"})
		}, "x"},
		{"sigmoid through reshape and transpose", func() *graphBuilder {
			return newGraph("x", -1, 4).init("shape", 2, 2).
				node("g", "Sigmoid", []string{"x"}, []string{"p"}).
				node("r", "Reshape", []string{"p", "shape"}, []string{"q"}).
				node("t", "Transpose", []string{"q"}, []string{"y"})
		}, "x"},
		{"log-softmax after relu", func() *graphBuilder {
			return newGraph("x", -1, 4).
				node("r", "Relu", []string{"x"}, []string{"h"}).
				node("s", "LogSoftmax", []string{"h"}, []string{"y"})
		}, "h"},
		{"relu last", func() *graphBuilder {
			return newGraph("x", -1, 4).
				node("s", "Softmax", []string{"x"}, []string{"h"}).
				node("r", "Relu", []string{"h"}, []string{"y"})
		}, "y"},
		{"no operator", func() *graphBuilder {
			return newGraph("y", -1, 4)
		}, "y"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.build().model(t, "y", -1, 4)
			if got := Logits(m.Graph); !slices.Equal(got, []string{tt.want}) {
				t.Errorf("Logits = %q, want [%q]", got, tt.want)
			}
		})
	}
}

// TestCompareTensors compares the logits of two softmax classifiers that differ in their
// weights against the same error computed here in float64.
func TestCompareTensors(t *testing.T) {
	needORT(t)
	const n, k, c = 40, 6, 5
	classifier := func(v float32) *onnxio.Model {
		return newGraph("x", -1, k).init("W", v, k, c).
			node("mm", "MatMul", []string{"x", "W"}, []string{"z"}).
			node("sm", "Softmax", []string{"z"}, []string{"y"}).
			model(t, "y", -1, c)
	}
	a, b := classifier(0.1), classifier(0.13)
	open := func() dataset.Reader { return dataset.Normal([]int{k}, n, 0, 1, 7) }
	got, diffs, err := CompareTensors(a, b, Logits(a.Graph), open(), open(), cpuOptions)
	if err != nil {
		t.Fatal(err)
	}
	if got != n || len(diffs) != 1 || diffs[0].Name != "z" || diffs[0].RelL2 == nil {
		t.Fatalf("compared %d samples: %+v", got, diffs)
	}
	x := make([]float32, n*k)
	if _, err := open().Read(x); err != nil {
		t.Fatal(err)
	}
	w := func(v float64, i int) float64 { return v + float64(float32(i%7)/10) } // graphBuilder.init
	var d2, z2 float64
	for s := 0; s < n; s++ {
		for j := 0; j < c; j++ {
			var za, zb float64
			for i := 0; i < k; i++ {
				za += float64(x[s*k+i]) * w(0.1, i*c+j)
				zb += float64(x[s*k+i]) * w(0.13, i*c+j)
			}
			d2 += (za - zb) * (za - zb)
			z2 += za * za
		}
	}
	want := math.Sqrt(d2 / z2)
	if math.Abs(*diffs[0].RelL2-want) > 1e-4*want {
		t.Errorf("relative L2 of the logits %.6g, want %.6g", *diffs[0].RelL2, want)
	}
}
