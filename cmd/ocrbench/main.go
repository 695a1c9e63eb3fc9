// Command ocrbench measures what convpca's compressions do to the PaddleOCR models: for the
// recogniser (rec), the direction classifier (cls) and the text detector (det), it runs
// `convpca compress` with each configuration on calibration sets rendered by package ocr,
// scores the original and every compressed model on disjoint evaluation sets, times them in
// onnxruntime on one thread at batch 1 and 16, and prints one Markdown table per model (also
// written as JSON into -work).
//
//	go run ./cmd/ocrbench [-models DIR] [-work DIR] [-convpca PATH] [-configs LIST] [-variants LIST] [-quick]
//
// It is a developer tool (make bench-ocr), not part of the convpca binary.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/convpca/convpca/ocr"
	"github.com/convpca/convpca/ort"
	"github.com/convpca/convpca/testmodels"
)

// tasks are the three models, in the order they are measured.
var tasks = []struct{ name, file string }{
	{"rec", testmodels.OCRRec},
	{"cls", testmodels.OCRCls},
	{"det", testmodels.OCRDet},
}

const (
	defaultConfigs  = "--target-macs 0.7; --target-macs 0.65; --target-macs 0.5; --target-macs 0.33"
	defaultVariants = "one-shot; --sequential --refit"
)

type options struct {
	models, work, convpca, ortLib, provider string
	configs                                 []config
	tasks                                   []string
	cfg                                     ocr.Config
	evalBatch, evalThreads                  int
	batches                                 []int
	threads, warmup, runs                   int
	timeout                                 time.Duration
	reuse                                   bool
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "ocrbench:", err)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "ocrbench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("ocrbench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./cmd/ocrbench [flags]\n\n"+
			"Compresses the PaddleOCR rec, cls and det models with convpca in each configuration\n"+
			"(-configs crossed with -variants), scores them on rendered text, times them, and prints\n"+
			"a Markdown table per model (JSON into -work).\n\nflags:\n")
		fs.PrintDefaults()
	}
	var o options
	models := fs.String("models", "", "`DIR` of the PaddleOCR models and ppocr_keys_v1.txt (default: where `make setup` puts them)")
	work := fs.String("work", filepath.Join(testmodels.CacheDir(), "ocrbench"), "`DIR` for the cached sets, the convpca binary, compressed models and results")
	fs.StringVar(&o.convpca, "convpca", "", "convpca binary `PATH` (default: build ./cmd/convpca into -work)")
	configs := fs.String("configs", defaultConfigs, "';'-separated rule flags of convpca compress, each a configuration (`LIST`; \"default\": none)")
	variants := fs.String("variants", defaultVariants, "';'-separated flags added to every configuration, each a variant (`LIST`; \""+oneShot+"\": none)")
	taskList := fs.String("tasks", "rec,cls,det", "models to measure, a comma-separated `LIST` of rec, cls, det")
	defaultRow := fs.Bool("default", true, "also run convpca's default once, one-shot, first (crossing it with -variants would repeat a --sequential --refit at every probe of its search; name \"default\" in -configs to cross it)")
	quick := fs.Bool("quick", false, "rec only, configurations default and --target-macs 0.5, one-shot (flags given explicitly win)")
	page := fs.Int("page", 320, "detector page side in `PIXELS` (a multiple of 32)")
	seed := fs.Uint64("seed", 1, "seed of the rendered sets")
	fs.IntVar(&o.evalBatch, "batch", 16, "batch size of the evaluation runs")
	fs.IntVar(&o.evalThreads, "eval-threads", 0, "onnxruntime intra-op threads of the evaluation runs (0: onnxruntime's choice)")
	batches := fs.String("latency-batch", "1,16", "batch sizes of the latency runs, a comma-separated `LIST`")
	fs.IntVar(&o.threads, "threads", 1, "onnxruntime intra-op threads of the latency runs")
	fs.IntVar(&o.warmup, "warmup", 3, "latency warm-up runs of each model and batch size")
	fs.IntVar(&o.runs, "runs", 20, "timed latency runs of each model and batch size (the median is shown)")
	fs.StringVar(&o.provider, "provider", "cpu", "onnxruntime provider of evaluation and latency: cpu, cuda or auto")
	fs.StringVar(&o.ortLib, "ort-lib", "", "`PATH` of libonnxruntime.so.1 (default: as convpca finds it)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "longest one compress may run (0: no limit)")
	fs.BoolVar(&o.reuse, "reuse", false, "reuse compressed models of an earlier run with the same command line (and its compress time)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		if !set["tasks"] {
			*taskList = "rec"
		}
		if !set["configs"] {
			*configs = "--target-macs 0.5"
		}
		if !set["variants"] {
			*variants = oneShot
		}
	}
	var err error
	if o.configs, err = parseConfigs(*configs, *variants); err != nil {
		return o, err
	}
	if *defaultRow && !slices.ContainsFunc(o.configs, func(c config) bool { return len(c.Flags) == 0 }) {
		o.configs = append([]config{{Name: defaultConfig}}, o.configs...)
	}
	for _, t := range strings.Split(*taskList, ",") {
		t = strings.TrimSpace(t)
		if _, ok := metricNames[t]; !ok {
			return o, fmt.Errorf("-tasks: unknown task %q (want rec, cls, det)", t)
		}
		o.tasks = append(o.tasks, t)
	}
	if o.batches, err = intList(*batches); err != nil {
		return o, fmt.Errorf("-latency-batch: %w", err)
	}
	if *page <= 0 || *page%ocr.DetMultiple != 0 {
		return o, fmt.Errorf("-page %d: want a positive multiple of %d", *page, ocr.DetMultiple)
	}
	if o.evalBatch < 1 || o.runs < 1 || o.warmup < 0 || o.threads < 0 || o.evalThreads < 0 {
		return o, fmt.Errorf("-batch and -runs must be >= 1, -warmup and the thread counts >= 0")
	}
	if _, err := ort.ParseProvider(o.provider); err != nil {
		return o, err
	}
	o.cfg = ocr.DefaultConfig
	o.cfg.Seed, o.cfg.PageWidth, o.cfg.PageHeight = *seed, *page, *page
	if o.models = *models; o.models == "" {
		if o.models, err = testmodels.OCRModels(); err != nil {
			return o, err
		}
	}
	if o.models, err = filepath.Abs(o.models); err != nil {
		return o, err
	}
	if o.work, err = filepath.Abs(*work); err != nil {
		return o, err
	}
	return o, nil
}

// intList parses "1,16".
func intList(s string) ([]int, error) {
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

func loadavg() [3]float64 {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	for i, f := range strings.Fields(string(b)) {
		if i >= 3 {
			break
		}
		l[i], _ = strconv.ParseFloat(f, 64)
	}
	return l
}

func run(o options) error {
	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	host, _ := os.Hostname()
	res := &Results{
		Started: start, Host: Host{Name: host, CPUs: runtime.NumCPU(), LoadStart: loadavg()},
		Latency:   LatencyOpt{Batches: o.batches, Threads: o.threads, Warmup: o.warmup, Runs: o.runs, Provider: o.provider},
		EvalBatch: o.evalBatch,
	}
	for _, t := range o.tasks {
		for _, tk := range tasks {
			if tk.name == t {
				if _, err := os.Stat(filepath.Join(o.models, tk.file)); err != nil {
					return fmt.Errorf("model %s: %w (run `make setup`, or give -models DIR)", tk.file, err)
				}
			}
		}
	}
	bin := o.convpca
	if bin == "" {
		logf("building ./cmd/convpca")
		var err error
		if bin, err = buildConvpca(filepath.Join(o.work, "bin")); err != nil {
			return err
		}
	} else {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("-convpca: %w", err)
		}
		abs, err := filepath.Abs(bin)
		if err != nil {
			return err
		}
		bin = abs
	}
	res.Convpca = bin
	if o.convpca == "" {
		res.Commit = gitDescribe()
	}

	sets, err := ensureSets(o.work, o.cfg, logf)
	if err != nil {
		return err
	}
	binHash, err := fileHash(bin)
	if err != nil {
		return err
	}
	// Compressions depend on the sets and on the binary: each pair has a folder of its own,
	// which one run at a time writes.
	runs := filepath.Join(o.work, "runs-"+strings.TrimPrefix(filepath.Base(sets), "sets-")+"-"+binHash)
	if err := lockDir(runs); err != nil {
		return err
	}
	res.Sets, res.SetConfig, res.Runs, res.ModelsDir = sets, o.cfg, runs, o.models

	if err := ort.InitRuntime(o.ortLib); err != nil {
		return err
	}
	provider, _ := ort.ParseProvider(o.provider)
	var keys *ocr.Keys
	stamp := start.Format("20060102-150405")
	save := func() error {
		res.Elapsed = time.Since(start).Seconds()
		res.Host.LoadEnd = loadavg()
		b, err := json.MarshalIndent(res, "", " ")
		if err != nil {
			return err
		}
		b = append(b, '\n')
		for _, name := range []string{"results-" + stamp + ".json", "results.json"} {
			if err := os.WriteFile(filepath.Join(o.work, name), b, 0o644); err != nil {
				return err
			}
		}
		return os.WriteFile(filepath.Join(o.work, "results.md"), []byte(res.Markdown()), 0o644)
	}

	for _, t := range o.tasks {
		var file string
		for _, tk := range tasks {
			if tk.name == t {
				file = tk.file
			}
		}
		model := filepath.Join(o.models, file)
		m := Model{Task: t, Path: model, Metrics: metricNames[t], Rows: []Row{{Config: "original"}}}

		for _, c := range o.configs {
			logf("%s: compress %s", t, c.Name)
			job := compressJob{Bin: bin, Model: model, Calib: calibFile(sets, t), Config: c,
				Dir: filepath.Join(runs, t), Timeout: o.timeout, Reuse: o.reuse}
			row := job.run()
			if row.Failed() {
				logf("%s: %s failed after %.1f s: %s", t, c.Name, row.Seconds, row.Error)
			} else {
				logf("%s: %s: MACs %d -> %d (%.2fx fewer), %d applied, %d skipped, %.1f s%s", t, c.Name, row.MACsBefore, row.MACsAfter,
					float64(row.MACsBefore)/float64(max(row.MACsAfter, 1)), row.Applied, row.Skipped, row.Seconds, map[bool]string{true: " (reused)"}[row.Reused])
			}
			m.Rows = append(m.Rows, row)
		}

		if t == "rec" && keys == nil {
			if keys, err = ocr.LoadKeys(filepath.Join(o.models, testmodels.OCRKeys)); err != nil {
				return err
			}
		}
		set, err := loadEvalSet(t, evalDir(sets, t), keys)
		if err != nil {
			return err
		}
		x, shape := set.input()
		m.InputShape = shape
		r := newRunner(ort.RuntimeOptions{Library: o.ortLib, Provider: provider, Threads: o.evalThreads})
		paths := []string{model}
		pathRow := []int{0}
		for i := range m.Rows {
			row := &m.Rows[i]
			path, original := model, ""
			if row.Config != "original" {
				if row.Failed() {
					continue
				}
				path, original = row.Output, model
			}
			t0 := time.Now()
			row.Metrics, err = set.evaluate(r, path, original, o.evalBatch)
			if err != nil {
				row.Metrics, row.EvalError = nil, err.Error()
				logf("%s: evaluate %s: %v", t, row.Config, err)
			} else {
				logf("%s: evaluate %s: %v in %.1f s", t, row.Config, row.Metrics, time.Since(t0).Seconds())
				if i > 0 {
					paths, pathRow = append(paths, path), append(pathRow, i)
				}
			}
			if path != model {
				r.close(path)
			}
		}
		r.closeAll()

		m.Load = loadavg()[0]
		logf("%s: latency of %d models (load %.2f)", t, len(paths), m.Load)
		lat, errs := latencies(paths, x, shape, o.batches, o.warmup, o.runs,
			ort.RuntimeOptions{Library: o.ortLib, Provider: provider, Threads: o.threads}, logf)
		for k, p := range paths {
			row := &m.Rows[pathRow[k]]
			row.Latency = lat[p]
			if e := errs[p]; e != nil {
				row.LatencyError = e.Error()
			}
		}
		res.Models = append(res.Models, m)
		if err := save(); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "\n%s\n", m.Markdown())
	}
	if err := save(); err != nil {
		return err
	}
	fmt.Println(res.Markdown())
	logf("done; results in %s", filepath.Join(o.work, "results.json"))
	return nil
}
