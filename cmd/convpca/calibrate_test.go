package main

import (
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/convpca/convpca/calib"
	"github.com/convpca/convpca/dataset"
	"github.com/convpca/convpca/onnxio"
	"github.com/convpca/convpca/ort"
	"github.com/convpca/convpca/rewrite"
	"github.com/convpca/convpca/testmodels"
)

// randomData writes n random samples of shape 3x9x9 (the tiny model's input) to an .npy file.
func randomData(t *testing.T, path string, n int, seed int64) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	x := make([]float32, n*3*9*9)
	for i := range x {
		x[i] = float32(rng.NormFloat64() + 0.5)
	}
	writeNpy(t, path, []int{n, 3, 9, 9}, x)
}

// compareEigen checks that two statistics give the same covariance eigenvalues for every
// tensor of want, each to 1e-9 relative (and 1e-12 of the largest, for those near zero).
func compareEigen(t *testing.T, got, want *calib.Result, tensors []string) {
	t.Helper()
	if got.Samples != want.Samples {
		t.Errorf("%d samples, want %d", got.Samples, want.Samples)
	}
	worst := 0.0
	for _, name := range tensors {
		g, w := got.Stats[name], want.Stats[name]
		if g == nil || w == nil {
			t.Fatalf("tensor %q missing: %v %v", name, g, w)
		}
		if g.Count != w.Count {
			t.Errorf("%s: count %d, want %d", name, g.Count, w.Count)
		}
		pg, err := calib.Eigen(g.Covariance())
		if err != nil {
			t.Fatal(err)
		}
		pw, err := calib.Eigen(w.Covariance())
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range pw.Values {
			d := math.Abs(pg.Values[i] - v)
			if d > 1e-9*math.Abs(v)+1e-12*pw.Values[0] {
				t.Errorf("%s: eigenvalue %d is %.17g, want %.17g", name, i, pg.Values[i], v)
			}
			if v > 1e-3*pw.Values[0] {
				worst = math.Max(worst, d/v)
			}
		}
	}
	t.Logf("largest relative eigenvalue difference: %.2g", worst)
}

// TestShardedCalibration: calibrating 43 samples in 4 shards (11, 11, 11, 10) and merging
// gives the statistics, eigenvalues and compressed model of one run over all of them.
//
// The shards are batches of the single run (batch 11), since Collect may sum each batch in
// float32 inside onnxruntime: with other batch boundaries the runs would agree only to about
// 1e-7, float32's rounding, and not to the 1e-9 asked here.
func TestShardedCalibration(t *testing.T) {
	needRuntime(t)
	dir := t.TempDir()
	model := testmodels.Path("tiny/conv_pad_stride.onnx")
	data := filepath.Join(dir, "x.npy")
	randomData(t, data, 43, 1)

	single := filepath.Join(dir, "single.cps")
	code, stdout, stderr := cliRun("calibrate", model, "--calib", data, "--out", single, "--provider", "cpu", "--batch", "11")
	if code != 0 {
		t.Fatalf("calibrate: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "calibrated all data: 43 samples, 4 tensors -> "+single) {
		t.Errorf("calibrate printed %q", stdout)
	}
	var shards []string
	for i := range 4 {
		out := filepath.Join(dir, fmt.Sprintf("shard-%d.cps", i))
		// Flags after the model; each shard is one batch.
		code, stdout, stderr := cliRun("calibrate", model, "--calib", data, "--shard", fmt.Sprintf("%d/4", i), "--out", out, "--provider", "cpu", "--batch", "16")
		if code != 0 {
			t.Fatalf("calibrate shard %d: exit %d: %s", i, code, stderr)
		}
		want := []string{"samples 0-10 of 43", "samples 11-21 of 43", "samples 22-32 of 43", "samples 33-42 of 43"}[i]
		if !strings.Contains(stdout, want) {
			t.Errorf("shard %d printed %q, want %q", i, stdout, want)
		}
		shards = append(shards, out)
	}
	all := filepath.Join(dir, "all.cps")
	code, stdout, stderr = cliRun(append(append([]string{"merge"}, shards[3], shards[1], shards[0], shards[2]), "--out", all)...)
	if code != 0 {
		t.Fatalf("merge: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "merged 4 files (4 of 4 shards): 43 samples, 4 tensors") {
		t.Errorf("merge printed %q", stdout)
	}

	m, err := onnxio.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	whole, err := loadStats(single, m)
	if err != nil {
		t.Fatal(err)
	}
	merged, err := loadStats(all, m)
	if err != nil {
		t.Fatal(err)
	}
	targets := targets(m)
	if len(targets) != 4 {
		t.Fatalf("targets %v", targets)
	}
	compareEigen(t, merged, whole, targets)
	// And the file matches statistics collected in this process.
	r, err := dataset.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	opts := cpu
	opts.Batch = 11
	direct, err := ort.Collect(m, r, targets, opts)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	compareEigen(t, whole, direct, targets)

	// The same compressed model, by the rank rule and at full rank.
	for _, opts := range []rewrite.Options{{Rule: rewrite.DefaultRule}, {Rule: rewrite.Rule{Energy: 0.9}}, fullRank()} {
		var paths [2]string
		var reps [2]*rewrite.Report
		for k, res := range []*calib.Result{whole, merged} {
			c := m.Clone()
			rep, err := rewrite.Compress(c, res, opts)
			if err != nil {
				t.Fatal(err)
			}
			paths[k], reps[k] = filepath.Join(dir, fmt.Sprintf("c%d.onnx", k)), rep
			if err := onnxio.Save(paths[k], c); err != nil {
				t.Fatal(err)
			}
		}
		if reps[0].Applied != reps[1].Applied || reps[0].After != reps[1].After {
			t.Errorf("%v: single run applied %d (%+v), merged %d (%+v)", opts.Rule, reps[0].Applied, reps[0].After, reps[1].Applied, reps[1].After)
		}
		for i := range reps[0].Layers {
			if a, b := reps[0].Layers[i], reps[1].Layers[i]; a.Rank != b.Rank || a.InRank != b.InRank {
				t.Errorf("%v: layer %s ranks %d:%d, merged %d:%d", opts.Rule, a.Name, a.InRank, a.Rank, b.InRank, b.Rank)
			}
		}
		if e := maxRelErr(outputs(t, paths[1], data, cpu), outputs(t, paths[0], data, cpu)); e > 1e-5 {
			t.Errorf("%v: compressed models differ by %.3g relative", opts.Rule, e)
		}
	}

	// A shard alone is refused for compression.
	if _, err := loadStats(shards[1], m); err == nil || !strings.Contains(err.Error(), "lacks 3 of its 4 shards (first missing: [0 2 3]); merge all of them first") {
		t.Errorf("loadStats of one shard: %v", err)
	}
}

// TestShardEdges: more shards than samples, and --max-samples before sharding. As in
// TestShardedCalibration, the shards are batches of the single run.
func TestShardEdges(t *testing.T) {
	needRuntime(t)
	dir := t.TempDir()
	model := testmodels.Path("tiny/conv_pad_stride.onnx")
	data := filepath.Join(dir, "x.npy")
	randomData(t, data, 3, 2)
	var files []string
	for i := range 5 {
		out := filepath.Join(dir, fmt.Sprintf("s%d.cps", i))
		code, stdout, stderr := cliRun("calibrate", model, "--calib", data, "--shard", fmt.Sprintf("%d/5", i), "--out", out, "--provider", "cpu", "--batch", "1")
		if code != 0 {
			t.Fatalf("shard %d: exit %d: %s", i, code, stderr)
		}
		if i >= 3 && (!strings.Contains(stderr, "no samples: 5 shards of 3 samples") || !strings.Contains(stdout, "0 samples, 0 tensors")) {
			t.Errorf("empty shard %d: stdout %q stderr %q", i, stdout, stderr)
		}
		files = append(files, out)
	}
	all := filepath.Join(dir, "all.cps")
	if code, _, stderr := cliRun(append(append([]string{"merge"}, files...), "--out", all)...); code != 0 {
		t.Fatalf("merge: %s", stderr)
	}
	single := filepath.Join(dir, "single.cps")
	if code, _, stderr := cliRun("calibrate", model, "--calib", data, "--out", single, "--provider", "cpu", "--batch", "1"); code != 0 {
		t.Fatal(stderr)
	}
	m, err := onnxio.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	a, err := loadStats(all, m)
	if err != nil {
		t.Fatal(err)
	}
	b, err := loadStats(single, m)
	if err != nil {
		t.Fatal(err)
	}
	compareEigen(t, a, b, targets(m))

	// --max-samples cuts the data before sharding: shards of the first 20 of 43 samples (7, 7, 6).
	randomData(t, data, 43, 3)
	files = files[:0]
	for i := range 3 {
		out := filepath.Join(dir, fmt.Sprintf("m%d.cps", i))
		if code, _, stderr := cliRun("calibrate", model, "--calib", data, "--shard", fmt.Sprintf("%d/3", i), "--max-samples", "20", "--out", out, "--provider", "cpu", "--batch", "7"); code != 0 {
			t.Fatal(stderr)
		}
		files = append(files, out)
	}
	if code, _, stderr := cliRun(append(append([]string{"merge"}, files...), "--out", all)...); code != 0 {
		t.Fatal(stderr)
	}
	if code, _, stderr := cliRun("calibrate", model, "--calib", data, "--max-samples", "20", "--out", single, "--provider", "cpu", "--batch", "7"); code != 0 {
		t.Fatal(stderr)
	}
	if a, err = loadStats(all, m); err != nil {
		t.Fatal(err)
	}
	if b, err = loadStats(single, m); err != nil {
		t.Fatal(err)
	}
	compareEigen(t, a, b, targets(m))
}

// TestStatsErrors: bad statistics files and arguments get one clear line and the documented
// exit code, in a fresh process.
func TestStatsErrors(t *testing.T) {
	needRuntime(t)
	dir := t.TempDir()
	model := testmodels.Path("tiny/conv_pad_stride.onnx")
	data := filepath.Join(dir, "x.npy")
	randomData(t, data, 12, 4)
	shard := func(m string, i int) string {
		out := filepath.Join(dir, fmt.Sprintf("%s-%d.cps", filepath.Base(m), i))
		if code, _, stderr := cliRun("calibrate", m, "--calib", data, "--shard", fmt.Sprintf("%d/3", i), "--out", out, "--provider", "cpu"); code != 0 {
			t.Fatal(stderr)
		}
		return out
	}
	s0, s1, s2 := shard(model, 0), shard(model, 1), shard(model, 2)
	// Another model: the same graph with other weights.
	m, err := onnxio.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	w := m.Graph.Initializer("w1")
	vals, err := onnxio.Float32s(w)
	if err != nil {
		t.Fatal(err)
	}
	for i := range vals {
		vals[i] *= 2
	}
	m.Graph.SetInitializer(onnxio.FloatTensor("w1", w.GetDims(), vals))
	otherModel := filepath.Join(dir, "other.onnx")
	if err := onnxio.Save(otherModel, m); err != nil {
		t.Fatal(err)
	}
	other := shard(otherModel, 2)

	good, err := os.ReadFile(s1)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := append([]byte{}, good...)
	flipped[len(flipped)/2] ^= 1
	v2 := append([]byte{}, good...)
	v2[len("CONVPCA-STATS\n")] = 2
	corrupt, truncated, version := write("corrupt.cps", flipped), write("truncated.cps", good[:len(good)-40]), write("v2.cps", v2)
	out := filepath.Join(dir, "out.cps")

	tests := []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"wrong magic", nil, []string{"merge", s0, data, s2, "--out", out}, 1, "statistics file " + data + ": not a convpca statistics file"},
		{"corrupt", nil, []string{"merge", s0, corrupt, s2, "--out", out}, 1, "corrupt.cps: corrupt statistics file: checksum mismatch"},
		{"truncated", nil, []string{"merge", s0, truncated, s2, "--out", out}, 1, "truncated.cps: corrupt statistics file: truncated"},
		{"version", nil, []string{"merge", s0, version, s2, "--out", out}, 1, "unsupported statistics file version 2 (this convpca reads version 1)"},
		{"other model", nil, []string{"merge", s0, s1, other, "--out", out}, 1, "input 3 holds statistics of another model than input 1"},
		{"same shard twice", nil, []string{"merge", s0, s1, s1, s2, "--out", out}, 1, "shard 1 of 3 is in inputs 2 and 3: the same shard twice"},
		{"missing shard", nil, []string{"merge", s0, s2, "--out", out}, 1, "1 of 3 shards are missing (first: [1]; pass --partial"},
		{"missing file", nil, []string{"merge", s0, filepath.Join(dir, "none.cps"), "--out", out}, 1, "no such file or directory"},
		{"merge no out", nil, []string{"merge", s0, s1}, 2, "merge takes one or more statistics files and --out PATH"},
		{"merge nothing", nil, []string{"merge", "--out", out}, 2, "merge takes one or more"},
		{"no out", nil, []string{"calibrate", model, "--calib", data}, 2, "calibrate needs --calib DATA and --out PATH"},
		{"bad shard", nil, []string{"calibrate", model, "--calib", data, "--out", out, "--shard", "3/3"}, 2, `--shard "3/3": want I/N with 0 <= I < N, or env`},
		{"shard text", nil, []string{"calibrate", model, "--calib", data, "--out", out, "--shard", "one"}, 2, `--shard "one"`},
		{"shard env", []string{"JOB_COMPLETION_INDEX=1"}, []string{"calibrate", model, "--calib", data, "--out", out, "--shard", "env"}, 2, "--shard env: JOB_COMPLETION_INDEX is set but SHARD_COUNT is not"},
		{"shard env range", []string{"SLURM_ARRAY_TASK_ID=7", "SLURM_ARRAY_TASK_COUNT=4", "SLURM_ARRAY_TASK_MIN=0"}, []string{"calibrate", model, "--calib", data, "--out", out, "--shard", "env"}, 2, "SLURM_ARRAY_TASK_ID=7 is not one of 4"},
		{"out is model", nil, []string{"calibrate", model, "--calib", data, "--out", model}, 2, "is the input model"},
		{"bad data", nil, []string{"calibrate", model, "--calib", s0, "--out", out}, 1, "unknown format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr := subprocess(t, tt.env, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tt.code, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q does not contain %q", stderr, tt.want)
			}
			if strings.Contains(stderr, "panic") || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Errorf("stderr is not one line:\n%s", stderr)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("a failed run left %s", out)
			}
		})
	}

	// --partial writes an incomplete merge, which merges on but is refused for compressing.
	part := filepath.Join(dir, "part.cps")
	if code, _, stderr := cliRun("merge", s0, s2, "--partial", "--out", part); code != 0 {
		t.Fatal(stderr)
	}
	base, err := onnxio.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loadStats(part, base); err == nil || !strings.Contains(err.Error(), "lacks 1 of its 3 shards (first missing: [1])") {
		t.Errorf("loadStats of a partial merge: %v", err)
	}
	all := filepath.Join(dir, "all.cps")
	if code, _, stderr := cliRun("merge", part, s1, "--out", all); code != 0 {
		t.Fatal(stderr)
	}
	if _, err := loadStats(all, base); err != nil {
		t.Error(err)
	}
	if _, err := loadStats(other, base); err == nil || !strings.Contains(err.Error(), "was computed on another model") {
		t.Errorf("loadStats of another model's statistics: %v", err)
	}
	if _, err := loadStats(corrupt, base); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Errorf("loadStats of a corrupt file: %v", err)
	}
}

// targets lists the tensors calibrate captures.
func targets(m *onnxio.Model) []string {
	t, _ := rewrite.Targets(m, rewrite.SideBoth)
	return t
}
