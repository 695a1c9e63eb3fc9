package rewrite

import (
	"fmt"

	"gonum.org/v1/gonum/mat"

	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/onnxio/onnxpb"
)

// Conv is a Conv node that can be factorized, with its constants decoded.
type Conv struct {
	Node   *onnxio.Node
	Dims   []int64   // weight shape: out x in/group x kernel...
	Weight []float64 // row-major, Dims
	Bias   []float64 // length out; nil when the Conv has none
}

// Out is the number of output channels.
func (c *Conv) Out() int { return int(c.Dims[0]) }

// PerChannel is the number of weights per output channel (in/group · prod(kernel)).
func (c *Conv) PerChannel() int { return len(c.Weight) / c.Out() }

// Spatial is the number of spatial dimensions (1 for Conv1d, 2 for Conv2d...).
func (c *Conv) Spatial() int { return len(c.Dims) - 2 }

// WeightMatrix returns the weight as an out x PerChannel matrix (sharing Weight).
func (c *Conv) WeightMatrix() *mat.Dense {
	return mat.NewDense(c.Out(), c.PerChannel(), c.Weight)
}

// MatchConv checks whether node n of g is a Conv that convpca can factorize. When it cannot,
// it returns nil and the reason, for the user's report.
func MatchConv(g *onnxio.Graph, n *onnxio.Node) (*Conv, string) {
	if n.Op != "Conv" || (n.Domain != "" && n.Domain != "ai.onnx") {
		return nil, "not a Conv"
	}
	if len(n.Inputs) < 2 || len(n.Outputs) != 1 {
		return nil, fmt.Sprintf("Conv with %d inputs and %d outputs", len(n.Inputs), len(n.Outputs))
	}
	if gr := n.AttrInt("group", 1); gr != 1 {
		return nil, fmt.Sprintf("grouped conv (group=%d)", gr)
	}
	wt := g.Initializer(n.Inputs[1])
	if wt == nil {
		return nil, fmt.Sprintf("weight %q is not a constant initializer", n.Inputs[1])
	}
	if dt := onnxpb.TensorProto_DataType(wt.GetDataType()); dt != onnxpb.TensorProto_FLOAT {
		return nil, fmt.Sprintf("weight %q has element type %v (only float32 is rewritten)", n.Inputs[1], dt)
	}
	if len(wt.Dims) < 3 || wt.Dims[0] < 1 {
		return nil, fmt.Sprintf("weight %q has shape %v", n.Inputs[1], wt.Dims)
	}
	w, err := onnxio.Float64s(wt)
	if err != nil {
		return nil, err.Error()
	}
	c := &Conv{Node: n, Dims: wt.Dims, Weight: w}
	if len(n.Inputs) > 2 && n.Inputs[2] != "" {
		bt := g.Initializer(n.Inputs[2])
		if bt == nil {
			return nil, fmt.Sprintf("bias %q is not a constant initializer", n.Inputs[2])
		}
		b, err := onnxio.Float64s(bt)
		if err != nil {
			return nil, err.Error()
		}
		if len(b) != c.Out() {
			return nil, fmt.Sprintf("bias %q has %d values for %d channels", n.Inputs[2], len(b), c.Out())
		}
		c.Bias = b
	}
	return c, ""
}

// Factors are the Convs that replace one Conv: an optional 1x1 Conv(Down) without bias, the
// core Conv with the original's kernel, pads, strides and dilations, and an optional 1x1
// Conv(Up, UpBias). Without Up, the core keeps the original bias.
type Factors struct {
	Down   *mat.Dense // r x in: Uᵀ, or nil
	Core   *mat.Dense // k x (r·kernel), k = out without Up, r = in without Down
	Up     *mat.Dense // out x k: V, or nil
	UpBias []float64  // length out, with Up
}

// Replace replaces c in g by the Convs (Gemms for a Gemm or MatMul) of f, in c's place in g.Nodes. The last of them writes
// c's output tensor, so consumers and graph outputs are untouched; new tensors are declared in
// value_info with their channel counts.
func Replace(g *onnxio.Graph, c *Conv, f Factors) Replacement {
	n := c.Node
	label := n.Label()
	in, out := n.Inputs[0], n.Outputs[0]
	ones := make([]int64, c.Spatial())
	for i := range ones {
		ones[i] = 1
	}
	// Convs are replaced by Convs; Gemm and MatMul by Gemms over W (transB = 1).
	op, pointAttrs := "Conv", []*onnxpb.AttributeProto{onnxio.IntsAttr("kernel_shape", ones)}
	if isDense(n) {
		op, pointAttrs = "Gemm", []*onnxpb.AttributeProto{onnxio.IntAttr("transB", 1)}
	}
	bias := func(suffix string, b []float64) string {
		bt := onnxio.FloatTensor(g.UniqueName(label+suffix+"_B"), []int64{int64(len(b))}, toFloat32Vec(b))
		g.SetInitializer(bt)
		return bt.GetName()
	}
	pointwise := func(suffix, x, y string, w *mat.Dense, b []float64) *onnxio.Node {
		rows, cols := w.Dims()
		wt := onnxio.FloatTensor(g.UniqueName(label+suffix+"_W"), append([]int64{int64(rows), int64(cols)}, ones...), toFloat32(w))
		g.SetInitializer(wt)
		inputs := []string{x, wt.GetName()}
		if b != nil {
			inputs = append(inputs, bias(suffix, b))
		}
		return &onnxio.Node{
			Name: g.UniqueName(label + suffix), Op: op, Domain: n.Domain,
			Inputs: inputs, Outputs: []string{y}, Attrs: pointAttrs,
		}
	}
	declare := func(name, like string, channels int) {
		var dims []int64
		if vi := g.ValueInfo(like); vi != nil {
			if d, ok := onnxio.Shape(vi); ok && len(d) >= 2 {
				dims = append([]int64(nil), d...)
				dims[1] = int64(channels)
			}
		}
		g.SetValueInfo(onnxio.TensorInfo(name, onnxpb.TensorProto_FLOAT, dims))
	}

	var nodes []*onnxio.Node
	var rep Replacement
	coreIn := in
	if f.Down != nil {
		r, _ := f.Down.Dims()
		coreIn = g.UniqueName(in + "_" + label + "_pca_in")
		rep.Down = pointwise("_pca_down", in, coreIn, f.Down, nil)
		nodes = append(nodes, rep.Down)
		declare(coreIn, in, r)
	}
	k, cols := f.Core.Dims()
	coreOut := out
	if f.Up != nil {
		coreOut = g.UniqueName(out + "_pca")
		declare(coreOut, out, k)
	}
	coreDims := append([]int64{int64(k), int64(cols) / int64(c.PerChannel()/int(c.Dims[1]))}, c.Dims[2:]...)
	coreW := onnxio.FloatTensor(g.UniqueName(label+"_pca_core_W"), coreDims, toFloat32(f.Core))
	g.SetInitializer(coreW)
	coreInputs := []string{coreIn, coreW.GetName()}
	coreAttrs := n.Attrs
	if isDense(n) {
		coreAttrs = pointAttrs
		if f.Up == nil && c.Bias != nil { // alpha and beta are folded into W and the bias
			coreInputs = append(coreInputs, bias("_pca_core", c.Bias))
		}
	} else if f.Up == nil && len(n.Inputs) > 2 && n.Inputs[2] != "" {
		coreInputs = append(coreInputs, n.Inputs[2])
	}
	rep.Core = &onnxio.Node{
		Name: g.UniqueName(label + "_pca_core"), Op: op, Domain: n.Domain,
		Inputs: coreInputs, Outputs: []string{coreOut}, Attrs: coreAttrs,
	}
	nodes = append(nodes, rep.Core)
	if f.Up != nil {
		rep.Up = pointwise("_pca_up", coreOut, out, f.Up, f.UpBias)
		nodes = append(nodes, rep.Up)
	}
	for i, m := range g.Nodes {
		if m == n {
			g.Nodes = append(g.Nodes[:i], append(nodes, g.Nodes[i+1:]...)...)
			break
		}
	}
	return rep
}

// Replacement holds the nodes Replace put in place of a Conv; Down and Up are nil when that side
// is not factorized.
type Replacement struct {
	Down, Core, Up *onnxio.Node
}

func toFloat32(m *mat.Dense) []float32 {
	r, c := m.Dims()
	out := make([]float32, 0, r*c)
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			out = append(out, float32(m.At(i, j)))
		}
	}
	return out
}

func toFloat32Vec(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}
