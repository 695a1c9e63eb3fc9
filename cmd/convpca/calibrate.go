package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/convpca/convpca/calib"
	"github.com/convpca/convpca/dataset"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/ort"
	"github.com/convpca/convpca/rewrite"
)

// calibrateOptions are the inputs of one calibrate run.
type calibrateOptions struct {
	Model, Calib, Out string
	Shard, Shards     int // shard i of n; 0, 0 for all the data
	Calibration       ort.Options
	Data              dataOptions // how --calib is read (data.go)
	NoSimplify        bool        // leave the graph as loaded (see simplifyFlag)
	Log               func(string)
}

func init() { commands = append(commands, calibrateCommand) }

func calibrateCommand() *cli.Command {
	return &cli.Command{
		Name:      "calibrate",
		Usage:     "write the activation statistics of each Conv, over the data or one shard of it, to a .cps file",
		ArgsUsage: "MODEL.onnx",
		Description: "With --shard I/N the data is cut into N contiguous slices (sizes differ by at most one)\n" +
			"and only slice I (0-based) is run; `convpca merge` adds the N files up to the statistics of\n" +
			"the whole. --shard env takes I and N from a Slurm job array (SLURM_ARRAY_TASK_ID,\n" +
			"SLURM_ARRAY_TASK_COUNT) or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX, SHARD_COUNT).\n" +
			"--max-samples applies to the whole data before it is cut.\n" +
			"Exit codes: 0 success, 1 failure, 2 bad usage.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "calib", Usage: "calibration data: .npy, ONNX .pb tensor or MNIST IDX images (.gz too)"},
			&cli.StringFlag{Name: "shard", Usage: "run only shard `I/N` of the data (0 <= I < N), or env: take I and N from the batch system"},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "`PATH` of the statistics file (.cps)"},
			simplifyFlag,
		}, append(dataFlags(), runtimeFlags()...)...),
		Action: func(c *cli.Context) error {
			opts, err := parseCalibrate(c)
			if err != nil {
				return err
			}
			_, err = runCalibrate(opts, c.App.Writer, c.App.ErrWriter)
			return err
		},
	}
}

func parseCalibrate(c *cli.Context) (calibrateOptions, error) {
	if c.NArg() != 1 {
		return calibrateOptions{}, usagef("calibrate takes one model, got %d arguments", c.NArg())
	}
	o := calibrateOptions{Model: c.Args().First(), Calib: c.String("calib"), Out: c.String("out"), NoSimplify: c.Bool("no-simplify"), Log: logTo(c)}
	if o.Calib == "" || o.Out == "" {
		return o, usagef("calibrate needs --calib DATA and --out PATH")
	}
	var err error
	if o.Shard, o.Shards, err = parseShard(c.String("shard")); err != nil {
		return o, err
	}
	if o.Data, err = parseData(c, warnFunc(c)); err != nil {
		return o, err
	}
	o.Calibration, err = calibOptions(c, c.App.ErrWriter)
	return o, err
}

// parseShard reads a --shard value: "" (all the data), "I/N" or "env".
func parseShard(s string) (i, n int, err error) {
	switch s {
	case "":
		return 0, 0, nil
	case "env":
		i, n, err := dataset.ShardFromEnv()
		if err != nil {
			return 0, 0, usagef("--shard env: %v", err)
		}
		return i, n, nil
	}
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || i < 0 || i >= n {
		return 0, 0, usagef("--shard %q: want I/N with 0 <= I < N, or env", s)
	}
	return i, n, nil
}

// runCalibrate runs the data, or its shard, through the model, writes the statistics of the
// tensors rewrite.Targets lists to o.Out and returns them. A shard past the end of the data
// (more shards than samples) writes a file without statistics, which merges as nothing.
func runCalibrate(o calibrateOptions, stdout, stderr io.Writer) (*calib.StatsFile, error) {
	if same(o.Model, o.Out) {
		return nil, usagef("--out %s is the input model", o.Out)
	}
	m, _, err := prepareModel(o.Model, o.NoSimplify, o.Log)
	if err != nil {
		return nil, err
	}
	hash, err := calib.ModelHash(m)
	if err != nil {
		return nil, err
	}
	targets, last := rewrite.Targets(m, rewrite.SideBoth)
	if len(targets) == 0 {
		return nil, fmt.Errorf("model %s has no layer convpca can factorize (a Conv of group 1, or a Gemm or MatMul by a constant weight)", o.Model)
	}
	r, err := o.Data.open(o.Calib, m)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	opts := o.Calibration
	opts.ChannelsLast = last
	if opts.MaxSamples > 0 {
		r = dataset.Limit(r, opts.MaxSamples)
		opts.MaxSamples = 0
	}
	total := r.Len()
	f := &calib.StatsFile{Version: calib.StatsVersion, ModelHash: hash}
	what := "all data"
	if o.Shards > 0 {
		start, count := dataset.ShardRange(total, o.Shard, o.Shards)
		what = fmt.Sprintf("shard %d/%d (samples %d-%d of %d)", o.Shard, o.Shards, start, start+count-1, total)
		if count == 0 {
			what = fmt.Sprintf("shard %d/%d (no samples: %d shards of %d samples)", o.Shard, o.Shards, o.Shards, total)
		}
		if r, err = dataset.Shard(r, o.Shard, o.Shards); err != nil {
			return nil, err
		}
		f.Shard, f.Shards, f.ShardsSeen, f.ShardCount = o.Shard, o.Shards, []int{o.Shard}, o.Shards
		if in, err := ort.ModelInput(m); err == nil && len(in.Dims) > 0 && in.Dims[0] > 0 && count%int(in.Dims[0]) != 0 && opts.Runtime.Warn != nil {
			opts.Runtime.Warn(fmt.Sprintf("model input has a fixed batch of %d: the last %d samples of this shard are left out", in.Dims[0], count%int(in.Dims[0])))
		}
	}
	if o.Shards > 0 && r.Len() == 0 {
		if opts.Runtime.Warn != nil {
			opts.Runtime.Warn(what + "; writing empty statistics")
		}
		f.Result = &calib.Result{Stats: map[string]*calib.Stats{}, Shapes: map[string][]int64{}}
	} else if f.Result, err = ort.Collect(m, r, targets, opts); err != nil {
		return nil, fmt.Errorf("calibration: %w", err)
	}
	if err := calib.WriteStats(o.Out, f); err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "calibrated %s: %d samples, %d tensors -> %s%s\n", what, f.Result.Samples, len(f.Result.Stats), o.Out, fileSize(o.Out))
	return f, nil
}

// fileSize returns " (N bytes)" for an existing file, else "".
func fileSize(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return ""
	}
	return fmt.Sprintf(" (%d bytes)", st.Size())
}

// loadStats reads a statistics file for the model m and returns its statistics. It refuses a
// file of another model (by ModelHash), an incomplete set of shards, a file without samples
// and one that lacks a tensor rewrite.Targets(m) lists.
func loadStats(path string, m *onnxio.Model) (*calib.Result, error) {
	f, err := calib.ReadStats(path)
	if err != nil {
		return nil, err
	}
	hash, err := calib.ModelHash(m)
	if err != nil {
		return nil, err
	}
	if f.ModelHash != hash {
		return nil, fmt.Errorf("statistics file %s was computed on another model (model hash %.12s, this model's %.12s); calibrate this model, with --no-simplify on both commands or on neither", path, f.ModelHash, hash)
	}
	if n, first := f.Missing(); n > 0 {
		return nil, fmt.Errorf("statistics file %s lacks %d of its %d shards (first missing: %v); merge all of them first with convpca merge", path, n, f.ShardCount, first)
	}
	if f.Result.Samples == 0 {
		return nil, fmt.Errorf("statistics file %s holds no samples", path)
	}
	targets, _ := rewrite.Targets(m, rewrite.SideBoth)
	for _, t := range targets {
		if f.Result.Stats[t] == nil {
			return nil, fmt.Errorf("statistics file %s lacks tensor %q; calibrate again with this convpca", path, t)
		}
	}
	return f.Result, nil
}
