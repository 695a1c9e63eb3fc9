package rewrite

import (
	"fmt"
	"sort"
	"strings"

	"gonum.org/v1/gonum/mat"

	"github.com/convpca/convpca/calib"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/onnxio/onnxpb"
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
		return SideBoth, nil
	}
	return "", fmt.Errorf("unknown side %q (want output, input or both)", s)
}

// Ranks fixes a layer's ranks; 0 leaves a side to the rule.
type Ranks struct{ In, Out int }

// Options say how Compress chooses ranks.
type Options struct {
	Side Side // "" means SideBoth, the default: on the bundled MNIST model it gave the most MACs saved for the accuracy kept (see README)
	Rule Rule // the rank rule for layers without a fixed rank
	// Ranks fixes the ranks of layers by name (the Conv node's name, or its output tensor's name
	// when the node has none).
	Ranks map[string]Ranks
	// Full keeps every channel and applies each rewrite even where it saves nothing, to verify
	// that the rewrite leaves the outputs unchanged.
	Full bool
	// TargetMACs, when > 0, allocates ranks across all layers (and sides) so that the Convs
	// keep at most this fraction of their original MACs, losing the least (see Allocate);
	// Rule is then unused.
	TargetMACs float64
	// Alloc is the loss Allocate ranks cuts by: AllocEnergy ("" too) or AllocSensitivity
	// (which needs each plan's measured losses set first, see Plan.SetSensitivity).
	Alloc string
	// Refit (with sequential statistics only, see package compress) refits each reduced core by least squares to reproduce the
	// original model's outputs from the inputs the compressed model really gives it.
	Refit bool
	// Ridge is the relative ridge of the refit (see NormalEq.Solve); 0 means DefaultRidge.
	Ridge float64
	// RankMultiple rounds chosen ranks up to multiples of it (as hardware prefers); 0 or 1: none.
	RankMultiple int
	// SmallRanks are ranks below RankMultiple that are allowed too (others below it round up to
	// the next of them, or to RankMultiple). onnxruntime's CPU provider runs a Conv whose input
	// is narrower than one block of its channel layout on another kernel, whose time falls with
	// the input's width: below one block, fewer channels can be faster again (see
	// latency.SmallRanks).
	SmallRanks []int
	// Time, when not nil, makes measured time the cost of a layer instead of its MACs: the time
	// in milliseconds of plan p's layer factorized with input rank r and output rank k (0: side
	// untouched; both 0: the original layer), as package latency measures it. Each layer then
	// keeps the fastest of its factorizations (both sides, input only, output only), and one that
	// is not faster than the original by more than TimeNoise is left as it is and reported
	// skipped with both times (unless Full).
	Time func(p *Plan, r, k int) float64
	// TimeNoise, with Time, is the relative noise of the times of plan p at ranks r and k: a
	// factorization is applied only where its time is below (1 - TimeNoise) times the
	// original's. nil: any saving counts.
	TimeNoise func(p *Plan, r, k int) float64
	// TargetTime, when > 0 (with Time), allocates ranks across all layers (and sides) so that the
	// factorizable layers keep at most this fraction of their summed original time, losing the
	// least (see Allocate); Rule and TargetMACs are then unused.
	TargetTime float64
	// Remeasure, when not nil (with Time), is called by Choose with the plans once their ranks
	// are chosen: it measures again the times of the factorizations chosen that are faster
	// than their layers (applied, or skipped as within the noise), so that Time and TimeNoise
	// change, and returns how many it measured. Choose then chooses again, until nothing new
	// is measured; after MaxRemeasure measurements the ranks stand, and the gate decides on
	// their times as last measured. Ranks chosen as the fastest of a noisy table are, more
	// often than not, those whose noise made them look fast; measured again, they lose that
	// edge, and another choice may win.
	Remeasure func(plans []*Plan) (int, error)
	// Remeasured, with Remeasure, reports whether the time of plan p at ranks r and k was
	// measured again: for a time target, Allocate counts a factorization not measured again
	// wherever it is faster than the original, one measured again only where the gate lets
	// it (see Allocate).
	Remeasured func(p *Plan, r, k int) bool
}

// MaxRemeasure is the most times Choose calls Options.Remeasure.
const MaxRemeasure = 8

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
	// With --refit: the reconstruction error of the core on the calibration data, relative to
	// the target's energy Σ‖t‖², with the projected weights and with the refitted ones, and
	// whether the refit was kept.
	ProjError  float64 `json:"proj_error,omitempty"`
	RefitError float64 `json:"refit_error,omitempty"`
	Refitted   bool    `json:"refitted,omitempty"`
	RefitNote  string  `json:"refit_note,omitempty"`
	Reason     string  `json:"reason,omitempty"` // why a layer was skipped
	// The eigenvalues (descending) of the input second moment and of the output covariance,
	// for plots; nil for a side not analysed.
	InSpectrum  []float64 `json:"-"`
	OutSpectrum []float64 `json:"-"`
}

// Report lists every Conv of a model and the totals over them. Costs are per sample.
type Report struct {
	Layers  []Layer `json:"layers"`
	Before  Cost    `json:"total_before"`
	After   Cost    `json:"total_after"`
	Applied int     `json:"applied"`
	Skipped int     `json:"skipped"`
	Samples int     `json:"calibration_samples"`
	// Simplified is what Simplify changed in the model before it was compressed (set by the
	// caller that ran it).
	Simplified Simplified `json:"simplified"`
}

// MACRatio is the factor by which total MACs fell (before / after).
func (r *Report) MACRatio() float64 {
	if r.After.MACs == 0 {
		return 0
	}
	return float64(r.Before.MACs) / float64(r.After.MACs)
}

// HasLayers reports whether m's main graph has a Conv, Gemm or MatMul node, factorizable or
// not.
func HasLayers(m *onnxio.Model) bool {
	for _, n := range m.Graph.Nodes {
		if isLayer(n) {
			return true
		}
	}
	return false
}

// Targets returns the tensors whose statistics Compress needs with side (SideBoth for ""):
// the input (unless side is SideOutput) and output of every Conv that MatchLayer accepts, and
// the input of every such Gemm and MatMul (whose output statistics follow from it), in graph
// order, each once. Grouped Convs, layers whose weight is not a constant and products of
// two activations need no statistics and get none. last holds the tensors whose channels are
// their last axis (those of Gemm and MatMul layers, every other position a sample).
func Targets(m *onnxio.Model, side Side) (tensors []string, last map[string]bool) {
	seen := map[string]bool{}
	last = map[string]bool{}
	add := func(t string, dense bool) {
		if dense {
			last[t] = true
		}
		if !seen[t] {
			seen[t] = true
			tensors = append(tensors, t)
		}
	}
	for _, n := range m.Graph.Nodes {
		if !isLayer(n) || len(n.Inputs) == 0 || len(n.Outputs) != 1 {
			continue
		}
		if c, _ := MatchLayer(m.Graph, n); c == nil {
			continue
		}
		if isDense(n) { // the output's statistics follow from the input's (LinearOutputPCA)
			add(n.Inputs[0], true)
			continue
		}
		if side != SideOutput {
			add(n.Inputs[0], false)
		}
		add(n.Outputs[0], false)
	}
	return tensors, last
}

// Compress factorizes, in place, each Conv of m with the statistics in res (see Targets) and
// returns the report. Layers that cannot be factorized, or whose rewrite would not lower their
// MACs (unless opts.Full), are left as they are and reported skipped with the reason.
func Compress(m *onnxio.Model, res *calib.Result, opts Options) (*Report, error) {
	plans, err := Analyze(m, res, opts)
	if err != nil {
		return nil, err
	}
	if err := Choose(plans, opts); err != nil {
		return nil, err
	}
	return Apply(m, plans, res.Samples, opts)
}

// Choose sets the ranks of the plans: by opts.Rule (or fixed or full ranks), or with
// opts.TargetMACs or TargetTime by Allocate; with Remeasure, again after each measurement of
// the chosen factorizations' times. AllocSensitivity needs every factorizable plan's measured
// losses (Plan.SetSensitivity).
func Choose(plans []*Plan, opts Options) error {
	for i := 0; ; i++ {
		if err := choose(plans, opts); err != nil {
			return err
		}
		if opts.Remeasure == nil || opts.Time == nil || opts.Full {
			return nil
		}
		n, err := opts.Remeasure(plans)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if i == MaxRemeasure-1 {
			// The ranks and sides stand; the gate decides on their times as last measured.
			for _, p := range plans {
				if p.conv != nil {
					p.Reason = p.slowReason(opts)
				}
			}
			return nil
		}
	}
}

// choose is one choice of Choose, from the times as they are.
func choose(plans []*Plan, opts Options) error {
	if opts.TargetMACs <= 0 && opts.TargetTime <= 0 {
		return chooseRanks(plans, opts)
	}
	switch opts.Alloc {
	case "", AllocEnergy, AllocSensitivity:
	default:
		return fmt.Errorf("unknown allocation %q (want %s or %s)", opts.Alloc, AllocEnergy, AllocSensitivity)
	}
	return Allocate(plans, opts)
}

// Plan is one Conv on its way through Compress: what Analyze found (the layer, its statistics
// and cost) and the ranks chosen for it.
type Plan struct {
	Layer                 // the report row; InRank and Rank hold the chosen ranks
	conv                  *Conv
	in, kk                int       // input channels, kernel elements
	spatialIn, spatialOut int64     // positions per sample
	inPCA, outPCA         calib.PCA // inPCA.Values: the input side's output-error spectrum (inBasis)
	inBasis               InputBasis
	mean                  []float64 // output mean
	inCurve, outCurve     *curve    // measured sensitivity (see Sensitivity), or nil
}

// setIdentity gives the plan identity bases on the sides in use, with flat spectra, and the
// output mean (measured, or W μ + b for a dense layer).
func (p *Plan) setIdentity(side Side, c *Conv, inStats, outStats *calib.Stats, dense bool) {
	eye := func(n int) (*mat.Dense, []float64) {
		m := mat.NewDense(n, n, nil)
		v := make([]float64, n)
		for i := 0; i < n; i++ {
			m.Set(i, i, 1)
			v[i] = 1
		}
		return m, v
	}
	if side != SideOutput {
		e, v := eye(p.in)
		p.inBasis = InputBasis{Down: e, Up: e, Values: v}
		p.inPCA.Values = v
	}
	if side == SideInput {
		return
	}
	p.outPCA.Vectors, p.outPCA.Values = eye(c.Out())
	if !dense {
		p.mean = outStats.Mean()
		return
	}
	mu := inStats.Mean()
	p.mean = make([]float64, c.Out())
	for o := range p.mean {
		for i, x := range mu {
			p.mean[o] += c.Weight[o*p.in+i] * x
		}
		if c.Bias != nil {
			p.mean[o] += c.Bias[o]
		}
	}
}

// cost is the layer's cost factorized with input rank r and output rank k (0: side untouched).
func (p *Plan) cost(r, k int) Cost {
	return factorCost(p.OutChannels, p.in, p.kk, p.conv.Bias != nil, r, k, p.spatialIn, p.spatialOut)
}

// Analyze matches every Conv of m and computes the PCA its side(s) need. Plans of layers that
// cannot be factorized carry the reason in Layer.Reason.
func Analyze(m *onnxio.Model, res *calib.Result, opts Options) ([]*Plan, error) {
	if err := opts.Rule.Check(); err != nil {
		return nil, err
	}
	if err := CheckRanks(m, opts); err != nil {
		return nil, err
	}
	var plans []*Plan
	for _, n := range m.Graph.Nodes {
		if !isLayer(n) {
			continue
		}
		p, err := analyzeOne(m.Graph, n, res, opts.side(), opts.Full)
		if err != nil {
			return nil, fmt.Errorf("conv %q: %w", n.Label(), err)
		}
		plans = append(plans, p)
	}
	// Layers inside subgraphs (If, Loop, Scan bodies) are listed, not rewritten.
	for _, n := range m.Graph.Nodes {
		for _, a := range n.Attrs {
			for _, sg := range append(a.GetGraphs(), a.GetG()) {
				plans = append(plans, subgraphLayers(sg, fmt.Sprintf("%s %q", n.Op, n.Label()))...)
			}
		}
	}
	return plans, nil
}

// subgraphLayers returns skipped plans for the Conv, Gemm and MatMul nodes of a subgraph (and
// of its own subgraphs).
func subgraphLayers(gp *onnxpb.GraphProto, owner string) []*Plan {
	if gp == nil {
		return nil
	}
	var plans []*Plan
	for _, np := range gp.Node {
		n := &onnxio.Node{Name: np.GetName(), Op: np.GetOpType(), Domain: np.GetDomain(), Outputs: np.Output}
		if isLayer(n) {
			plans = append(plans, &Plan{Layer: Layer{Name: n.Label(), Op: n.Op,
				Reason: fmt.Sprintf("inside a subgraph of %s: only the main graph is rewritten", owner)}})
		}
		for _, a := range np.Attribute {
			for _, sg := range append(a.GetGraphs(), a.GetG()) {
				plans = append(plans, subgraphLayers(sg, fmt.Sprintf("%s %q", np.GetOpType(), np.GetName()))...)
			}
		}
	}
	return plans
}

// DefaultRidge is the refit's relative ridge: 1e-4 of the mean regressor energy. It keeps the
// normal equations positive definite when patches never vary along some direction (dead
// channels, windows always in padding). On the bundled model at --target-macs 0.1 with
// --sequential --refit, ridges 1e-6, 1e-4 and 1e-2 gave top-1 0.9902, 0.9901 and 0.9895: the
// fit is insensitive below 1e-4, and 1e-4 leaves margin for worse-conditioned layers.
const DefaultRidge = 1e-4

func (o Options) ridge() float64 {
	if o.Ridge > 0 {
		return o.Ridge
	}
	return DefaultRidge
}

func (o Options) side() Side {
	if o.Side == "" {
		return SideBoth
	}
	return o.Side
}

func analyzeOne(g *onnxio.Graph, n *onnxio.Node, res *calib.Result, side Side, full bool) (*Plan, error) {
	p := &Plan{Layer: Layer{Name: n.Label(), Op: n.Op, Side: side}}
	p.spatialIn, p.spatialOut = -1, -1
	if len(n.Outputs) == 1 && len(n.Inputs) > 0 {
		p.InChannels, p.spatialIn = spatialOf(res, n.Inputs[0], isDense(n))
		p.OutChannels, p.spatialOut = spatialOf(res, n.Outputs[0], isDense(n))
	}
	c, reason := MatchLayer(g, n)
	if c != nil && n.Op == "Gemm" && p.spatialIn > 1 {
		c, reason = nil, "Gemm input has more than two dimensions"
	}
	dense := c != nil && c.Spatial() == 0
	if dense { // the output's statistics follow from the input's (LinearOutputPCA)
		p.OutChannels, p.spatialOut = c.Out(), p.spatialIn
	}
	if c != nil && p.spatialOut >= 0 {
		kernel := c.PerChannel() / int(c.Dims[1])
		p.Before = Cost{MACs: ConvMACs(c.Out(), int(c.Dims[1]), kernel, p.spatialOut), Params: ConvParams(c.Out(), int(c.Dims[1]), kernel, c.Bias != nil)}
	} else if wt := g.Initializer(inputAt(n, 1)); n.Op == "Conv" && wt != nil && len(wt.Dims) >= 3 && p.spatialOut >= 0 {
		kernel := 1
		for _, d := range wt.Dims[2:] {
			kernel *= int(d)
		}
		out, in := int(wt.Dims[0]), int(wt.Dims[1])
		p.Before = Cost{MACs: ConvMACs(out, in, kernel, p.spatialOut), Params: ConvParams(out, in, kernel, inputAt(n, 2) != "")}
	}
	p.After = p.Before
	if c == nil {
		p.Reason = reason
		return p, nil
	}
	inStats, outStats := res.Stats[n.Inputs[0]], res.Stats[n.Outputs[0]]
	if dense {
		outStats = nil
	}
	if ((side != SideOutput || dense) && (inStats == nil || p.spatialIn < 0)) || (outStats == nil && !dense) || p.spatialOut < 0 {
		p.Reason = fmt.Sprintf("no statistics (the %s's input or output was not captured)", n.Op)
		return p, nil
	}
	p.conv, p.in = c, int(c.Dims[1])
	p.InChannels = p.in
	p.kk = c.PerChannel() / p.in
	if (outStats != nil && outStats.Dim != c.Out()) || (inStats != nil && inStats.Dim != p.in) {
		inDim, outDim := p.in, c.Out()
		if inStats != nil {
			inDim = inStats.Dim
		}
		if outStats != nil {
			outDim = outStats.Dim
		}
		return nil, fmt.Errorf("statistics have %d -> %d channels, weight has %d -> %d", inDim, outDim, p.in, c.Out())
	}
	var err error
	if full {
		// --rank full keeps every channel, where any basis is exact: identity bases spare the
		// eigenproblems (spectra are then flat).
		p.setIdentity(side, c, inStats, outStats, dense)
		p.InSpectrum, p.OutSpectrum = p.inPCA.Values, p.outPCA.Values
		return p, nil
	}
	if side != SideOutput {
		if p.inBasis, err = OutputAwareInput(c.WeightMatrix(), p.in, inStats.SecondMoment()); err != nil {
			return nil, fmt.Errorf("input side: %w", err)
		}
		p.inPCA.Values = p.inBasis.Values
	}
	switch {
	case side != SideInput && dense:
		if p.outPCA, p.mean, err = LinearOutputPCA(c.WeightMatrix(), c.Bias, inStats.Mean(), inStats.Covariance()); err != nil {
			return nil, fmt.Errorf("output statistics (from the input's): %w", err)
		}
	case side != SideInput:
		if p.outPCA, err = calib.Eigen(outStats.Covariance()); err != nil {
			return nil, fmt.Errorf("output statistics: %w", err)
		}
		p.mean = outStats.Mean()
	}
	p.InSpectrum, p.OutSpectrum = p.inPCA.Values, p.outPCA.Values
	return p, nil
}

// chooseRanks sets each plan's ranks from a fixed rank, --rank full or the rule, rounded up to
// the ranks opts allow, then settles its side (see settle).
func chooseRanks(plans []*Plan, opts Options) error {
	side := opts.side()
	for _, p := range plans {
		if p.conv == nil {
			continue
		}
		fixed, hasFixed := opts.Ranks[p.Name]
		var err error
		if side != SideOutput {
			if p.InRank, err = chooseRank(p.inPCA.Values, opts, fixed.In, hasFixed); err != nil {
				return fmt.Errorf("conv %q: input rank: %w", p.Name, err)
			}
		}
		if side != SideInput {
			if p.Rank, err = chooseRank(p.outPCA.Values, opts, fixed.Out, hasFixed); err != nil {
				return fmt.Errorf("conv %q: output rank: %w", p.Name, err)
			}
		}
		p.settle(opts)
	}
	return nil
}

// settle fixes a plan's side and cost from its ranks: with both sides it keeps the cheapest of
// both, input only and output only (unless opts.Full); a plan that would not lower MACs is
// marked skipped with the reason.
func (p *Plan) settle(opts Options) {
	if opts.Full {
		p.After = p.cost(p.InRank, p.Rank)
	} else {
		p.InRank, p.Rank, p.After = p.cheapest(opts, p.InRank, p.Rank)
	}
	p.InEnergy, p.Energy = 0, 0
	if p.InRank > 0 {
		p.InEnergy = Retained(p.inPCA.Values, p.InRank)
	}
	if p.Rank > 0 {
		p.Energy = Retained(p.outPCA.Values, p.Rank)
	}
	switch {
	case p.InRank > 0 && p.Rank > 0:
		p.Side = SideBoth
	case p.InRank > 0:
		p.Side = SideInput
	default:
		p.Side = SideOutput
	}
	p.Reason = ""
	switch {
	case opts.Full:
	case opts.Time != nil:
		p.Reason = p.slowReason(opts)
	case p.After.MACs >= p.Before.MACs:
		p.Reason = fmt.Sprintf("%s would not lower MACs (%d -> %d)", rankText(p.Layer), p.Before.MACs, p.After.MACs)
	}
}

// cheapest returns the cheapest of factorizing with ranks r and k (0: side untouched), with
// the input side only and with the output side only: by MACs, or by opts.Time when set.
//
// A side at full rank in a two-sided factorization adds a square 1x1 Conv and removes
// nothing, so the other side alone replaces it, whatever a noisy time table says (one of
// PaddleOCR rec's had 80 of 128 input channels with all 128 output channels at a third of
// the original's time, 2.25x its MACs).
func (p *Plan) cheapest(opts Options, r, k int) (int, int, Cost) {
	switch {
	case r <= 0 || k <= 0:
	case k >= p.outFull():
		k = 0
	case r >= p.in:
		r = 0
	}
	best, price := p.cost(r, k), p.price(opts, r, k)
	if r > 0 && k > 0 {
		for _, alt := range [][2]int{{r, 0}, {0, k}} {
			a, ap := p.cost(alt[0], alt[1]), p.price(opts, alt[0], alt[1])
			if ap < price {
				r, k, best, price = alt[0], alt[1], a, ap
			}
		}
	}
	return r, k, best
}

// price is what cheapest compares: the layer's MACs at ranks r and k, or its time with
// opts.Time.
func (p *Plan) price(opts Options, r, k int) float64 {
	if opts.Time != nil {
		return opts.Time(p, r, k)
	}
	return float64(p.cost(r, k).MACs)
}

// pays reports whether factorizing at ranks r and k (0: side untouched) is worth it: fewer
// MACs than the original, or with opts.Time a time below (1 - noise) times the original's.
func (p *Plan) pays(opts Options, r, k int) bool {
	if opts.Time == nil {
		return p.cost(r, k).MACs < p.Before.MACs
	}
	t, t0 := opts.Time(p, r, k), opts.Time(p, 0, 0)
	return t < (1-p.noise(opts, r, k))*t0
}

// noise is the relative margin a factorization at r, k must beat the original's time by.
func (p *Plan) noise(opts Options, r, k int) float64 {
	if opts.TimeNoise == nil {
		return 0
	}
	return max(opts.TimeNoise(p, r, k), 0)
}

// slowReason says why a plan with opts.Time is skipped at its ranks, or "" when it pays.
func (p *Plan) slowReason(opts Options) string {
	r, k := p.InRank, p.Rank
	if p.pays(opts, r, k) {
		return ""
	}
	t, t0 := opts.Time(p, r, k), opts.Time(p, 0, 0)
	if t >= t0 {
		return fmt.Sprintf("%s would not lower time (%.3f ms -> %.3f ms measured)", rankText(p.Layer), t0, t)
	}
	return fmt.Sprintf("%s is not measurably faster (%.3f ms -> %.3f ms measured, %.1f%% less, within the %.1f%% noise)",
		rankText(p.Layer), t0, t, 100*(1-t/t0), 100*p.noise(opts, r, k))
}

// Apply rewrites the layers of plans that are neither skipped nor applied yet, cleans the graph up and returns
// the report.
func Apply(m *onnxio.Model, plans []*Plan, samples int, opts Options) (*Report, error) {
	rep := &Report{Samples: samples}
	for _, p := range plans {
		if p.conv != nil && p.Reason == "" && !p.Applied {
			Replace(m.Graph, p.conv, p.factors())
			p.Applied = true
		}
		if p.Applied {
			rep.Applied++
		} else {
			rep.Skipped++
			p.After = p.Before
		}
		rep.Before.MACs += p.Before.MACs
		rep.Before.Params += p.Before.Params
		rep.After.MACs += p.After.MACs
		rep.After.Params += p.After.Params
		rep.Layers = append(rep.Layers, p.Layer)
	}
	m.Graph.Cleanup()
	if err := m.Graph.Toposort(); err != nil {
		return nil, err
	}
	return rep, nil
}

// factors computes the replacement Convs of a plan from its ranks.
func (p *Plan) factors() Factors {
	var f Factors
	c := p.conv
	w := c.WeightMatrix()
	if p.InRank > 0 {
		f.Down = mat.DenseCopyOf(p.inBasis.Down.Slice(0, p.InRank, 0, p.in))
		w = InputSide(w, p.in, mat.DenseCopyOf(p.inBasis.Up.Slice(0, p.in, 0, p.InRank)))
	}
	f.Core = w
	if p.Rank > 0 {
		v := mat.DenseCopyOf(p.outPCA.Vectors.Slice(0, c.Out(), 0, p.Rank))
		f.Core, f.UpBias = OutputSide(w, c.Bias, p.mean, v)
		f.Up = v
	}
	return f
}

// spatialOf returns the channels and spatial positions of a captured tensor (-1 when unknown).
func spatialOf(res *calib.Result, tensor string, last bool) (channels int, positions int64) {
	shape, ok := res.Shapes[tensor]
	if !ok || len(shape) < 1 {
		return 0, -1
	}
	if last { // Gemm and MatMul: channels on the last axis, every other position a sample
		positions = 1
		for _, d := range shape[:len(shape)-1] {
			positions *= d
		}
		return int(shape[len(shape)-1]), positions
	}
	positions = 1
	for _, d := range shape[1:] {
		positions *= d
	}
	return int(shape[0]), positions
}

// chooseRank applies a fixed rank, --rank full or the rule to a side with the eigenvalues
// vals, rounding up to the ranks opts allow (a multiple of opts.RankMultiple, or one of
// opts.SmallRanks).
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
	return opts.ladder().up(opts.Rule.Rank(vals), n), nil
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

// CheckRanks refuses fixed ranks (opts.Ranks) for names that are no layer of the model, or
// more than one; callers can check before calibrating.
func CheckRanks(m *onnxio.Model, opts Options) error {
	return checkRankNames(m.Graph, opts.Ranks)
}

func checkRankNames(g *onnxio.Graph, ranks map[string]Ranks) error {
	known := map[string]int{}
	var names []string
	for _, n := range g.Nodes {
		if isLayer(n) {
			known[n.Label()]++
			names = append(names, n.Label())
		}
	}
	var unknown []string
	for name := range ranks {
		switch known[name] {
		case 0:
			unknown = append(unknown, name)
		case 1:
		default:
			return fmt.Errorf("--rank names %s, which names %d layers of the model; rename the nodes", name, known[name])
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("--rank names %s, which is no Conv of the model (Convs: %s)", strings.Join(unknown, ", "), strings.Join(names, ", "))
	}
	return nil
}
