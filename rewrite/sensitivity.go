package rewrite

import (
	"fmt"
	"math"
	"sort"

	"github.com/convpca/convpca/onnxio"
)

// Allocation rules for --target-macs.
const (
	AllocEnergy      = "energy"      // discarded normalised eigenvalue mass
	AllocSensitivity = "sensitivity" // measured change of the model's outputs
)

// curve is a measured loss against rank for one side of one layer: loss[i] at rank[i], ranks
// ascending, the last one full rank with loss 0. Loss at other ranks is interpolated linearly.
type curve struct {
	rank []int
	loss []float64
}

func (c curve) at(r int) float64 {
	i := sort.SearchInts(c.rank, r)
	switch {
	case i == len(c.rank):
		return 0
	case c.rank[i] == r || i == 0:
		return c.loss[i]
	}
	f := float64(r-c.rank[i-1]) / float64(c.rank[i]-c.rank[i-1])
	return c.loss[i-1] + f*(c.loss[i]-c.loss[i-1])
}

// Factorizable reports whether the plan's layer can be rewritten (it matched and has
// statistics); only such plans have sides to measure or apply.
func (p *Plan) Factorizable() bool { return p.conv != nil }

// Channels returns the full rank of one side of the plan's layer: its input channels when
// input, else its output channels (or, for a dense layer of more outputs than inputs, the
// rank its outputs can have).
func (p *Plan) Channels(input bool) int {
	if input {
		return p.in
	}
	return p.outFull()
}

// outFull is the output side's full rank: the number of output principal components.
func (p *Plan) outFull() int {
	if n := len(p.outPCA.Values); n > 0 {
		return n
	}
	return p.OutChannels
}

// SetSensitivity records the measured loss of truncating one side (input when input) of the
// plan's layer at each of ranks (ascending, below full rank), for AllocSensitivity. Losses are
// made non-increasing in rank (the running maximum from the top) and full rank costs 0.
func (p *Plan) SetSensitivity(input bool, ranks []int, loss []float64) {
	c := curve{rank: append(append([]int(nil), ranks...), p.Channels(input)), loss: append(append([]float64(nil), loss...), 0)}
	for i := len(c.loss) - 2; i >= 0; i-- {
		c.loss[i] = math.Max(c.loss[i], c.loss[i+1])
	}
	if input {
		p.inCurve = &c
	} else {
		p.outCurve = &c
	}
}

// Truncated returns a copy of m in which only the plan's layer is factorized, with input rank
// r and output rank k (0: side untouched), whatever that costs: the model whose outputs
// measure one cut's sensitivity.
func (p *Plan) Truncated(m *onnxio.Model, r, k int) (*onnxio.Model, error) {
	mm := m.Clone()
	conv, err := p.layerIn(mm.Graph)
	if err != nil {
		return nil, err
	}
	trial := *p
	trial.conv, trial.InRank, trial.Rank = conv, r, k
	Replace(mm.Graph, conv, trial.factors())
	return mm, nil
}

// layerIn matches the plan's layer in g, a clone of the graph the plan was made for.
func (p *Plan) layerIn(g *onnxio.Graph) (*Conv, error) {
	n := findNode(g, p.conv.Node)
	if n == nil {
		return nil, fmt.Errorf("conv %q: not in the model", p.Name)
	}
	c, reason := MatchLayer(g, n)
	if c == nil {
		return nil, fmt.Errorf("conv %q: %s", p.Name, reason)
	}
	return c, nil
}

// findNode returns the node of g at the same place as n in the graph it was cloned from (same
// name and outputs).
func findNode(g *onnxio.Graph, n *onnxio.Node) *onnxio.Node {
	for _, x := range g.Nodes {
		if x.Name == n.Name && len(x.Outputs) == len(n.Outputs) && x.Outputs[0] == n.Outputs[0] {
			return x
		}
	}
	return nil
}

// Rebind returns copies of plans (as Analyze made them for a model) bound to the same layers
// of m, a clone of that model, so that one analysis serves several compressions of clones
// (the probes of a search). Spectra, bases and measured losses are shared, not copied: nothing
// changes them after Analyze.
func Rebind(plans []*Plan, m *onnxio.Model) ([]*Plan, error) {
	out := make([]*Plan, len(plans))
	for i, p := range plans {
		q := *p
		if p.conv != nil {
			c, err := p.layerIn(m.Graph)
			if err != nil {
				return nil, err
			}
			q.conv = c
		}
		out[i] = &q
	}
	return out, nil
}
