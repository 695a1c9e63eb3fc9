package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/convpca/convpca/dataset"
	"github.com/convpca/convpca/latency"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/ort"
	"github.com/convpca/convpca/rewrite"
)

// benchOptions are the inputs of one bench run.
type benchOptions struct {
	Kind     string   // overhead, memory, latency, process, layers (or collect: the memory child)
	Models   []string // model paths
	Data     string   // data file fed to the models, or "" for random normal data
	Shape    []int    // one sample's shape for random data when the model's input has dynamic dimensions
	Samples  []int    // samples per run (nil: the kind's default)
	Batches  []int    // batch sizes
	Threads  int      // onnxruntime intra-op threads (0: onnxruntime's choice)
	Provider ort.Provider
	Repeat   int  // repeats of each timed run (overhead, memory, process); the median is shown
	Runs     int  // latency: timed runs per model and batch
	Host     bool // overhead: also time the float64 host path (Options.HostStats)
	Infer    bool // collect: run plain inference instead of calibration
	ORTLib   string
	// layers: the rank grid's multiple (0: the CPU's), ranks per side, time per layer, cache.
	Multiple, Levels int
	Budget           time.Duration
	CacheDir         string
	NoCache          bool
	// exe returns the command that runs convpca with args in a new process (memory, process);
	// nil runs this executable.
	exe func(args ...string) *exec.Cmd
}

func init() { commands = append(commands, benchCommand) }

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:      "bench",
		Usage:     "benchmarks: calibration overhead, its peak memory, model latency, whole-process times, layer latency tables",
		ArgsUsage: "overhead | memory | process | latency A.onnx [B.onnx ...] | layers MODEL",
		Description: "Each prints a Markdown table; timings are medians of --repeat runs (latency: of --runs).\n" +
			"Every model is fed --calib DATA (any data file compress reads), or random normal numbers\n" +
			"of the model input's shape (--input-shape C,H,W for dynamic dimensions) without it.\n" +
			"  overhead  wall time of calibration (ort.Collect over every layer's input and output) over\n" +
			"            the wall time of plain inference (ort.Infer) of the same model, samples\n" +
			"            (--samples, default 256), batch, provider and threads; --host also times the\n" +
			"            float64 host path.\n" +
			"  memory    peak resident memory (getrusage maxrss of a child process) of calibration and\n" +
			"            of plain inference against the number of samples (--samples, default\n" +
			"            1000,10000, at batch 64) and the batch size (--batch, default 16,64,256, at the\n" +
			"            largest sample count); --host adds the host path.\n" +
			"  process   whole-process wall time of `convpca compress` of the first --samples (default\n" +
			"            2000) samples against plain inference of them in a process of its own,\n" +
			"            process start included.\n" +
			"  latency   median and 90th percentile latency of each model at each --batch (default 1,64)\n" +
			"            with --threads (default 1) on random inputs, after 5 warm-up runs, and the\n" +
			"            speed-up over the first model.\n" +
			"  layers    the latency table of each compressible layer (Conv with group 1, Gemm, MatMul by a\n" +
			"            constant weight) measured in onnxruntime at one --batch (default 1) and --threads\n" +
			"            (default 1), alone but for an identity depthwise Conv on either side (on the CPU\n" +
			"            provider, so that it meets the blocked layout its neighbours give it in a model):\n" +
			"            the original and its factorizations (package latency) on a grid of ranks, multiples\n" +
			"            of --rank-multiple (default: 16 with AVX-512, 8 with AVX2, else 4) and a quarter and\n" +
			"            a half of it, with the best at a few rank levels, how well the grid and the sum of the\n" +
			"            chain's nodes predict a measured chain, and the sum of the layers against the whole\n" +
			"            model. A layer whose weights exceed a core's own cache is timed cold (the caches\n" +
			"            swept before each run, \"cold\" after its shape). Layer shapes come from one run of\n" +
			"            the model on one batch of --calib DATA or\n" +
			"            random data. Measurements are cached (--cache, default\n" +
			"            $CONVPCA_LATENCY_CACHE or ~/.cache/convpca/latency; --no-cache).\n" +
			"Exit codes: 0 success, 1 failure, 2 bad usage.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "calib", Usage: "data fed to the models (default: random normal numbers)"},
			&cli.StringFlag{Name: "input-shape", Usage: "one sample's `C,H,W` for random data where the model input is dynamic"},
			&cli.StringFlag{Name: "samples", Usage: "samples per run, a `LIST` for memory"},
			&cli.StringFlag{Name: "batch", Usage: "batch size(s), a comma-separated `LIST` (default 64; memory 16,64,256; latency 1,64; layers 1)"},
			&cli.IntFlag{Name: "threads", Value: -1, DefaultText: "onnxruntime's choice; latency and layers 1", Usage: "`N` onnxruntime intra-op threads"},
			&cli.StringFlag{Name: "provider", Value: "cpu", Usage: "onnxruntime provider: cpu, cuda or auto"},
			&cli.IntFlag{Name: "repeat", Value: 3, Usage: "repeats of each timed run; the median is shown"},
			&cli.IntFlag{Name: "runs", Value: 50, Usage: "latency: timed runs per model and batch"},
			&cli.BoolFlag{Name: "host", Usage: "overhead, memory: also measure calibration on the host in float64 (the path before in-graph statistics)"},
			&cli.BoolFlag{Name: "infer", Hidden: true, Usage: "collect: plain inference"},
			&cli.StringFlag{Name: "ort-lib", Usage: "`PATH` of libonnxruntime.so.1"},
			&cli.IntFlag{Name: "rank-multiple", Usage: "layers: ranks are multiples of `M` (0: the CPU's, see above)"},
			&cli.IntFlag{Name: "levels", Usage: "layers: most ranks measured per side (0: 6; the two-sided grid takes 4)"},
			&cli.Float64Flag{Name: "budget", Value: 15, Usage: "layers: `SECONDS` of measuring per layer, after which candidates stop once each ran 3 times"},
			&cli.StringFlag{Name: "cache", Usage: "layers: `DIR` of the latency cache"},
			&cli.BoolFlag{Name: "no-cache", Usage: "layers: measure every layer, read and write no cache"},
		},
		Action: func(c *cli.Context) error {
			o, err := parseBench(c)
			if err != nil {
				return err
			}
			return runBench(o, c.App.Writer, c.App.ErrWriter)
		},
	}
}

func parseBench(c *cli.Context) (benchOptions, error) {
	if c.NArg() < 1 {
		return benchOptions{}, usagef("bench takes overhead, memory, process, latency or layers MODEL...")
	}
	o := benchOptions{
		Kind: c.Args().First(), Repeat: c.Int("repeat"), Runs: c.Int("runs"), Host: c.Bool("host"), Infer: c.Bool("infer"),
		Data: c.String("calib"), ORTLib: c.String("ort-lib"), Threads: c.Int("threads"), Models: c.Args().Slice()[1:],
		Multiple: c.Int("rank-multiple"), Levels: c.Int("levels"), Budget: time.Duration(c.Float64("budget") * float64(time.Second)),
		CacheDir: c.String("cache"), NoCache: c.Bool("no-cache"),
	}
	p, err := ort.ParseProvider(c.String("provider"))
	if err != nil {
		return o, usageError{err.Error()}
	}
	o.Provider = p
	if o.Repeat < 1 || o.Runs < 1 {
		return o, usagef("--repeat and --runs must be >= 1")
	}
	if c.IsSet("threads") && o.Threads < 0 {
		return o, usagef("--threads must be >= 0")
	}
	if o.Samples, err = intList(c.String("samples")); err != nil {
		return o, usagef("--samples: %v", err)
	}
	if o.Batches, err = intList(c.String("batch")); err != nil {
		return o, usagef("--batch: %v", err)
	}
	if o.Shape, err = intList(c.String("input-shape")); err != nil {
		return o, usagef("--input-shape: %v", err)
	}
	switch o.Kind {
	case "latency", "overhead", "memory", "process", "collect", "layers":
	default:
		return o, usagef("bench %q: want overhead, memory, process, latency or layers", o.Kind)
	}
	single := o.Kind == "collect" || o.Kind == "process" || o.Kind == "layers"
	if len(o.Models) == 0 || single && len(o.Models) != 1 {
		return o, usagef("bench %s takes one model%s", o.Kind, map[bool]string{true: " or more", false: ""}[!single])
	}
	if o.Multiple < 0 || o.Levels < 0 || o.Budget <= 0 {
		return o, usagef("--rank-multiple and --levels must be >= 0, --budget > 0")
	}
	switch o.Kind {
	case "layers":
		if len(o.Batches) > 1 {
			return o, usagef("bench layers takes one --batch")
		}
		if o.Threads < 0 {
			o.Threads = 1
		}
	case "latency":
		if o.Batches == nil {
			o.Batches = []int{1, 64}
		}
		if o.Threads < 0 {
			o.Threads = 1
		}
	default:
		if o.Threads < 0 {
			o.Threads = 0
		}
		if (o.Kind == "overhead" || o.Kind == "process") && (len(o.Batches) > 1 || len(o.Samples) > 1) {
			return o, usagef("bench %s takes one --batch and one --samples", o.Kind)
		}
	}
	return o, nil
}

// intList parses "1,64" (empty: nil); each value must be >= 1.
func intList(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("%q is not a list of positive integers", s)
		}
		out = append(out, v)
	}
	return out, nil
}

func firstOr(v []int, def int) int {
	if len(v) > 0 {
		return v[0]
	}
	return def
}

func runBench(o benchOptions, stdout, stderr io.Writer) error {
	if o.exe == nil {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		o.exe = func(args ...string) *exec.Cmd { return exec.Command(exe, args...) }
	}
	switch o.Kind {
	case "overhead":
		return benchOverhead(o, stdout, stderr)
	case "memory":
		return benchMemory(o, stdout, stderr)
	case "process":
		return benchProcess(o, stdout, stderr)
	case "latency":
		return benchLatency(o, stdout)
	case "collect":
		return benchCollect(o)
	case "layers":
		return benchLayers(o, stdout, stderr)
	}
	return usagef("bench %q: want overhead, memory, process, latency or layers", o.Kind)
}

// benchModel is a model of the benchmarks with its data.
type benchModel struct {
	name, path string
	model      *onnxio.Model
	data       func(n int) (dataset.Reader, error)
}

// benchModels loads the models and says what each is fed: o.Data, or random normal numbers of
// the model input's sample shape (o.Shape where it is dynamic).
func benchModels(o benchOptions) ([]benchModel, error) {
	var out []benchModel
	for _, path := range o.Models {
		m, err := loadModel(path)
		if err != nil {
			return nil, err
		}
		bm := benchModel{name: filepath.Base(path), path: path, model: m}
		if o.Data != "" {
			bm.data = func(n int) (dataset.Reader, error) {
				r, err := openData(o.Data, m)
				if err != nil {
					return nil, err
				}
				return dataset.Limit(r, n), nil
			}
		} else {
			in, err := ort.ModelInput(m)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			shape, err := sampleShape(in, o.Shape)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", path, err)
			}
			bm.data = func(n int) (dataset.Reader, error) { return dataset.Normal(shape, n, 0, 1, 1), nil }
		}
		out = append(out, bm)
	}
	return out, nil
}

// dataArgs are the flags that give a child process the same data.
func (o benchOptions) dataArgs() []string {
	var args []string
	if o.Data != "" {
		args = append(args, "--calib", o.Data)
	}
	if o.Shape != nil {
		args = append(args, "--input-shape", intsText(o.Shape))
	}
	if o.ORTLib != "" {
		args = append(args, "--ort-lib", o.ORTLib)
	}
	return args
}

func intsText(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

func (o benchOptions) calibOptions(batch int) ort.Options {
	return ort.Options{Batch: batch, Runtime: ort.RuntimeOptions{Library: o.ORTLib, Provider: o.Provider, Threads: o.Threads}}
}

func threadsText(n int) string {
	if n == 0 {
		return "default"
	}
	return strconv.Itoa(n)
}

// benchOverhead prints the calibration overhead table.
func benchOverhead(o benchOptions, stdout, stderr io.Writer) error {
	if err := ort.InitRuntime(o.ORTLib); err != nil {
		return err
	}
	models, err := benchModels(o)
	if err != nil {
		return err
	}
	batch := firstOr(o.Batches, ort.DefaultBatch)
	var b strings.Builder
	fmt.Fprintf(&b, "| model | samples | batch | threads | provider | inference s | calibration s | overhead |")
	if o.Host {
		fmt.Fprintf(&b, " host float64 s | host overhead |")
	}
	b.WriteString("\n|---|--:|--:|--:|---|--:|--:|--:|")
	if o.Host {
		b.WriteString("--:|--:|")
	}
	b.WriteString("\n")
	for _, bm := range models {
		n := firstOr(o.Samples, 256)
		m := bm.model
		targets, last := rewrite.Targets(m, rewrite.SideBoth)
		opts := o.calibOptions(batch)
		opts.ChannelsLast = last
		var inf, cal, host, ratios, hostRatios []float64
		timeIt := func(fn func(dataset.Reader) (int, error)) (float64, error) {
			r, err := bm.data(n)
			if err != nil {
				return 0, err
			}
			defer r.Close()
			t0 := time.Now()
			got, err := fn(r)
			if err == nil && got != n {
				err = fmt.Errorf("ran %d samples, want %d", got, n)
			}
			return time.Since(t0).Seconds(), err
		}
		infer := func(r dataset.Reader) (int, error) {
			return ort.Infer(m, r, nil, opts, func(ort.Batch) error { return nil })
		}
		collect := func(host bool) func(dataset.Reader) (int, error) {
			return func(r dataset.Reader) (int, error) {
				co := opts
				co.HostStats = host
				res, err := ort.Collect(m, r, targets, co)
				if err != nil {
					return 0, err
				}
				return res.Samples, nil
			}
		}
		for rep := 0; rep < o.Repeat; rep++ {
			fmt.Fprintf(stderr, "convpca: bench overhead: %s, run %d of %d\n", bm.name, rep+1, o.Repeat)
			var ti, tc float64
			// Alternate the order, so that neither always runs on a warmer machine.
			if rep%2 == 0 {
				ti, err = timeIt(infer)
				if err == nil {
					tc, err = timeIt(collect(false))
				}
			} else {
				tc, err = timeIt(collect(false))
				if err == nil {
					ti, err = timeIt(infer)
				}
			}
			if err != nil {
				return fmt.Errorf("%s: %w", bm.name, err)
			}
			inf, cal, ratios = append(inf, ti), append(cal, tc), append(ratios, tc/ti)
			if o.Host {
				th, err := timeIt(collect(true))
				if err != nil {
					return fmt.Errorf("%s: %w", bm.name, err)
				}
				host, hostRatios = append(host, th), append(hostRatios, th/ti)
			}
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %.2f | %.2f | %.2fx |", bm.name, n, batch, threadsText(o.Threads), o.Provider, latency.Median(inf), latency.Median(cal), latency.Median(ratios))
		if o.Host {
			fmt.Fprintf(&b, " %.2f | %.2fx |", latency.Median(host), latency.Median(hostRatios))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "\nMedians of %d runs; overhead is the median of the per-run ratios calibration / inference.\n", o.Repeat)
	_, err = io.WriteString(stdout, b.String())
	return err
}

// benchCollect is the child process of benchMemory: it calibrates (or, with Infer, runs) one
// model and exits, so that its peak resident memory is that of the run alone.
func benchCollect(o benchOptions) error {
	models, err := benchModels(o)
	if err != nil {
		return err
	}
	m := models[0].model
	r, err := models[0].data(firstOr(o.Samples, 1000))
	if err != nil {
		return err
	}
	defer r.Close()
	opts := o.calibOptions(firstOr(o.Batches, ort.DefaultBatch))
	if o.Infer {
		_, err = ort.Infer(m, r, nil, opts, func(ort.Batch) error { return nil })
		return err
	}
	opts.HostStats = o.Host
	targets, last := rewrite.Targets(m, rewrite.SideBoth)
	opts.ChannelsLast = last
	_, err = ort.Collect(m, r, targets, opts)
	return err
}

// sampleShape returns the shape of one sample of the model's input: its declared dimensions
// after the batch, with given filling the dynamic ones (given, when set, must agree with the
// fixed ones).
func sampleShape(in ort.Input, given []int) ([]int, error) {
	if len(in.Dims) < 1 && given == nil {
		return nil, fmt.Errorf("model input %q has no declared shape; pass --input-shape", in.Name)
	}
	if given != nil {
		if in.Dims != nil && len(given) != len(in.Dims)-1 {
			return nil, fmt.Errorf("--input-shape %s has %d dimensions; model input %q has %s (batch first)", intsText(given), len(given), in.Name, in)
		}
		for i := 1; i < len(in.Dims); i++ {
			if d := in.Dims[i]; d > 0 && int(d) != given[i-1] {
				return nil, fmt.Errorf("--input-shape %s does not fit model input %q of shape %s (batch first)", intsText(given), in.Name, in)
			}
		}
		return given, nil
	}
	shape := make([]int, len(in.Dims)-1)
	for i, d := range in.Dims[1:] {
		if d <= 0 {
			return nil, fmt.Errorf("model input %q has shape %s; pass --input-shape for its dynamic dimensions", in.Name, in)
		}
		shape[i] = int(d)
	}
	return shape, nil
}

// peakRSS runs the command and returns its peak resident memory in MiB.
func peakRSS(cmd *exec.Cmd) (float64, error) {
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(string(out)))
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0, errors.New("no resource usage of the child process")
	}
	return float64(ru.Maxrss) / 1024, nil // KiB on Linux
}

// benchMemory prints the peak memory table.
func benchMemory(o benchOptions, stdout, stderr io.Writer) error {
	models, err := benchModels(o)
	if err != nil {
		return err
	}
	samples, batches := o.Samples, o.Batches
	if samples == nil {
		samples = []int{1000, 10000}
	}
	if batches == nil {
		batches = []int{16, 64, 256}
	}
	// Samples at the default batch (or the first given), then batches at the most samples.
	type point struct{ n, batch int }
	var points []point
	b0 := batches[0]
	if slices.Contains(batches, ort.DefaultBatch) {
		b0 = ort.DefaultBatch
	}
	for _, n := range samples {
		points = append(points, point{n, b0})
	}
	for _, bs := range batches {
		if bs != b0 {
			points = append(points, point{slices.Max(samples), bs})
		}
	}
	kinds := []string{"calibration", "inference"}
	if o.Host {
		kinds = append(kinds, "host")
	}
	var b strings.Builder
	b.WriteString("| model | samples | batch | calibration peak RSS MiB | inference peak RSS MiB |")
	if o.Host {
		b.WriteString(" host float64 calibration MiB |")
	}
	b.WriteString("\n|---|--:|--:|--:|--:|")
	if o.Host {
		b.WriteString("--:|")
	}
	b.WriteString("\n")
	for _, bm := range models {
		for _, p := range points {
			peaks := make([][]float64, len(kinds))
			for rep := 0; rep < o.Repeat; rep++ {
				fmt.Fprintf(stderr, "convpca: bench memory: %s, %d samples, batch %d, run %d of %d\n", bm.name, p.n, p.batch, rep+1, o.Repeat)
				for k, kind := range kinds {
					args := []string{"bench", "collect", bm.path, "--samples", strconv.Itoa(p.n), "--batch", strconv.Itoa(p.batch),
						"--provider", string(o.Provider), "--threads", strconv.Itoa(o.Threads)}
					args = append(args, o.dataArgs()...)
					switch kind {
					case "inference":
						args = append(args, "--infer")
					case "host":
						args = append(args, "--host")
					}
					mib, err := peakRSS(o.exe(args...))
					if err != nil {
						return err
					}
					peaks[k] = append(peaks[k], mib)
				}
			}
			fmt.Fprintf(&b, "| %s | %d | %d |", bm.name, p.n, p.batch)
			for _, v := range peaks {
				fmt.Fprintf(&b, " %.0f |", latency.Median(v))
			}
			b.WriteString("\n")
		}
	}
	fmt.Fprintf(&b, "\nPeak resident memory (getrusage maxrss) of a process that only calibrates (ort.Collect over\nrewrite.Targets) or only runs the model (ort.Infer); medians of %d runs; threads %s, provider %s.\n", o.Repeat, threadsText(o.Threads), o.Provider)
	_, err = io.WriteString(stdout, b.String())
	return err
}

// benchProcess prints whole-process wall times of compress and of plain inference of the same
// samples, each in a process of its own.
func benchProcess(o benchOptions, stdout, stderr io.Writer) error {
	path := o.Models[0]
	n := firstOr(o.Samples, 2000)
	batch := firstOr(o.Batches, ort.DefaultBatch)
	tmp, err := os.MkdirTemp("", "convpca-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	data := o.Data
	if data == "" {
		return usagef("bench process needs --calib DATA")
	}
	common := []string{"--batch", strconv.Itoa(batch), "--provider", string(o.Provider), "--threads", strconv.Itoa(o.Threads)}
	if o.ORTLib != "" {
		common = append(common, "--ort-lib", o.ORTLib)
	}
	runs := []struct {
		name string
		args []string
	}{
		{"plain inference", append([]string{"bench", "collect", path, "--infer", "--calib", data, "--samples", strconv.Itoa(n)}, common...)},
		{"compress (calibration, rewrite, save)", append([]string{"compress", path, "--calib", data, "--max-samples", strconv.Itoa(n), "-q", "--out", filepath.Join(tmp, "c.onnx")}, common...)},
	}
	times := make([][]float64, len(runs))
	for rep := 0; rep < o.Repeat; rep++ {
		fmt.Fprintf(stderr, "convpca: bench process: run %d of %d\n", rep+1, o.Repeat)
		for i, r := range runs {
			cmd := o.exe(r.args...)
			t0 := time.Now()
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("convpca %s: %v: %s", strings.Join(r.args, " "), err, strings.TrimSpace(string(out)))
			}
			times[i] = append(times[i], time.Since(t0).Seconds())
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| process (%s, %d samples, batch %d, threads %s, %s) | wall s | vs inference |\n|---|--:|--:|\n", filepath.Base(path), n, batch, threadsText(o.Threads), o.Provider)
	for i, r := range runs {
		fmt.Fprintf(&b, "| convpca %s | %.2f | %.2fx |\n", r.name, latency.Median(times[i]), latency.Median(times[i])/latency.Median(times[0]))
	}
	fmt.Fprintf(&b, "\nMedians of %d runs, process start included.\n", o.Repeat)
	_, err = io.WriteString(stdout, b.String())
	return err
}

// benchLatency prints the latency table of the models at each batch size. The models are
// timed side by side: after 5 warm-up runs each, --runs rounds, each running every model in a
// new random order, one untimed run right before its timed one. Interleaving spreads every
// model's runs over the same stretch of time, so that the machine getting slower or faster
// shifts them alike (timed one model after another, the original of the bundled MNIST model
// ran 7.6 to 9.0 ms at batch 64 across five invocations); the untimed run gives each timed run
// the caches warm from its own model, as in a deployment that runs one model over and over.
func benchLatency(o benchOptions, stdout io.Writer) error {
	if err := ort.InitRuntime(o.ORTLib); err != nil {
		return err
	}
	type model struct {
		path  string
		in    ort.Input
		shape []int
		sess  *ort.Session
	}
	var models []*model
	defer func() {
		for _, bm := range models {
			bm.sess.Close()
		}
	}()
	for _, path := range o.Models {
		m, err := loadModel(path)
		if err != nil {
			return err
		}
		in, err := ort.ModelInput(m)
		if err != nil {
			return err
		}
		shape, err := sampleShape(in, o.Shape)
		if err != nil {
			return err
		}
		for _, bs := range o.Batches {
			if len(in.Dims) > 0 && in.Dims[0] > 0 && int(in.Dims[0]) != bs {
				return fmt.Errorf("%s has a fixed batch of %d; cannot run batch %d", path, in.Dims[0], bs)
			}
		}
		data, err := m.Marshal()
		if err != nil {
			return err
		}
		sess, err := ort.NewSession(data, in.Name, m.Graph.Outputs(), ort.RuntimeOptions{Library: o.ORTLib, Provider: o.Provider, Threads: o.Threads})
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		models = append(models, &model{path: path, in: in, shape: shape, sess: sess})
	}
	const warmUp = 5
	var b strings.Builder
	b.WriteString("| model | batch | median ms | p90 ms | ms / sample | speed-up |\n|---|--:|--:|--:|--:|--:|\n")
	for _, bs := range o.Batches {
		xs := make([][]float32, len(models))
		dims := make([][]int64, len(models))
		for i, bm := range models {
			dims[i] = []int64{int64(bs)}
			for _, d := range bm.shape {
				dims[i] = append(dims[i], int64(d))
			}
			size, err := onnxio.NumElements(dims[i])
			if err != nil {
				return fmt.Errorf("%s: %w", bm.path, err)
			}
			rng := rand.New(rand.NewPCG(1, uint64(bs)))
			xs[i] = make([]float32, size)
			for j := range xs[i] {
				xs[i][j] = float32(rng.NormFloat64())
			}
		}
		run := func(i int) (float64, error) {
			t0 := time.Now()
			if err := models[i].sess.Run(xs[i], dims[i], func([]ort.Output) error { return nil }); err != nil {
				return 0, fmt.Errorf("%s: %w", models[i].path, err)
			}
			return float64(time.Since(t0).Microseconds()) / 1000, nil
		}
		for i := range models {
			for range warmUp {
				if _, err := run(i); err != nil {
					return err
				}
			}
		}
		ms := make([][]float64, len(models))
		order := make([]int, len(models))
		for i := range order {
			order[i] = i
		}
		rng := rand.New(rand.NewPCG(2, uint64(bs)))
		for range o.Runs {
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			for _, i := range order {
				if _, err := run(i); err != nil { // settles the caches on this model
					return err
				}
				t, err := run(i)
				if err != nil {
					return err
				}
				ms[i] = append(ms[i], t)
			}
		}
		base := latency.Median(ms[0])
		for i, bm := range models {
			med := latency.Median(ms[i])
			fmt.Fprintf(&b, "| %s | %d | %.3f | %.3f | %.4f | %.2fx |\n", bm.path, bs, med, latency.P90(ms[i]), med/float64(bs), base/med)
		}
	}
	fmt.Fprintf(&b, "\nonnxruntime %s, %s intra-op thread(s); %d warm-up runs, then %d rounds running the models in random order,\n"+
		"each timed run right after an untimed one of the same model; random normal inputs; speed-up is the first model's median over each model's.\n",
		o.Provider, threadsText(o.Threads), warmUp, o.Runs)
	_, err := io.WriteString(stdout, b.String())
	return err
}

// benchLayer is one Conv, Gemm or MatMul of the model in bench layers: its description for
// package latency, or the reason it is not measured.
type benchLayer struct {
	node   *onnxio.Node
	layer  latency.Layer
	reason string
}

func (bl benchLayer) input() string { return bl.node.Inputs[0] }

// findLayers lists the Conv, Gemm and MatMul nodes of the main graph.
func findLayers(m *onnxio.Model) []benchLayer {
	var out []benchLayer
	for _, n := range m.Graph.Nodes {
		if n.Op != "Conv" && n.Op != "Gemm" && n.Op != "MatMul" || n.Domain != "" && n.Domain != "ai.onnx" {
			continue
		}
		bl := benchLayer{node: n}
		if len(n.Inputs) == 0 {
			bl.reason = "no input"
		}
		out = append(out, bl)
	}
	return out
}

// layerInputs describes each layer (latency.FromNode) with its input shape from one run of the
// model on the first batch of the data: the captured shape less its first dimension (the
// batch; for a Gemm or MatMul whose input merges the batch with other positions, the batch is
// divided out of it).
func layerInputs(m *onnxio.Model, layers []benchLayer, r dataset.Reader, in ort.Input, batch int, opts ort.Options) error {
	var tensors []string
	for _, bl := range layers {
		if t := bl.input(); bl.reason == "" && t != in.Name && !slices.Contains(tensors, t) {
			tensors = append(tensors, t)
		}
	}
	shapes := map[string][]int64{}
	n := 0
	opts.Batch, opts.MaxSamples = batch, batch
	_, err := ort.Infer(m, r, tensors, opts, func(b ort.Batch) error {
		if n == 0 {
			n = b.N
			for i, o := range b.Outputs[:len(tensors)] {
				shapes[tensors[i]] = o.Shape
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("capture layer inputs: %w", err)
	}
	shapes[in.Name] = []int64{int64(n)}
	for _, d := range r.Shape() {
		shapes[in.Name] = append(shapes[in.Name], int64(d))
	}
	for i := range layers {
		bl := &layers[i]
		if bl.reason != "" {
			continue
		}
		shape := shapes[bl.input()]
		var sample []int
		switch {
		case len(shape) >= 2 && shape[0] == int64(n):
			for _, d := range shape[1:] {
				sample = append(sample, int(d))
			}
		case len(shape) >= 1 && bl.node.Op != "Conv" && n > 0 && shape[0]%int64(n) == 0:
			sample = []int{int(shape[0]) / n}
			for _, d := range shape[1:] {
				sample = append(sample, int(d))
			}
		default:
			bl.reason = fmt.Sprintf("input %q of shape %v does not start with the batch of %d", bl.input(), shape, n)
			continue
		}
		bl.layer, bl.reason = latency.FromNode(m.Graph, bl.node, sample, batch)
		bl.layer.Sweep = latency.Pressure(bl.layer, latency.CacheSizes()) // see latency.Layer.Sweep
	}
	return nil
}

// rankLevels are the fractions of the channels at which bench layers shows the best candidate.
var rankLevels = []struct {
	name string
	f    float64
}{{"1/8", 1.0 / 8}, {"1/4", 1.0 / 4}, {"1/2", 1.0 / 2}}

// benchLayers prints the latency table of the model's layers (package latency), its checks, and
// the sum of the layers' times against the whole model's.
func benchLayers(o benchOptions, stdout, stderr io.Writer) error {
	if err := ort.InitRuntime(o.ORTLib); err != nil {
		return err
	}
	path := o.Models[0]
	m, err := loadModel(path)
	if err != nil {
		return err
	}
	in, err := ort.ModelInput(m)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	batch := firstOr(o.Batches, 1)
	var r dataset.Reader
	if o.Data != "" {
		if r, err = openData(o.Data, m); err != nil {
			return err
		}
	} else {
		shape, err := sampleShape(in, o.Shape)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		r = dataset.Normal(shape, batch, 0, 1, 1)
	}
	defer r.Close()
	rt := ort.RuntimeOptions{Library: o.ORTLib, Provider: o.Provider, Threads: o.Threads, Warn: func(msg string) { fmt.Fprintf(stderr, "convpca: warning: %s\n", msg) }}
	layers := findLayers(m)
	if err := layerInputs(m, layers, r, in, batch, ort.Options{Runtime: rt}); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var measured []latency.Layer
	for _, bl := range layers {
		if bl.reason == "" {
			measured = append(measured, bl.layer)
		}
	}
	cpu := latency.HostCPU()
	lo := latency.Options{
		Runtime: rt, Multiple: o.Multiple, Levels: o.Levels, LayerBudget: o.Budget, CacheDir: o.CacheDir, NoCache: o.NoCache,
		Warn: rt.Warn,
		Progress: func(i int, lt *latency.LayerTimes) {
			fmt.Fprintf(stderr, "convpca: bench layers: %s (%d of %d) %s\n", lt.Layer.Name, i+1, len(measured), lt.Origin())
		},
	}
	t0 := time.Now()
	tab, err := latency.Measure(measured, lo)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	took := time.Since(t0)

	// The whole model, at the same batch when its input allows it.
	var whole latency.Point
	wholeNote := ""
	if len(in.Dims) > 0 && in.Dims[0] > 0 && int(in.Dims[0]) != batch {
		wholeNote = fmt.Sprintf("not measured: the model has a fixed batch of %d", in.Dims[0])
	} else {
		data, err := m.Marshal()
		if err != nil {
			return err
		}
		dims := []int64{int64(batch)}
		for _, d := range r.Shape() {
			dims = append(dims, int64(d))
		}
		p := latency.Program{Name: "whole model", Model: data, Input: in.Name, Dims: dims, Outputs: m.Graph.Outputs()}
		if whole, err = latency.MeasureProgram(p, lo); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}

	var b strings.Builder
	b.WriteString("| layer | shape | original ms | ±% |")
	for _, lv := range rankLevels {
		fmt.Fprintf(&b, " ranks %s: best ms |", lv.name)
	}
	b.WriteString("\n|---|---|--:|--:|")
	for range rankLevels {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	var sum float64
	j := 0
	for _, bl := range layers {
		if bl.reason != "" {
			fmt.Fprintf(&b, "| %s | %s | skipped: %s |  |%s\n", bl.node.Label(), bl.node.Op, bl.reason, strings.Repeat("  |", len(rankLevels)))
			continue
		}
		lt := tab.Layers[j]
		j++
		orig := lt.Time(0, 0)
		sum += orig
		fmt.Fprintf(&b, "| %s | %s | %.3f | %.0f |", bl.node.Label(), lt.Layer, orig, 50*lt.Original.RelCI)
		for _, lv := range rankLevels {
			rank := func(n int) int { return min(n, max(1, int(math.Ceil(lv.f*float64(n))))) }
			rr, kk := lt.Round(rank(lt.Layer.In), rank(lt.Layer.Out))
			side, ms := lt.Best(rr, kk)
			what := map[string]string{"original": "original", "input": fmt.Sprintf("in r%d", rr), "output": fmt.Sprintf("out k%d", kk), "both": fmt.Sprintf("both r%d k%d", rr, kk)}[side]
			fmt.Fprintf(&b, " %.3f %s (%.2fx) |", ms, what, orig/ms)
		}
		b.WriteString("\n")
	}
	multiple := o.Multiple
	if multiple == 0 {
		multiple = latency.RankMultiple(cpu)
	}
	clock := "wall time"
	if o.Threads == 1 {
		clock = "CPU time of the thread that runs it"
	}
	fmt.Fprintf(&b, "\nMilliseconds per run of a batch of %d, each layer alone but for identity depthwise Convs where its neighbours keep onnxruntime's blocked layout (median of interleaved turns, each a settling run and a burst of timed runs, %s;\n"+
		"±%% is half the 95%% confidence interval of the original's median); ranks are multiples of %d, or %s below it (CPU: %s; %s), rounded up,\n"+
		"levels are fractions of each side's channels, best is the fastest of input side, output side and both.\n"+
		"onnxruntime %s, %s intra-op thread(s). %d layers measured, %d from the cache (%s), in %.1f s (%d runs).\n",
		batch, clock, multiple, strings.ReplaceAll(intsText(latency.SmallRanks(multiple)), ",", " or "), cpu.Model, strings.Join(cpu.Flags, " "), o.Provider, threadsText(o.Threads),
		tab.Measured, tab.Cached, cacheText(o), took.Seconds(), tab.Runs)

	var gridErr, sumErr, sumBias []float64
	for _, lt := range tab.Layers {
		for _, c := range lt.Checks {
			if gridErr == nil {
				b.WriteString("\n| layer | r | k | chain ms | grid ms | grid error | down + core + up ms | sum error |\n|---|--:|--:|--:|--:|--:|--:|--:|\n")
			}
			fmt.Fprintf(&b, "| %s | %d | %d | %.3f | %.3f | %+.1f%% | %.3f + %.3f + %.3f = %.3f | %+.1f%% |\n", lt.Layer.Name, c.R, c.K, c.Chain,
				c.Interp, 100*c.InterpError(), c.Down, c.Core, c.Up, c.Down+c.Core+c.Up, 100*c.SumError())
			gridErr, sumErr, sumBias = append(gridErr, math.Abs(c.InterpError())), append(sumErr, math.Abs(c.SumError())), append(sumBias, c.SumError())
		}
	}
	if len(gridErr) > 0 {
		fmt.Fprintf(&b, "\nChains (down, core, up in one model) measured at these ranks: the grid's interpolation is off by %.1f%% (median\n"+
			"of |error|), the sum of the three nodes timed as separate models by %.1f%% (median signed error %+.1f%%).\n",
			100*latency.Median(gridErr), 100*latency.Median(sumErr), 100*latency.Median(sumBias))
	}
	b.WriteString("\n| whole model | ms |\n|---|--:|\n")
	fmt.Fprintf(&b, "| sum of the %d layers' original times (predicted) | %.3f |\n", len(tab.Layers), sum)
	if wholeNote != "" {
		fmt.Fprintf(&b, "| %s, measured | %s |\n", filepath.Base(path), wholeNote)
	} else {
		fmt.Fprintf(&b, "| %s, measured (±%.0f%%) | %.3f |\n| predicted / measured | %.2f |\n", filepath.Base(path), 50*whole.RelCI, whole.Ms, sum/whole.Ms)
	}
	_, err = io.WriteString(stdout, b.String())
	return err
}

func cacheText(o benchOptions) string {
	switch {
	case o.NoCache:
		return "no cache"
	case o.CacheDir != "":
		return o.CacheDir
	}
	return latency.DefaultCacheDir()
}
