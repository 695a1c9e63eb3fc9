package rewrite

import (
	"fmt"
	"sort"
	"strings"

	"gonum.org/v1/gonum/mat"

	"github.com/convpca/convpca/calib"
	"github.com/convpca/convpca/onnxio"
)

// Options say how Compress chooses ranks.
type Options struct {
	Rule Rule // the rank rule for layers without a fixed rank
	// Ranks fixes the rank of layers by name (the Conv node's name, or its output tensor's name
	// when the node has none).
	Ranks map[string]int
	// Full keeps every channel and applies each rewrite even where it saves nothing, to verify
	// that the rewrite leaves the outputs unchanged.
	Full bool
}

// Layer is one row of a Report: what happened to one Conv.
type Layer struct {
	Name        string  `json:"name"`
	Op          string  `json:"op"`
	Side        string  `json:"side"`
	OutChannels int     `json:"out_channels"`
	Rank        int     `json:"rank"`            // chosen rank; 0 when no rank was chosen
	Energy      float64 `json:"retained_energy"` // fraction of the eigenvalue sum kept
	Before      Cost    `json:"before"`
	After       Cost    `json:"after"`
	Applied     bool    `json:"applied"`
	Reason      string  `json:"reason,omitempty"` // why a layer was skipped
}

// Report lists every Conv of a model and the totals over them. Costs are per sample.
type Report struct {
	Layers  []Layer `json:"layers"`
	Before  Cost    `json:"total_before"`
	After   Cost    `json:"total_after"`
	Applied int     `json:"applied"`
	Skipped int     `json:"skipped"`
	Samples int     `json:"calibration_samples"`
}

// MACRatio is the factor by which total MACs fell (before / after).
func (r *Report) MACRatio() float64 {
	if r.After.MACs == 0 {
		return 0
	}
	return float64(r.Before.MACs) / float64(r.After.MACs)
}

// Targets returns the tensors whose statistics Compress needs: the output of every Conv node
// of the main graph, in graph order.
func Targets(m *onnxio.Model) []string {
	var out []string
	for _, n := range m.Graph.Nodes {
		if n.Op == "Conv" && len(n.Outputs) == 1 {
			out = append(out, n.Outputs[0])
		}
	}
	return out
}

// Compress factorizes, in place, each Conv of m on its output side with the statistics in res
// (see Targets) and returns the report. Layers that cannot be factorized, or whose rewrite
// would not lower their MACs (unless opts.Full), are left as they are and reported skipped
// with the reason.
func Compress(m *onnxio.Model, res *calib.Result, opts Options) (*Report, error) {
	if err := opts.Rule.Check(); err != nil {
		return nil, err
	}
	g := m.Graph
	if err := checkRankNames(g, opts.Ranks); err != nil {
		return nil, err
	}
	rep := &Report{Samples: res.Samples}
	convs := []*onnxio.Node{}
	for _, n := range g.Nodes {
		if n.Op == "Conv" {
			convs = append(convs, n)
		}
	}
	for _, n := range convs {
		row, err := compressOne(g, n, res, opts)
		if err != nil {
			return nil, fmt.Errorf("conv %q: %w", n.Label(), err)
		}
		if row.Applied {
			rep.Applied++
		} else {
			rep.Skipped++
			row.After = row.Before
		}
		rep.Before.MACs += row.Before.MACs
		rep.Before.Params += row.Before.Params
		rep.After.MACs += row.After.MACs
		rep.After.Params += row.After.Params
		rep.Layers = append(rep.Layers, row)
	}
	g.Cleanup()
	if err := g.Toposort(); err != nil {
		return nil, err
	}
	return rep, nil
}

func compressOne(g *onnxio.Graph, n *onnxio.Node, res *calib.Result, opts Options) (Layer, error) {
	row := Layer{Name: n.Label(), Op: n.Op, Side: "output"}
	var spatial int64 = -1
	if len(n.Outputs) == 1 {
		if shape, ok := res.Shapes[n.Outputs[0]]; ok && len(shape) >= 1 {
			row.OutChannels = int(shape[0])
			spatial = 1
			for _, d := range shape[1:] {
				spatial *= d
			}
		}
	}
	c, reason := MatchConv(g, n)
	if wt := g.Initializer(inputAt(n, 1)); wt != nil && len(wt.Dims) >= 3 && spatial >= 0 {
		kernel := 1
		for _, d := range wt.Dims[2:] {
			kernel *= int(d)
		}
		out, in := int(wt.Dims[0]), int(wt.Dims[1])
		row.Before = Cost{MACs: ConvMACs(out, in, kernel, spatial), Params: ConvParams(out, in, kernel, inputAt(n, 2) != "")}
	}
	if c == nil {
		row.Reason = reason
		return row, nil
	}
	stats := res.Stats[n.Outputs[0]]
	if stats == nil || spatial < 0 {
		row.Reason = "no statistics (the Conv's output was not captured)"
		return row, nil
	}
	if stats.Dim != c.Out() {
		return row, fmt.Errorf("statistics have %d channels, weight has %d", stats.Dim, c.Out())
	}
	pca, err := calib.Eigen(stats.Covariance())
	if err != nil {
		return row, err
	}
	k := opts.Rule.Rank(pca.Values)
	if r, ok := opts.Ranks[row.Name]; ok {
		if r < 1 || r > c.Out() {
			return row, fmt.Errorf("rank %d is not between 1 and %d", r, c.Out())
		}
		k = r
	} else if opts.Full {
		k = c.Out()
	}
	row.Rank = k
	row.Energy = Retained(pca.Values, k)
	row.After = outputSideCost(c.Out(), c.PerChannel(), k, spatial)
	if !opts.Full && row.After.MACs >= row.Before.MACs {
		row.Reason = fmt.Sprintf("rank %d of %d would not lower MACs (%d -> %d)", k, c.Out(), row.Before.MACs, row.After.MACs)
		return row, nil
	}
	v := pca.Vectors.Slice(0, c.Out(), 0, k).(*mat.Dense)
	core, bias := OutputSide(c.WeightMatrix(), c.Bias, stats.Mean(), v)
	ReplaceOutputSide(g, c, core, v, bias)
	row.Applied = true
	return row, nil
}

func inputAt(n *onnxio.Node, i int) string {
	if i < len(n.Inputs) {
		return n.Inputs[i]
	}
	return ""
}

// checkRankNames refuses fixed ranks for names that are no Conv of the graph.
func checkRankNames(g *onnxio.Graph, ranks map[string]int) error {
	known := map[string]bool{}
	var names []string
	for _, n := range g.Nodes {
		if n.Op == "Conv" {
			known[n.Label()] = true
			names = append(names, n.Label())
		}
	}
	var unknown []string
	for name := range ranks {
		if !known[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("--rank names %s, which is no Conv of the model (Convs: %s)", strings.Join(unknown, ", "), strings.Join(names, ", "))
	}
	return nil
}
