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
	return convWeights(g, n)
}

// convWeights decodes the float32 constant weight (out x in/group x kernel...) and bias of
// Conv node n, whatever its group, or says why it cannot.
func convWeights(g *onnxio.Graph, n *onnxio.Node) (*Conv, string) {
	wt := g.Initializer(n.Inputs[1])
	if wt == nil {
		return nil, notConstant(g, "weight", n.Inputs[1])
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
			return nil, notConstant(g, "bias", n.Inputs[2])
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
