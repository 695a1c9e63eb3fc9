package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseConfigs(t *testing.T) {
	cs, err := parseConfigs(defaultConfigs, defaultVariants)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ name, slug string }{
		{"--target-macs 0.7", "target-macs_0.7"},
		{"--target-macs 0.7 --sequential --refit", "target-macs_0.7_sequential_refit"},
		{"--target-macs 0.65", "target-macs_0.65"},
		{"--target-macs 0.65 --sequential --refit", "target-macs_0.65_sequential_refit"},
		{"--target-macs 0.5", "target-macs_0.5"},
		{"--target-macs 0.5 --sequential --refit", "target-macs_0.5_sequential_refit"},
		{"--target-macs 0.33", "target-macs_0.33"},
		{"--target-macs 0.33 --sequential --refit", "target-macs_0.33_sequential_refit"},
	}
	if len(cs) != len(want) {
		t.Fatalf("got %d configurations %v, want %d", len(cs), cs, len(want))
	}
	for i, w := range want {
		if cs[i].Name != w.name || slug(cs[i]) != w.slug {
			t.Errorf("configuration %d: name %q slug %q, want %q %q", i, cs[i].Name, slug(cs[i]), w.name, w.slug)
		}
	}
	if got := strings.Join(cs[1].Flags, " "); got != "--target-macs 0.7 --sequential --refit" {
		t.Errorf("flags %q", got)
	}

	// A new rule flag is one more entry; spaces around ';' and empty entries do not count.
	cs, err = parseConfigs(" --target-latency 0.7 ;; default ", oneShot)
	if err != nil || len(cs) != 2 || cs[0].Name != "--target-latency 0.7" || len(cs[1].Flags) != 0 {
		t.Errorf("got %v, %v", cs, err)
	}
	long, err := parseConfigs(strings.Repeat("--rank layer_with_a_long_name=3 ", 8), oneShot)
	if err != nil || len(slug(long[0])) > 80 {
		t.Errorf("long slug %q, %v", slug(long[0]), err)
	}

	for _, bad := range []struct{ configs, variants, msg string }{
		{"default; --out x.onnx", oneShot, "gives --out itself"},
		{"--calib=x.npy", oneShot, "gives --calib itself"},
		{"target-macs 0.5", oneShot, "want flags"},
		{" ; ", oneShot, "-configs is empty"},
		{"default", "", "-variants is empty"},
		{"default; default", oneShot, "given twice"},
		{"--target-macs 0.5", "one-shot; one-shot", "given twice"},
	} {
		if _, err := parseConfigs(bad.configs, bad.variants); err == nil || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("parseConfigs(%q, %q) = %v, want an error with %q", bad.configs, bad.variants, err, bad.msg)
		}
	}
}

func TestParseFlagsQuick(t *testing.T) {
	o, err := parseFlags([]string{"-quick", "-models", "/nowhere", "-work", "/tmp/w"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.tasks, ",") != "rec" || len(o.configs) != 2 || o.configs[0].Name != "default" || o.configs[1].Name != "--target-macs 0.5" {
		t.Errorf("quick: tasks %v configs %v", o.tasks, o.configs)
	}
	// Flags given explicitly win over -quick.
	o, err = parseFlags([]string{"-quick", "-models", "/nowhere", "-tasks", "cls,det", "-configs", "--target-macs 0.3", "-default=false"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.tasks, ",") != "cls,det" || len(o.configs) != 1 || o.configs[0].Name != "--target-macs 0.3" {
		t.Errorf("quick with flags: tasks %v configs %v", o.tasks, o.configs)
	}
	// The default runs once, first, one-shot, unless -configs names it (then it is crossed).
	o, err = parseFlags([]string{"-models", "/nowhere", "-configs", "--target-macs 0.3; default", "-variants", "one-shot; --sequential"})
	if err != nil || len(o.configs) != 4 || o.configs[2].Name != "default" || o.configs[3].Name != "default --sequential" {
		t.Errorf("default in -configs: %v, %v", o.configs, err)
	}
	o, err = parseFlags([]string{"-models", "/nowhere", "-page", "480"})
	if err != nil || len(o.configs) != 9 || o.configs[0].Name != "default" || len(o.tasks) != 3 || o.cfg.PageWidth != 480 || o.cfg.RecCalib != 200 || o.cfg.DetEval != 64 {
		t.Errorf("full: %d configs, tasks %v, config %+v, %v", len(o.configs), o.tasks, o.cfg, err)
	}
	for _, bad := range [][]string{{"-page", "300"}, {"-tasks", "rec,ocr"}, {"-latency-batch", "1,0"}, {"-runs", "0"}, {"extra"}} {
		if _, err := parseFlags(append([]string{"-models", "/nowhere"}, bad...)); err == nil {
			t.Errorf("parseFlags(%q) did not fail", bad)
		}
	}
}

func TestParseReport(t *testing.T) {
	// The README's report schema, abridged.
	doc := `{
  "model": "testmodels/mnist_cnn.onnx", "output": "out/m.onnx", "rule": "threshold 0.001, side both",
  "layers": [{"name": "/2/Conv", "op": "Conv", "side": "both", "in_channels": 32, "out_channels": 32,
    "in_rank": 16, "rank": 13, "before": {"macs": 5308416, "params": 9248}, "after": {"macs": 1664000, "params": 4576},
    "applied": true}],
  "total_before": {"macs": 10067328, "params": 205802}, "total_after": {"macs": 3557132, "params": 90241},
  "applied": 5, "skipped": 2, "calibration_samples": 2000
}`
	r, err := parseReport([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if r.Before.MACs != 10067328 || r.After.MACs != 3557132 || r.Applied != 5 || r.Skipped != 2 || r.Rule != "threshold 0.001, side both" {
		t.Errorf("got %+v", r)
	}
	for _, bad := range []string{`{"total_after": {"macs": 1}}`, `not json`, ``} {
		if _, err := parseReport([]byte(bad)); err == nil {
			t.Errorf("parseReport(%q) did not fail", bad)
		}
	}
}

func TestErrorLine(t *testing.T) {
	for _, tc := range []struct{ stderr, want string }{
		{"convpca: warning: CUDA provider unavailable, running on CPU (x)\nconvpca: calibration: bad shape\n", "convpca: calibration: bad shape"},
		{"\n  convpca: load model x.onnx: truncated\n", "convpca: load model x.onnx: truncated"},
		{"convpca: warning: only this\n", "convpca: warning: only this"},
		{"", ""},
	} {
		if got := errorLine(tc.stderr); got != tc.want {
			t.Errorf("errorLine(%q) = %q, want %q", tc.stderr, got, tc.want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	got := commandLine([]string{"/bin/convpca", "compress", "a b.onnx", "--rank", "x=1:2", "it's"})
	if want := `/bin/convpca compress 'a b.onnx' --rank x=1:2 'it'\''s'`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestModelMarkdown(t *testing.T) {
	m := Model{Task: "det", Metrics: []string{"pixel F1 vs original", "box recall"}, Rows: []Row{
		{Config: "original", Metrics: []float64{1, 0.98}, Latency: []Latency{{Batch: 1, MedianMS: 28.5, SpeedUp: 1}, {Batch: 16, MedianMS: 401.25, SpeedUp: 1}}},
		{Config: "--target-macs 0.5", Flags: []string{"--target-macs", "0.5"}, MACsBefore: 536610944, MACsAfter: 268305472, Applied: 40, Skipped: 22, Seconds: 14.06,
			Metrics: []float64{0.91234, 0.95}, Latency: []Latency{{Batch: 1, MedianMS: 20, SpeedUp: 1.425}, {Batch: 16, MedianMS: 300, SpeedUp: 1.3375}}},
		{Config: "--rank full", MACsBefore: 536610944, MACsAfter: 1232775456, Applied: 48, Skipped: 14, Seconds: 29.4, Reused: true,
			Metrics: []float64{1, 0.98}, LatencyError: "onnxruntime: boom"},
		{Config: "--target-macs 0.33 --sequential --refit", ExitCode: 1, Error: "convpca: refit: singular | matrix", Seconds: 3.2},
		{Config: "default", MACsBefore: 536610944, MACsAfter: 500000000, Seconds: 1, EvalError: "run x: bad shape"},
	}}
	want := `| config | MACs | pixel F1 vs original | box recall | batch 1 ms (speed-up) | batch 16 ms (speed-up) | compress s | layers applied/skipped |
|---|--:|--:|--:|--:|--:|--:|--:|
| original | 536.6 M | 1.0000 | 0.9800 | 28.50 | 401.25 |  |  |
| --target-macs 0.5 | 2.00x fewer (268.3 M) | 0.9123 | 0.9500 | 20.00 (1.43x) | 300.00 (1.34x) | 14.1 | 40/22 |
| --rank full | 2.30x more (1.23 G) | 1.0000 | 0.9800 | error: onnxruntime: boom |  | 29.4 (reused) | 48/14 |
| --target-macs 0.33 --sequential --refit | failed (exit 1): convpca: refit: singular \| matrix |  |  |  |  | 3.2 |  |
| default | 1.07x fewer (500.0 M) | error: run x: bad shape |  |  |  | 1.0 | 0/0 |
`
	if got := m.Markdown(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	// The JSON document keeps what the table shows.
	res := Results{Models: []Model{m}}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got := back.Models[0].Markdown(); got != want {
		t.Errorf("after a JSON round trip:\n%s", got)
	}
	back.Convpca, back.ModelsDir, back.Sets, back.Runs = "/w/bin/convpca", "/m", "/w/sets-1", "/w/runs-1"
	back.Models[0].Rows[1].Command = commandLine([]string{"/w/bin/convpca", "compress", "/m/det.onnx", "--calib", "/w/sets-1/det/calib/x.npy",
		"--out", "/w/runs-1/det/a.onnx", "--report", "/w/runs-1/det/a.json", "--target-macs", "0.5"})
	full := back.Markdown()
	for _, s := range []string{"### det:", "box recall: ground-truth line boxes found", "Commands:", "CONVPCA=/w/bin/convpca\nMODELS=/m\n",
		"$CONVPCA compress $MODELS/det.onnx --calib $SETS/det/calib/x.npy --out $RUNS/det/a.onnx --report $RUNS/det/a.json --target-macs 0.5\n"} {
		if !strings.Contains(full, s) {
			t.Errorf("Results.Markdown lacks %q:\n%s", s, full)
		}
	}
}
