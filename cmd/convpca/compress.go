package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/convpca/convpca/calib"
	"github.com/convpca/convpca/compress"
	"github.com/convpca/convpca/dataset"
	"github.com/convpca/convpca/internal/plots"
	"github.com/convpca/convpca/latency"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/ort"
	"github.com/convpca/convpca/rewrite"
)

// compressOptions are the inputs of one compress run.
type compressOptions struct {
	Model, Calib, Out string
	Stats             string // statistics file used instead of calibrating
	Rewrite           rewrite.Options
	Calibration       ort.Options
	Sequential        bool
	Latency           compress.LatencyOptions // --target-latency, --latency-gate
	// Default is set when no rank rule, budget or rank is given: compress then searches
	// within DefaultMaxError on held-out calibration samples (see guarded).
	Default   bool
	Search    searchOptions
	Data      dataOptions
	Report    string    // path of the JSON report, or ""
	Plots     string    // folder for PNG plots, or ""
	Overwrite bool      // allow Out to be the input model
	External  bool      // save with external data
	Stderr    io.Writer // where the progress bar goes (only when it is a terminal); nil: none
	// NoSimplify leaves the graph as loaded (no rewrite.Simplify); Log receives progress lines.
	NoSimplify bool
	Log        func(string)
}

func init() { commands = append(commands, compressCommand) }

func compressCommand() *cli.Command {
	return &cli.Command{
		Name:      "compress",
		Usage:     "factorize each Conv with the PCA of its activations on calibration data",
		ArgsUsage: "MODEL.onnx",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "calib", Usage: "calibration data: .npy, ONNX .pb tensor or MNIST IDX images (.gz too)"},
			&cli.StringFlag{Name: "stats", Usage: "compress from a statistics file of `convpca calibrate`/`merge` instead of --calib"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "`PATH` of the compressed model"},
			&cli.StringFlag{Name: "side", Value: "both", Usage: "which side of each Conv to factorize: output, input or both (each layer keeps the cheapest of both, input only and output only)"},
			&cli.Float64Flag{Name: "threshold", Value: rewrite.DefaultRule.Threshold, Usage: "keep eigenvalues >= `T` times the largest"},
			&cli.Float64Flag{Name: "energy", Usage: "keep the fewest eigenvalues holding fraction `E` of the total (instead of --threshold)"},
			&cli.StringSliceFlag{Name: "rank", Usage: "`LAYER=K` fixes a layer's rank on the side(s) rewritten, LAYER=R:K its input and output ranks (repeatable); full keeps every channel and rewrites every layer, to verify"},
			&cli.Float64Flag{Name: "target-macs", Usage: "allocate ranks across all layers and sides to keep at most fraction `F` of the Convs' MACs (instead of --threshold)"},
			&cli.IntFlag{Name: "rank-multiple", Value: 1, Usage: "round ranks up to multiples of `M` (--target-latency: default the CPU's, see bench layers)"},
			&cli.Float64Flag{Name: "target-latency", Usage: "allocate ranks so that the compressible layers keep at most fraction `F` of their time measured in onnxruntime (instead of --threshold; implies --latency-gate)"},
			&cli.BoolFlag{Name: "latency-gate", Usage: "measure each layer's latency table and skip every factorization not measurably faster than its layer (any rule)"},
			&cli.BoolFlag{Name: "no-latency-gate", Usage: "with --target-latency: apply every factorization the table says is faster, even within the measurement noise"},
			&cli.IntFlag{Name: "latency-batch", Usage: "samples per timed run of the latency tables (default: --batch)"},
			&cli.BoolFlag{Name: "sequential", Usage: "take each layer's statistics from the model with the earlier layers already compressed (one pass over the data per layer)"},
			&cli.StringFlag{Name: "alloc", Value: rewrite.AllocEnergy, Usage: "what --target-macs and --target-latency allocation minimises: energy (discarded eigenvalue mass) or sensitivity (measured output change)"},
			&cli.BoolFlag{Name: "refit", Usage: "with --sequential: refit each reduced core by least squares to reproduce the original model's outputs"},
			&cli.Float64Flag{Name: "ridge", Value: rewrite.DefaultRidge, Usage: "relative ridge of the refit (times the mean regressor energy)"},
			&cli.Float64Flag{Name: "max-drop", Usage: "find the smallest --target-macs whose top-1 accuracy drop on --eval-data/--eval-labels is at most `P` points"},
			&cli.Float64Flag{Name: "max-error", Usage: "find the smallest --target-macs whose outputs (before a final Softmax or Sigmoid) have relative L2 error at most `E` on --eval-data, or on held-out calibration samples"},
			&cli.StringFlag{Name: "eval-data", Usage: "evaluation inputs for --max-drop/--max-error (not the calibration data)"},
			&cli.StringFlag{Name: "eval-labels", Usage: "evaluation labels for --max-drop"},
			&cli.IntFlag{Name: "search-steps", Value: 8, Usage: "probes of the --max-drop/--max-error search"},
			&cli.StringFlag{Name: "report", Usage: "write the per-layer report as JSON to `PATH`"},
			&cli.StringFlag{Name: "plots", Usage: "write PNG plots (eigenvalue spectra with the chosen ranks; accuracy against MACs of a --max-drop search) into `DIR`"},
			&cli.BoolFlag{Name: "overwrite", Usage: "allow --out to be the input model"},
			&cli.BoolFlag{Name: "external-data", Usage: "save initializers of 1 KiB or more to OUT.data beside the model (always done over 2 GB)"},
			simplifyFlag,
		}, append(append(dataFlags(), evalCmdFlags()...), runtimeFlags()...)...),
		Action: func(c *cli.Context) error {
			opts, err := parseCompress(c)
			if err != nil {
				return err
			}
			opts.Stderr = c.App.ErrWriter
			_, err = runCompress(opts, c.App.Writer, c.App.ErrWriter)
			return err
		},
	}
}

func parseCompress(c *cli.Context) (compressOptions, error) {
	if c.NArg() != 1 {
		return compressOptions{}, usagef("compress takes one model, got %d arguments", c.NArg())
	}
	o := compressOptions{
		Model: c.Args().First(), Calib: c.String("calib"), Out: c.String("out"), Stats: c.String("stats"),
		Report: c.String("report"), Plots: c.String("plots"), Overwrite: c.Bool("overwrite"), External: c.Bool("external-data"),
		NoSimplify: c.Bool("no-simplify"), Log: logTo(c),
	}
	if (o.Calib == "" && o.Stats == "") || o.Out == "" {
		return o, usagef("compress needs --calib DATA (or --stats FILE) and --out PATH")
	}
	if o.Calib != "" && o.Stats != "" {
		return o, usagef("give --calib or --stats, not both")
	}
	if o.Stats != "" && (c.Bool("sequential") || c.String("alloc") == rewrite.AllocSensitivity || c.IsSet("max-drop") || c.IsSet("max-error")) {
		return o, usagef("--sequential, --alloc sensitivity and searches pass over the data again: give --calib, not --stats")
	}
	side, err := rewrite.ParseSide(c.String("side"))
	if err != nil {
		return o, usageError{err.Error()}
	}
	o.Rewrite.Side = side
	rules := 0
	for _, f := range []string{"energy", "threshold", "target-macs", "target-latency"} {
		if c.IsSet(f) {
			rules++
		}
	}
	if rules > 1 {
		return o, usagef("give one of --threshold, --energy, --target-macs and --target-latency, not several")
	}
	if err := parseLatency(c, &o); err != nil {
		return o, err
	}
	o.Default = rules == 0 && !c.IsSet("rank")
	o.Rewrite.TargetMACs = c.Float64("target-macs")
	if c.IsSet("target-macs") && (o.Rewrite.TargetMACs <= 0 || o.Rewrite.TargetMACs > 1) {
		return o, usagef("--target-macs %v is not in (0, 1]", o.Rewrite.TargetMACs)
	}
	if o.Rewrite.RankMultiple = c.Int("rank-multiple"); o.Rewrite.RankMultiple < 1 {
		return o, usagef("--rank-multiple must be >= 1")
	}
	o.Sequential = c.Bool("sequential")
	o.Rewrite.Refit, o.Rewrite.Ridge = c.Bool("refit"), c.Float64("ridge")
	switch o.Rewrite.Alloc = c.String("alloc"); o.Rewrite.Alloc {
	case rewrite.AllocEnergy, rewrite.AllocSensitivity:
	default:
		return o, usagef("--alloc %q: want energy or sensitivity", o.Rewrite.Alloc)
	}
	if o.Rewrite.Refit && !o.Sequential {
		return o, usagef("--refit needs --sequential (it fits each layer to the inputs the compressed model gives it)")
	}
	if o.Rewrite.Ridge <= 0 {
		return o, usagef("--ridge must be > 0")
	}
	o.Rewrite.Rule = rewrite.Rule{Threshold: c.Float64("threshold"), Energy: c.Float64("energy")}
	if c.IsSet("energy") && (o.Rewrite.Rule.Energy <= 0 || o.Rewrite.Rule.Energy > 1) {
		return o, usagef("--energy %v is not in (0, 1]", o.Rewrite.Rule.Energy)
	}
	if err := o.Rewrite.Rule.Check(); err != nil {
		return o, usageError{err.Error()}
	}
	for _, r := range c.StringSlice("rank") {
		if r == "full" {
			o.Rewrite.Full = true
			continue
		}
		name, ranks, ok := parseRank(r, side)
		if !ok {
			return o, usagef("--rank %q: want LAYER=K or LAYER=R:K with ranks >= 1, or full", r)
		}
		if o.Rewrite.Ranks == nil {
			o.Rewrite.Ranks = map[string]rewrite.Ranks{}
		}
		o.Rewrite.Ranks[name] = ranks
	}
	if o.Search, err = parseSearch(c, o); err != nil {
		return o, err
	}
	if o.Data, err = parseData(c, warnFunc(c)); err != nil {
		return o, err
	}
	if o.Rewrite.Full && o.Rewrite.TargetMACs > 0 {
		return o, usagef("--rank full keeps every channel; it cannot meet --target-macs")
	}
	if o.Latency.Target > 0 && (o.Rewrite.Full || o.Search.active()) {
		return o, usagef("--target-latency allocates for one target: not with --rank full, --max-drop or --max-error")
	}
	o.Calibration, err = calibOptions(c, c.App.ErrWriter)
	return o, err
}

// parseRank reads LAYER=K (rank K on each side rewritten) or LAYER=R:K (input rank R, output
// rank K).
func parseRank(s string, side rewrite.Side) (string, rewrite.Ranks, bool) {
	name, val, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return "", rewrite.Ranks{}, false
	}
	inText, outText, pair := strings.Cut(val, ":")
	in, err1 := strconv.Atoi(inText)
	if !pair {
		var r rewrite.Ranks
		if side != rewrite.SideOutput {
			r.In = in
		}
		if side != rewrite.SideInput {
			r.Out = in
		}
		return name, r, err1 == nil && in >= 1
	}
	out, err2 := strconv.Atoi(outText)
	return name, rewrite.Ranks{In: in, Out: out}, err1 == nil && err2 == nil && in >= 1 && out >= 1
}

// parseLatency reads the latency flags: --target-latency F (ranks on the CPU's rank multiple
// unless --rank-multiple), --latency-gate, --no-latency-gate, --latency-batch.
func parseLatency(c *cli.Context, o *compressOptions) error {
	l := &o.Latency
	l.Target, l.Gate, l.Batch = c.Float64("target-latency"), c.Bool("latency-gate"), c.Int("latency-batch")
	switch {
	case c.IsSet("target-latency") && (l.Target <= 0 || l.Target > 1):
		return usagef("--target-latency %v is not in (0, 1]", l.Target)
	case c.Bool("no-latency-gate") && (l.Gate || l.Target == 0):
		return usagef("--no-latency-gate goes with --target-latency, without --latency-gate")
	case l.Batch < 0:
		return usagef("--latency-batch must be >= 1")
	}
	if l.Target > 0 {
		l.Gate = !c.Bool("no-latency-gate")
		if !c.IsSet("rank-multiple") {
			o.Rewrite.RankMultiple = latency.RankMultiple(latency.HostCPU())
		}
	}
	if c.IsSet("rank-multiple") {
		l.Measure.Multiple = c.Int("rank-multiple")
	}
	l.Log = logTo(c)
	return nil
}

// afterRewrite sees the compressed model before it is verified and written (tests use it to
// force a model onnxruntime refuses).
var afterRewrite = func(*onnxio.Model) {}

// runCompress loads the model, calibrates, rewrites (searching the MACs target when asked)
// and saves; it prints the per-layer table to stdout and returns the report.
func runCompress(o compressOptions, stdout, stderr io.Writer) (*rewrite.Report, error) {
	if same(o.Model, o.Out) && !o.Overwrite {
		return nil, usagef("--out %s is the input model; pass --overwrite to replace it", o.Out)
	}
	m, simplified, err := prepareModel(o.Model, o.NoSimplify, o.Log)
	if err != nil {
		return nil, err
	}
	// given is the model as the user gave it, read again (once) where Simplify changed it: the
	// compressed model is verified against it, and timed beside it.
	changed := simplified.Any()
	var givenModel *onnxio.Model
	given := func() (*onnxio.Model, error) {
		if !changed {
			return m, nil
		}
		if givenModel == nil {
			g, err := loadModel(o.Model)
			if err != nil {
				return nil, err
			}
			givenModel = g
		}
		return givenModel, nil
	}
	if !rewrite.HasLayers(m) {
		return nil, fmt.Errorf("model %s has no Conv, Gemm or MatMul layer in its main graph", o.Model)
	}
	if err := rewrite.CheckRanks(m, o.Rewrite); err != nil {
		return nil, err
	}
	total := 0
	if o.heldOut() {
		// The default holds samples out of the statistics to check the result on (guard).
		if total, err = samples(o, m); err != nil {
			return nil, err
		}
		o.Calibration.MaxSamples = total - holdOut(total)
	}
	res := calib.NewResult() // no layer can be factorized: each is reported with the reason
	if t, _ := rewrite.Targets(m, rewrite.SideBoth); len(t) > 0 {
		if res, err = statistics(m, o); err != nil {
			return nil, err
		}
	}
	copts := compress.Options{Rewrite: o.Rewrite, Runtime: o.Calibration, Sequential: o.Sequential}
	var data compress.Data
	if o.Calib != "" {
		data = func() (dataset.Reader, error) { return o.Data.open(o.Calib, m) }
	}
	switch {
	case o.heldOut():
		if res.Samples > 0 { // with no layer to factorize there is nothing to check
			copts.Bound = guard(o, m, res.Samples, total)
		}
	case o.Search.active():
		if copts.Bound, err = bound(o, m); err != nil {
			return nil, err
		}
	}
	// The layout rewrite for onnxruntime's CPU provider applies to the compressed model only
	// (calibration and the layer tables see the graph without it) where it runs on the CPU.
	block := 0
	if !o.NoSimplify {
		if p, err := ort.Resolve(o.Calibration.Runtime); err == nil && p == ort.CPU {
			block = latency.NCHWcBlock(latency.HostCPU())
		}
	}
	var lat *compress.Latency
	if o.Latency.Active() {
		o.Latency.Blocked = block
		if changed {
			if o.Latency.Given, err = given(); err != nil {
				return nil, err
			}
		}
		if lat, err = compress.MeasureLatency(m, res, data, o.Calibration, o.Latency); err != nil {
			return nil, err
		}
		copts.Rewrite = lat.Rewrite(copts.Rewrite)
	}
	result, err := compress.Run(m, res, data, copts, stdout)
	if err != nil && copts.Bound.Active() && !o.Search.active() {
		// The default's check runs the original model on held-out data; where that cannot
		// run (a model onnxruntime loads only from a file, data for other inputs), compress
		// by the fixed rule instead, and say so.
		if o.Calibration.Runtime.Warn != nil {
			o.Calibration.Runtime.Warn(fmt.Sprintf("the default's check on held-out samples cannot run (%v); compressing by the fixed rule %s instead", err, o.Rewrite.Rule))
		}
		copts.Bound = compress.Bound{}
		result, err = compress.Run(m, res, data, copts, stdout)
	}
	if err != nil {
		return nil, err
	}
	out, rep, probes := result.Model, result.Report, result.Probes
	if block > 0 {
		if simplified.Blocked = rewrite.Blocked(out.Graph, block); simplified.Blocked > 0 {
			simplified.Block = block
		}
	}
	rep.Simplified = simplified
	afterRewrite(out)
	switch {
	case rep.Applied == 0 && !simplified.Any(): // nothing rewritten: the model as it came (constants folded)
	case data != nil:
		var orig *onnxio.Model
		if orig, err = given(); err != nil {
			return nil, err
		}
		err = compress.Verify(orig, out, data, o.Calibration, o.Rewrite.Full)
		if errors.Is(err, compress.ErrUnverifiable) {
			if o.Calibration.Runtime.Warn != nil {
				o.Calibration.Runtime.Warn(err.Error())
			}
			err = nil
		}
	default:
		err = compress.Loads(out, o.Calibration.Runtime)
	}
	if err != nil {
		return nil, err
	}
	if err := onnxio.SaveWith(o.Out, out, onnxio.SaveOptions{External: o.External}); err != nil {
		return nil, err
	}
	printReport(stdout, rep)
	var lrep *compress.LatencyReport
	if lat != nil {
		if lrep, err = lat.Report(out, rep); err != nil {
			return nil, err
		}
		compress.PrintLatency(stdout, lrep)
	}
	if o.Plots != "" {
		if err := plots.Write(o.Plots, rep, probes); err != nil {
			return nil, err
		}
	}
	if o.Report != "" {
		err := onnxio.WriteFileAtomic(o.Report, func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(jsonReport{Model: o.Model, Output: o.Out, Rule: ruleText(o), Probes: probes, Report: rep, Latency: lrep})
		})
		if err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// statistics reads the --stats file, or calibrates on the --calib data.
func statistics(m *onnxio.Model, o compressOptions) (*calib.Result, error) {
	if o.Stats != "" {
		return loadStats(o.Stats, m)
	}
	r, err := o.Data.open(o.Calib, m)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	copts := o.Calibration
	bar := newProgress(o.Stderr, "calibrating", o.Calibration.Runtime.Warn == nil)
	copts.Progress = bar.Update
	res, err := compress.Calibrate(m, r, o.Rewrite.Side, copts)
	bar.Done()
	return res, err
}

// ruleText says how ranks were chosen, for the report.
func ruleText(o compressOptions) string {
	var s string
	switch {
	case o.Rewrite.Full:
		s = "full rank"
	case o.Latency.Target > 0:
		s = fmt.Sprintf("target-latency %g (alloc %s)", o.Latency.Target, o.Rewrite.Alloc)
	case o.Rewrite.TargetMACs > 0:
		s = fmt.Sprintf("target-macs %g (alloc %s)", o.Rewrite.TargetMACs, o.Rewrite.Alloc)
	default:
		s = o.Rewrite.Rule.String()
	}
	if l := compress.LatencyRule(o.Latency); l != "" {
		s += ", " + l
	}
	s += ", side " + string(o.Rewrite.Side)
	if o.Sequential {
		s += ", sequential"
	}
	if o.Rewrite.Refit {
		s += fmt.Sprintf(", refit (ridge %g)", o.Rewrite.Ridge)
	}
	return s
}

// jsonReport is the --report document.
type jsonReport struct {
	Model  string `json:"model"`
	Output string `json:"output"`
	Rule   string `json:"rule"`
	// Probes of a --max-drop/--max-error search, in order.
	Probes []compress.Probe `json:"probes,omitempty"`
	*rewrite.Report
	// Latency: with --target-latency or --latency-gate, the layers' measured times and the
	// whole models' predicted and measured latency.
	Latency *compress.LatencyReport `json:"latency,omitempty"`
}

// same reports whether two paths name the same file (or the same place when absent).
func same(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(sa, sb)
	}
	aa, _ := filepath.Abs(a)
	ab, _ := filepath.Abs(b)
	return aa == ab
}

func printReport(w io.Writer, rep *rewrite.Report) {
	fmt.Fprintf(w, "%-24s %6s %8s %9s %8s %9s %11s %11s  %s\n", "layer", "side", "in rank", "in energy", "out rank", "energy", "MACs before", "MACs after", "result")
	for _, l := range rep.Layers {
		result := "applied"
		if !l.Applied {
			result = "skipped: " + l.Reason
		}
		inRank, inEnergy := rankCells(l.InRank, l.InChannels, l.InEnergy)
		outRank, outEnergy := rankCells(l.Rank, l.OutChannels, l.Energy)
		fmt.Fprintf(w, "%-24s %6s %8s %9s %8s %9s %11d %11d  %s\n", l.Name, l.Side, inRank, inEnergy, outRank, outEnergy, l.Before.MACs, l.After.MACs, result)
	}
	fmt.Fprintf(w, "%-24s %6s %8s %9s %8s %9s %11d %11d  %d applied, %d skipped; MACs %.2fx fewer, params %d -> %d (%d calibration samples)\n",
		"total", "", "", "", "", "", rep.Before.MACs, rep.After.MACs, rep.Applied, rep.Skipped, rep.MACRatio(), rep.Before.Params, rep.After.Params, rep.Samples)
	if rep.Simplified.Any() {
		fmt.Fprintf(w, "simplified: %s\n", rep.Simplified)
	}
}

// rankCells shows a side's rank as rank/channels and the retained fraction of its eigenvalue
// sum, or "-" when that side is not factorized.
func rankCells(rank, channels int, energy float64) (string, string) {
	if rank == 0 {
		return "-", "-"
	}
	return fmt.Sprintf("%d/%d", rank, channels), fmt.Sprintf("%.6f", energy)
}
