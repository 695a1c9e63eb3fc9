package rewrite

import (
	"fmt"

	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/onnxio/onnxpb"
)

// Fully connected layers are factorized like a 1x1 Conv: Gemm(A, B, C) with a constant B, and
// MatMul(A, B) with a constant 2-D B, on 2-D inputs (batch x features), become Gemms with
// transB = 1 over the weight W (out x in): down Gemm(Uᵀ), core Gemm(Vᵀ W U), up Gemm(V) + bias.

// isDense reports whether n is a Gemm or a MatMul (the layers MatchDense considers).
func isDense(n *onnxio.Node) bool {
	return (n.Op == "Gemm" || n.Op == "MatMul") && (n.Domain == "" || n.Domain == "ai.onnx")
}

// MatchDense checks whether Gemm or MatMul node n of g can be factorized and returns it as a
// Conv with no spatial axes: Dims out x in, Weight W = alpha·B (transposed as needed) and Bias
// beta·C broadcast to out. When it cannot, it returns nil and the reason.
func MatchDense(g *onnxio.Graph, n *onnxio.Node) (*Conv, string) {
	if !isDense(n) {
		return nil, "not a Gemm or MatMul"
	}
	if len(n.Inputs) < 2 || len(n.Outputs) != 1 {
		return nil, fmt.Sprintf("%s with %d inputs and %d outputs", n.Op, len(n.Inputs), len(n.Outputs))
	}
	if n.AttrInt("transA", 0) != 0 {
		return nil, "transA = 1"
	}
	bt := g.Initializer(n.Inputs[1])
	if bt == nil {
		return nil, notConstant(g, "weight", n.Inputs[1])
	}
	if dt := onnxpb.TensorProto_DataType(bt.GetDataType()); dt != onnxpb.TensorProto_FLOAT {
		return nil, fmt.Sprintf("weight %q has element type %v (only float32 is rewritten)", n.Inputs[1], dt)
	}
	if len(bt.Dims) != 2 || bt.Dims[0] < 1 || bt.Dims[1] < 1 {
		return nil, fmt.Sprintf("weight %q has shape %v, not 2-D", n.Inputs[1], bt.Dims)
	}
	b, err := onnxio.Float64s(bt)
	if err != nil {
		return nil, err.Error()
	}
	alpha, beta := 1.0, 1.0
	if n.Op == "Gemm" {
		if a := n.Attr("alpha"); a != nil {
			alpha = float64(a.GetF())
		}
		if a := n.Attr("beta"); a != nil {
			beta = float64(a.GetF())
		}
	}
	// W is out x in: B itself with transB (B is out x in), else Bᵀ (B is in x out).
	transB := n.Op == "Gemm" && n.AttrInt("transB", 0) != 0
	out, in := int(bt.Dims[1]), int(bt.Dims[0])
	if transB {
		out, in = in, out
	}
	w := make([]float64, out*in)
	for o := 0; o < out; o++ {
		for i := 0; i < in; i++ {
			if transB {
				w[o*in+i] = alpha * b[o*in+i]
			} else {
				w[o*in+i] = alpha * b[i*out+o]
			}
		}
	}
	c := &Conv{Node: n, Dims: []int64{int64(out), int64(in)}, Weight: w}
	if n.Op == "Gemm" && len(n.Inputs) > 2 && n.Inputs[2] != "" {
		ct := g.Initializer(n.Inputs[2])
		if ct == nil {
			return nil, notConstant(g, "bias", n.Inputs[2])
		}
		cv, err := onnxio.Float64s(ct)
		if err != nil {
			return nil, err.Error()
		}
		bias := make([]float64, out)
		switch {
		case len(cv) == 1:
			for o := range bias {
				bias[o] = beta * cv[0]
			}
		case len(cv) == out && (len(ct.Dims) == 1 || (len(ct.Dims) == 2 && ct.Dims[0] == 1)):
			for o := range bias {
				bias[o] = beta * cv[o]
			}
		default:
			return nil, fmt.Sprintf("bias %q of shape %v is not a vector over the outputs", n.Inputs[2], ct.Dims)
		}
		c.Bias = bias
	}
	return c, ""
}

// MatchLayer is MatchConv for Convs and MatchDense for Gemm and MatMul.
func MatchLayer(g *onnxio.Graph, n *onnxio.Node) (*Conv, string) {
	if isDense(n) {
		return MatchDense(g, n)
	}
	return MatchConv(g, n)
}

// isLayer reports whether n is a node Compress considers: a Conv, Gemm or MatMul.
func isLayer(n *onnxio.Node) bool {
	return (n.Op == "Conv" && (n.Domain == "" || n.Domain == "ai.onnx")) || isDense(n)
}

// notConstant says why tensor name, the layer's weight or bias (what), is not a constant: it
// is computed by a node (as in attention, a product of two activations), fed as a graph
// input, or neither. Constants are initializers, also those listed as graph inputs below IR 4,
// once Constant nodes and shape-only chains over constants are folded (onnxio FoldConstants).
func notConstant(g *onnxio.Graph, what, name string) string {
	if p := g.Producer(name); p != nil {
		return fmt.Sprintf("%s %q is computed by %s %q, not a constant", what, name, p.Op, p.Label())
	}
	if g.IsGraphInput(name) {
		return fmt.Sprintf("%s %q is a graph input, not a constant", what, name)
	}
	return fmt.Sprintf("%s %q is not a constant", what, name)
}
