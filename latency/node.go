package latency

import (
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/rewrite"
)

// FromNode describes node n of g as a Layer when package rewrite can factorize it
// (rewrite.MatchLayer: a Conv with group 1, a Gemm or a MatMul by a constant float weight),
// with sample the shape of one sample of its input (without the batch) and batch samples per
// run, and for a 2-D Conv whether its neighbours in g keep onnxruntime's blocked layout
// (BlockedIn, BlockedOut). Otherwise it returns the reason, as rewrite gives it.
func FromNode(g *onnxio.Graph, n *onnxio.Node, sample []int, batch int) (Layer, string) {
	c, reason := rewrite.MatchLayer(g, n)
	if c == nil {
		return Layer{}, reason
	}
	ints := func(v []int64) []int {
		var out []int
		for _, x := range v {
			out = append(out, int(x))
		}
		return out
	}
	l := Layer{Name: n.Label(), Op: n.Op, In: int(c.Dims[1]), Out: c.Out(), Bias: c.Bias != nil, Input: append([]int(nil), sample...), Batch: batch}
	switch n.Op {
	case "Conv":
		l.Kernel = ints(c.Dims[2:])
		l.Strides, l.Pads, l.Dilations = ints(n.AttrInts("strides")), ints(n.AttrInts("pads")), ints(n.AttrInts("dilations"))
		if a := n.Attr("auto_pad"); a != nil {
			l.AutoPad = string(a.GetS())
		}
		if len(l.Kernel) == 2 {
			l.BlockedIn = producedBlocked(g, n.Inputs[0], 0)
			l.BlockedOut = takenBlocked(g, n, n.Outputs[0], 0)
		}
	case "Gemm":
		l.TransB = n.AttrInt("transB", 0) != 0
	}
	if err := l.Check(); err != nil {
		return Layer{}, err.Error()
	}
	return l, ""
}
