package compress

import (
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/convpca/convpca/calib"
	"github.com/convpca/convpca/latency"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/ort"
	"github.com/convpca/convpca/rewrite"
)

// This file makes measured time the cost of a compression (issue 16, phase 2): it measures the
// latency table of every compressible layer of the original model (package latency) with the
// real shapes of the calibration data, hands rewrite the times as its cost (rewrite.Options.Time,
// TimeNoise, TargetTime), and after the rewrite times the original and the compressed models
// side by side.

// DefaultLatencyMargin is the smallest relative margin by which the latency gate wants a
// factorization faster than its original layer: 5%. A table's medians are measured to a 95%
// confidence interval of about ±2.5% each, so the difference of two is known to about ±3.5%;
// where a point was measured less precisely (a layer's time budget ran out), the margin is that
// point's noise instead (latency.LayerTimes.Noise).
const DefaultLatencyMargin = 0.05

// LatencyOptions say how a compression measures and uses layer times.
type LatencyOptions struct {
	// Target, when > 0, allocates ranks so that the compressible layers keep at most this
	// fraction of their summed time (rewrite.Options.TargetTime).
	Target float64
	// Gate skips every factorization that is not faster than its original layer by more than
	// the measurement noise (at least Margin); without it (with Target), any saving in the
	// table counts.
	Gate bool
	// Margin is the gate's smallest relative margin; 0 means DefaultLatencyMargin.
	Margin float64
	// Batch is the samples per timed run; 0 means the calibration batch.
	Batch int
	// Measure says how tables are measured and cached; its Runtime is replaced by the
	// calibration's (provider, threads, library).
	Measure latency.Options
	// Log, when not nil, receives one line per layer measured or read from the cache, per
	// factorization timed again (Remeasure), and per whole-model measurement.
	Log func(msg string)
	// Given, when not nil, is the model as the user gave it, before rewrite.Simplify changed
	// the model compressed: it is timed beside the others, and speed-ups are over it.
	Given *onnxio.Model
	// Blocked, when > 0, is the channel block of rewrite.Blocked, applied to the compressed
	// model: the original is timed with it applied too.
	Blocked int
}

// Active reports whether the options ask for latency tables.
func (o LatencyOptions) Active() bool { return o.Target > 0 || o.Gate }

func (o LatencyOptions) margin() float64 {
	if o.Margin > 0 {
		return o.Margin
	}
	return DefaultLatencyMargin
}

func (o LatencyOptions) log(format string, a ...any) {
	if o.Log != nil {
		o.Log(fmt.Sprintf(format, a...))
	}
}

// WholeBudget is the least wall time the whole models' side-by-side timing may take before it
// stops short of its confidence interval (latency.Options.LayerBudget is the bound when
// larger). With the layers' 15 s, PaddleOCR rec at batch 16 (three models of 200-350 ms, each
// timed run after a settling run) got 8 rounds and medians known within ±4-12%, as wide as
// the prediction's error it is there to show.
const WholeBudget = 45 * time.Second

// Latency holds the latency tables of a model's compressible layers.
type Latency struct {
	opts     LatencyOptions
	batch    int
	threads  int
	provider ort.Provider
	multiple int
	layers   []timedLayer   // the timed layers of the main graph, in graph order
	byKey    map[string]int // a layer's output tensor -> its index in Table.Layers
	// orig is the whole original model as a program, nil when it cannot be timed (note says
	// why); dims is its input's shape.
	orig  *latency.Program
	graph *onnxio.Graph    // the graph of orig, whose nodes Profile's times are of
	given *latency.Program // the model as given, when Simplify changed it (LatencyOptions.Given)
	note  string
	warn  func(string)
	input string
	dims  []int64
	Table *latency.Table
	// refined counts the candidates timed again (Remeasure).
	refined int
}

type timedLayer struct {
	name string // the node's label, as in the report
	key  string // its output tensor, unique in the graph
	lt   *latency.LayerTimes
	node *onnxio.Node // the node in the graph timed (Latency.graph)
}

// MeasureLatency measures (or reads from the cache) the latency table of every layer of m that
// package rewrite can factorize, at the shapes the calibration data gives it, o.Batch samples
// per run and the calibration's runtime options (copts.Runtime: provider, threads). Shapes come
// from one batch of data run through m, or, when data is nil (statistics read from a file),
// from the statistics res.
func MeasureLatency(m *onnxio.Model, res *calib.Result, data Data, copts ort.Options, o LatencyOptions) (*Latency, error) {
	batch := o.Batch
	if batch <= 0 {
		batch = copts.Batch
	}
	if batch <= 0 {
		batch = ort.DefaultBatch
	}
	l := &Latency{opts: o, threads: copts.Runtime.Threads, provider: copts.Runtime.Provider, warn: copts.Runtime.Warn, byKey: map[string]int{}}
	if l.provider == "" {
		l.provider = ort.Auto
	}
	in, inErr := ort.ModelInput(m)
	if inErr == nil && len(in.Dims) > 0 && in.Dims[0] > 0 {
		if o.Batch > 0 && int(in.Dims[0]) != o.Batch {
			return nil, fmt.Errorf("latency: model input %q has a fixed batch of %d; cannot time batch %d", in.Name, in.Dims[0], o.Batch)
		}
		batch = int(in.Dims[0])
	}
	l.batch = batch

	var nodes []*onnxio.Node
	for _, n := range m.Graph.Nodes {
		if len(n.Inputs) > 0 && len(n.Outputs) == 1 && isLayerNode(n) {
			if c, _ := rewrite.MatchLayer(m.Graph, n); c != nil {
				nodes = append(nodes, n)
			}
		}
	}
	samples, sample, err := layerSamples(m, nodes, res, data, batch, copts.Runtime)
	if err != nil {
		return nil, fmt.Errorf("latency: %w", err)
	}
	// The original as it will run: with rewrite.Blocked, which changes which of the layers'
	// neighbours keep onnxruntime's blocked layout (layers are described in it) and is timed
	// beside the compressed model.
	timed, byOutput := m, map[string]*onnxio.Node{}
	if o.Blocked > 0 {
		timed = m.Clone()
		rewrite.Blocked(timed.Graph, o.Blocked)
		for _, n := range timed.Graph.Nodes {
			if len(n.Outputs) == 1 {
				byOutput[n.Outputs[0]] = n
			}
		}
	}
	var layers []latency.Layer
	for _, n := range nodes {
		shape, ok := samples[n.Inputs[0]]
		if !ok {
			return nil, fmt.Errorf("latency: layer %s: the shape of its input %q is unknown without calibration data", n.Label(), n.Inputs[0])
		}
		ln := n
		if c := byOutput[n.Outputs[0]]; c != nil {
			ln = c
		}
		lay, reason := latency.FromNode(timed.Graph, ln, shape, batch)
		if reason != "" {
			if n.Op == "Gemm" && len(shape) > 1 {
				continue // rewrite does not factorize a Gemm on more than two dimensions
			}
			return nil, fmt.Errorf("latency: layer %s cannot be timed: %s", n.Label(), reason)
		}
		lay.Sweep = latency.Pressure(lay, latency.CacheSizes())
		layers = append(layers, lay)
		l.layers = append(l.layers, timedLayer{name: n.Label(), key: n.Outputs[0], node: ln})
	}

	lo := o.Measure
	lo.Runtime = copts.Runtime
	if lo.Warn == nil {
		lo.Warn = copts.Runtime.Warn
	}
	if lo.Multiple <= 0 {
		cpu := latency.HostCPU()
		if lo.CPU != nil {
			cpu = *lo.CPU
		}
		lo.Multiple = latency.RankMultiple(cpu)
	}
	l.multiple = lo.Multiple
	lo.Progress = func(i int, lt *latency.LayerTimes) {
		o.log("latency table of %s (%d of %d, %s): %s", lt.Layer.Name, i+1, len(layers), lt.Layer, lt.Origin())
	}
	o.Measure = lo
	l.opts = o
	if l.Table, err = latency.Measure(layers, lo); err != nil {
		return nil, fmt.Errorf("latency: %w", err)
	}
	for i, lt := range l.Table.Layers {
		l.layers[i].lt = lt
		l.byKey[l.layers[i].key] = i
	}

	// The whole model, to time against the compressed one once written.
	switch {
	case inErr != nil:
		l.note = "whole models not timed: " + inErr.Error()
	case sample == nil:
		l.note = fmt.Sprintf("whole models not timed: the shape of input %q is unknown without calibration data", in.Name)
	default:
		l.input = in.Name
		l.dims = append([]int64{int64(batch)}, sample...)
		p, err := latency.ModelProgram("original", timed, in.Name, l.dims)
		if err != nil {
			return nil, err
		}
		l.orig, l.graph = &p, timed.Graph
		if o.Given != nil {
			g, err := latency.ModelProgram("given", o.Given, in.Name, l.dims)
			if err != nil {
				return nil, err
			}
			l.given = &g
		}
	}
	return l, nil
}

// isLayerNode reports whether n is a Conv, Gemm or MatMul of the default domain, as package
// rewrite lists layers.
func isLayerNode(n *onnxio.Node) bool {
	switch n.Op {
	case "Conv", "Gemm", "MatMul":
		return n.Domain == "" || n.Domain == "ai.onnx"
	}
	return false
}

// layerSamples returns the shape of one sample (without the batch) of the input of each node,
// and of the model's graph input (nil when unknown): from one batch of data run through m, or
// from the statistics res when data is nil.
func layerSamples(m *onnxio.Model, nodes []*onnxio.Node, res *calib.Result, data Data, batch int, rt ort.RuntimeOptions) (map[string][]int, []int64, error) {
	samples := map[string][]int{}
	toInts := func(v []int64) []int {
		out := make([]int, len(v))
		for i, d := range v {
			out[i] = int(d)
		}
		return out
	}
	in, inErr := ort.ModelInput(m)
	if data == nil {
		for _, n := range nodes {
			if s, ok := res.Shapes[n.Inputs[0]]; ok {
				samples[n.Inputs[0]] = toInts(s)
			}
		}
		if inErr != nil {
			return samples, nil, nil
		}
		if s, ok := res.Shapes[in.Name]; ok {
			return samples, s, nil
		}
		if len(in.Dims) > 1 && !containsNonPositive(in.Dims[1:]) {
			s := append([]int64(nil), in.Dims[1:]...)
			samples[in.Name] = toInts(s)
			return samples, s, nil
		}
		return samples, nil, nil
	}
	var tensors []string
	for _, n := range nodes {
		if t := n.Inputs[0]; !m.Graph.IsGraphInput(t) && !contains(tensors, t) {
			tensors = append(tensors, t)
		}
	}
	r, err := data()
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	shapes := map[string][]int64{}
	got := 0
	_, err = ort.Infer(m, r, tensors, ort.Options{Batch: batch, MaxSamples: batch, Runtime: rt}, func(b ort.Batch) error {
		if got == 0 {
			got = b.N
			for i, t := range tensors {
				shapes[t] = b.Outputs[i].Shape
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("capture the layers' input shapes: %w", err)
	}
	if got == 0 {
		return nil, nil, errors.New("no calibration samples to take the layers' shapes from")
	}
	var sample []int64
	if inErr == nil {
		for _, d := range r.Shape() {
			sample = append(sample, int64(d))
		}
		samples[in.Name] = toInts(sample)
	}
	for _, n := range nodes {
		t := n.Inputs[0]
		shape, ok := shapes[t]
		if !ok {
			continue // a graph input: its sample shape is the data's
		}
		switch {
		case len(shape) >= 2 && shape[0] == int64(got):
			samples[t] = toInts(shape[1:])
		case len(shape) >= 1 && n.Op != "Conv" && shape[0]%int64(got) == 0:
			// A Gemm or MatMul whose input merges the batch with other positions.
			samples[t] = append([]int{int(shape[0]) / got}, toInts(shape[1:])...)
		default:
			return nil, nil, fmt.Errorf("layer %s: input %q of shape %v does not start with the batch of %d", n.Label(), t, shape, got)
		}
	}
	return samples, sample, nil
}

func containsNonPositive(v []int64) bool {
	for _, d := range v {
		if d <= 0 {
			return true
		}
	}
	return false
}

func contains(v []string, s string) bool {
	for _, x := range v {
		if x == s {
			return true
		}
	}
	return false
}

// table returns the latency table of a plan's layer.
func (l *Latency) table(p *rewrite.Plan) *latency.LayerTimes {
	return l.Table.Layers[l.index(p)]
}

// index returns the index in Table.Layers of a plan's layer.
func (l *Latency) index(p *rewrite.Plan) int {
	n := p.Node()
	if n == nil || len(n.Outputs) == 0 {
		panic(fmt.Sprintf("compress: layer %s has no node to time", p.Name))
	}
	i, ok := l.byKey[n.Outputs[0]]
	if !ok {
		panic(fmt.Sprintf("compress: layer %s (output %q) was not timed", p.Name, n.Outputs[0]))
	}
	return i
}

// Remeasure times again, each beside its original layer, the factorizations chosen for the
// plans that their tables say are faster than the layer (applied, or skipped as within the
// noise), and those one measured rank below them on each side (latency.LayerTimes.Below:
// where a faster choice would go, which an unlucky table may rate slower than it is), by
// latency.Refine, and returns how many it timed: rewrite.Options.Remeasure.
func (l *Latency) Remeasure(plans []*rewrite.Plan) (int, error) {
	var cands []latency.Candidate
	for _, p := range plans {
		if !p.Factorizable() || p.InRank == 0 && p.Rank == 0 {
			continue
		}
		i := l.index(p)
		lt := l.Table.Layers[i]
		if lt.Time(p.InRank, p.Rank) >= lt.Time(0, 0) {
			continue
		}
		cands = append(cands, latency.Candidate{Layer: i, R: p.InRank, K: p.Rank})
		for _, b := range lt.Below(p.InRank, p.Rank) {
			if lt.Time(b[0], b[1]) < lt.Time(0, 0) {
				cands = append(cands, latency.Candidate{Layer: i, R: b[0], K: b[1]})
			}
		}
	}
	done, err := latency.Refine(l.Table, cands, l.opts.Measure)
	for _, d := range done {
		lt := l.Table.Layers[d.Layer]
		l.opts.log("latency of %s at %s timed again: %.3f ms in the table, %.3f ms (±%.1f%%, %d turns; the original %.3f ms in the table, %.3f in these sessions); the layer's level now %.3f ms",
			lt.Layer.Name, rankPair(d.Point.R, d.Point.K), d.Before, d.Point.Ms, 50*d.Point.RelCI, d.Point.Runs, lt.Original.Ms, d.Point.Orig, lt.Level())
	}
	l.refined += len(done)
	if err != nil {
		return 0, fmt.Errorf("latency: %w", err)
	}
	return len(done), nil
}

// rankPair says which sides a factorization keeps at which ranks: "input 8", "output 16",
// "ranks 8:16".
func rankPair(r, k int) string {
	switch {
	case k == 0:
		return fmt.Sprintf("input %d", r)
	case r == 0:
		return fmt.Sprintf("output %d", k)
	}
	return fmt.Sprintf("ranks %d:%d", r, k)
}

// Rewrite returns opts with the layers' times as the cost: each layer keeps the fastest of its
// factorizations, one not faster than its original (by the noise, with Gate) is skipped, and
// with Target the ranks are allocated for time (rewrite.Options.Time, TimeNoise, TargetTime).
// The ranks below the tables' multiple that they measured are allowed too (SmallRanks). The
// factorizations chosen are timed again, each beside its layer, and chosen again from the
// refined times (Remeasure, rewrite.Options.Remeasure).
func (l *Latency) Rewrite(opts rewrite.Options) rewrite.Options {
	opts.Time = func(p *rewrite.Plan, r, k int) float64 { return l.table(p).Time(r, k) }
	opts.SmallRanks = latency.SmallRanks(l.multiple)
	opts.TimeNoise = nil
	if l.opts.Gate {
		margin := l.opts.margin()
		opts.TimeNoise = func(p *rewrite.Plan, r, k int) float64 { return math.Max(margin, l.table(p).Noise(r, k)) }
	}
	opts.TargetTime = l.opts.Target
	opts.Remeasure = l.Remeasure
	opts.Remeasured = func(p *rewrite.Plan, r, k int) bool { return l.table(p).Retimed(r, k) }
	return opts
}

// Timing is one measured median, milliseconds per run of one batch, with the relative width of
// its 95% confidence interval and the number of timed runs.
type Timing struct {
	Ms    float64 `json:"ms"`
	RelCI float64 `json:"rel_ci"`
	Runs  int     `json:"runs"`
}

// LayerLatency is one layer's times in its table, in milliseconds per run of one batch.
type LayerLatency struct {
	Name    string `json:"name"`
	Applied bool   `json:"applied"`
	InRank  int    `json:"in_rank,omitempty"`
	Rank    int    `json:"rank,omitempty"`
	// OriginalMs is the original layer's time (its level, latency.LayerTimes.Level); AfterMs
	// the factorization's at the applied ranks (the original's when skipped), in the same
	// level; Noise the relative noise of their difference.
	OriginalMs float64 `json:"original_ms"`
	AfterMs    float64 `json:"after_ms"`
	Noise      float64 `json:"noise"`
	// InModelMs is the original layer's time in the whole original model, by onnxruntime's
	// profile of it (latency.Profile); 0 where the profile does not have it.
	InModelMs float64 `json:"in_model_ms,omitempty"`
}

// LatencyReport is the latency part of the report: the layers' times in their tables and the
// whole models' measured times. Times are milliseconds per run of one batch of Batch samples.
type LatencyReport struct {
	Batch        int     `json:"batch"`
	Threads      int     `json:"threads"` // onnxruntime intra-op threads (0: its choice)
	Provider     string  `json:"provider"`
	RankMultiple int     `json:"rank_multiple"` // the tables' rank grid
	Target       float64 `json:"target,omitempty"`
	Gate         bool    `json:"gate"`
	Margin       float64 `json:"gate_margin,omitempty"`
	// LayersBefore and LayersAfter are the compressible layers' summed times in the tables,
	// originals and as compressed (what Target bounds).
	LayersBefore float64 `json:"layers_before_ms"`
	LayersAfter  float64 `json:"layers_after_ms"`
	// OutOfReach says that Target was out of reach on this machine: the layers keep the
	// fastest ranks the allocation found, or ranks within 2% of their time that lose less
	// (rewrite.Allocate), LayersAfter / LayersBefore of their time.
	OutOfReach bool `json:"out_of_reach,omitempty"`
	// Original and Compressed are the whole models measured side by side (interleaved runs)
	// after the compressed model is written; Predicted is Original less the layers' savings
	// in the model (InModelSaving), TablesPredicted Original less their savings in the tables.
	// Absent (with Note) when a whole model cannot be timed. Original is the model
	// compressed, after rewrite.Simplify; Given, when Simplify changed it, the model as given,
	// timed with them, which speed-ups are then over.
	Given           *Timing `json:"given,omitempty"`
	Original        *Timing `json:"original,omitempty"`
	Predicted       float64 `json:"predicted_ms,omitempty"`
	TablesPredicted float64 `json:"tables_predicted_ms,omitempty"`
	Compressed      *Timing `json:"compressed,omitempty"`
	Note            string  `json:"note,omitempty"`
	// TablesMeasured and TablesCached count the layer tables measured by this run and those
	// read from the cache.
	TablesMeasured int `json:"tables_measured"`
	TablesCached   int `json:"tables_cached"`
	// Refined counts the factorizations chosen that were timed again (latency.Refine) by this
	// run; those timed again by an earlier run are in the cache.
	Refined int            `json:"refined"`
	Layers  []LayerLatency `json:"layers"`
}

// base is the time speed-ups are over: the model as given, else the original.
func (r *LatencyReport) base() *Timing {
	if r.Given != nil {
		return r.Given
	}
	return r.Original
}

// PredictedSpeedup is the whole model's predicted speed-up (the given or original model over
// predicted), 0 when not timed.
func (r *LatencyReport) PredictedSpeedup() float64 {
	if r.base() == nil || r.Predicted <= 0 {
		return 0
	}
	return r.base().Ms / r.Predicted
}

// MeasuredSpeedup is the whole model's measured speed-up, 0 when not timed.
func (r *LatencyReport) MeasuredSpeedup() float64 {
	if r.base() == nil || r.Compressed == nil || r.Compressed.Ms <= 0 {
		return 0
	}
	return r.base().Ms / r.Compressed.Ms
}

// Report returns the latency report of a compression: rep is its report and out the compressed
// model, which is timed here with the original in interleaved runs.
func (l *Latency) Report(out *onnxio.Model, rep *rewrite.Report) (*LatencyReport, error) {
	lr := &LatencyReport{
		Batch: l.batch, Threads: l.threads, Provider: string(l.provider), RankMultiple: l.multiple,
		Target: l.opts.Target, Gate: l.opts.Gate, Note: l.note,
		TablesMeasured: l.Table.Measured, TablesCached: l.Table.Cached, Refined: l.refined,
	}
	if l.opts.Gate {
		lr.Margin = l.opts.margin()
	}
	// Report rows and timed layers are both in graph order; match them by name in turn.
	pending := map[string][]timedLayer{}
	for _, tl := range l.layers {
		pending[tl.name] = append(pending[tl.name], tl)
	}
	var nodes []*onnxio.Node // of lr.Layers
	for _, row := range rep.Layers {
		q := pending[row.Name]
		if len(q) == 0 {
			continue
		}
		lt := q[0].lt
		nodes = append(nodes, q[0].node)
		pending[row.Name] = q[1:]
		ll := LayerLatency{Name: row.Name, Applied: row.Applied, OriginalMs: lt.Time(0, 0)}
		ll.AfterMs = ll.OriginalMs
		if row.Applied {
			ll.InRank, ll.Rank = row.InRank, row.Rank
			ll.AfterMs, ll.Noise = lt.Time(row.InRank, row.Rank), lt.Noise(row.InRank, row.Rank)
		}
		lr.LayersBefore += ll.OriginalMs
		lr.LayersAfter += ll.AfterMs
		lr.Layers = append(lr.Layers, ll)
	}
	if lr.Target > 0 && lr.LayersAfter > lr.Target*lr.LayersBefore*(1+1e-9) {
		lr.OutOfReach = true
		if l.warn != nil {
			l.warn(fmt.Sprintf("--target-latency %g is out of reach here: the layers keep %.3g of their time in the tables (within 2%% of the fastest the allocation found, ranks raised where that lost least, less what the latency gate skipped once timed again)",
				lr.Target, lr.LayersAfter/lr.LayersBefore))
		}
	}
	if l.orig == nil {
		return lr, nil
	}
	p, err := latency.ModelProgram("compressed", out, l.input, l.dims)
	if err != nil {
		return nil, err
	}
	l.opts.log("timing the original and the compressed model (batch %d)", l.batch)
	progs := []latency.Program{*l.orig, p}
	if l.given != nil {
		progs = append(progs, *l.given)
	}
	mo := l.opts.Measure
	mo.LayerBudget = max(mo.LayerBudget, WholeBudget)
	pts, err := latency.MeasureTogether(progs, mo)
	if err != nil {
		return nil, fmt.Errorf("latency: time the whole models: %w", err)
	}
	orig, comp := pts[0], pts[1]
	if l.given != nil {
		lr.Given = &Timing{Ms: pts[2].Ms, RelCI: pts[2].RelCI, Runs: pts[2].Runs}
	}
	lr.Original = &Timing{Ms: orig.Ms, RelCI: orig.RelCI, Runs: orig.Runs}
	lr.Compressed = &Timing{Ms: comp.Ms, RelCI: comp.RelCI, Runs: comp.Runs}
	lr.TablesPredicted = orig.Ms - (lr.LayersBefore - lr.LayersAfter)
	l.opts.log("profiling the original model in onnxruntime (batch %d)", l.batch)
	nt, err := latency.Profile(*l.orig, l.opts.Measure.Runtime, ProfileBudget)
	if err != nil && l.warn != nil {
		l.warn(fmt.Sprintf("latency: the prediction takes the tables' savings as they are: %v", err))
	}
	saved := 0.0
	for i := range lr.Layers {
		ll := &lr.Layers[i]
		if nt != nil && nodes[i] != nil {
			ll.InModelMs, _ = nt.Of(l.graph, nodes[i])
		}
		saved += InModelSaving(ll.OriginalMs, ll.AfterMs, ll.InModelMs)
	}
	lr.Predicted = orig.Ms - saved
	return lr, nil
}

// ProfileBudget is the wall time Report spends profiling the original model (at least
// a few runs).
const ProfileBudget = 3 * time.Second

// InModelSaving returns what a layer's factorization saves in the model, in milliseconds,
// from its original's and the factorization's times in its table and the original's time in
// the model (0: unknown). A layer timed alone carries overheads its table's candidates all
// share (the run, the context nodes: see package latency), so where it is faster in the model
// than in its table, its saving there is the table's; where it is slower in the model (its
// weights no longer in the caches: see latency.Pressure), what a factorization saves grows
// with it, in proportion.
func InModelSaving(orig, after, inModel float64) float64 {
	saved := orig - after
	if orig > 0 && inModel > orig {
		saved *= inModel / orig
	}
	return saved
}

// PrintLatency writes the latency part of the report as text: each timed layer's times, then
// the whole models' predicted and measured times side by side.
func PrintLatency(w io.Writer, r *LatencyReport) {
	if r == nil {
		return
	}
	threads := "onnxruntime's choice of"
	if r.Threads > 0 {
		threads = fmt.Sprint(r.Threads)
	}
	fmt.Fprintf(w, "\nlatency: ms per batch of %d, %s intra-op thread(s), provider %s; layer tables at rank multiples of %d (%d measured, %d cached; %d factorizations timed again)\n",
		r.Batch, threads, r.Provider, r.RankMultiple, r.TablesMeasured, r.TablesCached, r.Refined)
	fmt.Fprintf(w, "%-24s %11s %11s %7s %7s %9s  %s\n", "layer", "original ms", "after ms", "saved", "noise", "in model", "result")
	for _, l := range r.Layers {
		result, noise, inModel := "skipped", "-", "-"
		if l.Applied {
			result, noise = "applied", fmt.Sprintf("%.1f%%", 100*l.Noise)
		}
		if l.InModelMs > 0 {
			inModel = fmt.Sprintf("%.3f", l.InModelMs)
		}
		fmt.Fprintf(w, "%-24s %11.3f %11.3f %6.1f%% %7s %9s  %s\n", l.Name, l.OriginalMs, l.AfterMs, 100*(1-l.AfterMs/l.OriginalMs), noise, inModel, result)
	}
	var target string
	switch {
	case r.OutOfReach:
		target = fmt.Sprintf(" (target %g: out of reach)", r.Target)
	case r.Target > 0:
		target = fmt.Sprintf(" (target %g)", r.Target)
	}
	ratio := 0.0
	if r.LayersBefore > 0 {
		ratio = r.LayersAfter / r.LayersBefore
	}
	fmt.Fprintf(w, "%-24s %11.3f %11.3f %6.1f%% %7s %9s  %.3g of the layers' time%s\n", "layers", r.LayersBefore, r.LayersAfter, 100*(1-ratio), "", "", ratio, target)
	if r.Original == nil {
		fmt.Fprintf(w, "whole model: %s\n", r.Note)
		return
	}
	if r.Given != nil {
		fmt.Fprintf(w, "whole model: as given %.3f ms (±%.1f%%), simplified %.3f ms (±%.1f%%, %.2fx); compressed predicted %.3f ms (%.2fx), measured %.3f ms (±%.1f%%, %.2fx)\n",
			r.Given.Ms, 50*r.Given.RelCI, r.Original.Ms, 50*r.Original.RelCI, r.Given.Ms/r.Original.Ms,
			r.Predicted, r.PredictedSpeedup(), r.Compressed.Ms, 50*r.Compressed.RelCI, r.MeasuredSpeedup())
	} else {
		fmt.Fprintf(w, "whole model: original %.3f ms (±%.1f%%); compressed predicted %.3f ms (%.2fx), measured %.3f ms (±%.1f%%, %.2fx)\n",
			r.Original.Ms, 50*r.Original.RelCI, r.Predicted, r.PredictedSpeedup(), r.Compressed.Ms, 50*r.Compressed.RelCI, r.MeasuredSpeedup())
	}
	if math.Abs(r.TablesPredicted-r.Predicted) > 5e-4*r.Predicted {
		fmt.Fprintf(w, "(by the tables' savings alone, without the layers' times in the original model's profile: predicted %.3f ms)\n", r.TablesPredicted)
	}
}

// LatencyRule describes the latency gate for the report's rule: "latency gate 0.05", "no
// latency gate" (a latency target without the gate), or "" (no latency tables).
func LatencyRule(o LatencyOptions) string {
	switch {
	case o.Gate:
		return fmt.Sprintf("latency gate %g", o.margin())
	case o.Target > 0:
		return "no latency gate"
	}
	return ""
}
