package rewrite

import (
	"fmt"
	"sort"
	"strings"

	"gonum.org/v1/gonum/mat"

	"github.com/convpca/convpca/calib"
	"github.com/convpca/convpca/onnxio"
)

// Side says which side of each Conv is factorized.
type Side string

const (
	SideOutput Side = "output" // Conv(Vᵀ W) then 1x1 Conv(V): fewer output channels
	SideInput  Side = "input"  // 1x1 Conv(Uᵀ) then Conv(W U): fewer input channels
	SideBoth   Side = "both"   // 1x1 Conv(Uᵀ), Conv(Vᵀ W U), 1x1 Conv(V)
)

// ParseSide checks a --side value.
func ParseSide(s string) (Side, error) {
	switch side := Side(s); side {
	case SideOutput, SideInput, SideBoth:
		return side, nil
	case "":
		return SideOutput, nil
	}
	return "", fmt.Errorf("unknown side %q (want output, input or both)", s)
}

// Ranks fixes a layer's ranks; 0 leaves a side to the rule.
type Ranks struct{ In, Out int }

// Options say how Compress chooses ranks.
type Options struct {
	Side Side // "" means OutputSide
	Rule Rule // the rank rule for layers without a fixed rank
	// Ranks fixes the ranks of layers by name (the Conv node's name, or its output tensor's name
	// when the node has none).
	Ranks map[string]Ranks
	// Full keeps every channel and applies each rewrite even where it saves nothing, to verify
	// that the rewrite leaves the outputs unchanged.
	Full bool
}

// Layer is one row of a Report: what happened to one Conv.
type Layer struct {
	Name        string  `json:"name"`
	Op          string  `json:"op"`
	Side        Side    `json:"side,omitempty"` // the side applied (or considered, when skipped)
	InChannels  int     `json:"in_channels"`
	OutChannels int     `json:"out_channels"`
	InRank      int     `json:"in_rank,omitempty"`            // input-side rank; 0 when not factorized
	Rank        int     `json:"rank,omitempty"`               // output-side rank; 0 when not factorized
	InEnergy    float64 `json:"in_retained_energy,omitempty"` // fraction of the input second moment's eigenvalue sum kept
	Energy      float64 `json:"retained_energy,omitempty"`    // fraction of the output covariance's eigenvalue sum kept
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

// Targets returns the tensors whose statistics Compress needs: the input and output of every
// Conv node of the main graph, in graph order, each once.
func Targets(m *onnxio.Model) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range m.Graph.Nodes {
		if n.Op == "Conv" && len(n.Inputs) > 0 && len(n.Outputs) == 1 {
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

// spatialOf returns the channels and spatial positions of a captured tensor (-1 when unknown).
func spatialOf(res *calib.Result, tensor string) (channels int, positions int64) {
	shape, ok := res.Shapes[tensor]
	if !ok || len(shape) < 1 {
		return 0, -1
	}
	positions = 1
	for _, d := range shape[1:] {
		positions *= d
	}
	return int(shape[0]), positions
}

func compressOne(g *onnxio.Graph, n *onnxio.Node, res *calib.Result, opts Options) (Layer, error) {
	side := opts.Side
	if side == "" {
		side = SideOutput
	}
	row := Layer{Name: n.Label(), Op: n.Op, Side: side}
	var spatialIn, spatialOut int64 = -1, -1
	if len(n.Outputs) == 1 && len(n.Inputs) > 0 {
		row.InChannels, spatialIn = spatialOf(res, n.Inputs[0])
		row.OutChannels, spatialOut = spatialOf(res, n.Outputs[0])
	}
	c, reason := MatchConv(g, n)
	if wt := g.Initializer(inputAt(n, 1)); wt != nil && len(wt.Dims) >= 3 && spatialOut >= 0 {
		kernel := 1
		for _, d := range wt.Dims[2:] {
			kernel *= int(d)
		}
		out, in := int(wt.Dims[0]), int(wt.Dims[1])
		row.Before = Cost{MACs: ConvMACs(out, in, kernel, spatialOut), Params: ConvParams(out, in, kernel, inputAt(n, 2) != "")}
	}
	if c == nil {
		row.Reason = reason
		return row, nil
	}
	inStats, outStats := res.Stats[n.Inputs[0]], res.Stats[n.Outputs[0]]
	if inStats == nil || outStats == nil || spatialIn < 0 || spatialOut < 0 {
		row.Reason = "no statistics (the Conv's input or output was not captured)"
		return row, nil
	}
	in, out := int(c.Dims[1]), c.Out()
	if outStats.Dim != out || inStats.Dim != in {
		return row, fmt.Errorf("statistics have %d -> %d channels, weight has %d -> %d", inStats.Dim, outStats.Dim, in, out)
	}
	fixed, hasFixed := opts.Ranks[row.Name]

	// Choose each side's rank.
	var inPCA, outPCA calib.PCA
	r, k := 0, 0
	var err error
	if side != SideOutput {
		if inPCA, err = calib.Eigen(inStats.SecondMoment()); err != nil {
			return row, fmt.Errorf("input statistics: %w", err)
		}
		if r, err = chooseRank(inPCA.Values, opts, fixed.In, hasFixed); err != nil {
			return row, fmt.Errorf("input rank: %w", err)
		}
	}
	if side != SideInput {
		if outPCA, err = calib.Eigen(outStats.Covariance()); err != nil {
			return row, fmt.Errorf("output statistics: %w", err)
		}
		if k, err = chooseRank(outPCA.Values, opts, fixed.Out, hasFixed); err != nil {
			return row, fmt.Errorf("output rank: %w", err)
		}
	}
	kk := c.PerChannel() / in
	cost := func(r, k int) Cost { return factorCost(out, in, kk, c.Bias != nil, r, k, spatialIn, spatialOut) }
	// With both sides, also consider each side alone and keep the cheapest.
	row.InRank, row.Rank, row.After = r, k, cost(r, k)
	if side == SideBoth && !opts.Full {
		for _, alt := range [][2]int{{r, 0}, {0, k}} {
			if a := cost(alt[0], alt[1]); a.MACs < row.After.MACs {
				row.InRank, row.Rank, row.After = alt[0], alt[1], a
			}
		}
	}
	if row.InRank > 0 {
		row.InEnergy = Retained(inPCA.Values, row.InRank)
	}
	if row.Rank > 0 {
		row.Energy = Retained(outPCA.Values, row.Rank)
	}
	switch {
	case row.InRank > 0 && row.Rank > 0:
		row.Side = SideBoth
	case row.InRank > 0:
		row.Side = SideInput
	default:
		row.Side = SideOutput
	}
	if !opts.Full && row.After.MACs >= row.Before.MACs {
		row.Reason = fmt.Sprintf("%s would not lower MACs (%d -> %d)", rankText(row), row.Before.MACs, row.After.MACs)
		return row, nil
	}

	var f Factors
	w := c.WeightMatrix()
	if row.InRank > 0 {
		u := inPCA.Vectors.Slice(0, in, 0, row.InRank).(*mat.Dense)
		f.Down = mat.DenseCopyOf(u.T())
		w = InputSide(w, in, u)
	}
	f.Core = w
	if row.Rank > 0 {
		v := mat.DenseCopyOf(outPCA.Vectors.Slice(0, out, 0, row.Rank))
		f.Core, f.UpBias = OutputSide(w, c.Bias, outStats.Mean(), v)
		f.Up = v
	}
	Replace(g, c, f)
	row.Applied = true
	return row, nil
}

// chooseRank applies a fixed rank, --rank full or the rule to a side with the eigenvalues vals.
func chooseRank(vals []float64, opts Options, fixed int, hasFixed bool) (int, error) {
	n := len(vals)
	switch {
	case hasFixed && fixed != 0:
		if fixed < 1 || fixed > n {
			return 0, fmt.Errorf("rank %d is not between 1 and %d", fixed, n)
		}
		return fixed, nil
	case opts.Full:
		return n, nil
	}
	return opts.Rule.Rank(vals), nil
}

func rankText(l Layer) string {
	switch {
	case l.InRank > 0 && l.Rank > 0:
		return fmt.Sprintf("ranks %d of %d in, %d of %d out", l.InRank, l.InChannels, l.Rank, l.OutChannels)
	case l.InRank > 0:
		return fmt.Sprintf("input rank %d of %d", l.InRank, l.InChannels)
	}
	return fmt.Sprintf("rank %d of %d", l.Rank, l.OutChannels)
}

func inputAt(n *onnxio.Node, i int) string {
	if i < len(n.Inputs) {
		return n.Inputs[i]
	}
	return ""
}

// checkRankNames refuses fixed ranks for names that are no Conv of the graph.
func checkRankNames(g *onnxio.Graph, ranks map[string]Ranks) error {
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
