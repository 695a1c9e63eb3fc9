package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/convpca/convpca/latency"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/testmodels"
)

// latencyReport is what the tests read of a report with latency tables.
type latencyReport struct {
	Rule    string `json:"rule"`
	Applied int    `json:"applied"`
	Layers  []struct {
		Name    string `json:"name"`
		Applied bool   `json:"applied"`
		Reason  string `json:"reason"`
	} `json:"layers"`
	Latency *struct {
		Batch        int     `json:"batch"`
		Threads      int     `json:"threads"`
		RankMultiple int     `json:"rank_multiple"`
		Target       float64 `json:"target"`
		Gate         bool    `json:"gate"`
		LayersBefore float64 `json:"layers_before_ms"`
		LayersAfter  float64 `json:"layers_after_ms"`
		OutOfReach   bool    `json:"out_of_reach"`
		Measured     int     `json:"tables_measured"`
		Cached       int     `json:"tables_cached"`
		Refined      int     `json:"refined"`
		Original     *struct {
			Ms   float64 `json:"ms"`
			Runs int     `json:"runs"`
		} `json:"original"`
		Predicted       float64 `json:"predicted_ms"`
		TablesPredicted float64 `json:"tables_predicted_ms"`
		Compressed      *struct {
			Ms   float64 `json:"ms"`
			Runs int     `json:"runs"`
		} `json:"compressed"`
		Layers []latencyLayer `json:"layers"`
	} `json:"latency"`
}

// latencyLayer is one layer's row of a report's latency part.
type latencyLayer struct {
	Name       string  `json:"name"`
	Applied    bool    `json:"applied"`
	InRank     int     `json:"in_rank"`
	Rank       int     `json:"rank"`
	OriginalMs float64 `json:"original_ms"`
	AfterMs    float64 `json:"after_ms"`
	InModelMs  float64 `json:"in_model_ms"`
}

func readLatencyReport(t *testing.T, path string) latencyReport {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep latencyReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Latency == nil {
		t.Fatalf("report has no latency:\n%s", b)
	}
	return rep
}

// TestTargetLatencyMNIST: --target-latency 0.5 on the bundled model writes a model and a report
// with every layer's table times, the whole model's predicted and measured latency side by
// side, and no applied layer slower than its original in the table; skipped layers say why
// with both times. Timings are not asserted: they are noisy. Tables are measured into a fresh
// cache, at batch 8 on one thread (CPU time of the thread, the least noisy clock).
func TestTargetLatencyMNIST(t *testing.T) {
	needRuntime(t)
	data := mnistDir(t)
	cache := t.TempDir()
	t.Setenv(latency.CacheEnv, cache)
	dir := t.TempDir()
	out, report := filepath.Join(dir, "m.onnx"), filepath.Join(dir, "m.json")
	code, stdout, stderr := cliRun("compress", testmodels.Path("mnist_cnn.onnx"), "--calib", filepath.Join(data, "train-images-idx3-ubyte.gz"),
		"--max-samples", "500", "--target-latency", "0.5", "--latency-batch", "8", "--threads", "1", "--provider", "cpu",
		"--out", out, "--report", report)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	t.Logf("\n%s", stdout)
	if _, err := onnxio.Load(out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"original ms", "after ms", "whole model: original", "predicted", "measured"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	rep := readLatencyReport(t, report)
	l := rep.Latency
	if !strings.Contains(rep.Rule, "target-latency 0.5") || !strings.Contains(rep.Rule, "latency gate") {
		t.Errorf("rule %q", rep.Rule)
	}
	if l.Batch != 8 || l.Threads != 1 || l.Target != 0.5 || !l.Gate || l.RankMultiple < 1 {
		t.Errorf("latency setup: %+v", l)
	}
	if l.Original == nil || l.Compressed == nil || !(l.Original.Ms > 0) || !(l.Compressed.Ms > 0) || l.Original.Runs < 3 || l.Compressed.Runs < 3 {
		t.Fatalf("whole models not timed: %+v", l)
	}
	// Predicted: the original measured less the layers' savings in the tables, each scaled
	// by the layer's time in the original model's profile over its table's where larger;
	// every layer of the model is in the profile.
	if want := l.Original.Ms - (l.LayersBefore - l.LayersAfter); !(l.TablesPredicted > 0) || abs(l.TablesPredicted-want) > 1e-9*want {
		t.Errorf("predicted by the tables %.4f ms, want %.4f", l.TablesPredicted, want)
	}
	saved := 0.0
	for _, ll := range l.Layers {
		if !(ll.InModelMs > 0) {
			t.Errorf("layer %s: not found in the original model's profile", ll.Name)
		}
		saved += (ll.OriginalMs - ll.AfterMs) * max(1, ll.InModelMs/ll.OriginalMs)
	}
	if want := l.Original.Ms - saved; !(l.Predicted > 0) || abs(l.Predicted-want) > 1e-9*want {
		t.Errorf("predicted %.4f ms, want %.4f", l.Predicted, want)
	}
	if len(l.Layers) != len(rep.Layers) {
		t.Fatalf("%d layers timed, %d in the report", len(l.Layers), len(rep.Layers))
	}
	var before, after float64
	for i, ll := range l.Layers {
		row := rep.Layers[i]
		if ll.Name != row.Name || ll.Applied != row.Applied {
			t.Errorf("layer %d: latency row %s applied %v, report row %s applied %v", i, ll.Name, ll.Applied, row.Name, row.Applied)
		}
		if ll.Applied && !(ll.AfterMs < ll.OriginalMs) {
			t.Errorf("layer %s applied at %.4f ms against %.4f ms in the table", ll.Name, ll.AfterMs, ll.OriginalMs)
		}
		if !ll.Applied && (ll.AfterMs != ll.OriginalMs || !strings.Contains(row.Reason, " ms -> ")) {
			t.Errorf("skipped layer %s: after %.4f ms, reason %q", ll.Name, ll.AfterMs, row.Reason)
		}
		before += ll.OriginalMs
		after += ll.AfterMs
	}
	if abs(before-l.LayersBefore) > 1e-9*before || abs(after-l.LayersAfter) > 1e-9*before {
		t.Errorf("layer sums %.4f, %.4f; report %.4f, %.4f", before, after, l.LayersBefore, l.LayersAfter)
	}
	// Every applied factorization was timed again beside its layer (latency.Refine): its time
	// in the report is the refined point the cache now holds, and the log says so.
	applied := 0
	for _, ll := range l.Layers {
		if ll.Applied {
			applied++
		}
	}
	if l.Measured != 7 || applied == 0 || l.Refined < applied {
		t.Errorf("%d tables measured, %d factorizations timed again, %d applied", l.Measured, l.Refined, applied)
	}
	checkRefined(t, cache, l.Layers)
	for _, ll := range l.Layers {
		if ll.Applied && !strings.Contains(stderr, "latency of "+ll.Name+" at ") {
			t.Errorf("no line says %s was timed again:\n%s", ll.Name, stderr)
		}
	}

	// The same command again measures no table; the factorizations it applies were all timed
	// again (by this run or the first).
	again := filepath.Join(dir, "again.json")
	code, _, stderr = cliRun("compress", testmodels.Path("mnist_cnn.onnx"), "--calib", filepath.Join(data, "train-images-idx3-ubyte.gz"),
		"--max-samples", "500", "--target-latency", "0.5", "--latency-batch", "8", "--threads", "1", "--provider", "cpu",
		"--out", filepath.Join(dir, "again.onnx"), "--report", again, "-q")
	if code != 0 {
		t.Fatalf("again: exit %d: %s", code, stderr)
	}
	a := readLatencyReport(t, again)
	if a.Latency.Measured != 0 || a.Latency.Cached != 7 {
		t.Errorf("again: %d tables measured, %d cached", a.Latency.Measured, a.Latency.Cached)
	}
	checkRefined(t, cache, a.Latency.Layers)

	// --alloc sensitivity spends the same time budget by the measured output error (the tables
	// now come from the cache).
	report2 := filepath.Join(dir, "s.json")
	code, _, stderr = cliRun("compress", testmodels.Path("mnist_cnn.onnx"), "--calib", filepath.Join(data, "train-images-idx3-ubyte.gz"),
		"--max-samples", "500", "--target-latency", "0.5", "--alloc", "sensitivity", "--latency-batch", "8", "--threads", "1", "--provider", "cpu",
		"--out", filepath.Join(dir, "s.onnx"), "--report", report2, "-q")
	if code != 0 {
		t.Fatalf("--alloc sensitivity: exit %d: %s", code, stderr)
	}
	s := readLatencyReport(t, report2)
	if !strings.Contains(s.Rule, "alloc sensitivity") || s.Latency.LayersAfter > 0.5*s.Latency.LayersBefore*(1+1e-9) && !s.Latency.OutOfReach {
		t.Errorf("--alloc sensitivity: rule %q, layers %.4f of %.4f ms", s.Rule, s.Latency.LayersAfter, s.Latency.LayersBefore)
	}
}

// checkRefined checks that every applied layer's time in a report is a refined point of the
// latency cache in folder cache.
func checkRefined(t *testing.T, cache string, layers []latencyLayer) {
	t.Helper()
	// Of any layer (the cache does not name them): each table's level, the median of its
	// original and of its refined points' originals in their sessions, and its refined times
	// in that level.
	var levels, refined []float64
	files, _ := filepath.Glob(filepath.Join(cache, "*.json"))
	for _, f := range files {
		var e struct {
			Times struct {
				Original struct{ Ms float64 }
				Refined  []struct {
					Ms   float64
					Orig float64 `json:"orig_ms"`
				}
			}
		}
		if b, err := os.ReadFile(f); err != nil || json.Unmarshal(b, &e) != nil {
			t.Fatalf("cache file %s: %v", f, err)
		}
		orig := e.Times.Original.Ms
		origs := []float64{orig}
		for _, p := range e.Times.Refined {
			if !(p.Orig > 0) {
				t.Errorf("cache file %s: refined point %+v without its original's time", f, p)
				continue
			}
			origs = append(origs, p.Orig)
		}
		level := latency.Median(origs)
		levels = append(levels, level)
		for _, p := range e.Times.Refined {
			refined = append(refined, p.Ms*level/orig)
		}
	}
	near := func(xs []float64, x float64) bool {
		return slices.ContainsFunc(xs, func(y float64) bool { return abs(x-y) <= 1e-9*y })
	}
	for _, ll := range layers {
		if ll.Applied && (!near(refined, ll.AfterMs) || !near(levels, ll.OriginalMs)) {
			t.Errorf("layer %s applied at %.4f ms from %.4f ms, not among the refined times %v and levels %v", ll.Name, ll.AfterMs, ll.OriginalMs, refined, levels)
		}
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// TestLatencyGateFull: --latency-gate times the layers of any rule; --rank full applies every
// rewrite whatever the tables say, and the report still carries the times.
func TestLatencyGateFull(t *testing.T) {
	needRuntime(t)
	t.Setenv(latency.CacheEnv, t.TempDir())
	dir := t.TempDir()
	model := testmodels.Path("tiny/conv_pad_stride.onnx")
	data := filepath.Join(dir, "x.npy")
	writeNpy(t, data, []int{40, 3, 9, 9}, ramp(40*3*9*9))
	out, report := filepath.Join(dir, "m.onnx"), filepath.Join(dir, "m.json")
	code, _, stderr := cliRun("compress", model, "--calib", data, "--rank", "full", "--latency-gate", "--threads", "1", "--provider", "cpu",
		"--out", out, "--report", report, "-q")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	rep := readLatencyReport(t, report)
	if rep.Applied != 2 || len(rep.Latency.Layers) != 2 || rep.Latency.Target != 0 || !rep.Latency.Gate || rep.Latency.Batch != 64 {
		t.Errorf("applied %d, latency %+v", rep.Applied, rep.Latency)
	}
	if rep.Rule != "full rank, latency gate 0.05, side both" {
		t.Errorf("rule %q", rep.Rule)
	}
}

// TestLatencyUsage: the latency flags' bad combinations are usage errors (exit 2).
func TestLatencyUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--target-latency", "0"}, "--target-latency 0 is not in (0, 1]"},
		{[]string{"--target-latency", "1.5"}, "--target-latency 1.5 is not in (0, 1]"},
		{[]string{"--target-latency", "0.5", "--target-macs", "0.5"}, "give one of --threshold, --energy, --target-macs and --target-latency, not several"},
		{[]string{"--no-latency-gate"}, "--no-latency-gate goes with --target-latency, without --latency-gate"},
		{[]string{"--target-latency", "0.5", "--latency-gate", "--no-latency-gate"}, "--no-latency-gate goes with --target-latency, without --latency-gate"},
		{[]string{"--latency-gate", "--latency-batch", "-1"}, "--latency-batch must be >= 1"},
		{[]string{"--target-latency", "0.5", "--max-error", "0.1"}, "--target-latency allocates for one target"},
		{[]string{"--target-latency", "0.5", "--rank", "full"}, "--target-latency allocates for one target"},
	} {
		args := append([]string{"compress", "m.onnx", "--calib", "x.npy", "--out", "o.onnx"}, tc.args...)
		code, _, stderr := cliRun(args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}
