package rewrite

import (
	"gonum.org/v1/gonum/mat"

	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/onnxio/onnxpb"
)

// Replacement names the nodes and initializers that replaced a layer, for the refit to
// overwrite.
type Replacement struct {
	Down, Core, Up *onnxio.Node // Down or Up nil when that side is not factorized
	// CoreIn is the tensor the core reads (z).
	CoreIn string
	// CoreW is the initializer of the core's weight; its layout is the node's (Conv: out x in x
	// kernel; MatMul: in x out).
	CoreW string
	// CoreB is the initializer of the core's bias ("" when it has none); UpB the up
	// projection's ("" without one).
	CoreB, UpB string
	dense      bool
}

// Replace replaces c in g by the nodes of f, in c's place in g.Nodes: Convs for a Conv; for a
// Gemm or MatMul, MatMuls by constant weights (each channels-last, so inputs of any rank work)
// and Adds for the biases. Every node written is valid at the model's opset (MatMul and Conv
// from opset 1; Add broadcasts by itself from opset 7 and is given broadcast = 1 before). The
// last node writes c's output tensor, so consumers and graph outputs are untouched; new
// tensors are declared in value_info with their channel counts.
func Replace(g *onnxio.Graph, c *Conv, f Factors) Replacement {
	e := editor{g: g, n: c.Node, label: c.Node.Label(), dense: c.Spatial() == 0 && isDense(c.Node)}
	in, out := c.Node.Inputs[0], c.Node.Outputs[0]
	rep := Replacement{dense: e.dense, CoreIn: in}
	if f.Down != nil {
		r, _ := f.Down.Dims()
		rep.CoreIn = g.UniqueName(in + "_" + e.label + "_pca_in")
		rep.Down = e.pointwise("_pca_down", in, rep.CoreIn, f.Down)
		e.declare(rep.CoreIn, in, r)
	}
	k, _ := f.Core.Dims()
	coreOut := out
	if f.Up != nil || (e.dense && c.Bias != nil) {
		coreOut = g.UniqueName(out + "_pca")
		e.declare(coreOut, out, k)
	}
	if e.dense {
		rep.Core = e.pointwise("_pca_core", rep.CoreIn, coreOut, f.Core)
		rep.CoreW = rep.Core.Inputs[1]
		if f.Up == nil && c.Bias != nil { // alpha and beta are folded into W and the bias
			rep.CoreB = e.bias("_pca_core", coreOut, out, c.Bias)
		}
	} else {
		// The core keeps the Conv's attributes; its weight is k x r·kernel reshaped.
		coreDims := append([]int64{int64(k), int64(c.Dims[1])}, c.Dims[2:]...)
		if f.Down != nil {
			r, _ := f.Down.Dims()
			coreDims[1] = int64(r)
		}
		rep.CoreW = e.weight("_pca_core_W", coreDims, toFloat32(f.Core))
		inputs := []string{rep.CoreIn, rep.CoreW}
		if f.Up == nil && len(c.Node.Inputs) > 2 && c.Node.Inputs[2] != "" {
			inputs = append(inputs, c.Node.Inputs[2])
			rep.CoreB = c.Node.Inputs[2]
		}
		rep.Core = e.node("_pca_core", "Conv", inputs, coreOut, c.Node.Attrs)
	}
	if f.Up != nil {
		upOut := out
		if e.dense {
			upOut = g.UniqueName(out + "_pca_up")
			e.declare(upOut, out, c.Out())
		}
		rep.Up = e.pointwise("_pca_up", coreOut, upOut, f.Up)
		if e.dense {
			rep.UpB = e.bias("_pca_up", upOut, out, f.UpBias)
		} else {
			rep.UpB = e.weight("_pca_up_B", []int64{int64(len(f.UpBias))}, toFloat32Vec(f.UpBias))
			rep.Up.Inputs = append(rep.Up.Inputs, rep.UpB)
		}
	}
	for i, m := range g.Nodes {
		if m == c.Node {
			g.Nodes = append(g.Nodes[:i], append(e.nodes, g.Nodes[i+1:]...)...)
			break
		}
	}
	return rep
}

// SetCore writes the core's weights w (k x r·kernel, the layout of Factors.Core) into g.
func (rep Replacement) SetCore(g *onnxio.Graph, w *mat.Dense) {
	t := g.Initializer(rep.CoreW)
	if rep.dense {
		g.SetInitializer(onnxio.FloatTensor(rep.CoreW, t.Dims, toFloat32(mat.DenseCopyOf(w.T()))))
		return
	}
	g.SetInitializer(onnxio.FloatTensor(rep.CoreW, t.Dims, toFloat32(w)))
}

// SetUpBias writes the up projection's bias.
func (rep Replacement) SetUpBias(g *onnxio.Graph, b []float64) {
	t := g.Initializer(rep.UpB)
	g.SetInitializer(onnxio.FloatTensor(rep.UpB, t.Dims, toFloat32Vec(b)))
}

// SetCoreBias gives the core (of a replacement without up projection) the bias b, adding it
// when the core has none. A Conv's bias may be the original layer's initializer, which other
// layers may share: it gets a new one.
func (rep Replacement) SetCoreBias(g *onnxio.Graph, b []float64) {
	if rep.dense && rep.CoreB != "" {
		t := g.Initializer(rep.CoreB)
		g.SetInitializer(onnxio.FloatTensor(rep.CoreB, t.Dims, toFloat32Vec(b)))
		return
	}
	e := editor{g: g, n: rep.Core, label: rep.Core.Name, dense: rep.dense}
	if rep.dense {
		out := rep.Core.Outputs[0]
		mid := g.UniqueName(out + "_pca")
		rep.Core.Outputs[0] = mid
		e.declareLike(mid, out)
		e.bias("", mid, out, b)
		for i, m := range g.Nodes {
			if m == rep.Core {
				g.Nodes = append(g.Nodes[:i+1], append(e.nodes, g.Nodes[i+1:]...)...)
				break
			}
		}
		return
	}
	name := e.weight("_B", []int64{int64(len(b))}, toFloat32Vec(b))
	if len(rep.Core.Inputs) > 2 {
		rep.Core.Inputs[2] = name
	} else {
		rep.Core.Inputs = append(rep.Core.Inputs, name)
	}
}

// editor makes the nodes and initializers that replace node n of g.
type editor struct {
	g     *onnxio.Graph
	n     *onnxio.Node
	label string
	dense bool // MatMul and Add, channels last; else Convs, channels at axis 1
	nodes []*onnxio.Node
}

func (e *editor) weight(suffix string, dims []int64, v []float32) string {
	t := onnxio.FloatTensor(e.g.UniqueName(e.label+suffix), dims, v)
	e.g.SetInitializer(t)
	return t.GetName()
}

func (e *editor) node(suffix, op string, in []string, out string, attrs []*onnxpb.AttributeProto) *onnxio.Node {
	n := &onnxio.Node{Name: e.g.UniqueName(e.label + suffix), Op: op, Domain: e.n.Domain, Inputs: in, Outputs: []string{out}, Attrs: attrs}
	e.nodes = append(e.nodes, n)
	return n
}

// pointwise adds y = w x over the channels of x: a 1x1 Conv, or MatMul(x, wᵀ) for a dense
// layer. w is rows x cols (out x in).
func (e *editor) pointwise(suffix, x, y string, w *mat.Dense) *onnxio.Node {
	rows, cols := w.Dims()
	if e.dense {
		name := e.weight(suffix+"_W", []int64{int64(cols), int64(rows)}, toFloat32(mat.DenseCopyOf(w.T())))
		return e.node(suffix, "MatMul", []string{x, name}, y, nil)
	}
	dims := []int64{int64(rows), int64(cols)}
	spatial := len(e.g.Initializer(e.n.Inputs[1]).GetDims()) - 2
	ones := make([]int64, spatial)
	for i := range ones {
		ones[i] = 1
		dims = append(dims, 1)
	}
	name := e.weight(suffix+"_W", dims, toFloat32(w))
	return e.node(suffix, "Conv", []string{x, name}, y, []*onnxpb.AttributeProto{onnxio.IntsAttr("kernel_shape", ones)})
}

// bias adds y = x + b (b over the last axis) and returns b's initializer.
func (e *editor) bias(suffix, x, y string, b []float64) string {
	name := e.weight(suffix+"_B", []int64{int64(len(b))}, toFloat32Vec(b))
	var attrs []*onnxpb.AttributeProto
	if e.g.Opset() < 7 {
		attrs = []*onnxpb.AttributeProto{onnxio.IntAttr("broadcast", 1)}
	}
	e.node(suffix+"_add", "Add", []string{x, name}, y, attrs)
	return name
}

// declare records tensor name in value_info like tensor like, with channels channels (on the
// last axis for a dense layer, axis 1 otherwise).
func (e *editor) declare(name, like string, channels int) {
	var dims []int64
	if vi := e.g.ValueInfo(like); vi != nil {
		if d, ok := onnxio.Shape(vi); ok && len(d) >= 2 {
			dims = append([]int64(nil), d...)
			if e.dense {
				dims[len(dims)-1] = int64(channels)
			} else {
				dims[1] = int64(channels)
			}
		}
	}
	e.g.SetValueInfo(onnxio.TensorInfo(name, onnxpb.TensorProto_FLOAT, dims))
}

// declareLike records tensor name in value_info with like's shape.
func (e *editor) declareLike(name, like string) {
	var dims []int64
	if vi := e.g.ValueInfo(like); vi != nil {
		dims, _ = onnxio.Shape(vi)
	}
	e.g.SetValueInfo(onnxio.TensorInfo(name, onnxpb.TensorProto_FLOAT, dims))
}
