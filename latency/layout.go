package latency

import (
	"slices"

	"github.com/convpca/convpca/onnxio"
)

// Which of a layer's neighbours keep onnxruntime's blocked layout. onnxruntime's CPU provider
// (NchwcTransformer, onnxruntime/core/optimizer/nchwc_transformer.cc, read at 1.18) runs 2-D
// Convs and pools in the blocked NCHWc layout, putting a conversion before them where their
// input is not blocked; Add, Sum, Mul, Concat, Relu, Sigmoid, Tanh, BatchNormalization, Resize
// and Upsample follow the layout only when every input already comes blocked; activations
// fused into the Conv before them (LeakyRelu, Clip, HardSigmoid among them) go with it. Any
// other consumer of a blocked tensor gets a conversion back to NCHW.

var (
	// alwaysBlocked are converted whatever layout their input comes in.
	alwaysBlocked = map[string]bool{"Conv": true, "MaxPool": true, "AveragePool": true, "GlobalMaxPool": true, "GlobalAveragePool": true}
	// followBlocked are converted when all their (non-constant) inputs come blocked.
	followBlocked = map[string]bool{"Add": true, "Sum": true, "Mul": true, "Concat": true, "Relu": true, "Sigmoid": true, "Tanh": true, "BatchNormalization": true, "Resize": true, "Upsample": true}
	// fusedActivations are fused into the Conv before them.
	fusedActivations = map[string]bool{"Relu": true, "LeakyRelu": true, "Clip": true, "HardSigmoid": true, "Sigmoid": true, "Tanh": true}
)

// maxLayoutDepth bounds how far producedBlocked and takenBlocked follow a chain of nodes.
const maxLayoutDepth = 16

// producedBlocked reports whether tensor name of g comes out of a node that runs blocked.
func producedBlocked(g *onnxio.Graph, name string, depth int) bool {
	p := g.Producer(name)
	if p == nil || depth > maxLayoutDepth {
		return false // a graph input or a constant
	}
	switch {
	case p.Op == "Conv":
		return conv2D(g, p)
	case alwaysBlocked[p.Op]:
		return true
	case fusedActivations[p.Op] && len(p.Inputs) > 0:
		if c := g.Producer(p.Inputs[0]); c != nil && c.Op == "Conv" && len(g.Consumers(p.Inputs[0])) == 1 {
			return conv2D(g, c)
		}
	}
	if !followBlocked[p.Op] {
		return false
	}
	return inputsBlocked(g, p, "", depth)
}

// inputsBlocked reports whether every input of n that carries data (all of Add, Sum, Mul and
// Concat's, the first of the others) but skip comes blocked.
func inputsBlocked(g *onnxio.Graph, n *onnxio.Node, skip string, depth int) bool {
	ins := n.Inputs
	switch n.Op {
	case "Add", "Sum", "Mul", "Concat":
	default:
		ins = ins[:min(len(ins), 1)]
	}
	for _, in := range ins {
		if in != skip && !producedBlocked(g, in, depth+1) {
			return false
		}
	}
	return len(ins) > 0
}

// takenBlocked reports whether every consumer of tensor name (the output of from) takes it
// blocked, and it is no graph output.
func takenBlocked(g *onnxio.Graph, from *onnxio.Node, name string, depth int) bool {
	cs := g.Consumers(name)
	if len(cs) == 0 || depth > maxLayoutDepth || slices.Contains(g.Outputs(), name) {
		return false
	}
	for _, c := range cs {
		switch {
		case c.Op == "Conv":
			if len(c.Inputs) == 0 || c.Inputs[0] != name || !conv2D(g, c) {
				return false
			}
		case alwaysBlocked[c.Op]:
		case fusedActivations[c.Op] && from != nil && from.Op == "Conv" && len(cs) == 1:
			if !takenBlocked(g, c, c.Outputs[0], depth+1) {
				return false
			}
		case followBlocked[c.Op]:
			if !inputsBlocked(g, c, name, depth) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// conv2D reports whether Conv n has a constant 2-D kernel (rank-4 weight), as onnxruntime runs
// blocked.
func conv2D(g *onnxio.Graph, n *onnxio.Node) bool {
	if len(n.Inputs) < 2 {
		return false
	}
	w := g.Initializer(n.Inputs[1])
	return w != nil && len(w.GetDims()) == 4
}
