package ort

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/convpca/convpca/calib"
	"github.com/convpca/convpca/dataset"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/onnxio/onnxpb"
	"github.com/convpca/convpca/testmodels"
)

// needORT skips a test when the onnxruntime library is missing, except under CI.
func needORT(t *testing.T) {
	t.Helper()
	if err := InitRuntime(""); err != nil {
		testmodels.RequireOrSkip(t, fmt.Errorf("onnxruntime unavailable: %w", err))
	}
}

// convTensors lists the input and output of every Conv, as rewrite.Targets does.
func convTensors(m *onnxio.Model) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range m.Graph.Nodes {
		if n.Op == "Conv" {
			for _, t := range []string{n.Inputs[0], n.Outputs[0]} {
				if !seen[t] {
					seen[t] = true
					out = append(out, t)
				}
			}
		}
	}
	return out
}

// eigenError compares the eigenvalues of a and b (the reference): the relative error of the
// largest, and the largest relative error over those at least 1e-3 of the largest.
func eigenError(t *testing.T, a, b *calib.Stats, centred bool) (top, down float64) {
	t.Helper()
	m := func(s *calib.Stats) calib.PCA {
		c := s.SecondMoment()
		if centred {
			c = s.Covariance()
		}
		p, err := calib.Eigen(c)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	pa, pb := m(a), m(b)
	for i, v := range pb.Values {
		if v < 1e-3*pb.Values[0] {
			break
		}
		e := math.Abs(pa.Values[i]-v) / v
		if i == 0 {
			top = e
		}
		down = math.Max(down, e)
	}
	return top, down
}

// TestGramMatchesHost: the in-graph statistics (float32 sums about a shift, added in float64)
// give the eigenvalues of the float64 host path, on MNIST, on data of mean 100 and standard
// deviation 1, and on Conv1d/Conv3d models whose graph input is captured. The relative errors
// are logged; see the limits below.
func TestGramMatchesHost(t *testing.T) {
	needORT(t)
	type tc struct {
		name  string
		model string
		data  func() (dataset.Reader, error)
	}
	mnist := testmodels.Path("mnist_cnn.onnx")
	cases := []tc{
		{"mnist/mean100", mnist, func() (dataset.Reader, error) { return dataset.Normal([]int{1, 28, 28}, 300, 100, 1, 1), nil }},
		{"conv1d/mean100", testmodels.Path("tiny/conv1d.onnx"), func() (dataset.Reader, error) { return dataset.Normal([]int{4, 20}, 200, 100, 1, 2), nil }},
		{"conv3d/mean100", testmodels.Path("tiny/conv3d.onnx"), nil},
		{"conv_pad_stride", testmodels.Path("tiny/conv_pad_stride.onnx"), func() (dataset.Reader, error) { return dataset.Normal([]int{3, 9, 9}, 100, 0.5, 1, 3), nil }},
		{"grouped", testmodels.Path("tiny/grouped.onnx"), nil},
		{"shared_weight", testmodels.Path("tiny/shared_weight.onnx"), nil},
	}
	if dir, err := testmodels.MNISTDir(); err == nil {
		if _, err := os.Stat(filepath.Join(dir, "train-images-idx3-ubyte.gz")); err == nil {
			cases = append([]tc{{"mnist/train2000", mnist, func() (dataset.Reader, error) {
				r, err := dataset.Open(filepath.Join(dir, "train-images-idx3-ubyte.gz"))
				if err != nil {
					return nil, err
				}
				return dataset.Limit(r, 2000), nil
			}}}, cases...)
		}
	} else {
		t.Logf("no MNIST data: %v", err)
	}
	var table strings.Builder
	fmt.Fprintf(&table, "%-18s %-24s %5s %9s %9s %9s %9s %9s\n", "case", "tensor", "C", "cov top", "cov 1e-3", "mom top", "mom 1e-3", "mean")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := onnxio.Load(c.model)
			if err != nil {
				t.Fatal(err)
			}
			in, err := ModelInput(m)
			if err != nil {
				t.Fatal(err)
			}
			data := c.data
			if data == nil {
				shape := make([]int, len(in.Dims)-1)
				for i, d := range in.Dims[1:] {
					shape[i] = int(d)
				}
				data = func() (dataset.Reader, error) { return dataset.Normal(shape, 150, 100, 1, 4), nil }
			}
			tensors := convTensors(m)
			if _, _, err := gramModel(m, tensors, nil); err != nil {
				t.Fatalf("no in-graph statistics for %s: %v", c.model, err)
			}
			run := func(host bool) *calib.Result {
				r, err := data()
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				res, err := Collect(m, r, tensors, Options{Batch: 32, HostStats: host, Runtime: RuntimeOptions{Provider: CPU}})
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			fast, host := run(false), run(true)
			if fast.Samples != host.Samples {
				t.Fatalf("%d samples, host path %d", fast.Samples, host.Samples)
			}
			for _, name := range tensors {
				a, b := fast.Stats[name], host.Stats[name]
				if a.Count != b.Count || a.Dim != b.Dim || fmt.Sprint(fast.Shapes[name]) != fmt.Sprint(host.Shapes[name]) {
					t.Fatalf("%s: count %d dim %d shape %v, host path %d %d %v", name, a.Count, a.Dim, fast.Shapes[name], b.Count, b.Dim, host.Shapes[name])
				}
				ct, cd := eigenError(t, a, b, true)
				mt, md := eigenError(t, a, b, false)
				mean := 0.0
				for i, v := range b.Sum {
					mean = math.Max(mean, math.Abs(a.Sum[i]-v)/math.Max(math.Abs(v), 1e-300))
				}
				fmt.Fprintf(&table, "%-18s %-24.24s %5d %9.1e %9.1e %9.1e %9.1e %9.1e\n", c.name, name, a.Dim, ct, cd, mt, md, mean)
				// Float32 products about a shift near the data, summed in float64 across
				// batches: measured, the largest eigenvalues agree to 2e-7 (1.2e-6 for the
				// single channel of MNIST's pixels), those down to 1e-3 of the largest to 5e-6.
				if ct > 1e-5 || mt > 1e-5 || cd > 1e-4 || md > 1e-4 {
					t.Errorf("%s: eigenvalue errors %.2g %.2g (covariance) %.2g %.2g (second moment)", name, ct, cd, mt, md)
				}
			}
		})
	}
	t.Logf("relative error of the in-graph statistics against the float64 host path:\n%s", table.String())
}

// TestGramCapture: the capture model reads a Conv's output only through its LeakyRelu (so
// onnxruntime still fuses the two), its reductions suit opsets 11 to 18, and a model older
// than MinGramOpset is calibrated on the host.
func TestGramCapture(t *testing.T) {
	m, err := onnxio.Load(testmodels.Path("mnist_cnn.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	gm, plans, err := gramModel(m, convTensors(m), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(plans) != len(convTensors(m)) {
		t.Fatalf("%d plans for %d tensors", len(plans), len(convTensors(m)))
	}
	for _, n := range gm.Graph.Nodes {
		if n.Op == "Conv" {
			users := gm.Graph.Consumers(n.Outputs[0])
			if n.Outputs[0] == "/14/Conv_output_0" { // the last Conv, read by Flatten and the capture
				continue
			}
			if len(users) != 1 || users[0].Op != "LeakyRelu" {
				t.Errorf("Conv %s output read by %d nodes, want only its LeakyRelu", n.Label(), len(users))
			}
		}
	}

	if _, plans, err := gramModel(m, []string{"input", "input"}, nil); err != nil || len(plans) != 1 {
		t.Errorf("a tensor named twice: %d plans, %v; want it captured once", len(plans), err)
	}

	old, err := onnxio.Load(testmodels.Path("tiny/conv1d.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	old.Proto.OpsetImport[0].Version = proto.Int64(6)
	if _, _, err := gramModel(old, convTensors(old), nil); !errors.Is(err, errNoGram) {
		t.Fatalf("gramModel of an opset-6 model: %v, want errNoGram", err)
	}
	// The reductions and Slice change form with the opset (axes an attribute before 13 or 18,
	// Slice's bounds attributes before 10).
	needORT(t)
	for _, opset := range []int64{7, 9, 10, 11, 12, 13, 17, 18} {
		m1, err := onnxio.Load(testmodels.Path("tiny/conv1d.onnx"))
		if err != nil {
			t.Fatal(err)
		}
		m1.Proto.OpsetImport[0].Version = proto.Int64(opset)
		var res [2]*calib.Result
		for i, host := range []bool{false, true} {
			res[i], err = Collect(m1, dataset.Normal([]int{4, 20}, 40, 3, 1, 9), convTensors(m1), Options{Batch: 16, HostStats: host, Runtime: RuntimeOptions{Provider: CPU}})
			if err != nil {
				t.Fatalf("opset %d: %v", opset, err)
			}
		}
		for _, name := range convTensors(m1) {
			if top, down := eigenError(t, res[0].Stats[name], res[1].Stats[name], true); top > 1e-5 || down > 1e-4 {
				t.Errorf("opset %d, %s: eigenvalue errors %.2g %.2g", opset, name, top, down)
			}
		}
	}

	res, err := Collect(old, dataset.Normal([]int{4, 20}, 10, 0, 1, 5), convTensors(old), Options{Runtime: RuntimeOptions{Provider: CPU}})
	if err != nil || res.Samples != 10 || res.Stats["x"].Count != 200 {
		t.Fatalf("Collect of an opset-6 model: %v, %+v", err, res)
	}
	if _, err := Collect(m, dataset.Normal([]int{1, 28, 28}, 4, 0, 1, 6), []string{"nosuch"}, Options{Runtime: RuntimeOptions{Provider: CPU}}); err == nil || !strings.Contains(err.Error(), `no tensor "nosuch"`) {
		t.Errorf("Collect of a missing tensor: %v", err)
	}
}

// wideModel returns a model x[N,3,5,5] -> Conv 3->200 (3x3, pad 1) -> Relu -> Conv 200->136
// (1x1) -> y, with random weights: channel counts above 2·gramBlockRows, so the capture model
// takes the blocked Gram path that ImageNet-sized layers take.
func wideModel(t *testing.T) *onnxio.Model {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 7))
	w := func(name string, dims ...int64) *onnxpb.TensorProto {
		n, _ := onnxio.NumElements(dims)
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.3)
		}
		return onnxio.FloatTensor(name, dims, v)
	}
	node := func(op string, in, out []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
		return &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String(out[0]), Input: in, Output: out, Attribute: attrs}
	}
	mp := &onnxpb.ModelProto{
		IrVersion:   proto.Int64(8),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: proto.Int64(13)}},
		Graph: &onnxpb.GraphProto{
			Name:        proto.String("wide"),
			Input:       []*onnxpb.ValueInfoProto{onnxio.TensorInfo("x", onnxpb.TensorProto_FLOAT, []int64{-1, 3, 5, 5})},
			Output:      []*onnxpb.ValueInfoProto{onnxio.TensorInfo("y", onnxpb.TensorProto_FLOAT, nil)},
			Initializer: []*onnxpb.TensorProto{w("w1", 200, 3, 3, 3), w("b1", 200), w("w2", 136, 200, 1, 1), w("b2", 136)},
			Node: []*onnxpb.NodeProto{
				node("Conv", []string{"x", "w1", "b1"}, []string{"c1"}, onnxio.IntsAttr("pads", []int64{1, 1, 1, 1})),
				node("Relu", []string{"c1"}, []string{"r1"}),
				node("Conv", []string{"r1", "w2", "b2"}, []string{"y"}),
			},
		},
	}
	m, err := onnxio.FromProto(mp)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestGramBlocks: above 2·gramBlockRows channels the Gram matrix is computed in blocks; the
// statistics still match the float64 host path (eigenvalues and means).
func TestGramBlocks(t *testing.T) {
	if got := blocks(200); len(got) != 4 || got[0] != [2]int{0, 50} || got[3] != [2]int{150, 200} {
		t.Fatalf("blocks(200) = %v, want 4 blocks of 50", got)
	}
	needORT(t)
	for _, opset := range []int64{9, 10, 13} { // Gemm with and without C, Slice by attributes and by inputs
		t.Run(fmt.Sprintf("opset%d", opset), func(t *testing.T) { testGramBlocks(t, opset) })
	}
}

func testGramBlocks(t *testing.T, opset int64) {
	m := wideModel(t)
	m.Proto.OpsetImport[0].Version = proto.Int64(opset)
	tensors := convTensors(m)
	_, plans, err := gramModel(m, tensors, nil)
	if err != nil {
		t.Fatal(err)
	}
	blocked := 0
	for _, p := range plans {
		if len(p.blocks) > 1 {
			blocked++
		}
	}
	if blocked != 3 { // c1 and r1 (200 channels) and y (136); x has 3
		t.Fatalf("%d blocked plans, want 3 (tensors %v)", blocked, tensors)
	}
	run := func(host bool) *calib.Result {
		res, err := Collect(m, dataset.Normal([]int{3, 5, 5}, 96, 2, 1, 11), tensors, Options{Batch: 32, HostStats: host, Runtime: RuntimeOptions{Provider: CPU}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	fast, host := run(false), run(true)
	for _, name := range tensors {
		a, b := fast.Stats[name], host.Stats[name]
		if a.Dim != b.Dim || a.Count != b.Count {
			t.Fatalf("%s: dim %d count %d, host %d %d", name, a.Dim, a.Count, b.Dim, b.Count)
		}
		for _, centred := range []bool{true, false} {
			if top, down := eigenError(t, a, b, centred); top > 1e-5 || down > 1e-4 {
				t.Errorf("%s (centred %v): eigenvalue errors %.2g top, %.2g to 1e-3", name, centred, top, down)
			}
		}
		for i, v := range b.Sum {
			if d := math.Abs(a.Sum[i] - v); d > 1e-5*math.Max(math.Abs(v), float64(b.Count)) {
				t.Fatalf("%s: sum[%d] %g, host %g", name, i, a.Sum[i], v)
			}
		}
	}
}
